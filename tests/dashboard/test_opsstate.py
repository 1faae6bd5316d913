"""The operators' state file: append-only, latest action wins, kept across reopening, scoped by
tenant; and the work list's filters and pages over it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dashboard.data import WORK_PAGE_SIZE, WorkFilters, WorkItem, work_page
from dashboard.opsstate import OpsState

AT = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def _issue(n: int, tenant: str = "coffeechain", kind: str = "amount_mismatch") -> WorkItem:
    return WorkItem("issue", f"iss{n:03d}", tenant, kind, "differs", f"bkg_{n}", AT)


def test_latest_action_wins_and_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dashboard" / "ops.sqlite"
    state = OpsState(path)
    state.record(
        "issue", "iss001", "coffeechain", "acknowledged", "anna", "  asked the tenant ", AT
    )
    state.record(
        "issue", "iss001", "coffeechain", "resolved", "ben", None, AT + dt.timedelta(hours=1)
    )
    state.record("issue", "iss002", "telcocorp", "acknowledged", "anna", None, AT)
    state.record("quarantine", "iss001", "coffeechain", "resolved", "anna", None, AT)

    again = OpsState(path)  # a restart
    latest = again.latest("issue")
    assert latest["iss001"].state == "resolved" and latest["iss001"].actor == "ben"
    assert latest["iss001"].at == AT + dt.timedelta(hours=1)
    assert [a.action for a in again.history("issue", "iss001")] == ["acknowledged", "resolved"]
    assert again.history("issue", "iss001")[0].note == "asked the tenant"
    assert set(again.latest("issue", ["telcocorp"])) == {"iss002"}  # scoped by tenant
    assert set(again.latest("quarantine")) == {"iss001"}  # kinds kept apart


def test_an_unknown_action_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="action: 'deleted'"):
        OpsState(tmp_path / "ops.sqlite").record("issue", "x", "t", "deleted", "anna")  # type: ignore[arg-type]


def test_work_page_filters_by_kind_and_state_then_pages(tmp_path: Path) -> None:
    items = [_issue(n) for n in range(WORK_PAGE_SIZE + 5)] + [_issue(900, kind="missing_order")]
    state = OpsState(tmp_path / "ops.sqlite")
    state.record("issue", "iss003", "coffeechain", "acknowledged", "anna", None, AT)
    actions = state.latest("issue")

    everything = work_page(items, actions, WorkFilters())
    assert (everything.total, everything.pages, len(everything.items)) == (
        WORK_PAGE_SIZE + 6,
        2,
        WORK_PAGE_SIZE,
    )
    assert everything.categories == ["amount_mismatch", "missing_order"]
    second = work_page(items, actions, WorkFilters.parse(None, "amount_mismatch", "open", "2"))
    assert (second.total, second.page, len(second.items)) == (WORK_PAGE_SIZE + 4, 2, 4)
    acked = work_page(items, actions, WorkFilters.parse(None, None, "acknowledged", None))
    assert [i.item_id for i, _ in acked.items] == ["iss003"]
    beyond = work_page(items, actions, WorkFilters.parse(None, None, None, "99"))
    assert beyond.page == 2  # a page past the end shows the last one
    with pytest.raises(ValueError, match="state: 'done'"):
        WorkFilters.parse(None, None, "done", None)
