"""Every override of one of dbt's own macros (dbt_project/macros/overrides/) is picked up.

An override takes effect only while dbt resolves the macro's name to the project's copy: a
renamed file or macro, a folder left out of `macro-paths` or a dbt upgrade that stops calling
it would silently bring dbt's default back. Each override has a check here that fails then.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from testing.dbt_build import PROJECT, DbtBuild

OVERRIDES = PROJECT / "macros" / "overrides"


def _compiled_tests(built: DbtBuild) -> dict[str, str]:
    return {
        result["unique_id"]: result.get("compiled_code") or ""
        for result in built.run_results()
        if result["unique_id"].startswith("test.")
    }


def _manifest(built: DbtBuild) -> dict:
    return json.loads((built.target / "manifest.json").read_text())


def check_get_where_subquery(built: DbtBuild) -> None:
    """Data tests of incremental models read only this build's rows; others read the table."""
    manifest = _manifest(built)
    incremental = {
        unique_id
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
    }
    compiled = _compiled_tests(built)
    scoped, whole = [], []
    for unique_id, code in compiled.items():
        test = manifest["nodes"][unique_id]
        attached = test.get("attached_node")
        if not attached or test["config"].get("where") or test["test_metadata"] is None:
            continue
        if test["test_metadata"]["name"] == "relationships":
            continue  # the parent side is looked up in the whole table
        (scoped if attached in incremental else whole).append((unique_id, code))
    assert scoped and whole
    for unique_id, code in scoped:
        assert "where built_at = cast(" in code, f"{unique_id} checks every row: {code}"
    for unique_id, code in whole:
        assert "built_at = cast(" not in code, f"{unique_id} is scoped: {code}"


def check_spark_alter_column_set_constraints(built: DbtBuild) -> None:
    """dbt-spark still enforces a contract's constraints through the macro we replace, and
    still dispatches to it: an upgrade that renames either would bring back its
    `ALTER COLUMN ... SET NOT NULL`, which Parquet tables refuse. (The Spark build itself runs
    the override in tests/dbt/test_spark_parity.py.)"""
    import dbt.include.spark

    adapters = Path(dbt.include.spark.__file__).parent / "macros" / "adapters.sql"
    text = adapters.read_text()
    assert "alter_column_set_constraints(relation, model.columns)" in text
    assert "adapter.dispatch('alter_column_set_constraints', 'dbt')" in text
    assert re.search(r"macro\s+spark__alter_column_set_constraints\s*\(", text)


CHECKS = {
    "default__get_where_subquery": check_get_where_subquery,
    "spark__alter_column_set_constraints": check_spark_alter_column_set_constraints,
}


def _overridden_macros() -> dict[str, Path]:
    found = {}
    for path in sorted(OVERRIDES.glob("*.sql")):
        for name in re.findall(r"{%-?\s*macro\s+(\w+)\s*\(", path.read_text()):
            found[name] = path
    return found


def test_every_override_has_a_check() -> None:
    assert set(_overridden_macros()) == set(CHECKS), "add a check for each override"


def test_overrides_live_only_in_the_overrides_folder() -> None:
    """dbt's own macro names (default__*, get_*) are overridden nowhere else in the project."""
    for path in (PROJECT / "macros").rglob("*.sql"):
        if path.parent == OVERRIDES:
            continue
        names = re.findall(r"{%-?\s*macro\s+(\w+)\s*\(", path.read_text())
        assert not [n for n in names if n in CHECKS or n.startswith("default__get_")], path


def test_the_build_uses_each_override(built: DbtBuild) -> None:
    assert built.returncode == 0, built.output[-5000:]
    macros = _manifest(built)["macros"]
    for name, path in _overridden_macros().items():
        ours = macros[f"macro.loyalty_flights.{name}"]
        assert ours["original_file_path"] == str(path.relative_to(PROJECT))
        CHECKS[name](built)
