"""gate.acceptance.token: the lookup token file, re-read when it changes, kept to its partner."""

from __future__ import annotations

from pathlib import Path

from gate.acceptance.token import LookupToken
from gate.sandbox import make_token
from tests.support import PARTNER_A, PARTNER_B


def test_token_is_used_for_its_own_partner_only(tmp_path: Path) -> None:
    """§1.2: the file's token answers for its tid (any casing in the file), nobody else."""
    path = tmp_path / "token"
    token = make_token(PARTNER_A.upper())
    path.write_text(f"Bearer {token}\n", encoding="utf-8")
    held = LookupToken(path)
    assert held.authorization_for(PARTNER_A) == f"Bearer {token}"
    assert held.authorization_for(PARTNER_B) is None
    assert token not in repr(held)


def test_changed_file_is_reread_and_a_broken_one_keeps_the_last_good(tmp_path: Path) -> None:
    """§1.2: a refreshed file is seen at once; a half-written one keeps the last good token."""
    path = tmp_path / "token"
    path.write_text(make_token(PARTNER_A, v=1), encoding="utf-8")
    held = LookupToken(path)
    fresh = make_token(PARTNER_A, v=2, more="changed size")
    path.write_text(fresh, encoding="utf-8")
    assert held.authorization_for(PARTNER_A) == f"Bearer {fresh}"
    path.write_text("half-writ", encoding="utf-8")
    assert held.authorization_for(PARTNER_A) == f"Bearer {fresh}"
    path.unlink()
    assert held.authorization_for(PARTNER_A) == f"Bearer {fresh}"
