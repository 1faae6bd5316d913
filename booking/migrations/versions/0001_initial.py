"""The booking store: bookings, their event feed and its sequence, idempotency keys,
searched offers and rate-limit counters. Datetimes are naive UTC; money is integers or text.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "booking_events",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("booking_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("loyalty_minor", sa.BigInteger(), nullable=True),
        sa.Column("loyalty_currency", sa.String(length=16), nullable=True),
        sa.Column("loyalty_decimals", sa.Integer(), nullable=True),
        sa.Column("cashback_minor", sa.BigInteger(), nullable=True),
        sa.Column("refund_minor", sa.BigInteger(), nullable=True),
        sa.Column("usd_cents", sa.BigInteger(), nullable=True),
        sa.Column("usd_per_unit", sa.String(length=32), nullable=True),
        sa.Column("fare_amount", sa.String(length=32), nullable=True),
        sa.Column("fare_currency", sa.String(length=3), nullable=True),
        sa.Column("fx_rate", sa.String(length=32), nullable=True),
        sa.Column("loyalty_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("refund_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("duffel_order_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_booking_events_booking_id"), "booking_events", ["booking_id"], unique=False
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=False),
        sa.Column("cabin_class", sa.String(length=32), nullable=False),
        sa.Column("flight", sa.JSON(), nullable=False),
        sa.Column("passengers", sa.JSON(), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=True),
        sa.Column("departure_date", sa.String(length=10), nullable=True),
        sa.Column("flight_number", sa.String(length=16), nullable=True),
        sa.Column("route", sa.String(length=16), nullable=True),
        sa.Column("offer_expires_at", sa.DateTime(), nullable=True),
        sa.Column("fare_amount", sa.String(length=32), nullable=False),
        sa.Column("fare_currency", sa.String(length=3), nullable=False),
        sa.Column("fx_rate", sa.String(length=32), nullable=False),
        sa.Column("usd_cents", sa.BigInteger(), nullable=False),
        sa.Column("usd_per_unit", sa.String(length=32), nullable=False),
        sa.Column("loyalty_minor", sa.BigInteger(), nullable=False),
        sa.Column("loyalty_currency", sa.String(length=16), nullable=False),
        sa.Column("loyalty_decimals", sa.Integer(), nullable=False),
        sa.Column("cashback_minor", sa.BigInteger(), nullable=True),
        sa.Column("loyalty_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("approval_id", sa.String(length=64), nullable=True),
        sa.Column("approval_reason", sa.Text(), nullable=True),
        sa.Column("estimated_approval_time", sa.String(length=32), nullable=True),
        sa.Column("approval_note", sa.Text(), nullable=True),
        sa.Column("duffel_order_id", sa.String(length=64), nullable=True),
        sa.Column("booking_reference", sa.String(length=16), nullable=True),
        sa.Column("tickets", sa.JSON(), nullable=True),
        sa.Column("duffel_cancellation_id", sa.String(length=64), nullable=True),
        sa.Column("duffel_cancelled_at", sa.DateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("refund_requested", sa.Boolean(), nullable=False),
        sa.Column("refund_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("refund_minor", sa.BigInteger(), nullable=True),
        sa.Column("refunded_at", sa.DateTime(), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("failure_details", sa.JSON(), nullable=True),
        sa.Column("reconcile_phase", sa.String(length=16), nullable=True),
        sa.Column("reconcile_deadline", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_bookings_lease_until"), "bookings", ["lease_until"], unique=False)
    op.create_index(
        "ix_bookings_member", "bookings", ["tenant_id", "member_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_bookings_status"), "bookings", ["status"], unique=False)
    op.create_index(op.f("ix_bookings_tenant_id"), "bookings", ["tenant_id"], unique=False)
    op.create_table(
        "event_sequence",
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(
        sa.table("event_sequence", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
        [{"name": "events", "value": 0}],
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("booking_id", sa.String(length=40), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "member_id", "key", name="uq_idem_key"),
    )
    op.create_table(
        "offers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("search_id", sa.String(length=64), nullable=False),
        sa.Column("cabin_class", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_offers_created_at"), "offers", ["created_at"], unique=False)
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_counters")
    op.drop_index(op.f("ix_offers_created_at"), table_name="offers")
    op.drop_table("offers")
    op.drop_table("idempotency_keys")
    op.drop_table("event_sequence")
    op.drop_index(op.f("ix_bookings_tenant_id"), table_name="bookings")
    op.drop_index(op.f("ix_bookings_status"), table_name="bookings")
    op.drop_index("ix_bookings_member", table_name="bookings")
    op.drop_index(op.f("ix_bookings_lease_until"), table_name="bookings")
    op.drop_table("bookings")
    op.drop_index(op.f("ix_booking_events_booking_id"), table_name="booking_events")
    op.drop_table("booking_events")
