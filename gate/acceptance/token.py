"""The lookup token file: an App+User token the gate uses for its own partner's lookups (§1.2).

Agreements and the direct status take App+User credentials only, so a
commerce system calling with App-only tokens cannot have its lookups made
with its own token. ``acceptance.lookup_token_file`` names a file holding an
App+User access token (kept fresh by a sidecar or a cron job); lookups for
the partner that token belongs to (its ``tid``) use it, everyone else's use
their own. The file is re-read when its modification time or size changes;
a file that cannot be read (or holds no token) keeps the last good token.
The token never reaches a log line, Redis or an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from gate.config import read_token_file

__all__ = ["LookupToken"]


class LookupToken:
    """The token file's current token and whose it is."""

    __slots__ = ("_authorization", "_path", "_seen", "_tid")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: tuple[int, int] | None = None
        self._authorization = ""
        self._tid = ""
        self._refresh()

    def authorization_for(self, partner: str) -> str | None:
        """``Bearer <token>`` when the file's token is ``partner``'s; else None."""
        self._refresh()
        return self._authorization if self._tid and partner == self._tid else None

    def _refresh(self) -> None:
        try:
            stat = os.stat(self._path)
        except OSError:
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            token, tid = read_token_file(self._path)
        except ValueError:
            return  # half-written or gone: keep the last good token, look again next time
        self._seen, self._authorization, self._tid = seen, f"Bearer {token}", tid

    def __repr__(self) -> str:  # never the token
        return f"LookupToken(path={str(self._path)!r}, tid={self._tid!r})"
