"""Alembic runs the booking store's migrations over the engine the caller hands in."""

from __future__ import annotations

from alembic import context

from booking.store.tables import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    context.run_migrations()
