"""Coverage-guided fuzzing of the request head path: split_target, normalize, classify, route.

    .venv/bin/python tests/fuzz/fuzz_head.py -runs=200000 -seed=1 -dict=tests/fuzz/head.dict DIR

An input is one byte choosing the method, one choosing a method-override
header, then the request target (read as latin-1, as the front door reads it).
Asserted for every input: only GateError escapes; ``normalize`` is idempotent;
no call that a liberal upstream (tests/fuzz/oracle.py) reads as a gated one
is classified as pass-through or as another call; ``Decider.route`` never
raises and never forwards such a call without a decision.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fuzz.oracle

with atheris.instrument_imports(include=["gate"]):
    from gate.config import Settings
    from gate.core.action import Forward
    from gate.core.classify import classify, normalize, split_target
    from gate.core.decide import Decider
    from gate.errors import GateError
    from gate.runtime import RuntimeHolder, compile_settings

from tests.fuzz.oracle import effective_methods, gated_readings

METHODS = ("POST", "PATCH", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "post", "Patch")
OVERRIDES = (None, "POST", "PATCH", "GET", "post", "")
RUNTIME = compile_settings(Settings())
DECIDER = Decider(RuntimeHolder(RUNTIME), None, None)  # type: ignore[arg-type]  # route reads neither


class _Head:
    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self._headers = headers

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self._headers if key == name]


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    method = METHODS[data[0] % len(METHODS)]
    override = OVERRIDES[data[1] % len(OVERRIDES)]
    target = data[2:].decode("latin-1")
    headers = [] if override is None else [("x-http-method-override", override)]
    action: Any = DECIDER.route(method, target, _Head(headers))  # never raises
    try:
        path, _query = split_target(target)
        path = normalize(path)
        found = classify(RUNTIME.rules, method, path, headers)
    except GateError:
        return  # refused: nothing forwarded
    assert normalize(path) == path, ("normalize is not idempotent", target)
    for wanted in effective_methods(method, headers):
        for rule, customer in gated_readings(wanted, path):
            assert found is not None and (found.rule, found.customer) == (rule, customer), (
                "a liberally read gated call is classified otherwise",
                method,
                override,
                target,
                found,
                rule,
            )
            assert not isinstance(action, Forward) or action.decision is not None


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
