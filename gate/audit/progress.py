"""The audit's progress bar: on stderr when it is a terminal, nothing otherwise.

tqdm draws customers done / found so far, lookups per second and the time
left (which grows while the list is still being read). ``Progress.off()``
stands in when stderr is a file or a pipe: the report and the summary are
all a script sees.
"""

from __future__ import annotations

from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """Customers found (the list) and done (decided), shown as they change."""

    def __init__(self, bar: tqdm[Any] | None) -> None:
        self._bar = bar
        self.found = 0

    @classmethod
    def on(cls, stream: TextIO) -> Progress:
        """A bar on ``stream`` when it is a terminal, else ``off()``."""
        if not stream.isatty():
            return cls.off()
        bar: tqdm[Any] = tqdm(
            total=0, file=stream, unit=" customers", desc="audit", dynamic_ncols=True
        )
        return cls(bar)

    @classmethod
    def off(cls) -> Progress:
        return cls(None)

    def listed(self) -> None:
        self.found += 1
        if self._bar is not None:
            self._bar.total = self.found  # drawn with the next update (tqdm's mininterval)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
