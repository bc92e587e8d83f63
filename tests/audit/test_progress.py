"""The progress bar: on stderr when it is a terminal (a pty here), never otherwise."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import struct
import termios
from pathlib import Path

from gate.audit.progress import Progress
from gate.sandbox import MCA, make_token
from tests.conftest import Upstream
from tests.support import GATE_COMMAND, PARTNER_A


def test_off_when_not_a_terminal() -> None:
    """A file or a pipe gets no bar: nothing is written to it."""
    stream = io.StringIO()
    progress = Progress.on(stream)
    progress.listed()
    progress.done()
    progress.close()
    assert stream.getvalue() == "" and progress.found == 1


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def test_a_bar_on_a_terminal(upstream: Upstream, tmp_path: Path) -> None:
    """With stderr a terminal, tqdm draws customers done / found and their rate there;
    stdout (the report) stays clean."""
    for customer in upstream.sandbox.listing.add_many(PARTNER_A, 120):
        upstream.sandbox.accept(PARTNER_A, customer, MCA)
    config, token = tmp_path / "gate.toml", tmp_path / "token"
    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n', encoding="utf-8")
    token.write_text(make_token(PARTNER_A), encoding="utf-8")
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        process = await asyncio.create_subprocess_exec(
            *GATE_COMMAND, "audit", "--config", str(config), "--token-file", str(token),
            stdout=asyncio.subprocess.PIPE, stderr=terminal,
        )  # fmt: skip
        os.close(terminal)
        terminal = -1
        drawn = asyncio.ensure_future(asyncio.to_thread(_read_all, main))
        try:
            async with asyncio.timeout(60):
                out, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        seen = (await drawn).decode(errors="replace")
    finally:
        os.close(main)
        if terminal >= 0:
            os.close(terminal)
    assert process.returncode == 0
    assert "120/120" in seen and "customers/s" in seen and "\r" in seen
    assert "120 customers: 120 confirmed" in seen  # the summary after the bar
    assert b"customers/s" not in out and out.startswith(b"customer,company,")
