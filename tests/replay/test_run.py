"""`gate replay` as a command: exit statuses, inputs, --against, --json, a large log (DESIGN §4)."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path

import pytest

from gate.cli import main
from tests.replay.logs import SUBSCRIPTION, line
from tests.support import GATE_COMMAND, PARTNER_A

ROOT = Path(__file__).resolve().parents[2]
MIXED = b"".join(
    [
        line(correlation_id="c1"),
        line(correlation_id="c2", decision="allowed", reason="accepted", acceptance="accepted"),
        line(
            correlation_id="c3",
            method="PATCH",
            path=SUBSCRIPTION,
            transaction="seat_change",
            rule="subscription-edit",
            event="not_gated",
            decision=None,
            reason="",
            body="no_quantity",
            acceptance=None,
        ),
        b'{"event": "listening", "proxy": "127.0.0.1:8080"}\n',
        b'{"foreign": true}\n',
        b"not json at all\n",
        b"\xff\xfe\xfd\n",
        line()[:50],
    ]
)


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["replay", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_no_change_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """§4: replayed under the built-in defaults that wrote it, nothing changes: exit 0."""
    config = _write(tmp_path, "same.toml", b"")
    status, out, _ = _replay(capsys, "--config", config, _write(tmp_path, "g.log", MIXED))
    assert status == 0
    assert out.splitlines()[0] == f"replayed 3 gated calls under {config} (old: as logged)"
    assert "skipped 5 other lines (3 not_json, 2 other, 0 incomplete)" in out
    assert out.endswith("no decision changes\n")


def test_changes_exit_1_with_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """§4: a config that changes decisions exits 1 and shows ids of examples."""
    config = _write(tmp_path, "observe.toml", b'[policy]\nmode = "observe"\n')
    status, out, _ = _replay(capsys, "--config", config, _write(tmp_path, "g.log", MIXED))
    assert status == 1
    assert "1 of 3 calls change decision; examples:" in out
    assert any(row.split() == ["new_purchase", "blocked", "would-block", "1", "changed"]
               for row in out.splitlines())  # fmt: skip
    assert f"partner {PARTNER_A} correlation c1 (not_accepted -> observe_mode)" in out


def test_against_re_decides_the_old_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """§4 --against: old = re-decided under OLD; the same config on both sides changes nothing."""
    observe = _write(tmp_path, "observe.toml", b'[policy]\nmode = "observe"\n')
    log = _write(tmp_path, "g.log", MIXED)
    assert _replay(capsys, "--config", observe, "--against", observe, log)[0] == 0
    _, out, _ = _replay(capsys, "--config", observe, "--against", observe, "--json", log)
    cells = json.loads(out)["cells"]
    assert {(c["old"], c["new"]) for c in cells} >= {("would-block", "would-block")}


@pytest.mark.parametrize(
    ("config", "says"),
    [
        pytest.param(
            b"[policy]\nenforce_percent = 101\n", "policy.enforce_percent: ", id="bad-key"
        ),
        pytest.param(b"[policy\n", "not valid TOML", id="not-toml"),
    ],
)
def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: bytes, says: str
) -> None:
    """§4 exit 2: a bad NEW or OLD names the key and why, like check-config."""
    bad = _write(tmp_path, "bad.toml", config)
    log = _write(tmp_path, "g.log", MIXED)
    for args in (
        ["--config", bad],
        ["--config", _write(tmp_path, "ok.toml", b""), "--against", bad],
    ):
        status, out, err = _replay(capsys, *args, log)
        assert (status, out) == (2, "")
        assert err.startswith(f"{bad}: {says}")


def test_unreadable_log_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """§4 exit 2: a log that cannot be read is named; no report is printed."""
    config = _write(tmp_path, "ok.toml", b"")
    status, out, err = _replay(capsys, "--config", config, str(tmp_path / "absent.log"))
    assert (status, out) == (2, "")
    assert "absent.log: cannot read" in err


def test_gzip_and_several_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """§4: gzip logs and several files are read as one log."""
    config = _write(tmp_path, "ok.toml", b"")
    plain = _write(tmp_path, "a.log", MIXED)
    packed = _write(tmp_path, "b.log.gz", gzip.compress(MIXED))
    status, out, _ = _replay(capsys, "--config", config, "--json", plain, packed)
    assert status == 0
    report = json.loads(out)
    assert (report["lines"], report["replayed"]) == (16, 6)


def test_stdin(tmp_path: Path) -> None:
    """§4: `-` reads the log from standard input (here gzip-compressed)."""
    config = _write(tmp_path, "observe.toml", b'[policy]\nmode = "observe"\n')
    result = subprocess.run(
        [*GATE_COMMAND, "replay", "--config", config, "--json", "-"],
        input=gzip.compress(MIXED), capture_output=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["changed"] == 1
    assert result.stderr == b""  # no progress bar when stderr is not a terminal


@pytest.mark.timeout(180)
def test_a_large_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """§4: a 100k-line log is replayed in one pass (the time is printed, not asserted)."""
    rows = [
        line(correlation_id=f"c{n}", customer=f"cust-{n}", path=f"/v1/customers/cust-{n}/orders")
        for n in range(100_000)
    ]
    log = _write(tmp_path, "big.log", b"".join(rows))
    config = _write(tmp_path, "half.toml", b"[policy]\nenforce_percent = 50\n")
    started = time.perf_counter()
    status, out, _ = _replay(capsys, "--config", config, "--json", log)
    elapsed = time.perf_counter() - started
    report = json.loads(out)
    with capsys.disabled():
        print(f"\nreplayed {report['lines']:,} lines in {elapsed:.2f} s")
    assert status == 1
    assert report["replayed"] == 100_000
    moved = next(c for c in report["cells"] if c["new"] == "would-block")["calls"]
    assert 40_000 < moved < 60_000  # about half the pairs fall outside a 50 % rollout
