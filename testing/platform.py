"""A generated history served as production would serve it, and the pipeline run over it.

The stand-ins serve the tenants' and Duffel's side of the history; the real booking API serves
the platform's side (the history imported into its store, as `make demo` does); the clients'
environment points at both while the context is open. ``run_pipeline`` then runs every
ingestion job for every tenant and the warehouse job, in the order `make pipeline` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from booking.history import import_history
from definitions import defs
from sandbox.runner import start_sandbox
from testing.booking_api import OPERATOR_TOKEN, ApiServer, api_env
from testing.standins import history_config, pointed_at

TENANTS = ("coffeechain", "fintechapp", "telcocorp")
# The platform's records first: members without a member list are looked up from them.
INGEST_JOBS = ("ingest_platform_job", "ingest_activity_job", "ingest_members_job")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@contextmanager
def serving_history(history: Path, folder: Path, *, reference: bool = False) -> Iterator[str]:
    """Stand-ins (``reference``: reference behaviour only) and the booking API serving
    ``history``; yields the API's URL."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "booking.sqlite3"
    import_history(f"sqlite:///{database}", history)
    sandbox = start_sandbox(history_config(history, reference=reference))
    api = None
    try:
        api = ApiServer(api_env(sandbox, database), folder / "api.log")
        with pointed_at(sandbox.client_env(), booking_feeds(api.url)):
            yield api.url
    finally:
        if api is not None:
            api.stop()
        sandbox.stop()


def booking_feeds(url: str) -> dict[str, str]:
    """The environment that points the ingestion at a booking API's feeds."""
    return {"BOOKING_API_URL": url, "BOOKING_OPERATOR_TOKEN": OPERATOR_TOKEN}


def run_pipeline(
    data_dir: Path, instance: dg.DagsterInstance | None = None
) -> dict[tuple[str, str], dict[str, object]]:
    """Every ingestion job for every tenant, then the warehouse job (build and publish), in
    ``instance`` (else a temporary one).
    Returns each ingestion asset's materialization metadata by (asset key, tenant)."""
    landing = {"landing": {"config": {"data_dir": str(data_dir)}}}
    warehouse = {"warehouse": {"config": {"data_dir": str(data_dir)}}}
    outcomes: dict[tuple[str, str], dict[str, object]] = {}
    with contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.instance_for_test())
        for tenant in TENANTS:
            for job in INGEST_JOBS:
                result = defs.resolve_job_def(job).execute_in_process(
                    run_config={**QUIET, "resources": landing},
                    instance=instance,
                    partition_key=tenant,
                )
                assert result.success, (job, tenant)
                for event in result.get_asset_materialization_events():
                    materialization = event.materialization
                    outcomes[(materialization.asset_key.to_user_string(), tenant)] = {
                        k: v.value for k, v in materialization.metadata.items()
                    }
        result = defs.resolve_job_def("warehouse_job").execute_in_process(
            run_config={**QUIET, "resources": warehouse}, instance=instance
        )
        assert result.success
    return outcomes
