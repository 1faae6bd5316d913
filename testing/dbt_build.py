"""Run `dbt build` the way the pipeline does, into a throw-away warehouse."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ingestion.landing.storage import Location, store_env
from settings import child_environment, current_settings
from warehouse.manifest import dbt_vars
from warehouse.registry_seeds import seeds_dir, write_seeds

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "dbt_project"
DBT = Path(sys.executable).parent / "dbt"


@dataclass(frozen=True)
class DbtBuild:
    """One `dbt build` run: where it read and wrote, and what it reported."""

    landing_root: Location
    warehouse: Path
    target: Path
    returncode: int
    output: str

    def run_results(self) -> list[dict]:
        return json.loads((self.target / "run_results.json").read_text())["results"]

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.warehouse), read_only=True)


def dbt_build(
    workdir: Path, landing_root: Location, *args: str, engine: str = "duckdb"
) -> DbtBuild:
    """Run `dbt build` (seeds, models, data and unit tests) in a subprocess, as Dagster would.

    ``workdir`` is the data folder (the warehouse, Spark's tables and metastore);
    ``landing_root`` is a folder, or a location on the object store the settings name; ``args``
    go to dbt after `build` (e.g. ``--full-refresh``); ``engine`` is the target.
    """
    warehouse = workdir / "warehouse.duckdb"
    target = workdir / "target"
    registry_seeds = seeds_dir(workdir)
    write_seeds(registry_seeds)
    variables = {
        **dbt_vars(workdir),
        "landing_root": str(landing_root),
        "quarantine_root": str(landing_root.parent / "quarantine"),
    }
    completed = subprocess.run(
        [
            str(DBT),
            "build",
            *args,
            "--target",
            engine,
            "--vars",
            json.dumps(variables),
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--target-path",
            str(target),
            "--log-path",
            str(workdir / "logs"),
        ],
        cwd=REPO,
        env=child_environment({"DO_NOT_TRACK": "1"}, store_env(current_settings())),
        capture_output=True,
        text=True,
        check=False,
    )
    return DbtBuild(
        landing_root, warehouse, target, completed.returncode, completed.stdout + completed.stderr
    )
