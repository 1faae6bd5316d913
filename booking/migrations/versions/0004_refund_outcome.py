"""When an owed refund was last sent (its ledger lookup starts there) and who acted on an event.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        batch.add_column(sa.Column("refund_attempted_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("booking_events") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("booking_events") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("bookings") as batch:
        batch.drop_column("refund_attempted_at")
