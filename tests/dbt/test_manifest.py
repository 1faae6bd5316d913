"""The dbt manifest the Dagster assets load always matches the project on disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from warehouse.manifest import (
    MANIFEST_PATH,
    PREPARE_HINT,
    ROOT,
    project_fingerprint,
)


def _with_manifest_in(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new process whose manifest (and fingerprint) live in ``folder``: the
    checkout's own manifest is shared with every other test, running or not."""
    redirect = (
        "import pathlib, warehouse.manifest as m; "
        f"m.MANIFEST_PATH = pathlib.Path({str(folder / 'manifest.json')!r}); "
        "m.MANIFEST_FINGERPRINT = m.MANIFEST_PATH.with_suffix('.fingerprint'); "
    )
    return subprocess.run(
        [sys.executable, "-c", redirect + code], cwd=ROOT, capture_output=True, text=True
    )


def test_a_stale_manifest_is_refused_on_import_and_parsed_again_by_the_command(
    tmp_path: Path,
) -> None:
    # A manifest left by an older checkout (a test or model added since) made the
    # warehouse job fail with a KeyError until someone deleted it by hand. Importing the
    # definitions never parses (that took seconds in every process that loaded them): it
    # refuses a stale manifest, naming the command that parses it.
    shutil.copy(MANIFEST_PATH, tmp_path / "manifest.json")
    (tmp_path / "manifest.fingerprint").write_text("parsed from an older project")
    parsed_before = (tmp_path / "manifest.json").stat().st_mtime_ns
    refused = _with_manifest_in(tmp_path, "import warehouse.dbt")
    assert refused.returncode != 0
    assert PREPARE_HINT in refused.stderr
    assert (tmp_path / "manifest.json").stat().st_mtime_ns == parsed_before

    parsed = _with_manifest_in(tmp_path, "m.prepare_manifest()")
    assert parsed.returncode == 0, parsed.stderr
    assert (tmp_path / "manifest.fingerprint").read_text() == project_fingerprint()
    assert (tmp_path / "manifest.json").stat().st_mtime_ns > parsed_before
    imported = _with_manifest_in(tmp_path, "import warehouse.dbt")
    assert imported.returncode == 0, imported.stderr


def test_the_fingerprint_covers_the_data_tests(tmp_path) -> None:
    project = tmp_path / "project"
    for folder in ("models", "macros", "seeds", "tests"):
        (project / folder).mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    before = project_fingerprint(project)
    (project / "tests" / "assert_something.sql").write_text("select 1 where false\n")
    assert project_fingerprint(project) != before
