"""The audit over real sockets against the sandbox: states, reasons, formats, throttling, warm."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import redis.asyncio as redis_client

from gate.acceptance.shared import value_key
from gate.audit.report import COLUMNS
from gate.audit.run import ATTEMPTS
from gate.sandbox import CLOUD_AGREEMENT, MCA
from tests.audit.conftest import RunAudit
from tests.conftest import StartRedis, Upstream
from tests.support import CONTACT_EMAIL, PARTNER_A, PARTNER_B

SINCE = {"policy": {"accepted_since": "2023-04-01T00:00:00Z"}}
# customer id -> (company, what the sandbox holds)
AGREEMENT, DIRECT, NOTHING, OLD, OTHER = (
    f"{n}0000000-0000-4000-8000-00000000000{n}" for n in range(1, 6)
)


def _partner(upstream: Upstream) -> None:
    sb = upstream.sandbox
    for customer, company in [
        (AGREEMENT, "Agreed Ltd"), (DIRECT, "Direct GmbH"), (NOTHING, "Nothing SA"),
        (OLD, "Old Corp"), (OTHER, "Other Inc"),
    ]:  # fmt: skip
        sb.listing.add(PARTNER_A, customer, company)
    sb.accept(PARTNER_A, AGREEMENT, CLOUD_AGREEMENT, "2019-01-01T00:00:00Z")
    sb.accept(PARTNER_A, AGREEMENT, MCA, "2024-05-01T00:00:00Z")  # newest that counts
    sb.sign_directly(DIRECT)
    sb.accept(PARTNER_B, NOTHING, MCA, "2024-05-01T00:00:00Z")  # another partner's: no help
    sb.accept(PARTNER_A, OLD, CLOUD_AGREEMENT, "2019-03-01T00:00:00Z")
    sb.accept(PARTNER_A, OTHER, "MicrosoftPartnerAgreement", "2024-01-01T00:00:00Z")


EXPECTED = {
    AGREEMENT: ("Agreed Ltd", "confirmed", "agreement", MCA, "2024-05-01T00:00:00Z", ""),
    DIRECT: ("Direct GmbH", "confirmed", "direct", MCA, "", ""),
    NOTHING: ("Nothing SA", "not_confirmed", "none", "", "", "no_agreement"),
    OLD: ("Old Corp", "not_confirmed", "none", CLOUD_AGREEMENT, "2019-03-01T00:00:00Z",
          "before_accepted_since"),
    OTHER: ("Other Inc", "not_confirmed", "none", "MicrosoftPartnerAgreement",
            "2024-01-01T00:00:00Z", "type_not_counted"),
}  # fmt: skip


def _files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in directory.iterdir()}


async def test_every_state_and_reason_as_csv(upstream: Upstream, run_audit: RunAudit) -> None:
    """R4 under the config's policy, one CSV row per customer, exit 1 as some are not confirmed."""
    _partner(upstream)
    audited = await run_audit(SINCE)
    rows = list(csv.reader(io.StringIO(audited.out)))
    assert rows[0] == list(COLUMNS)
    assert {row[0]: tuple(row[1:]) for row in rows[1:]} == EXPECTED
    assert len(rows) == 1 + len(EXPECTED)
    assert audited.code == 1
    assert "5 customers: 2 confirmed, 3 not_confirmed, 0 unknown" in audited.err
    assert "by reason: before_accepted_since 1, no_agreement 1, type_not_counted 1" in audited.err
    for text in (audited.out, audited.err):
        assert CONTACT_EMAIL not in text and "grace" not in text.lower()
        assert "eyJ" not in text  # no token (a JWT's first part) anywhere


async def test_json_holds_the_same_rows(upstream: Upstream, run_audit: RunAudit) -> None:
    """--format json: a list of objects with the same columns and values."""
    _partner(upstream)
    audited = await run_audit(SINCE, format="json")
    doc = json.loads(audited.out)
    assert {item["customer"]: tuple(item.values())[1:] for item in doc} == EXPECTED
    assert all(tuple(item) == COLUMNS for item in doc)


async def test_all_confirmed_exits_0_and_writes_the_file(
    upstream: Upstream, run_audit: RunAudit, tmp_path: Path
) -> None:
    """Every customer confirmed: exit 0; --out gets the whole report, no partial file left."""
    sb = upstream.sandbox
    for customer in sb.listing.add_many(PARTNER_A, 12):
        sb.accept(PARTNER_A, customer, MCA)
    out = f"{tmp_path}/report.csv"
    audited = await run_audit(out=out)
    assert audited.code == 0 and audited.out == ""
    files = _files(tmp_path)
    assert sorted(files) == ["partner.token", "report.csv"]  # no report.csv.partial left
    assert len(files["report.csv"].splitlines()) == 13
    assert f"report: {out} (csv)" in audited.err


async def test_a_429_in_the_middle_holds_every_lookup(
    upstream: Upstream, run_audit: RunAudit
) -> None:
    """A lookup answered 429 holds the partner for Retry-After; the customer is asked again."""
    sb = upstream.sandbox
    for customer in sb.listing.add_many(PARTNER_A, 30):
        sb.accept(PARTNER_A, customer, MCA)
    sb.listing.throttle(after=10, times=1, retry_after="1")  # the list, then lookups
    audited = await run_audit(concurrency=1)
    assert audited.code == 0, audited.err  # nobody reported unknown for a throttle
    assert "throttled: 1 lookups answered 429" in audited.err
    arrivals = sb.listing.arrivals
    (index,) = [n for n, (_, status) in enumerate(arrivals) if status == 429]
    assert arrivals[index + 1][0] - arrivals[index][0] >= 0.9  # nothing asked during the hold
    assert len(sb.calls("GET", "/agreements")) == 31  # 30 customers, one asked twice


async def test_throttled_too_often_is_unknown(upstream: Upstream, run_audit: RunAudit) -> None:
    """A customer still throttled after ATTEMPTS tries is reported unknown / lookup_error."""
    sb = upstream.sandbox
    sb.listing.add_many(PARTNER_A, 1)
    sb.listing.throttle(after=1, times=ATTEMPTS, retry_after="0")
    audited = await run_audit()
    (row,) = list(csv.DictReader(io.StringIO(audited.out)))
    assert (row["state"], row["reason"], audited.code) == ("unknown", "lookup_error", 1)


async def test_lookup_errors_are_unknown(upstream: Upstream, run_audit: RunAudit) -> None:
    """An upstream error on the agreements: unknown / lookup_error, exit 1."""
    sb = upstream.sandbox
    sb.listing.add_many(PARTNER_A, 3)
    sb.knobs.agreements_status = 500
    audited = await run_audit(format="json")
    assert [(r["state"], r["source"], r["reason"]) for r in json.loads(audited.out)] == [
        ("unknown", "none", "lookup_error")
    ] * 3
    assert audited.code == 1 and "3 unknown" in audited.err


async def test_lookups_at_once_are_bounded(upstream: Upstream, run_audit: RunAudit) -> None:
    """--concurrency N: the sandbox never answers more than N agreements lookups at once."""
    sb = upstream.sandbox
    for customer in sb.listing.add_many(PARTNER_A, 60):
        sb.accept(PARTNER_A, customer, MCA)
    sb.knobs.agreements_delay_s = 0.05
    audited = await run_audit(concurrency=5)
    assert audited.code == 0
    assert sb.agreements_peak == 5  # as many as allowed, never more
    assert "5 lookups at once" in audited.err


async def test_default_concurrency_is_capped_by_max_concurrent_lookups(
    upstream: Upstream, run_audit: RunAudit
) -> None:
    """No --concurrency: 16, or acceptance.max_concurrent_lookups when that is smaller."""
    upstream.sandbox.listing.add_many(PARTNER_A, 2)
    assert "16 lookups at once" in (await run_audit()).err
    capped = await run_audit({"acceptance": {"max_concurrent_lookups": 3}})
    assert "3 lookups at once" in capped.err


async def test_warm_writes_each_answer_with_the_gates_ttl(
    upstream: Upstream, run_audit: RunAudit, start_redis: StartRedis
) -> None:
    """--warm: confirmed pairs in Redis for positive_ttl_s, the others for negative_ttl_s."""
    redis = await start_redis()
    _partner(upstream)
    ttls = {"positive_ttl_s": 600, "negative_ttl_s": 30, "shared_url": redis.url}
    audited = await run_audit({**SINCE, "acceptance": ttls}, warm=True)
    assert "warmed the shared tier: 5 answers written" in audited.err
    client = redis_client.Redis.from_url(redis.url)
    try:
        for customer, expected in EXPECTED.items():
            key = value_key(f"{PARTNER_A}/{customer}")
            doc = json.loads(await client.get(key))
            status = "accepted" if expected[1] == "confirmed" else "not_accepted"
            source = expected[2] if status == "accepted" else "agreement"  # as the gate writes
            assert (doc["status"], doc["source"]) == (status, source)
            ttl = await client.pttl(key)
            assert 0 < ttl <= (600_000 if status == "accepted" else 30_000)
            assert ttl > (30_000 if status == "accepted" else 0)
        for key in await client.keys("*"):
            assert CONTACT_EMAIL.encode() not in (await client.get(key) or b"")
    finally:
        await client.aclose()


async def test_warm_needs_a_shared_tier(upstream: Upstream, run_audit: RunAudit) -> None:
    """--warm without acceptance.shared_url cannot run (exit 2), and says why."""
    audited = await run_audit(warm=True)
    assert audited.code == 2
    assert "--warm needs acceptance.shared_url" in audited.err
