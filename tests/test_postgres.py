"""The PostgreSQL fixture gives a real, writable server reachable through SQLAlchemy."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from testing.postgres import PostgresServer, PostgresUnavailable, find_bin_dir


def test_postgres_url_answers_select_1(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("select 1")).scalar_one() == 1
            version = connection.execute(sa.text("show server_version")).scalar_one()
            assert int(version.split(".")[0]) >= 13
            address = connection.execute(sa.text("select inet_server_addr()")).scalar_one()
            assert str(address) == "127.0.0.1"
    finally:
        engine.dispose()


def test_databases_are_separate_and_keep_money_exact(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    amount = Decimal("1234567890123456.78")
    engines = [sa.create_engine(first), sa.create_engine(second)]
    try:
        with engines[0].begin() as connection:
            connection.execute(sa.text("create table money (amount numeric(20, 2))"))
            connection.execute(sa.text("insert into money values (:a)"), {"a": amount})
            stored = connection.execute(sa.text("select amount from money")).scalar_one()
        assert stored == amount
        with engines[1].connect() as connection:
            tables = connection.execute(
                sa.text("select count(*) from information_schema.tables where table_name='money'")
            ).scalar_one()
        assert tables == 0
    finally:
        for engine in engines:
            engine.dispose()


def test_missing_binaries_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("testing.postgres.BIN_GLOB", "/nonexistent/postgresql/*/bin")
    with pytest.raises(PostgresUnavailable, match=r"apt-get install -y postgresql"):
        find_bin_dir()
    with pytest.raises(PostgresUnavailable, match="`postgresql` package"):
        PostgresServer()
