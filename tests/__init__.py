"""The suite runs against the installed gate (scripts/test installs the wheel built from this
checkout), so the checkout must not shadow it: pytest puts the repository root on sys.path to
import `tests`, and `gate/` sits there too. This package is imported before any test module."""

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _CHECKOUT]
