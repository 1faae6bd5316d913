"""dbt models as Dagster assets, and the publish step that follows a successful build."""

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from ingestion.landing.storage import store_env
from ingestion.landing.zone import LandingZone
from settings import DataLayout, current_settings, environment_overridden
from warehouse.duckdb_shim import release_database
from warehouse.manifest import (
    DBT_PROJECT_DIR,
    dbt_args,
    project_fingerprint,
    require_current_manifest,
)
from warehouse.pool import HOST_TAG, WAREHOUSE_POOL, host_tags
from warehouse.publish import SERVING_SNAPSHOT_KEY, publish_snapshot
from warehouse.registry_seeds import seeds_dir, write_seeds

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


class WarehouseResource(dg.ConfigurableResource):
    """Where the landing zone, the warehouse and the serving snapshot live."""

    data_dir: str = "data"
    # The dbt target the models build with (the `warehouse_engine` setting).
    engine: Literal["duckdb", "spark"] = "duckdb"

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

    def dbt_args(self) -> list[str]:
        """The target and the vars (paths under the data folder) of every dbt invocation."""
        return dbt_args(self.root, self.engine)


# Parsed by the entry points (warehouse/manifest.py), never here: refused if stale.
require_current_manifest()


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
    is paid once: later builds reuse the loaded code and the partial-parse state. dbt's
    structured result events are kept, and turned into Dagster's asset events by dagster-dbt
    itself (``asset_events``), as a ``dbt build`` in an asset would be.
    """

    RESULT_EVENTS = frozenset(
        {"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"}
    )

    def __init__(
        self, warehouse: "WarehouseResource", translator: DagsterDbtTranslator | None = None
    ) -> None:
        from dbt.cli.main import dbtRunner  # dbt is imported only where it runs in-process

        self.runner = dbtRunner(callbacks=[self._keep_result])
        self.translator = translator or LayerTranslator()
        self.landing = warehouse.landing()
        self.dbt_args = warehouse.dbt_args()
        self.state = warehouse.root / "dbt"  # target and logs, outside the source tree
        self.manifest: dict[str, Any] | None = None
        self._results: list[dict[str, Any]] = []

    def _keep_result(self, event: Any) -> None:
        if event.info.name in self.RESULT_EVENTS:
            from dbt_common.events.functions import msg_to_dict

            self._results.append(msg_to_dict(event))

    def build(self, args: list[str]) -> list[Any]:
        """Run `dbt <args>`; returns dbt's node results, or raises naming the failed nodes."""
        self._results = []
        with self.landing.reading(), store_credentials():
            return self._build(args)

    def _build(self, args: list[str]) -> list[Any]:
        try:
            result = self.runner.invoke(
                [
                    *args,
                    *self.dbt_args,
                    "--project-dir",
                    str(DBT_PROJECT_DIR),
                    "--profiles-dir",
                    str(DBT_PROJECT_DIR),
                    "--target-path",
                    str(self.state / "target"),
                    "--log-path",
                    str(self.state / "logs"),
                    # Node starts and results, not every statement: at debug level (dbt's
                    # default for the file) a build writes each model's SQL, ~12,000 lines,
                    # which cost 0.7 s of a 6 s loop build at a million bookings.
                    "--log-level-file",
                    "info",
                    "--quiet",
                ]
            )
        finally:
            release_database()
        if result.exception is not None:
            raise RuntimeError(f"dbt {args[0]} could not run: {result.exception}")
        nodes = list(result.result.results) if result.result is not None else []
        failed = [r.node.unique_id for r in nodes if str(r.status) in ("error", "fail")]
        if not result.success:
            raise RuntimeError(f"dbt {args[0]} failed: {', '.join(failed) or 'see dbt.log'}")
        if self.manifest is None:
            self.manifest = json.loads((self.state / "target" / "manifest.json").read_text())
        return nodes

    def asset_events(self) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """The last build's results as Dagster events: a materialization per model or seed
        built, a check evaluation per data test (dagster-dbt's own translation)."""
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

        for raw in self._results:
            message = DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={})
            for event in message.to_default_asset_events(self.manifest, self.translator):
                if isinstance(event, dg.AssetMaterialization | dg.AssetCheckEvaluation):
                    yield event

    def source_selectors(self, keys: Iterable[dg.AssetKey]) -> list[str]:
        """dbt selectors of the sources that are the given (landing) assets."""
        wanted, found = set(keys), []
        for unique_id, source in (self.manifest or {}).get("sources", {}).items():
            spec = self.translator.get_asset_spec(self.manifest, unique_id, dbt_project)
            if spec.key in wanted:
                found.append(f"source:{source['source_name']}.{source['name']}")
        return found


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


def store_credentials() -> AbstractContextManager[None]:
    """The object store's endpoint and keys where dbt's fsspec filesystem looks for them, for
    the length of one build: the environment (the AWS SDK's own variables), never the vars,
    which dbt writes into its artifacts. Nothing when the landing zone is a local folder."""
    values = store_env(current_settings())
    return environment_overridden(values) if values else nullcontext()


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
    fingerprint = project_fingerprint(generated=seeds)
    args = warehouse.dbt_build_args(fingerprint)
    if "--full-refresh" in args:
        context.log.info("models or seeds changed since the last build: rebuilding in full")
    # Unit tests check the models' logic, not the data: `make test` runs them on every
    # change (tests/dbt); a production build runs the models and their data tests.
    args += ["--exclude-resource-type", "unit_test", *warehouse.dbt_args()]
    with warehouse.landing().reading(), store_credentials():
        yield from dbt.cli(args, context=context).stream()
    if not context.is_subset:
        # Only a build of every model brings the whole warehouse up to this fingerprint.
        warehouse.fingerprint_file.write_text(fingerprint)


MART_KEYS = [key for key in warehouse_models.keys if key.path[0] == "marts"]


@dg.asset(
    key=SERVING_SNAPSHOT_KEY,
    deps=MART_KEYS,
    group_name="serving",
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    automation_condition=WAREHOUSE_AUTOMATION,
    description="The marts the dashboard reads, one read-only DuckDB file per table; a publish "
    "writes only the tables that changed and swaps the manifest (serving.json) naming them.",
)
def serving_snapshot(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tag_host(context)
    published = publish_snapshot(warehouse.warehouse, warehouse.serving_dir)
    context.log.info(
        f"published snapshot {published.version} in {published.seconds:.2f} s, wrote"
        f" {', '.join(published.written) or 'nothing'}: {published.rows}"
    )
    return dg.MaterializeResult(metadata=published.metadata())
