"""Every answered flight search, readable by cursor like the event feed (the funnel's top).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flight_searches",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("search_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=3), nullable=False),
        sa.Column("destination", sa.String(length=3), nullable=False),
        sa.Column("departure_date", sa.Date(), nullable=False),
        sa.Column("return_date", sa.Date(), nullable=True),
        sa.Column("cabin_class", sa.String(length=32), nullable=False),
        sa.Column("adults", sa.Integer(), nullable=False),
        sa.Column("children", sa.Integer(), nullable=False),
        sa.Column("infants", sa.Integer(), nullable=False),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_flight_searches_tenant", "flight_searches", ["tenant_id", "id"])
    # The searches' own counter beside the events': ids in commit order, under a row lock.
    op.bulk_insert(
        sa.table("event_sequence", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
        [{"name": "searches", "value": 0}],
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM event_sequence WHERE name = 'searches'"))
    op.drop_index("ix_flight_searches_tenant", table_name="flight_searches")
    op.drop_table("flight_searches")
