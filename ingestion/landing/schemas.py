"""Column layout of the landing zone: what each ingestion asset writes and dbt reads.

Every landed file lives at ``data/landing/<source>/<entity>/tenant_id=<id>/<batch_id>.parquet``
and carries ``tenant_id``, ``_loaded_at`` (UTC) and ``_batch_id``. Money is
``Decimal(18, 2)`` (loyalty amounts and Duffel totals alike), instants are UTC
microseconds. Rejected records go to ``data/quarantine/<source>/<entity>/tenant_id=<id>/``
with the QUARANTINE columns.
"""

from __future__ import annotations

import polars as pl

MONEY = pl.Decimal(18, 2)
UTC_TS = pl.Datetime("us", "UTC")


# raw/loyalty/ledger_transactions: one row per ledger transaction version delivered by a tenant's feed.
LEDGER_TRANSACTIONS = pl.Schema(
    {
        "tenant_id": pl.String,
        "transaction_id": pl.String,
        "member_id": pl.String,
        "type": pl.String,  # deduction | refund | cashback | approval_request | approval_decision
        "amount": MONEY,  # signed, tenant's loyalty currency
        "currency": pl.String,  # stars | points | coins
        "status": pl.String,
        "reference_id": pl.String,  # our booking id
        "related_transaction_id": pl.String,
        "approval_id": pl.String,
        "description": pl.String,
        "created_at": UTC_TS,
        "updated_at": UTC_TS,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/loyalty/members: one row per member per snapshot (the loyalty liability at that time).
MEMBERS = pl.Schema(
    {
        "tenant_id": pl.String,
        "member_id": pl.String,
        "tier": pl.String,
        "status": pl.String,
        "balance": MONEY,
        "currency": pl.String,
        "snapshot_at": UTC_TS,
        # member_list (the tenant's list) | balance_lookup (one balance call per member the
        # platform knows, where the tenant offers no list). Files landed before this column
        # existed read as null here and in staging: they all came from the member list.
        "source": pl.String,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/loyalty/capabilities: one row per probe of a declared capability of a tenant's API.
CAPABILITIES = pl.Schema(
    {
        "tenant_id": pl.String,
        "capability": pl.String,  # ledger_feed | member_list | refunds | partner_session
        "offered": pl.Boolean,
        "status_code": pl.Int32,  # the probe's HTTP status; null when not asked (declared true)
        "detail": pl.String,  # what was asked and what it answered, in words
        "checked_at": UTC_TS,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/duffel/orders: one row per Duffel order version seen in the tenant's organisation.
ORDERS = pl.Schema(
    {
        "tenant_id": pl.String,  # whose Duffel token listed the order
        "order_id": pl.String,
        "booking_reference": pl.String,  # PNR
        "order_type": pl.String,  # instant | hold
        "created_at": UTC_TS,
        "owner_iata": pl.String,
        "owner_name": pl.String,
        "cabin_class": pl.String,  # of the first segment's first passenger
        "passenger_count": pl.Int32,
        "slice_count": pl.Int32,
        "segment_count": pl.Int32,
        "origin": pl.String,  # first slice origin IATA
        "destination": pl.String,  # first slice destination IATA
        "departing_at": UTC_TS,  # first segment departure, converted from airport-local time
        "departing_at_local": pl.String,  # as Duffel sent it (airport-local, no offset)
        "total_amount": MONEY,
        "base_amount": MONEY,
        "tax_amount": MONEY,
        "total_currency": pl.String,
        "awaiting_payment": pl.Boolean,
        "paid_at": UTC_TS,
        "payment_required_by": UTC_TS,
        "cancelled_at": UTC_TS,
        "cancellation_id": pl.String,
        "refund_amount": MONEY,
        "refund_currency": pl.String,
        "refund_to": pl.String,
        "meta_tenant_id": pl.String,  # metadata our platform attached when booking
        "meta_member_id": pl.String,
        "meta_booking_id": pl.String,
        "meta_loyalty_transaction_id": pl.String,
        "version_at": UTC_TS,  # latest of created/paid/cancelled: newer versions win in staging
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/duffel/order_segments: one row per flight segment of an order version.
ORDER_SEGMENTS = pl.Schema(
    {
        "tenant_id": pl.String,
        "order_id": pl.String,
        "slice_index": pl.Int32,
        "segment_index": pl.Int32,
        "segment_id": pl.String,
        "origin": pl.String,
        "destination": pl.String,
        "departing_at": UTC_TS,
        "arriving_at": UTC_TS,
        "departing_at_local": pl.String,
        "arriving_at_local": pl.String,
        "marketing_carrier": pl.String,
        "flight_number": pl.String,
        "duration_minutes": pl.Int32,
        "version_at": UTC_TS,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/duffel/airlines and raw/duffel/airports: reference data, one row per airline / airport.
AIRLINES = pl.Schema(
    {
        "airline_id": pl.String,
        "iata_code": pl.String,
        "name": pl.String,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)
AIRPORTS = pl.Schema(
    {
        "airport_id": pl.String,
        "iata_code": pl.String,
        "icao_code": pl.String,
        "name": pl.String,
        "city_name": pl.String,
        "iata_city_code": pl.String,
        "iata_country_code": pl.String,
        "latitude": pl.Float64,  # coordinates, not money
        "longitude": pl.Float64,
        "time_zone": pl.String,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/platform/booking_events: one row per booking event from the booking API's event feed.
RATE = pl.Decimal(18, 8)  # usd_per_unit and fx_rate, exact as the booking API priced with them
BOOKING_EVENTS = pl.Schema(
    {
        "tenant_id": pl.String,
        "event_id": pl.Int64,  # the feed's id and cursor: commit order
        "booking_id": pl.String,
        "member_id": pl.String,
        "type": pl.String,  # booking.<state>, or a note (booking.refund_outcome_unknown, ...)
        "from_state": pl.String,
        "to_state": pl.String,
        "loyalty_amount": MONEY,  # in loyalty_currency (stars and points whole, coins to the cent)
        "loyalty_currency": pl.String,
        "cashback_amount": MONEY,
        "refund_amount": MONEY,  # in loyalty_currency
        "usd_amount": MONEY,  # USD, to the cent
        "usd_per_unit": RATE,  # the loyalty currency's rate in force when priced
        "fare_amount": MONEY,  # the fare as Duffel quoted it, in fare_currency
        "fare_currency": pl.String,
        "fx_rate": RATE,  # USD per unit of fare_currency
        "loyalty_transaction_id": pl.String,
        "refund_transaction_id": pl.String,
        "duffel_order_id": pl.String,
        "detail": pl.String,
        "actor": pl.String,  # operator:<who> when an operator made it happen, else null
        "occurred_at": UTC_TS,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# raw/platform/flight_searches: one row per answered flight search, from the searches feed.
FLIGHT_SEARCHES = pl.Schema(
    {
        "tenant_id": pl.String,
        "feed_id": pl.Int64,  # the searches feed's id and cursor: commit order
        "search_id": pl.String,  # the search's id as its answer gave it
        "member_id": pl.String,
        "origin": pl.String,
        "destination": pl.String,
        "departure_date": pl.Date,
        "return_date": pl.Date,
        "cabin_class": pl.String,
        "adults": pl.Int32,
        "children": pl.Int32,
        "infants": pl.Int32,
        "result_count": pl.Int32,  # flights the member was shown
        "occurred_at": UTC_TS,
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

# Quarantine: one row per rejected record, with the reason and the raw payload (secrets never).
QUARANTINE = pl.Schema(
    {
        "tenant_id": pl.String,
        "source": pl.String,
        "entity": pl.String,
        "record_key": pl.String,  # the record's id when it has one
        "reason": pl.String,  # names the field and what is wrong with it
        "raw_payload": pl.String,  # the record as received, JSON
        "_loaded_at": UTC_TS,
        "_batch_id": pl.String,
    }
)

ENTITIES: dict[tuple[str, str], pl.Schema] = {
    ("loyalty", "ledger_transactions"): LEDGER_TRANSACTIONS,
    ("loyalty", "members"): MEMBERS,
    ("loyalty", "capabilities"): CAPABILITIES,
    ("duffel", "orders"): ORDERS,
    ("duffel", "order_segments"): ORDER_SEGMENTS,
    ("duffel", "airlines"): AIRLINES,
    ("duffel", "airports"): AIRPORTS,
    ("platform", "booking_events"): BOOKING_EVENTS,
    ("platform", "flight_searches"): FLIGHT_SEARCHES,
}
