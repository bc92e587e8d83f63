"""gate.workers: the supervising parent's own bookkeeping (the fleet itself: tests/contract)."""

from __future__ import annotations

import io
import os
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
