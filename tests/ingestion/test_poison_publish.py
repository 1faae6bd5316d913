"""A poison member balance in one tenant's list stops neither that tenant's other data nor
any tenant's publish: ingestion -> dbt build -> serving snapshot, for real."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from definitions import defs
from ingestion import resources
from ingestion.landing.schemas import ENTITIES
from ingestion.landing.zone import LandingZone, land
from sandbox.runner import Sandbox
from tests.ingestion.standins import MemberBalances, serve_history
from warehouse.publish import connect

TENANTS = ("coffeechain", "fintechapp", "telcocorp")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from serve_history(tmp_path_factory.mktemp("history"), 600, 5, 0.0)


def test_a_member_balance_beyond_decimal_18_2_does_not_block_any_publish(
    stand_ins: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = pl.read_parquet(stand_ins.config.history_dir / "members.parquet")
    poisoned = members.filter(pl.col("tenant_id") == "coffeechain")["member_id"][0]
    real_build = resources.build_loyalty_client

    def build(tenant, **kwargs):
        if tenant.id == "coffeechain":  # the tenant's member list carries one poison balance
            kwargs["transport"] = MemberBalances({poisoned: "1e17"})
        return real_build(tenant, **kwargs)

    monkeypatch.setattr(resources, "build_loyalty_client", build)
    data_dir = tmp_path / "data"
    config = {"config": {"data_dir": str(data_dir)}}
    outcomes = {}
    with dg.instance_for_test() as instance:
        for tenant in TENANTS:
            for job in ("ingest_activity_job", "ingest_members_job"):
                result = defs.resolve_job_def(job).execute_in_process(
                    run_config={**QUIET, "resources": {"landing": config}},
                    instance=instance,
                    partition_key=tenant,
                    raise_on_error=False,
                )
                outcomes[(job, tenant)] = result.success
        warehouse = defs.resolve_job_def("warehouse_job").execute_in_process(
            run_config={**QUIET, "resources": {"warehouse": config}},
            instance=instance,
            raise_on_error=False,
        )
    failed = [step for step, ok in outcomes.items() if not ok]
    assert failed == []
    assert warehouse.success, "the warehouse build or the publish failed"
    with connect(data_dir / "serving") as con:
        per_tenant = dict(
            con.execute("select tenant_id, count(*) from members group by all").fetchall()
        )
        poisoned_rows = con.execute(
            "select count(*) from members where member_id = ?", [poisoned]
        ).fetchone()[0]
    expected = members.group_by("tenant_id").len()
    for tenant, count in expected.iter_rows():
        # every member of every tenant is published, but the one whose balance cannot land
        assert per_tenant[tenant] >= count - (tenant == "coffeechain"), tenant
    assert poisoned_rows == 0


def test_a_null_balance_landed_before_balances_were_checked_does_not_block_any_publish(
    stand_ins: Sandbox, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    config = {"config": {"data_dir": str(data_dir)}}
    zone = LandingZone.under(data_dir)
    with dg.instance_for_test() as instance:
        for tenant in TENANTS:
            for job in ("ingest_activity_job", "ingest_members_job"):
                result = defs.resolve_job_def(job).execute_in_process(
                    run_config={**QUIET, "resources": {"landing": config}},
                    instance=instance,
                    partition_key=tenant,
                )
                assert result.success, (job, tenant)
        # A later snapshot of one member, as an earlier ingestion landed an out-of-range
        # balance: NULL. Landed files are immutable, so the warehouse has to live with it.
        landed = zone.scan("loyalty", "members", "coffeechain").collect()
        member = landed.row(0, named=True)
        later = member["snapshot_at"] + dt.timedelta(hours=1)
        land(
            zone,
            "loyalty",
            "members",
            "coffeechain",
            pl.DataFrame(
                [{**member, "balance": None, "snapshot_at": later, "_loaded_at": later}],
                schema=ENTITIES[("loyalty", "members")],
            ).with_columns(pl.lit("members-legacy").alias("_batch_id")),
            "members-legacy",
        )
        warehouse = defs.resolve_job_def("warehouse_job").execute_in_process(
            run_config={**QUIET, "resources": {"warehouse": config}},
            instance=instance,
            raise_on_error=False,
        )
    assert warehouse.success, "the warehouse build or the publish failed"
    with connect(data_dir / "serving") as con:
        tenants = {t for (t,) in con.execute("select distinct tenant_id from members").fetchall()}
        balance = con.execute(
            "select balance from members where member_id = ?", [member["member_id"]]
        ).fetchone()[0]
    assert tenants == set(TENANTS)
    assert balance == member["balance"]  # the member's last good snapshot, not NULL
