"""The one shim into dbt-duckdb's internals (warehouse/duckdb_shim.py) still does its job."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import duckdb
from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner

from warehouse.duckdb_shim import WRITTEN_FOR, release_database

WRITE_ANOTHER_TABLE = (
    "import sys, duckdb; duckdb.connect(sys.argv[1]).execute('create table other as select 2 y')"
)


def test_the_shim_was_written_for_the_installed_adapter() -> None:
    # An upgrade of dbt-duckdb fails here: read its connections.py again (does it still keep
    # the database open at class level, in _ENV under _LOCK?), then move WRITTEN_FOR.
    assert importlib.metadata.version("dbt-duckdb") == WRITTEN_FOR
    assert hasattr(DuckDBConnectionManager, "_LOCK") and hasattr(DuckDBConnectionManager, "_ENV")


def test_after_an_in_process_build_the_database_file_is_free(tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: shim\nversion: '1.0.0'\nconfig-version: 2\nprofile: shim\n"
        "models:\n  shim:\n    +materialized: table\n"
    )
    (project / "profiles.yml").write_text(
        "shim:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('SHIM_PATH') }}\"\n"
    )
    (project / "models" / "one.sql").write_text("select 1 as x\n")
    database = tmp_path / "shim.duckdb"
    monkeypatch.setenv("SHIM_PATH", str(database))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    result = dbtRunner().invoke(
        [
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
            "--quiet",
        ]
    )
    assert result.success, result.exception
    # dbt-duckdb still holds the file open after the build ...
    assert DuckDBConnectionManager._ENV is not None
    release_database()
    assert DuckDBConnectionManager._ENV is None
    # ... and after the release another process can open it for writing (DuckDB's file lock).
    subprocess.run(
        [sys.executable, "-c", WRITE_ANOTHER_TABLE, str(database)], check=True, timeout=60
    )
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select x from main.one").fetchone() == (1,)
