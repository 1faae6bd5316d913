"""Members without a member list: one balance lookup per member the platform knows.

Where a tenant offers no member list, the member snapshot (tier, status, balance: the loyalty
liability) is read with the reference balance endpoint, member by member. Which members: the
ones the booking API's landed events name (``raw/platform/booking_events``). In what order:
members active since their last lookup (or never looked up) first, most recently active
first; then the rest, longest since their last lookup first. How many: the lookups take at
most ``LOOKUP_SHARE`` of the tenant's rate limit, through a limiter of their own in front of
the tenant's shared one, so the booking API's live calls keep the rest; and one run stops at
one window's share of requests. Members a run does not reach come first in the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import polars as pl

from clients.errors import NotFound
from clients.loyalty.client import LoyaltyClient
from clients.loyalty.models import Member
from ingestion.landing.batches import SyncStats
from ingestion.landing.zone import LandingZone, Rejected
from ingestion.loyalty import ledger as loyalty_ledger
from ingestion.sync import MEMBERS_ENTITY, RequestCounter, member_snapshot_batcher
from tenants.registry import JwtSessionConfig, OAuthClientCredentialsConfig, RateLimit, TenantConfig

log = logging.getLogger("ingestion")

# The share of a tenant's rate limit balance lookups may take; the rest is the booking API's.
LOOKUP_SHARE = 0.5
SOURCE = "balance_lookup"


def lookup_limit(tenant: TenantConfig, share: float = LOOKUP_SHARE) -> RateLimit:
    """The lookups' own budget: ``share`` of the tenant's limit per window (at least one)."""
    requests = max(1, int(tenant.rate_limit.requests * share))
    return RateLimit(requests=requests, window_seconds=tenant.rate_limit.window_seconds)


def members_to_look_up(zone: LandingZone, tenant_id: str) -> list[str]:
    """Members named by the tenant's landed booking events, in the order to look them up."""
    with zone.reading():
        events = zone.scan("platform", "booking_events", tenant_id)
        if events is None:
            return []
        active = (
            events.filter(pl.col("member_id").is_not_null())
            .group_by("member_id")
            .agg(pl.col("occurred_at").max().alias("last_active"))
        )
        snapshots = zone.scan(*MEMBERS_ENTITY, tenant_id)
        if snapshots is None:
            seen = pl.LazyFrame(
                schema={"member_id": pl.String, "last_seen": pl.Datetime("us", "UTC")}
            )
        else:
            seen = snapshots.group_by("member_id").agg(
                pl.col("snapshot_at").max().alias("last_seen")
            )
        ordered = (
            active.join(seen, on="member_id", how="left")
            .with_columns(
                stale=pl.col("last_seen").is_null() | (pl.col("last_seen") < pl.col("last_active")),
            )
            .with_columns(
                # stale: most recently active first; the rest: longest since their lookup first
                rank=pl.when(pl.col("stale"))
                .then(-pl.col("last_active").dt.epoch("us"))
                .otherwise(pl.col("last_seen").dt.epoch("us"))
            )
            .sort(["stale", "rank", "member_id"], descending=[True, False, False])
            .select("member_id")
            .collect()
        )
    return ordered["member_id"].to_list()


def _requests_per_lookup(tenant: TenantConfig, first: bool) -> int:
    """The most requests one lookup may send: its own, plus the token or session it needs."""
    if isinstance(tenant.auth, JwtSessionConfig):
        return 2  # every member has a session of their own
    if isinstance(tenant.auth, OAuthClientCredentialsConfig) and first:
        return 2
    return 1


def snapshot_balances(
    client: LoyaltyClient,
    zone: LandingZone,
    tenant_id: str,
    members: list[str],
    *,
    max_requests: int,
    requests: RequestCounter,
    now: dt.datetime | None = None,
) -> SyncStats:
    """Look up ``members`` in order until ``max_requests`` would be passed; land one snapshot.

    A member the tenant does not know (its own 404) is skipped and logged. Any other failure
    lands what was read so far, then raises.
    """
    started = time.perf_counter()
    stats = SyncStats(outcome="ok: member snapshot from balance lookups")
    snapshot_at = now or dt.datetime.now(dt.UTC)
    check = loyalty_ledger.member_problem(
        tenant_id, client.currency, client.tenant.currency.decimals
    )
    batcher = member_snapshot_batcher(zone, tenant_id, stats, snapshot_at, batch_size=10**9)
    spent_before = requests.count
    unknown = 0
    try:
        for position, member_id in enumerate(members):
            cost = _requests_per_lookup(client.tenant, first=position == 0)
            if requests.count - spent_before + cost > max_requests:
                break
            stats.fetched += 1
            try:
                balance = client.balance(member_id)
            except NotFound as exc:
                if exc.code is None:
                    raise  # no balance route at all: not a member the tenant lacks
                unknown += 1
                log.warning("%s: balance lookup of %s: %s", tenant_id, member_id, exc)
                continue
            member = Member(
                member_id=balance.member_id,
                tier=balance.tier,
                status=balance.status,
                balance=balance.balance,
                currency=balance.currency,
            )
            problem = check(member)
            if problem is not None:
                batcher.reject([Rejected(member_id, problem, member.model_dump(mode="json"))])
                continue
            batcher.add([loyalty_ledger.member_row(tenant_id, member, snapshot_at, SOURCE)])
    finally:
        batcher.flush()
        stats.requests = requests.count - spent_before
        stats.seconds = time.perf_counter() - started
    log.info(
        "%s: looked up %d of %d known members (%d unknown to the tenant) in %d requests",
        tenant_id,
        stats.fetched,
        len(members),
        unknown,
        stats.requests,
    )
    return stats
