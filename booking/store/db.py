"""Engines for the store (SQLite by default, PostgreSQL by URL) and migrations on start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def create_store_engine(url: str, *, durable: bool = True, **kwargs: Any) -> sa.Engine:
    """An engine whose write transactions serialize where they must (SQLite: BEGIN IMMEDIATE).

    ``durable=False`` (SQLite) commits without waiting for the disk: a power cut may lose the
    last commits, never the file's consistency. Only for what is cheap to lose (counters).
    """
    if url.startswith("sqlite"):
        # One connection per engine: every transaction takes the write lock at BEGIN, so only
        # one runs at a time anyway. Threads queue for the connection and start the moment
        # it is free, instead of polling the lock in SQLite's busy handler (sleeps of up to
        # 100 ms) while it stands idle. Other processes still wait on the lock itself.
        kwargs = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60, **kwargs}
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" below decide how transactions start.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            if not durable:
                # WAL + NORMAL: no fsync per commit; a kill -9 still loses nothing.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            # Take the write lock at BEGIN: a read-then-write transaction never dies of
            # SQLITE_BUSY halfway, and two processes queue instead of failing.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: sa.Engine) -> None:
    """Bring the store's schema to the newest migration (safe to run on every start)."""
    command.upgrade(alembic_config(engine), "head")
