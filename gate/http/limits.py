"""The front door's fixed sizes, in one place (the configurable ones are in ``[server]``).

Each is a size the gate chose, not one a client or operator sets; the README's
"Limits and timeouts" lists them beside the settings.
"""

from __future__ import annotations

__all__ = ["BUFFER_ANSWER", "HIGH_WATER", "INLINE_SEND", "INSPECT_ANSWER", "WHOLE_BODY"]

HIGH_WATER = 256 * 1024
"""Unread body bytes before a socket's reading is paused (client or upstream); resumed at half."""
WHOLE_BODY = 64 * 1024
"""A gated body up to this size (by Content-Length) is taken whole by the parser, without a task."""
INLINE_SEND = 64 * 1024
"""A body up to this size goes upstream in the same write as its head."""
BUFFER_ANSWER = 64 * 1024
"""An upstream answer up to this size is relayed in one write (a bigger one is streamed)."""
INSPECT_ANSWER = 1024 * 1024
"""An answer the gate reads itself (a confirmation's, a lookup's) up to this size."""
