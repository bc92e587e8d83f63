"""gate: hold CSP purchases until the customer's MCA acceptance is confirmed."""

from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

__version__ = "0.1.0"
__all__ = ["__version__", "build"]


def build() -> str:
    """Which build runs: ``"mypyc"`` when the hot path was loaded compiled, else ``"pure"``.

    The compiled modules go together (one group), so one of them tells: ``gate.core.decide``
    loaded from a C extension beside its ``.py`` file, or from the ``.py`` file itself.
    """
    spec = find_spec("gate.core.decide")
    origin = spec.origin if spec is not None else None
    return "mypyc" if origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES)) else "pure"
