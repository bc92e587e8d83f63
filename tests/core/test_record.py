"""gate.core.record: which upstream answers to a confirmation prove the pair accepted (R5)."""

from __future__ import annotations

import json

import pytest

from gate.core.record import proves_acceptance

_EXISTS = json.dumps({"code": 600061, "description": "PartnerConfirmedAgreementAlreadyExists"})


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        pytest.param(201, b"{}", True, id="created"),
        pytest.param(200, None, True, id="2xx-unread"),
        pytest.param(409, _EXISTS.encode(), True, id="already-confirmed-600061"),
        pytest.param(400, b'{"code": "600061"}', True, id="code-as-a-string"),
        pytest.param(400, b'{"code": 600060}', False, id="another-code"),
        pytest.param(400, None, False, id="4xx-unread"),
        pytest.param(400, b"not json", False, id="4xx-not-json"),
        pytest.param(400, b"[600061]", False, id="4xx-not-an-object"),
        pytest.param(500, _EXISTS.encode(), False, id="5xx-never"),
        pytest.param(302, b"", False, id="redirect"),
    ],
)
def test_proves_acceptance(status: int, answer: bytes | None, expected: bool) -> None:
    """R5: a 2xx, or a 4xx saying the confirmation already exists, records the pair."""
    assert proves_acceptance(status, answer) is expected
