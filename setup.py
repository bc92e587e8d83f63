"""Build hook: the hot path compiled with mypyc (issue 27), the pure-Python modules beside it.

Everything else about the package is in pyproject.toml. The modules listed in HOT are compiled to
C extensions that import in place of their ``.py`` files, which the wheel keeps as the fallback:
``GATE_PURE_PYTHON=1`` at build time builds without them, and a machine without a C compiler (or
a compile that fails) gets a pure-Python build with a warning instead of no build at all.
``gate --version`` and ``gate_build_info{build}`` tell which one runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The modules every request runs through, compiled as one group. Left out on purpose: pydantic
# models (gate.core.confirmation, gate.config), the CLI, admin and the cold paths.
HOT = [
    "gate/core/action.py",
    "gate/core/body.py",
    "gate/core/classify.py",
    "gate/core/decide.py",
    "gate/core/identity.py",
    "gate/core/judge.py",
    "gate/core/policy.py",
    "gate/core/record.py",
    "gate/core/refusal.py",
    "gate/core/trace.py",
    "gate/http/connection.py",
    "gate/http/cycle.py",
    "gate/http/flow.py",
    "gate/http/forward.py",
    "gate/http/head.py",
    "gate/http/protocol.py",
    "gate/http/request_body.py",
    "gate/http/server.py",
    "gate/http/upstream.py",
    "gate/http/vocabulary.py",
    "gate/acceptance/cache.py",
    "gate/authz.py",
    "gate/decision_log.py",
    "gate/logs.py",
    "gate/pipeline.py",
    "gate/tallies.py",
    "gate/tasks.py",
]


# The compiled group's shared library is named for this (gate_hot__mypyc...so), not a hash.
GROUP = "gate_hot"


class OptionalBuildExt(build_ext):
    """Build the compiled modules, or none of them: a half-built group would not import."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # a missing compiler, a failed compile: fall back whole
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            self.extensions = []
            sys.stderr.write(f"gate: compiling the hot path failed ({error}); pure Python\n")


def ext_modules() -> list[Any]:
    if os.environ.get("GATE_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as error:
        sys.stderr.write(f"gate: mypyc unavailable ({error}); building pure Python\n")
        return []
    try:
        return list(mypycify(HOT, opt_level="3", debug_level="0", group_name=GROUP))
    except (Exception, SystemExit) as error:  # mypyc's type check failed: it exits
        sys.stderr.write(f"gate: mypyc could not compile the hot path ({error}); pure Python\n")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
