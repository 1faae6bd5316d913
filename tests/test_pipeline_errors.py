"""A failed pipeline step is summed up in one line: tenant, call, status, meaning, what to do."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from definitions import defs
from orchestration import pipeline
from settings import get_settings


@pytest.fixture
def quiet_into(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pipeline's run config, landing into a temporary folder."""
    landing = {"landing": {"config": {"data_dir": str(tmp_path)}}}
    monkeypatch.setattr(pipeline, "QUIET", {**pipeline.QUIET, "resources": landing})
    return tmp_path


def test_refused_credentials_are_summed_up_in_one_line(
    sandbox_env, quiet_into, monkeypatch, capsys
) -> None:
    wrong = "test_cc_api_key_wrong_00000"
    monkeypatch.setenv("COFFEECHAIN_API_KEY", wrong)
    get_settings.cache_clear()
    try:
        with dg.instance_for_test() as instance:
            result = pipeline._run_job(instance, defs, "ingest_members_job", "coffeechain")
    finally:
        get_settings.cache_clear()
    printed = capsys.readouterr().out
    print(f"summary: {result.detail}")
    assert not result.ok
    detail = result.detail
    assert "\n" not in detail, detail
    assert "Error occurred while executing" not in detail, detail
    # The call: the job asks the member list and (probing capabilities) the ledger feed first
    # with the same refused key; whichever step failed first is the one summed up.
    assert "GET /api/v1/members" in detail or "GET /api/v1/ledger/transactions" in detail, detail
    for part in (
        "coffeechain",  # tenant
        "401",  # status
        "credentials were refused",  # what it means
        "COFFEECHAIN_API_KEY",  # what to do
    ):
        assert part in detail, f"{part!r} missing from: {detail}"
    assert wrong not in detail and wrong not in printed


def test_unreachable_duffel_is_summed_up_as_duffel(
    sandbox_env, quiet_into, monkeypatch, capsys
) -> None:
    from tests.tenants.test_error_reporting import _closed_port

    monkeypatch.setenv("DUFFEL_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    get_settings.cache_clear()
    try:
        with dg.instance_for_test() as instance:
            result = pipeline._run_job(instance, defs, "ingest_activity_job", "telcocorp")
    finally:
        get_settings.cache_clear()
    print(f"summary: {result.detail}")
    detail = result.detail
    assert not result.ok and "\n" not in detail, detail
    assert "telcocorp Duffel GET /air/orders" in detail, detail
    assert "could not be reached" in detail and "DUFFEL_BASE_URL" in detail, detail
