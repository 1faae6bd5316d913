"""The dbt manifest the Dagster assets load always matches the project on disk."""

from __future__ import annotations

import subprocess
import sys

from warehouse.manifest import (
    MANIFEST_FINGERPRINT,
    MANIFEST_PATH,
    PREPARE_HINT,
    ROOT,
    project_fingerprint,
)


def test_a_stale_manifest_is_refused_on_import_and_parsed_again_by_the_command() -> None:
    # A manifest left by an older checkout (a test or model added since) made the
    # warehouse job fail with a KeyError until someone deleted it by hand. Importing the
    # definitions never parses (that took seconds in every process that loaded them): it
    # refuses a stale manifest, naming the command that parses it.
    MANIFEST_FINGERPRINT.write_text("parsed from an older project")
    parsed_before = MANIFEST_PATH.stat().st_mtime_ns
    try:
        refused = subprocess.run(
            [sys.executable, "-c", "import warehouse.dbt"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0
        assert PREPARE_HINT in refused.stderr
        assert MANIFEST_PATH.stat().st_mtime_ns == parsed_before
    finally:
        subprocess.run([sys.executable, "-m", "warehouse.manifest"], cwd=ROOT, check=True)
    assert MANIFEST_FINGERPRINT.read_text() == project_fingerprint()
    assert MANIFEST_PATH.stat().st_mtime_ns > parsed_before
    imported = subprocess.run([sys.executable, "-c", "import warehouse.dbt"], cwd=ROOT)
    assert imported.returncode == 0


def test_the_fingerprint_covers_the_data_tests(tmp_path) -> None:
    project = tmp_path / "project"
    for folder in ("models", "macros", "seeds", "tests"):
        (project / folder).mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    before = project_fingerprint(project)
    (project / "tests" / "assert_something.sql").write_text("select 1 where false\n")
    assert project_fingerprint(project) != before
