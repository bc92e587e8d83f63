"""The customers list, walked page by page over a socket against the sandbox."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from gate.acceptance.throttle import Throttle
from gate.audit.customers import Customer, ListError, Listing, walk
from gate.http.upstream import UpstreamPool
from gate.sandbox import make_token
from tests.conftest import Upstream
from tests.support import CONTACT_EMAIL, PARTNER_A, PARTNER_B


@pytest.fixture
async def pool(upstream: Upstream) -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(URL(upstream.url), limit=4, connect_timeout=2, read_timeout=5)
    yield pool
    pool.close()


def _listing(pool: UpstreamPool, partner: str = PARTNER_A) -> Listing:
    return Listing(pool, "", f"Bearer {make_token(partner)}", partner, 3.0, 1.0)


async def _all(listing: Listing, page_size: int = 10) -> list[Customer]:
    return [c async for c in walk(listing, Throttle(), page_size=page_size)]


async def test_follows_every_page_with_its_continuation_token(
    upstream: Upstream, pool: UpstreamPool
) -> None:
    """links.next is followed with its MS-ContinuationToken until a page has none."""
    ids = upstream.sandbox.listing.add_many(PARTNER_A, 25)
    upstream.sandbox.listing.add_many(PARTNER_B, 3)  # another partner's: never listed
    customers = await _all(_listing(pool))
    assert [c.id for c in customers] == ids
    assert customers[7].company == "Customer 7"
    pages = upstream.sandbox.calls("GET", "/v1/customers")
    assert [p.query_string for p in pages] == ["size=10"] + ["size=10&seekOperation=Next"] * 2
    assert "MS-ContinuationToken" not in pages[0].headers
    assert all(p.headers["MS-ContinuationToken"] for p in pages[1:])


async def test_a_list_that_changes_between_pages_never_yields_a_customer_twice(
    upstream: Upstream, pool: UpstreamPool
) -> None:
    """Customers added in front while paging push others back a page: each is yielded once."""
    listing = upstream.sandbox.listing
    ids = listing.add_many(PARTNER_A, 30)
    added = [f"0a0a0a0a-0000-4000-8000-00000000000{n}" for n in range(3)]

    def add_in_front(page: int) -> None:
        if page == 1:
            for n, customer in enumerate(added):
                listing.add(PARTNER_A, customer, f"New {n}", front=True)

    listing.on_page = add_in_front
    customers = [c.id for c in await _all(_listing(pool))]
    assert len(customers) == len(set(customers))  # the sandbox showed 3 of them again
    assert set(customers) == set(ids)  # the new ones came in front of the cursor: not seen
    assert upstream.sandbox.listing.pages_served == 4  # 33 listed: 10 + 10 + 10 + 3


async def test_a_throttled_page_is_asked_again_after_retry_after(
    upstream: Upstream, pool: UpstreamPool
) -> None:
    """A page answered 429 holds the partner for its Retry-After, then is asked again."""
    listing = upstream.sandbox.listing
    ids = listing.add_many(PARTNER_A, 15)
    listing.throttle(after=1, times=1, retry_after="1")
    throttle = Throttle()
    customers = [c.id async for c in walk(_listing(pool), throttle, page_size=10)]
    assert customers == ids
    (when, status), (again, _) = listing.arrivals[1], listing.arrivals[2]
    assert status == 429 and again - when >= 0.9  # held for the 1 s it asked


async def test_a_refused_list_cannot_run(upstream: Upstream, pool: UpstreamPool) -> None:
    """401 on the list: ListError saying so, without the token."""
    upstream.sandbox.listing.add_many(PARTNER_A, 3)
    token = make_token(PARTNER_A, exp=1)  # expired: the sandbox answers 401
    with pytest.raises(ListError, match=r"refused the customers list \(401\)") as raised:
        await _all(Listing(pool, "", f"Bearer {token}", PARTNER_A, 3.0, 1.0))
    assert token not in str(raised.value)


async def test_an_unreachable_upstream_cannot_run() -> None:
    """Nothing listening: ListError at once, saying the upstream cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    pool = UpstreamPool(URL(f"http://127.0.0.1:{port}"), limit=1, connect_timeout=2, read_timeout=2)
    try:
        with pytest.raises(ListError, match="cannot reach the upstream"):
            await _all(_listing(pool))
    finally:
        pool.close()


async def test_no_contact_reaches_a_customer(upstream: Upstream, pool: UpstreamPool) -> None:
    """A Customer carries the tenant id and company name only, never the billing contact."""
    upstream.sandbox.listing.add(PARTNER_A, "C0FFEE00-1234-4321-ABCD-0123456789AB", "Contoso")
    (customer,) = await _all(_listing(pool))
    assert customer == Customer("c0ffee00-1234-4321-abcd-0123456789ab", "Contoso")
    assert "grace" not in repr(customer).lower() and CONTACT_EMAIL not in repr(customer)
