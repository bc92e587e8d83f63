"""Redraw the chart and reprint the report from a results.json (no servers, no wrk).

.venv/bin/python bench/redraw.py [bench/results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import report
from proxy_bench import Results, Sample


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    data = json.loads((out / "results.json").read_text())
    results = Results(meta=data["meta"])
    for key, samples in data["samples"].items():
        results.samples[key] = [
            Sample(**{**sample, "busy": {int(k): v for k, v in sample["busy"].items()}})
            for sample in samples
        ]
    text = report.render(results)
    (out / "results.txt").write_text(text + "\n")
    report.chart(results, out / "chart.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
