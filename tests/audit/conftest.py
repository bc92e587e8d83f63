"""Fixtures for ``gate audit``: a partner with customers in the sandbox, its token file."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.audit.command import AuditArgs, run_audit_command
from gate.sandbox import make_token
from tests.conftest import MakeSettings
from tests.support import PARTNER_A


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """PARTNER_A's App+User token, as a partner would save it."""
    path = tmp_path / "partner.token"
    path.write_text(make_token(PARTNER_A) + "\n", encoding="utf-8")
    return path


@dataclass
class Audited:
    code: int
    out: str
    err: str


RunAudit = Callable[..., Awaitable[Audited]]


@pytest.fixture
def run_audit(make_settings: MakeSettings, token_file: Path) -> RunAudit:
    """Run the audit in this process (the CLI's own function) against the sandbox."""

    async def run(sections: dict[str, Any] | None = None, **args: Any) -> Audited:
        settings = make_settings(**(sections or {}))
        out, err = io.StringIO(), io.StringIO()
        code = await run_audit_command(
            settings, AuditArgs(str(args.pop("token_file", token_file)), **args), out, err
        )
        return Audited(code, out.getvalue(), err.getvalue())

    return run
