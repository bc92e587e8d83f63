"""A sidecar for components/tls: ask the gate to reload when the kubelet rotates its Secret.

The kubelet updates a mounted Secret (no subPath) by writing a new hidden folder and
swinging the ``..data`` link to it in one rename, e.g. when cert-manager renews the
certificate. The gate serves a new pair only after a reload, so this polls the mounted
folder (where ``..data`` points, and each file's inode, size and time) every ``PERIOD_S``
seconds and, on a change, POSTs the admin listener's ``/admin/reload`` with the admin
token. The gate checks the new pair first: a bad one is refused and the old one serves on
(the refusal is counted; GateConfigReloadFailed fires). A request that cannot reach the
gate is tried again at the next poll. Standard library only: it runs on the gate's own image.

Environment: WATCH (the mounted folder), RELOAD_URL (the admin /admin/reload URL),
GATE_ADMIN__TOKEN (the admin token, empty when none), PERIOD_S (seconds between polls).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

__all__ = ["main"]


def signature(folder: str) -> tuple[object, ...]:
    """What changes when the kubelet (or anyone) replaces the files of ``folder``."""
    try:
        link = os.readlink(os.path.join(folder, "..data"))
    except OSError:
        link = None
    files = []
    for name in sorted(os.listdir(folder)):
        if not name.startswith("."):
            with_target = os.stat(os.path.join(folder, name))
            files.append((name, with_target.st_ino, with_target.st_size, with_target.st_mtime_ns))
    return (link, *files)


def reload(url: str, token: str) -> str:
    """POST the reload; the outcome as a word for the log line."""
    request = urllib.request.Request(url, method="POST", data=b"")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"answered {error.code}"
    except OSError as error:
        return f"failed: {error}"


def _say(**fields: str) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main() -> int:
    folder = os.environ.get("WATCH", "/etc/gate-tls")
    url = os.environ.get("RELOAD_URL", "http://127.0.0.1:9090/admin/reload")
    token = os.environ.get("GATE_ADMIN__TOKEN", "")
    period = float(os.environ.get("PERIOD_S", "10"))
    seen = signature(folder)
    _say(event="watching", folder=folder)
    while True:
        time.sleep(period)
        try:
            now = signature(folder)
        except OSError as error:  # mid-swap: look again at the next poll
            _say(event="unreadable", error=str(error))
            continue
        if now != seen:
            outcome = reload(url, token)
            _say(event="reload", outcome=outcome)
            if not outcome.startswith("failed"):  # refused (bad pair): wait for the next change
                seen = now


if __name__ == "__main__":
    sys.exit(main())
