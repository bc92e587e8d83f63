"""gate.replay.source: files, gzip (by its magic bytes) and stdin; a bar only on a terminal."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from gate.replay.source import Progress, SourceError, open_sources


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(*names: str, stdin: io.BufferedReader | None = None) -> list[bytes]:
    with open_sources(names, stdin) as sources:
        return [raw for source in sources for raw in source.lines()]


def test_plain_and_gzip_files(tmp_path: Path) -> None:
    """§4: plain and gzip logs are read line by line, gzip recognised whatever its name."""
    (tmp_path / "a.log").write_bytes(b"one\ntwo\n")
    (tmp_path / "b.log").write_bytes(gzip.compress(b"three\nfour"))
    assert _lines(str(tmp_path / "a.log"), str(tmp_path / "b.log")) == [
        b"one\n", b"two\n", b"three\n", b"four"
    ]  # fmt: skip


def test_stdin() -> None:
    """§4: `-` reads standard input, gzip or not."""
    stdin = io.BufferedReader(io.BytesIO(gzip.compress(b"x\ny\n")))  # type: ignore[arg-type]
    assert _lines("-", stdin=stdin) == [b"x\n", b"y\n"]


def test_a_missing_file_fails_before_any_line(tmp_path: Path) -> None:
    """§4 exit 2: an unreadable log is named, and nothing is read from the others."""
    (tmp_path / "a.log").write_bytes(b"one\n")
    with pytest.raises(SourceError, match=r"absent\.log: cannot read: No such file"):
        _lines(str(tmp_path / "a.log"), str(tmp_path / "absent.log"))


def test_a_truncated_gzip_is_an_error(tmp_path: Path) -> None:
    """§4 exit 2: a gzip stream that ends early is reported, not taken as the whole log."""
    path = tmp_path / "cut.log.gz"
    path.write_bytes(gzip.compress(b"line\n" * 1000)[:-20])
    with pytest.raises(SourceError, match="truncated gzip"):
        _lines(str(path))


def test_progress_only_on_a_terminal() -> None:
    """§4: the bar goes to stderr when it is a terminal, and is wiped at the end."""
    quiet = io.StringIO()
    Progress(quiet, 100).update(50, 10)
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    bar = Progress(terminal, 100)
    bar.update(50, 1234)
    bar.finish()
    assert "50%" in terminal.getvalue() and "1,234 lines" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\x1b[K")
