"""Build the warehouse once per session from a generated history, landed as ingestion lands it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from sandbox.generator import generate
from testing.dbt_build import DbtBuild, dbt_build
from testing.landing_from_history import write_landing

HISTORY_SIZE = 10_000
ANCHOR = dt.date(2026, 11, 1)


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated history with the manifest's planted anomalies."""
    out = tmp_path_factory.mktemp("history")
    generate(HISTORY_SIZE, 7, out, anchor=ANCHOR)
    return out


@pytest.fixture(scope="session")
def manifest(history: Path) -> dict:
    return json.loads((history / "manifest.json").read_text())


@pytest.fixture(scope="session")
def built(history: Path, tmp_path_factory: pytest.TempPathFactory) -> DbtBuild:
    """The warehouse built over the history's landing zone (small batches, so fetches overlap)."""
    workdir = tmp_path_factory.mktemp("warehouse")
    landing_root = workdir / "landing"
    write_landing(history, landing_root, batch_rows=2_000)
    return dbt_build(workdir, landing_root)


@pytest.fixture
def warehouse(built: DbtBuild) -> Iterator[duckdb.DuckDBPyConnection]:
    assert built.returncode == 0, built.output[-5000:]
    con = built.connect()
    yield con
    con.close()
