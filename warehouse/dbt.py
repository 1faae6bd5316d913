"""dbt models as Dagster assets, and the publish step that follows a successful build."""

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from ingestion.landing.zone import LandingZone
from settings import DataLayout, get_settings
from warehouse.pool import HOST_TAG, WAREHOUSE_POOL, host_tags
from warehouse.publish import publish_snapshot
from warehouse.registry_seeds import seeds_dir, write_seeds

ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = ROOT / "dbt_project"
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


class WarehouseResource(dg.ConfigurableResource):
    """Where the landing zone, the warehouse and the serving snapshot live."""

    data_dir: str = "data"

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root)

    @property
    def warehouse(self) -> Path:
        return self.layout.warehouse

    @property
    def serving_dir(self) -> Path:
        return self.layout.serving

    @property
    def registry_seeds(self) -> Path:
        return seeds_dir(self.root)

    @property
    def fingerprint_file(self) -> Path:
        return self.root / "warehouse.fingerprint"

    def dbt_build_args(self, fingerprint: str) -> list[str]:
        """`dbt build`, in full when the models or seeds differ from the last complete build.

        Incremental models only absorb new rows: a changed model, macro or rate seed must
        rebuild everything it feeds, so the warehouse remembers what it was built from.
        """
        built_from = self.fingerprint_file.read_text() if self.fingerprint_file.exists() else ""
        if self.warehouse.exists() and built_from != fingerprint:
            return ["build", "--full-refresh"]
        return ["build"]

    def landing(self) -> LandingZone:
        """The landing zone dbt reads: a build holds it (``reading``), so no compaction swaps
        files under a build's feet."""
        return LandingZone.under(self.root)

    def dbt_env(self) -> dict[str, str]:
        return {
            "WAREHOUSE_PATH": str(self.warehouse),
            "LANDING_ROOT": str(self.layout.landing),
            "REGISTRY_SEEDS": str(self.registry_seeds),
            "QUARANTINE_ROOT": str(self.layout.quarantine),
            "DO_NOT_TRACK": "1",
        }


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


MANIFEST_FINGERPRINT = dbt_project.manifest_path.with_suffix(".fingerprint")


def _manifest_is_current() -> bool:
    """The manifest was parsed from the project as it is now (a stale one breaks the runs)."""
    return (
        dbt_project.manifest_path.exists()
        and MANIFEST_FINGERPRINT.exists()
        and MANIFEST_FINGERPRINT.read_text() == project_fingerprint()
    )


if os.environ.get("DAGSTER_IS_DEV_CLI") or not _manifest_is_current():
    # `dagster dev` re-parses so model edits show up; elsewhere a missing manifest, or one
    # parsed from other models, tests or seeds, is written anew. dbt parse needs no database.
    # (DbtProject.prepare_if_dev would look for `dbt` on PATH, which an unactivated virtual
    # environment does not provide.) It parses with
    # the paths the runs use, so their builds can reuse this parse (partial parsing).
    subprocess.run(
        [
            DBT_EXECUTABLE,
            "parse",
            "--quiet",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
        ],
        check=True,
        cwd=ROOT,
        env={
            **os.environ,
            **WarehouseResource(data_dir=str(get_settings().data_dir)).dbt_env(),
        },
    )
    MANIFEST_FINGERPRINT.write_text(project_fingerprint())


# Rebuild after any upstream update, like eager(), but without waiting for upstream runs
# still in progress: tenants ingest concurrently and back to back in live mode, so some
# tenant is nearly always landing. Incremental builds take what has landed (each file is
# complete when it appears), and the next build takes the rest.
WAREHOUSE_AUTOMATION = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_in_progress()
)


class InProcessDbt:
    """`dbt build` invoked in this process (dbt's `dbtRunner`), for a loop of builds.

    A dbt subprocess spends ~3 s importing dbt and ~1.5 s loading the project before its
    first query; in a loop of small incremental builds that is most of each build. Here it
    is paid once: later builds reuse the loaded code and the partial-parse state.
    """

    def __init__(self, warehouse: "WarehouseResource") -> None:
        from dbt.cli.main import dbtRunner  # dbt is imported only where it runs in-process

        self.runner = dbtRunner()
        self.landing = warehouse.landing()
        self.state = warehouse.root / "dbt"  # target and logs, outside the source tree
        self.manifest: dict[str, Any] | None = None

    def build(self, args: list[str]) -> list[Any]:
        """Run `dbt <args>`; returns dbt's node results, or raises naming the failed nodes."""
        with self.landing.reading():
            return self._build(args)

    def _build(self, args: list[str]) -> list[Any]:
        try:
            result = self.runner.invoke(
                [
                    *args,
                    "--project-dir",
                    str(DBT_PROJECT_DIR),
                    "--profiles-dir",
                    str(DBT_PROJECT_DIR),
                    "--target-path",
                    str(self.state / "target"),
                    "--log-path",
                    str(self.state / "logs"),
                    "--quiet",
                ]
            )
        finally:
            self._release_warehouse()
        if result.exception is not None:
            raise RuntimeError(f"dbt {args[0]} could not run: {result.exception}")
        nodes = list(result.result.results) if result.result is not None else []
        failed = [r.node.unique_id for r in nodes if str(r.status) in ("error", "fail")]
        if not result.success:
            raise RuntimeError(f"dbt {args[0]} failed: {', '.join(failed) or 'see dbt.log'}")
        if self.manifest is None:
            self.manifest = json.loads((self.state / "target" / "manifest.json").read_text())
        return nodes

    @staticmethod
    def _release_warehouse() -> None:
        # dbt-duckdb keeps the database open at class level between invocations; the file
        # must be free for the publish step (and other processes) once a build is over.
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager as Manager

        with Manager._LOCK:
            if Manager._ENV is not None:
                Manager._ENV.close()
                Manager._ENV = None


def tag_host(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> None:
    """Record this run's host, so a later build can tell whether a run that holds the pool lives.

    Runs started by ``make pipeline`` carry it from the start; runs launched by the daemon or
    the UI get it here, as soon as their first warehouse step runs.
    """
    if context.run.tags.get(HOST_TAG) is None:
        context.instance.add_run_tags(context.run_id, host_tags())


class LayerTranslator(DagsterDbtTranslator):
    """Groups dbt assets by model folder (staging, intermediate, marts) and keeps them eager.

    An ingestion asset writes both an entity's landing and its quarantine, so two dbt sources
    (`loyalty.members`, `quarantine.loyalty__members`, ...) share its asset key.
    """

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "model":
            return dbt_resource_props["fqn"][1]
        return "seeds" if dbt_resource_props["resource_type"] == "seed" else None

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return WAREHOUSE_AUTOMATION


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=LayerTranslator(),
    pool=WAREHOUSE_POOL,
)
def warehouse_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
):
    """Seeds, staging, intermediate and marts, with their data and unit tests (`dbt build`)."""
    tag_host(context)
    # Seeds derived from the registry are rewritten first, so a new tenant file reaches dbt.
    seeds = write_seeds(warehouse.registry_seeds)
    os.environ.update(warehouse.dbt_env())
    fingerprint = project_fingerprint(generated=seeds)
    args = warehouse.dbt_build_args(fingerprint)
    if "--full-refresh" in args:
        context.log.info("models or seeds changed since the last build: rebuilding in full")
    # Unit tests check the models' logic, not the data: `make test` runs them on every
    # change (tests/dbt); a production build runs the models and their data tests.
    args += ["--exclude-resource-type", "unit_test"]
    with warehouse.landing().reading():
        yield from dbt.cli(args, context=context).stream()
    if not context.is_subset:
        # Only a build of every model brings the whole warehouse up to this fingerprint.
        warehouse.fingerprint_file.write_text(fingerprint)


SERVING_SNAPSHOT_KEY = dg.AssetKey(["serving", "snapshot"])
MART_KEYS = [key for key in warehouse_models.keys if key.path[0] == "marts"]


@dg.asset(
    key=SERVING_SNAPSHOT_KEY,
    deps=MART_KEYS,
    group_name="serving",
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    automation_condition=WAREHOUSE_AUTOMATION,
    description="One read-only DuckDB file with the marts the dashboard reads, published by "
    "building a new file and renaming it over the last one.",
)
def serving_snapshot(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tag_host(context)
    published = publish_snapshot(warehouse.warehouse, warehouse.serving_dir)
    context.log.info(
        f"published snapshot {published.version} in {published.seconds:.2f} s: {published.rows}"
    )
    return dg.MaterializeResult(
        metadata={
            "version": str(published.version),
            "seconds": round(published.seconds, 3),
            **{f"rows_{name}": count for name, count in published.rows.items()},
        }
    )
