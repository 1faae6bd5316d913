"""A pull cut short (killed, or the upstream failing) and then re-run lands exactly what a clean
run lands: the cursor only ever moves over creation-time ranges that have completely landed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from clients.errors import UpstreamError
from ingestion import sync
from ingestion.landing import batches as landing_batches
from ingestion.landing.zone import LandingZone
from ingestion.resources import TenantApisResource
from ingestion.sync import RequestCounter, sync_orders
from sandbox.runner import Sandbox
from tests.ingestion.standins import lifted_registry, serve_history

TENANT = "coffeechain"
BATCH = 400  # two Duffel pages: each batch mixes pages of several creation-time windows


class Killed(BaseException):
    """The process dies here: nothing after this point runs, no handler sees it."""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lifted_registry(tmp_path_factory.mktemp("tenants"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from serve_history(tmp_path_factory.mktemp("history"), 4000, 7, 0.004)


def pull(data_dir: Path, registry: Path) -> sync.SyncStats:
    requests = RequestCounter()
    with TenantApisResource(tenants_dir=str(registry)).duffel(TENANT, requests) as client:
        return sync_orders(
            client,
            LandingZone.under(data_dir),
            TENANT,
            batch_size=BATCH,
            requests=requests,
        )


def landed_set(data_dir: Path) -> dict[str, set[tuple]]:
    """Every landed (and quarantined) record, as sets; duplicated order versions fail here."""
    zone = LandingZone.under(data_dir)
    orders = zone.scan("duffel", "orders", TENANT).collect()
    keys = orders.select("order_id", "version_at")
    assert keys.is_duplicated().sum() == 0, "an order version landed twice"
    segments = zone.scan("duffel", "order_segments", TENANT).collect()
    folder = zone.quarantine_folder("duffel", "orders", TENANT)
    files = sorted(folder.glob("*.parquet"))
    bad = pl.read_parquet(files)["record_key"].to_list() if files else []
    return {
        "orders": set(keys.iter_rows()),
        "segments": set(
            segments.select("order_id", "version_at", "slice_index", "segment_index").iter_rows()
        ),
        "quarantined": set(bad),
    }


@pytest.fixture(scope="module")
def clean(
    sandbox: Sandbox, registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[tuple]]:
    data_dir = tmp_path_factory.mktemp("clean")
    stats = pull(data_dir, registry)
    assert stats.batches >= 4, "the history must span several batches for this test to mean much"
    return landed_set(data_dir)


def _count_batches(monkeypatch: pytest.MonkeyPatch, after_batch: int, on_boundary) -> None:
    """Call ``on_boundary`` once ``after_batch`` order batches have completely landed."""
    real_land = landing_batches.land
    landed = {"batches": 0}

    def land(zone, source, entity, tenant_id, frame, batch, **kwargs):
        path = real_land(zone, source, entity, tenant_id, frame, batch, **kwargs)
        if entity == "orders":
            landed["batches"] += 1
            if landed["batches"] == after_batch:
                on_boundary()
        return path

    monkeypatch.setattr(landing_batches, "land", land)


def _lost(clean: dict[str, set[tuple]], after: dict[str, set[tuple]]) -> dict[str, int]:
    return {name: len(clean[name] - after[name]) for name in clean} | {
        f"extra_{name}": len(after[name] - clean[name]) for name in clean
    }


@pytest.mark.parametrize("after_batch", [1, 2, 3])
def test_a_kill_at_a_batch_boundary_then_a_rerun_lands_exactly_a_clean_runs_set(
    sandbox: Sandbox,
    registry: Path,
    clean: dict[str, set[tuple]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    after_batch: int,
) -> None:
    def die() -> None:
        raise Killed

    with monkeypatch.context() as patch:
        _count_batches(patch, after_batch, die)
        with pytest.raises(Killed):
            pull(tmp_path, registry)
    pull(tmp_path, registry)
    after = landed_set(tmp_path)
    assert _lost(clean, after) == dict.fromkeys(_lost(clean, clean), 0)


@pytest.mark.parametrize("after_batch", [1, 2])
def test_a_kill_between_a_batchs_segments_and_its_orders_then_a_rerun_lands_a_clean_runs_set(
    sandbox: Sandbox,
    registry: Path,
    clean: dict[str, set[tuple]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    after_batch: int,
) -> None:
    """The orders file is the batch's commit: segments landed without it are re-landed with
    their orders by the next run, and no order is lost or landed twice."""
    real_land = landing_batches.land
    seen = {"segments": 0}

    def land(zone, source, entity, tenant_id, frame, batch, **kwargs):
        path = real_land(zone, source, entity, tenant_id, frame, batch, **kwargs)
        if entity == "order_segments":
            seen["segments"] += 1
            if seen["segments"] == after_batch + 1:
                raise Killed
        return path

    with monkeypatch.context() as patch:
        patch.setattr(landing_batches, "land", land)
        with pytest.raises(Killed):
            pull(tmp_path, registry)
    pull(tmp_path, registry)
    after = landed_set(tmp_path)
    assert _lost(clean, after) == dict.fromkeys(_lost(clean, clean), 0)


@pytest.mark.parametrize("served", [2, 4, 6, 8])
def test_an_upstream_outage_at_a_batch_boundary_then_a_rerun_lands_exactly_a_clean_runs_set(
    sandbox: Sandbox,
    registry: Path,
    clean: dict[str, set[tuple]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: int,
) -> None:
    """Duffel answers ``served`` order pages (a batch is two), then fails every request."""
    count = {"pages": 0}
    lock = threading.Lock()
    real_pages = sync.DuffelClient.iter_order_pages_raw

    def pages(self, *args, **kwargs):
        for page in real_pages(self, *args, **kwargs):
            with lock:
                count["pages"] += 1
                if count["pages"] > served:
                    raise UpstreamError(
                        "503 from Duffel", tenant=TENANT, endpoint="GET /air/orders"
                    )
            yield page

    with monkeypatch.context() as patch:
        patch.setattr(sync.DuffelClient, "iter_order_pages_raw", pages)
        with pytest.raises(UpstreamError):
            pull(tmp_path, registry)
    pull(tmp_path, registry)
    after = landed_set(tmp_path)
    assert _lost(clean, after) == dict.fromkeys(_lost(clean, clean), 0)
