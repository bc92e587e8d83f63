"""DESIGN §2 throttling: the per-partner "throttled until" memory and Retry-After values."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gate.acceptance.throttle import MAX_HOLD_S, Throttle, retry_after_s

_WALL = 1_700_000_000.0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("30", 30.0, id="delta-seconds"),
        pytest.param(" 7 ", 7.0, id="spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param(formatdate(_WALL + 42, usegmt=True), 42.0, id="http-date"),
        pytest.param(formatdate(_WALL - 42, usegmt=True), 0.0, id="http-date-past"),
        pytest.param(None, None, id="absent"),
        pytest.param("-5", None, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param("", None, id="empty"),
    ],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    """RFC 9110 §10.2.3: delta-seconds or an HTTP date; anything else is unreadable (None)."""
    assert retry_after_s(value, _WALL) == seconds


def test_a_hold_lasts_until_it_has_passed() -> None:
    """§2: a throttled partner is held for its Retry-After, then released; others never were."""
    clock = _Clock()
    throttle = Throttle(clock=clock)
    assert throttle.hold("a", 3) == 3
    clock.now += 1
    assert throttle.remaining("a") == 2
    assert throttle.remaining("b") == 0.0
    clock.now += 2
    assert throttle.remaining("a") == 0.0
    assert len(throttle) == 0  # a hold that has passed is forgotten


def test_a_shorter_retry_after_never_shortens_a_hold() -> None:
    """§2: two 429s in a row: the later end wins, a shorter one does not cut the hold."""
    clock = _Clock()
    throttle = Throttle(clock=clock)
    throttle.hold("a", 10)
    assert throttle.hold("a", 2) == 10
    assert throttle.hold("a", 20) == 20


def test_a_hold_is_capped() -> None:
    """A Retry-After of a year holds a partner for at most MAX_HOLD_S."""
    throttle = Throttle(clock=_Clock())
    assert throttle.hold("a", 365 * 86400) == MAX_HOLD_S
    assert throttle.hold("b", -5) == 0.0


def test_memory_is_bounded_and_keeps_the_longest_holds() -> None:
    """Partner ids come from unverified tokens: at most ``limit`` held, soonest over first."""
    clock = _Clock()
    throttle = Throttle(limit=3, clock=clock)
    throttle.hold("short", 1)
    throttle.hold("long", 100)
    throttle.hold("mid", 50)
    throttle.hold("new", 60)
    assert len(throttle) == 3
    assert throttle.remaining("short") == 0.0
    assert throttle.remaining("long") == 100
    clock.now += 55  # "mid" is over: it makes room before anyone still held is dropped
    throttle.hold("newer", 10)
    assert len(throttle) == 3
    assert (throttle.remaining("long"), throttle.remaining("new")) == (45, 5)
