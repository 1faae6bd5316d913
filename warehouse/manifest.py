"""The dbt manifest the warehouse assets load: parsed by the entry points, never on import.

``python -m warehouse.manifest`` parses the project unless the manifest on disk was parsed
from the project as it is now (``make setup``, the pipeline, live mode and the image build
run it; the Dagster definitions refuse a missing or stale manifest with this hint).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from ingestion.landing.zone import LandingZone
from settings import DataLayout, current_settings, get_settings
from warehouse.registry_seeds import seeds_dir

ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = ROOT / "dbt_project"
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
MANIFEST_FINGERPRINT = MANIFEST_PATH.with_suffix(".fingerprint")
PREPARE_HINT = "python -m warehouse.manifest"


def dbt_vars(data_dir: Path) -> dict[str, str]:
    """What the project reads as vars: the warehouse file, the landing zone, the quarantine
    and the registry files written under the data folder, and Spark's folders and master."""
    layout = DataLayout(data_dir)
    settings = current_settings()
    zone = LandingZone.under(data_dir, settings)
    return {
        "warehouse_path": str(layout.warehouse),
        "landing_root": str(zone.root),
        "registry_seeds": str(seeds_dir(data_dir)),
        "quarantine_root": str(zone.quarantine_root),
        "spark_master": settings.spark_master,
        "spark_warehouse_dir": str(layout.spark / "warehouse"),
        "spark_metastore": str(layout.spark / "metastore"),
    }


def dbt_args(data_dir: Path, engine: str | None = None) -> list[str]:
    """The arguments every dbt invocation takes after its command: the target (``engine``,
    by default the ``warehouse_engine`` setting) and the vars. Passed, not put in the process
    environment, so builds in one process may use different data folders."""
    return [
        "--target",
        engine or get_settings().warehouse_engine,
        "--vars",
        json.dumps(dbt_vars(data_dir)),
    ]


def project_fingerprint(project_dir: Path = DBT_PROJECT_DIR, generated: Iterable[Path] = ()) -> str:
    """A digest of everything a build's result depends on besides the landed data.

    ``generated`` are the seeds written outside the project (the registry's, in the data
    folder), named by file name.
    """
    digest = hashlib.sha256()
    sources = sorted(
        path
        for folder in ("models", "macros", "seeds", "tests")
        for path in (project_dir / folder).rglob("*")
        if path.is_file()
    )
    files = [project_dir / "dbt_project.yml", *sources]
    for path in files:
        digest.update(str(path.relative_to(project_dir)).encode())
        digest.update(path.read_bytes())
    for path in sorted(generated):
        digest.update(f"generated/{path.name}".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def manifest_is_current() -> bool:
    """The manifest was parsed from the project as it is now (a stale one breaks the runs)."""
    return (
        MANIFEST_PATH.exists()
        and MANIFEST_FINGERPRINT.exists()
        and MANIFEST_FINGERPRINT.read_text() == project_fingerprint()
    )


def prepare_manifest(*, force: bool = False) -> bool:
    """Parse the dbt project into the manifest, unless it is current; returns whether it parsed.

    It parses with the paths the runs use, so their builds can reuse this parse (partial
    parsing). dbt parse needs no database.
    """
    if not force and manifest_is_current():
        return False
    subprocess.run(
        [
            DBT_EXECUTABLE,
            "parse",
            "--quiet",
            *dbt_args(get_settings().data_dir.resolve()),
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(MANIFEST_PATH.parent),
        ],
        check=True,
        cwd=ROOT,
    )
    MANIFEST_FINGERPRINT.write_text(project_fingerprint())
    return True


def require_current_manifest() -> None:
    """Refuse a missing or stale manifest: assets loaded from one fail later and obscurely."""
    if not manifest_is_current():
        raise RuntimeError(
            f"the dbt manifest ({os.path.relpath(MANIFEST_PATH, ROOT)}) is missing or was parsed "
            f"from another version of the project: run `{PREPARE_HINT}` (make setup does)"
        )


if __name__ == "__main__":
    print("dbt manifest parsed" if prepare_manifest() else "dbt manifest is current")
