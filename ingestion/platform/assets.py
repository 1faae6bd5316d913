"""The booking API's feeds (events, searches), one partition per tenant, with their checks."""

import dagster as dg

from clients.http import RetryPolicy
from clients.platform import (
    FEED_RATE_LIMIT,
    MAX_PAGE_SIZE,
    BookingApiUnavailable,
    BookingEventsClient,
    PlatformSettings,
    build_booking_events_client,
)
from ingestion import checks
from ingestion.partitions import tenant_partitions
from ingestion.platform.events import EVENTS_FEED
from ingestion.platform.feed import SOURCE, PlatformFeed, sync_feed
from ingestion.platform.searches import SEARCHES_FEED
from ingestion.resources import LandingResource
from ingestion.sync import RequestCounter, SyncStats

GROUP = "platform"
EVENTS_KEY = dg.AssetKey(["raw", SOURCE, EVENTS_FEED.entity])
SEARCHES_KEY = dg.AssetKey(["raw", SOURCE, SEARCHES_FEED.entity])


class BookingApiResource(dg.ConfigurableResource):
    """Builds the event-feed client. The operator token is not a field: it is read from
    ``BOOKING_OPERATOR_TOKEN`` when the run starts, so it never appears in run config or the UI."""

    base_url: str | None = None  # else BOOKING_API_URL (default http://127.0.0.1:8000)
    # The API's largest page: a backfill of a million bookings is ~3 million events, and
    # operator requests share one limit (600 a minute), so fewer, larger pages.
    page_size: int = MAX_PAGE_SIZE
    batch_size: int = 10_000

    def settings(self) -> PlatformSettings:
        settings = PlatformSettings()
        if self.base_url:
            settings = settings.model_copy(update={"booking_api_url": self.base_url})
        return settings

    def client(self, settings: PlatformSettings, requests: RequestCounter) -> BookingEventsClient:
        # A refused connection is retried briefly (3 attempts, sub-second backoff): an API that
        # is not running should say so in seconds, not hold the pipeline for a whole budget.
        # A call may wait out the feed's request quota, though: a backfill of millions of
        # events spends a minute's quota in under a minute, and the next page has to wait for
        # the next window instead of failing the run.
        return build_booking_events_client(
            settings,
            retry=RetryPolicy(
                max_attempts=3, max_elapsed_seconds=FEED_RATE_LIMIT.window_seconds + 5
            ),
            event_hooks={"response": [requests]},
        )


def _not_offered(context: dg.AssetExecutionContext, what: str, why: str) -> dg.MaterializeResult:
    message = f"{context.partition_key}: {what} not offered: {why}; nothing landed"
    context.log.warning(message)
    return dg.MaterializeResult(
        metadata={"outcome": f"not offered: {why}", "detail": message, "landed": 0}
    )


def land_feed(
    context: dg.AssetExecutionContext,
    feed: PlatformFeed,
    booking_api: BookingApiResource,
    landing: LandingResource,
) -> dg.MaterializeResult:
    """Land the partition's records of one booking API feed, each exactly once."""
    what = f"{feed.noun} records ({feed.entity})"
    settings = booking_api.settings()
    if settings.booking_operator_token is None:
        return _not_offered(context, what, "no operator token (BOOKING_OPERATOR_TOKEN is not set)")
    if not 1 <= booking_api.page_size <= MAX_PAGE_SIZE:
        raise dg.Failure(f"booking_api.page_size: {booking_api.page_size} is outside 1..1000")
    requests = RequestCounter()
    stats = SyncStats()
    try:
        with booking_api.client(settings, requests) as client:
            sync_feed(
                feed,
                client,
                landing.zone(),
                context.partition_key,
                page_size=booking_api.page_size,
                batch_size=booking_api.batch_size,
                requests=requests,
                stats=stats,
            )
    except BookingApiUnavailable as error:
        # Nothing answered at all: the API is not running here. Anything else (a refused
        # token, a 5xx, a failure after some pages) is a failure of this partition.
        if error.status is None and stats.pages == 0:
            return _not_offered(
                context, what, f"the booking API is not reachable at {settings.booking_api_url}"
            )
        raise
    metadata = stats.metadata()
    metadata.pop("cursor_since")
    context.log.info(f"{context.partition_key} {feed.entity}: {stats.summary()}")
    return dg.MaterializeResult(metadata=metadata)


def _feed_definitions(
    feed: PlatformFeed, key: dg.AssetKey, records: str, description: str
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition, dg.AssetChecksDefinition]:
    """One feed's asset (``raw/platform/<entity>``, one partition per tenant) and its checks:
    no record landed twice, and few quarantined. ``records``: what a record is, in words."""

    @dg.asset(
        key=key,
        group_name=GROUP,
        partitions_def=tenant_partitions,
        kinds={"python", "parquet"},
        description=description,
    )
    def landed(
        context: dg.AssetExecutionContext, booking_api: BookingApiResource, landing: LandingResource
    ) -> dg.MaterializeResult:
        return land_feed(context, feed, booking_api, landing)

    @dg.asset_check(
        asset=key,
        name=f"{feed.entity}_no_duplicate_ids",
        description=f"No {records} landed twice within a tenant.",
    )
    def no_duplicate_ids(landing: LandingResource) -> dg.AssetCheckResult:
        return checks.duplicate_ids(landing.zone(), SOURCE, feed.entity, [feed.id_column])

    @dg.asset_check(
        asset=key,
        name=f"{feed.entity}_quarantine_share",
        description=f"Quarantined {records}s stay under 1% of deliveries.",
    )
    def quarantine_share(landing: LandingResource) -> dg.AssetCheckResult:
        return checks.quarantine_share(landing.zone(), SOURCE, feed.entity)

    return landed, no_duplicate_ids, quarantine_share


booking_events, booking_events_no_duplicate_ids, booking_events_quarantine_share = (
    _feed_definitions(
        EVENTS_FEED,
        EVENTS_KEY,
        "booking event",
        "One row per booking event (state change or note) of the tenant's bookings, from the "
        "booking API's event feed: amounts in loyalty units and USD with the rates used.",
    )
)
flight_searches, flight_searches_no_duplicate_ids, flight_searches_quarantine_share = (
    _feed_definitions(
        SEARCHES_FEED,
        SEARCHES_KEY,
        "flight search",
        "One row per flight search a member of the tenant made and was answered (route, "
        "dates, cabin, passengers, flights shown), from the booking API's searches feed.",
    )
)
