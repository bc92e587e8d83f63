"""Coverage-guided fuzzing of gated-body parsing: gate.core.body.

    .venv/bin/python tests/fuzz/fuzz_body.py -runs=200000 -seed=1 -dict=tests/fuzz/body.dict DIR

Asserted for every input: only GateError escapes ``parse`` (and nothing escapes
the readers of its result); two keys at one level that an upper-casing (.NET)
or a lower-casing upstream takes for one are refused (AmbiguousBody); a key
such an upstream reads as one the gate's rules read is read by the gate too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fuzz.oracle

with atheris.instrument_imports(include=["gate"]):
    from gate.core import body
    from gate.errors import GateError

from tests.fuzz.oracle import Duplicate, read_body

KNOWN = ("quantity", "lineitems", "status", "partneridonrecord")


def _agrees(ours: Any, theirs: Any) -> None:
    """Every key the upstream reads (upper-cased) as a known key is that key in the gate's doc."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict)
        for key in KNOWN:
            if key.upper() in theirs:
                assert key in ours, ("a known key the gate did not read", key)
        for key, value in theirs.items():
            if key.lower() in ours:
                _agrees(ours[key.lower()], value)
    elif isinstance(theirs, list):
        for mine, their in zip(ours, theirs, strict=True):
            _agrees(mine, their)


def check(data: bytes) -> None:
    try:
        doc = body.parse(data)
    except GateError:
        return  # refused (AmbiguousBody); refusing more than the oracle is allowed
    try:
        theirs = read_body(data)
    except Duplicate as dup:
        raise AssertionError(("a key repeated under some folding was not refused", dup)) from None
    if doc is body.NOT_JSON:
        return
    body.is_cancel_only(doc)
    body.requested_quantity(doc)
    body.resellers(doc)
    if theirs is not None:
        _agrees(doc, theirs)


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
