"""The analytics side's settings: where its data lives, where the services it talks to are, and
how its schedules run. One object, read from the environment (and ``.env``) by pydantic-settings;
no other module of the analytics side reads the environment (the booking API has its own
settings, ``booking.config``; the tenants' secrets and URL overrides, whose variable names the
tenant YAMLs choose, are read by ``tenants.settings``).

Each field is set by the upper-case variable of its name (``DATA_DIR``, ``INGEST_LIVE``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenants.registry import REGISTRY_DIR

# The local stand-ins' ports (``python -m sandbox serve``), the defaults of the tenant YAMLs'
# ``base_url`` and of ``DUFFEL_BASE_URL``. Tenants' URLs are in their YAMLs; Duffel's is here.
STANDIN_PORTS = {"coffeechain": 8001, "telcocorp": 8002, "fintechapp": 8003, "duffel": 8004}
# ... as words (``8001-8004``); they are consecutive (``--port-offset`` shifts them together).
STANDIN_PORT_RANGE = f"{min(STANDIN_PORTS.values())}-{max(STANDIN_PORTS.values())}"
LOCALHOST = "127.0.0.1"

# The serving snapshot: the file the dashboard reads and the small file it polls for a new one.
SERVING_FILE = "serving.duckdb"
SERVING_VERSION_FILE = "serving.json"
# Since the per-table publish: the manifest (SERVING_VERSION_FILE) names one file per table in
# this folder beside it; SERVING_FILE is the single-file snapshot of earlier releases.
SERVING_TABLES_DIR = "tables"


@dataclass(frozen=True)
class DataLayout:
    """Where every piece of the analytics side's state lives under the data folder."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def serving(self) -> Path:
        return self.root / "serving"

    @property
    def serving_file(self) -> Path:
        return self.serving / SERVING_FILE

    @property
    def serving_version_file(self) -> Path:
        return self.serving / SERVING_VERSION_FILE

    @property
    def spark(self) -> Path:
        """Spark's tables and its Hive metastore, when the warehouse runs on Spark."""
        return self.root / "spark"

    @property
    def serving_tables(self) -> Path:
        return self.serving / SERVING_TABLES_DIR

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def booking_store(self) -> Path:
        return self.root / "booking" / "booking.sqlite3"

    @property
    def booking_store_url(self) -> str:
        return f"sqlite:///{self.booking_store}"

    @classmethod
    def of_landing(cls, landing_root: Path) -> DataLayout:
        """The layout a landing folder belongs to (its quarantine is beside it)."""
        return cls(landing_root.parent)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Path("data")
    # The warehouse's engine, the dbt target it builds with: one DuckDB file, or Spark
    # (`uv sync --group spark`, Java 17); `spark_master` is the driver's master URL: local
    # mode by default, spark://host:7077 (or yarn, k8s://...) for a cluster.
    warehouse_engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[2]"
    tenants_dir: Path = REGISTRY_DIR
    duffel_base_url: str = f"http://{LOCALHOST}:{STANDIN_PORTS['duffel']}"
    # Client-side rate limits shared by every process naming this folder (the booking API's
    # workers); unset: each process keeps its own.
    rate_limit_state_dir: Path | None = None

    # Dagster: live mode (the demo) and the schedules and sensors outside it.
    ingest_live: bool = False
    ingest_activity_cron: str = "*/15 * * * *"
    ingest_members_cron: str = "0 * * * *"
    ingest_platform_cron: str = "*/5 * * * *"
    ingest_reference_cron: str = "30 2 * * *"
    # Live mode: between sweeps a cycle lists only new Duffel orders; a sweep re-lists the
    # window (payments, cancellations) and builds every model.
    live_order_sweep_seconds: float = 300.0
    # Live mode: the models rebuilt from the whole history (dbt tag `whole_history`:
    # reconciliation) are built at most this often between sweeps.
    live_whole_history_seconds: float = 60.0
    # Landing compaction: often in live mode (a batch every few seconds), hourly otherwise.
    compact_landing_cron: str | None = None
    warehouse_automation_interval_seconds: int = 10
    warehouse_pool_sensor_interval_seconds: int = 15

    # The landing zone: a folder, or ``s3://bucket/prefix`` on any S3-compatible store (unset:
    # ``<data_dir>/landing``). Quarantine is beside it (``<its parent>/quarantine``) unless set.
    # The store's endpoint (unset: AWS), region and keys (unset: the AWS default chain).
    landing_uri: str | None = None
    quarantine_uri: str | None = None
    landing_s3_endpoint_url: str | None = None
    landing_s3_region: str | None = None
    landing_s3_access_key_id: str | None = None
    landing_s3_secret_access_key: SecretStr | None = None

    # The dashboard.
    dashboard_users_file: Path | None = None
    dashboard_poll_ms: int | None = None
    dashboard_https: bool = False
    dashboard_proxies: int = 0
    dashboard_threads: int = 16
    dashboard_secret_key: SecretStr | None = None

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def compaction_cron(self) -> str:
        if self.compact_landing_cron:
            return self.compact_landing_cron
        return "*/10 * * * *" if self.ingest_live else "15 * * * *"


def current_settings() -> Settings:
    """The settings as the environment holds them now (read anew on every call)."""
    return Settings()


@cache
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()


def child_environment(
    *overrides: Mapping[str, str], without: tuple[str, ...] = ()
) -> dict[str, str]:
    """The environment for a child process: this process's, less the variables whose names
    start with one of ``without``, plus ``overrides`` (later ones win)."""
    env = {k: v for k, v in os.environ.items() if not without or not k.startswith(without)}
    for override in overrides:
        env.update(override)
    return env


@contextmanager
def environment_overridden(*overrides: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with ``overrides`` added and the settings read anew, both
    restored on exit: how a test or a benchmark that runs the pipeline in this process points
    every settings object (these, the tenants', the booking feeds') at its own stand-ins."""
    saved = dict(os.environ)
    for override in overrides:
        os.environ.update(override)
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
