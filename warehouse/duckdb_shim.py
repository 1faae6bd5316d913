"""The one place that reaches into dbt-duckdb's internals (tests/dbt/test_duckdb_shim.py).

dbt-duckdb keeps the database open at class level (``DuckDBConnectionManager._ENV``, under
``_LOCK``) between invocations of dbt in one process, so the file stays locked after a build.
Its public ``close_all_connections`` only drops the reference (the file stays open until the
garbage collector gets to it). A build run in-process must leave the file free for the publish
step and for other processes, so the environment is closed here.
"""

from __future__ import annotations

# The adapter version this was written against; its test fails on any other, so an upgrade
# re-reads dbt-duckdb's connections.py before this is trusted again.
WRITTEN_FOR = "1.11.1"


def release_database() -> None:
    """Close the database dbt-duckdb holds open in this process, if any."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager as Manager

    with Manager._LOCK:
        if Manager._ENV is not None:
            Manager._ENV.close()
            Manager._ENV = None
