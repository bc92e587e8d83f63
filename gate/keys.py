"""Every AppKey the gate stores on its aiohttp applications."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from structlog.typing import FilteringBoundLogger

from gate.acceptance import AcceptanceStore
from gate.http.tls import Certificates
from gate.http.upstream import UpstreamPool
from gate.logs import HotLines
from gate.metrics import Metrics
from gate.runtime import RuntimeHolder

__all__ = [
    "CONFIG_PATH",
    "HOT_LINES",
    "LOGGER",
    "METRICS",
    "RUNTIME",
    "STATE",
    "STORE",
    "TLS",
    "UPSTREAM",
    "Lifecycle",
]


@dataclass(slots=True)
class Lifecycle:
    """What /readyz reports: listening and not draining."""

    listening: bool = False
    draining: bool = False


RUNTIME = web.AppKey("runtime", RuntimeHolder)
UPSTREAM = web.AppKey("upstream", UpstreamPool)
STORE = web.AppKey("store", AcceptanceStore)
METRICS = web.AppKey("metrics", Metrics)
LOGGER = web.AppKey("logger", FilteringBoundLogger)
HOT_LINES = web.AppKey("hot_lines", HotLines)  # the decision log, written per gated call
STATE = web.AppKey("state", Lifecycle)
TLS = web.AppKey("tls", Certificates)  # the TLS listeners' contexts, rotated on reload
CONFIG_PATH = web.AppKey("config_path", str)  # empty: built-in defaults and the environment
