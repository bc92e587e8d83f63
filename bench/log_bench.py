"""Micro-benchmark of what a gated call spends on its decision line and its counters.

Encodes the fields of one decision log line (as ``gate.decision_log.finish``
hands them to ``HotLines``) four ways and prints µs per line:

- ``json.dumps``: the stdlib, as the gate did before;
- a prebuilt stdlib encoder: ``_json.make_encoder`` made once, not per call;
- a prebuilt template: the keys rendered once into a format string, each
  value encoded by its type (``encode_basestring_ascii`` for strings);
- ``orjson``: ``gate.logs.encode_line``, what the gate ships (orjson, with the
  stdlib's escaping for non-ASCII, DEL and lone surrogates).

Then the whole ``HotLines.info`` (stamp, encode, one write to a null stream),
and one counter bump: prometheus-client's ``Counter.inc`` against the plain
``Tally.inc`` the hot counters now use. Asserts nothing.

    .venv/bin/python bench/log_bench.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from json.encoder import JSONEncoder, c_make_encoder, encode_basestring_ascii
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from gate.core.policy import Verdict
from gate.logs import HotLines, encode_line, make_logger
from gate.metrics import Metrics

FIELDS: dict[str, Any] = {
    "method": "POST",
    "path": "/v1/customers/c0ffee00-1234-4321-abcd-0123456789ab/orders",
    "partner": "11111111-aaaa-4aaa-8aaa-111111111111",
    "customer": "c0ffee00-1234-4321-abcd-0123456789ab",
    "resellers": [],
    "transaction": "new_purchase",
    "rule": "create-order",
    "decision": Verdict.ALLOWED,
    "reason": "accepted",
    "cache": "hit",
    "acceptance": "accepted",
    "source": "agreement",
    "body": None,
    "status": 201,
    "error": None,
    "latency_ms": 0.412,
    "correlation_id": "5c2a2b9e-0000-4000-8000-000000000000",
    "event": "decision",
    "level": "info",
    "timestamp": "2026-12-07T09:00:00.123456Z",
}

_PREBUILT = c_make_encoder(
    None, JSONEncoder().default, encode_basestring_ascii, None, ":", ",", False, False, True
)


def prebuilt(fields: dict[str, Any]) -> str:
    return "".join(_PREBUILT(fields, 0))


_TEMPLATE = "{" + ",".join(f"{encode_basestring_ascii(key)}:%s" for key in FIELDS) + "}"


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float:
        return float.__repr__(value)
    return json.dumps(value, separators=(",", ":"))


def template(fields: dict[str, Any]) -> str:
    return _TEMPLATE % tuple(map(_value, fields.values()))


def per_call(calls: int, step: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - started) / calls * 1e6


def main(calls: int) -> None:
    compact = json.dumps(FIELDS, separators=(",", ":"))
    for name, encode in (("prebuilt", prebuilt), ("template", template), ("orjson", encode_line)):
        assert encode(FIELDS) == compact, name  # the same bytes, or the figure means nothing
    figures = {
        "json.dumps": per_call(calls, lambda: json.dumps(FIELDS)),
        "prebuilt stdlib encoder": per_call(calls, lambda: prebuilt(FIELDS)),
        "prebuilt template": per_call(calls, lambda: template(FIELDS)),
        "orjson (encode_line)": per_call(calls, lambda: encode_line(FIELDS)),
    }
    print(f"decision line, {len(FIELDS)} fields, {len(compact)} bytes, {calls:,} calls each:")
    for name, us in figures.items():
        print(f"  {name:<26} {us:6.2f} µs")
    null = io.StringIO()
    lines = HotLines("info", "json", null, make_logger("info", "json", null))
    fields = {k: v for k, v in FIELDS.items() if k not in ("event", "level", "timestamp")}

    def write() -> None:
        lines.info("decision", dict(fields))
        null.seek(0)
        null.truncate()

    whole = per_call(calls, write)
    print(f"  {'HotLines.info, whole line':<26} {whole:6.2f} µs")
    counter = Counter("bench_total", "bench", ["a"], registry=CollectorRegistry()).labels("b")
    tally = Metrics("bench").decisions[("new_purchase", "allowed")]
    prometheus_inc = per_call(calls * 5, counter.inc) * 1000
    tally_inc = per_call(calls * 5, tally.inc) * 1000
    print("one counter bump:")
    print(f"  {'prometheus Counter.inc':<26} {prometheus_inc:6.0f} ns")
    print(f"  {'Tally.inc (plain add)':<26} {tally_inc:6.0f} ns")
    print(
        f"json_dumps_us={figures['json.dumps']:.2f} "
        f"prebuilt_us={figures['prebuilt stdlib encoder']:.2f} "
        f"template_us={figures['prebuilt template']:.2f} "
        f"orjson_us={figures['orjson (encode_line)']:.2f} hot_lines_us={whole:.2f} "
        f"prometheus_inc_ns={prometheus_inc:.0f} tally_inc_ns={tally_inc:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    main(parser.parse_args().calls)
