"""Alembic runs the booking store's migrations over the engine the caller hands in."""

from __future__ import annotations

from alembic import context

from booking.store.tables import Base

# Any fixed number: PostgreSQL's advisory lock that lets one process migrate at a time.
MIGRATION_LOCK = 7_340_021

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=Base.metadata)
    context.run_migrations()
