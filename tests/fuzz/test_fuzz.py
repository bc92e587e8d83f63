"""Issue 28: the fuzzers kept in the project, a bounded run of each (a longer one with -m fuzz).

The coverage-guided harnesses (atheris, the ``fuzz`` extra) run as
subprocesses with a fixed seed and a copy of the committed corpus; a failed
property ends libFuzzer with a non-zero status and the failing input. The
socket-level mutation fuzzer drives a gate in front of the sandbox over raw
sockets and judges what reached the sandbox the liberal way.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gate.sandbox import make_token
from tests.conftest import Gate
from tests.contract.conftest import exchange
from tests.fuzz.mutate import judge, request
from tests.support import PARTNER_A

HERE = Path(__file__).resolve().parent
JUDGED = {"allowed", "would-block", "exempt"}


def _atheris(harness: str, corpus: str, runs: int, seed: int, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    work = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus" / corpus, work)  # libFuzzer adds inputs to its first dir
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / harness),
            f"-runs={runs}",
            f"-seed={seed}",
            f"-dict={HERE / (corpus + '.dict')}",
            "-max_len=512",
            f"-artifact_prefix={tmp_path}/",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Done {runs} runs" in done.stderr


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "runs", [20_000, pytest.param(2_000_000, marks=pytest.mark.fuzz)], ids=["bounded", "long"]
)
def test_head_path_fuzzer(tmp_path: Path, runs: int) -> None:
    """§2/issue 28: split_target, normalize, classify and route under coverage-guided input."""
    _atheris("fuzz_head.py", "head", runs, 28, tmp_path)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "runs", [300_000, pytest.param(10_000_000, marks=pytest.mark.fuzz)], ids=["bounded", "long"]
)
def test_gated_body_fuzzer(tmp_path: Path, runs: int) -> None:
    """§1.1/issue 28: body.parse refuses every key repeated under either folding, reads the rest."""
    _atheris("fuzz_body.py", "body", runs, 28, tmp_path)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "count", [5_000, pytest.param(50_000, marks=pytest.mark.fuzz)], ids=["bounded", "long"]
)
async def test_no_gated_call_reaches_the_sandbox_unjudged(gate: Gate, count: int) -> None:
    """§2/issue 28: mutated gated calls over sockets; any that reached the sandbox was judged."""
    rng = random.Random(28)
    port = gate.client.server.port
    assert port is not None
    token = make_token(PARTNER_A)
    received = gate.upstream.sandbox.received
    findings = []
    answered = 0
    for _ in range(count):
        data = request(rng, token, port)
        seen = len(received)
        responses = await exchange(port, data)
        answered += len(responses)
        decision = responses[0].headers.get("X-Gate-Decision") if responses else None
        for call in received[seen:]:
            rule = judge(call.method, call.path, list(call.headers.items()), call.body)
            if rule is not None and decision not in JUDGED:
                findings.append((rule, data[:200]))
        if responses:
            assert responses[0].status != 500, data[:200]
    assert findings == []
    assert answered == count  # every request got exactly one answer
