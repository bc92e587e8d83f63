"""gate.workers: the supervising parent's own bookkeeping (the fleet itself: tests/contract)."""

from __future__ import annotations

import asyncio
import io
import os
import pathlib
import signal
import sys

import pytest

from gate.config import Settings
from gate.logs import make_logger
from gate.workers import Fleet


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
async def test_a_worker_that_cannot_be_started_leaks_no_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    """A worker whose process cannot start (the interpreter is gone) leaves no socket open.

    Each start makes a control socketpair; when the process cannot be made,
    both ends must be closed, or every failed restart costs two descriptors.
    """
    settings = Settings(server={"workers": 1, "listen": "127.0.0.1:0"})
    fleet = Fleet(settings, None, make_logger("info", "json", io.StringIO()))
    monkeypatch.setattr(sys, "executable", os.path.join(tmp_path, "no-such-python"))
    before = _open_fds()
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            await fleet.run()
    assert _open_fds() == before


async def test_a_restart_that_cannot_start_a_process_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    """A dead worker whose restart fails (no process could be made) is restarted later, when it
    can be: the watcher keeps going instead of ending with the exception."""
    logs = io.StringIO()
    settings = Settings(
        server={"workers": 1, "listen": "127.0.0.1:0", "shutdown_grace_s": 1},
        admin={"listen": "127.0.0.1:0"},
    )
    fleet = Fleet(settings, None, make_logger("info", "json", logs))
    running = asyncio.ensure_future(fleet.run())
    try:
        await _logged(logs, "supervising")
        (worker,) = _worker_pids()
        real = sys.executable
        monkeypatch.setattr(sys, "executable", os.path.join(tmp_path, "no-such-python"))
        os.kill(worker, signal.SIGKILL)
        await _logged(logs, "worker_restart_failed")
        monkeypatch.setattr(sys, "executable", real)
        await _logged(logs, "worker_restarted")
        assert len(_worker_pids() - {worker}) == 1
    finally:
        if not running.done():
            os.kill(os.getpid(), signal.SIGTERM)  # the fleet's own handler: it stops its workers
        assert await asyncio.wait_for(running, 30) == 0


async def _logged(logs: io.StringIO, event: str) -> None:
    async with asyncio.timeout(30):
        while f'"{event}"' not in logs.getvalue():  # noqa: ASYNC110 - a log has no event
            await asyncio.sleep(0.05)


def _worker_pids() -> set[int]:
    """This process's children that are gate workers (from /proc: no internals read)."""
    pids: set[int] = set()
    for children in pathlib.Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline")
            if cmdline.exists() and b"--worker" in cmdline.read_bytes():
                pids.add(int(pid))
    return pids
