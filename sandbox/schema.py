"""Column layout of the generated history that the stand-ins load and serve.

The generator writes one Parquet file per table into a history folder, plus
``manifest.json``; the stand-ins read them back. Money is ``Decimal(18, 2)``,
times are UTC microseconds. ``raw_override``, when set, is served verbatim in place of
the rendered record: that is how deliberately malformed records reach the wire.
"""

from __future__ import annotations

import polars as pl

MONEY = pl.Decimal(18, 2)
UTC_TS = pl.Datetime("us", "UTC")

MEMBERS = pl.Schema(
    {
        "tenant_id": pl.String,
        "member_id": pl.String,
        "given_name": pl.String,
        "family_name": pl.String,
        "email": pl.String,
        "tier": pl.String,
        "status": pl.String,
        "balance": MONEY,
        "total_cashback": MONEY,  # FintechApp only; 0 elsewhere
        "joined_at": UTC_TS,
    }
)

# One row per delivered ledger record, sorted by (tenant_id, updated_at); a duplicate
# delivery is a second identical row.
LEDGER = pl.Schema(
    {
        "tenant_id": pl.String,
        "transaction_id": pl.String,
        "member_id": pl.String,
        "type": pl.String,  # deduction | refund | cashback | approval_request | approval_decision
        "amount": MONEY,  # signed, in the tenant's loyalty currency
        "status": pl.String,  # posted | requested | approved | rejected
        "reference_id": pl.String,  # our booking id
        "related_transaction_id": pl.String,
        "approval_id": pl.String,
        "description": pl.String,
        "created_at": UTC_TS,
        "updated_at": UTC_TS,
        "raw_override": pl.String,
    }
)

# One row per Duffel order, sorted by (tenant_id, created_at); tenant_id is the Duffel
# organisation whose token created the order.
ORDERS = pl.Schema(
    {
        "tenant_id": pl.String,
        "order_id": pl.String,
        "booking_reference": pl.String,
        "created_at": UTC_TS,
        "order_type": pl.String,  # instant | hold
        "owner_iata": pl.String,  # airline IATA code, see sandbox.reference.AIRLINES
        "cabin_class": pl.String,  # economy | premium_economy | business | first
        "passenger_count": pl.Int8,
        "origin": pl.String,  # airport IATA code, see sandbox.reference.AIRPORTS
        "destination": pl.String,
        "via": pl.String,  # connecting airport or null (direct)
        "outbound_departure": UTC_TS,
        "return_departure": UTC_TS,  # null for one-way trips
        "total_amount": MONEY,
        "base_amount": MONEY,
        "tax_amount": MONEY,
        "total_currency": pl.String,  # USD | GBP | EUR
        "paid_at": UTC_TS,  # null while a hold order awaits payment
        "payment_required_by": UTC_TS,  # hold orders only
        "cancelled_at": UTC_TS,
        "cancellation_id": pl.String,
        "refund_amount": MONEY,
        "refund_to": pl.String,  # balance | awaiting_payment | null
        # metadata our platform attached when it booked
        "booking_id": pl.String,
        "member_id": pl.String,
        "member_given_name": pl.String,
        "member_family_name": pl.String,
        "loyalty_transaction_id": pl.String,
        "raw_override": pl.String,
    }
)

RATE = pl.Decimal(18, 8)

# The booking API's event feed (``events.parquet``), one row per event in commit order:
# exactly the columns ``/api/v1/admin/events`` serves and ingestion lands
# (``ingestion.landing.schemas.BOOKING_EVENTS`` without its ``_`` lineage columns).
EVENTS = pl.Schema(
    {
        "tenant_id": pl.String,
        "event_id": pl.Int64,  # from 1, ascending in commit order (and occurred_at)
        "booking_id": pl.String,
        "member_id": pl.String,
        "type": pl.String,  # booking.<to_state>
        "from_state": pl.String,  # null on a booking's first event
        "to_state": pl.String,
        "loyalty_amount": MONEY,  # in loyalty_currency
        "loyalty_currency": pl.String,
        "cashback_amount": MONEY,  # from the charge on (FintechApp)
        "refund_amount": MONEY,  # once refunded
        "usd_amount": MONEY,  # the fare in USD at fx_rate, to the cent
        "usd_per_unit": RATE,  # the loyalty currency's rate the booking API priced with
        "fare_amount": MONEY,  # in fare_currency, as Duffel quoted it
        "fare_currency": pl.String,
        "fx_rate": RATE,  # USD per unit of fare_currency
        "loyalty_transaction_id": pl.String,  # from the charge on
        "refund_transaction_id": pl.String,  # once refunded
        "duffel_order_id": pl.String,  # once ordered
        "detail": pl.String,
        "actor": pl.String,  # operator:<who> for approval decisions, else null
        "occurred_at": UTC_TS,
    }
)

# The booking API's store rows (``bookings.parquet``): what ``python -m booking
# import-history`` writes into its ``bookings`` table next to the events.
PLATFORM_BOOKINGS = pl.Schema(
    {
        "id": pl.String,
        "tenant_id": pl.String,
        "member_id": pl.String,
        "status": pl.String,
        "offer_id": pl.String,
        "cabin_class": pl.String,
        "passenger_count": pl.Int8,
        "given_name": pl.String,  # the member travels, with companions of the same family name
        "family_name": pl.String,
        "origin": pl.String,
        "destination": pl.String,
        "via": pl.String,
        "owner_iata": pl.String,
        "flight_number": pl.String,
        "outbound_departure": UTC_TS,
        "return_departure": UTC_TS,
        "fare_amount": pl.String,  # exact texts, as the store keeps them
        "fare_currency": pl.String,
        "fx_rate": pl.String,
        "usd_cents": pl.Int64,
        "usd_per_unit": pl.String,
        "loyalty_minor": pl.Int64,
        "loyalty_currency": pl.String,
        "loyalty_decimals": pl.Int32,
        "cashback_minor": pl.Int64,
        "loyalty_transaction_id": pl.String,
        "approval_id": pl.String,
        "duffel_order_id": pl.String,
        "booking_reference": pl.String,
        "duffel_cancellation_id": pl.String,
        "duffel_cancelled_at": UTC_TS,
        "cancel_requested": pl.Boolean,
        "cancel_reason": pl.String,
        "refund_transaction_id": pl.String,
        "refund_minor": pl.Int64,
        "refunded_at": UTC_TS,
        "failure_code": pl.String,
        "failure_reason": pl.String,
        "created_at": UTC_TS,
        "updated_at": UTC_TS,
    }
)

TABLES = {"members": MEMBERS, "ledger": LEDGER, "orders": ORDERS}
