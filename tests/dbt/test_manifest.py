"""The dbt manifest the Dagster assets load always matches the project on disk."""

from __future__ import annotations

import subprocess
import sys

from warehouse.dbt import MANIFEST_FINGERPRINT, ROOT, dbt_project, project_fingerprint


def test_a_manifest_parsed_from_another_project_is_parsed_again() -> None:
    # A manifest left by an older checkout (a test or model added since) made the
    # warehouse job fail with a KeyError until someone deleted it by hand.
    MANIFEST_FINGERPRINT.write_text("parsed from an older project")
    parsed_before = dbt_project.manifest_path.stat().st_mtime_ns

    subprocess.run([sys.executable, "-c", "import warehouse.dbt"], cwd=ROOT, check=True)

    assert MANIFEST_FINGERPRINT.read_text() == project_fingerprint()
    assert dbt_project.manifest_path.stat().st_mtime_ns > parsed_before


def test_the_fingerprint_covers_the_data_tests(tmp_path) -> None:
    project = tmp_path / "project"
    for folder in ("models", "macros", "seeds", "tests"):
        (project / folder).mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    before = project_fingerprint(project)
    (project / "tests" / "assert_something.sql").write_text("select 1 where false\n")
    assert project_fingerprint(project) != before
