"""Pure pieces: password hashing, the users file, scope rules and money/time formatting."""

from __future__ import annotations

import datetime as dt
import json
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from dashboard import auth
from dashboard.components import format as fmt
from dashboard.data import Period, tier_rank
from dashboard.scope import Scope, ScopeError


def test_passwords_are_salted_argon2id_hashes() -> None:
    first, second = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert first != second and first.startswith("$argon2id$")
    assert auth.verify_password("correct horse", first)
    assert not auth.verify_password("wrong horse", first)


def test_demo_users_file_holds_hashes_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    created = auth.create_demo_users(path, ["telcocorp", "coffeechain"])
    assert [u.username for u, _ in created] == [
        "operator",
        "staff-coffeechain",
        "staff-telcocorp",
    ]
    text = path.read_text()
    assert all(password not in text for _, password in created)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = auth.UserStore(path)
    user, password = created[2]
    assert store.authenticate(user.username, password) == user
    assert store.authenticate(user.username, password + "x") is None
    assert store.authenticate("nobody", password) is None
    assert user.scope() == Scope("staff-telcocorp", "staff", "telcocorp")


def test_users_file_rejects_staff_without_tenant(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    entry = {"username": "x", "role": "staff", "password_hash": auth.hash_password("p")}
    path.write_text(json.dumps({"users": [entry]}))
    with pytest.raises(ValueError, match="no tenant"):
        auth.UserStore(path).users()


def test_scope_rules() -> None:
    staff = Scope("s", "staff", "telcocorp")
    assert staff.check("telcocorp") == "telcocorp"
    with pytest.raises(ScopeError):
        staff.check("coffeechain")
    with pytest.raises(ScopeError):
        staff.require_operator()
    assert Scope("o", "operator").allows("anything")


def test_money_is_formatted_exactly_with_its_currency() -> None:
    assert fmt.usd(Decimal("1234567.8")) == "$1,234,567.80"
    assert fmt.usd(Decimal("-3")) == "-$3.00"
    assert fmt.units(Decimal("19205.00"), "stars", 0) == "19,205 stars"
    assert fmt.units(Decimal("335.92"), "coins", 2) == "335.92 coins"
    assert fmt.units(Decimal("0.125"), "stars", 0) == "0.125 stars"  # never rounds data away
    assert fmt.money(Decimal("99.5"), "EUR") == "99.50 EUR"
    assert fmt.percent(1, 3) == "33.3 %"
    assert fmt.rate(Decimal("0.01000000"), "stars") == "$0.01 per star"


def test_times_are_shown_in_utc() -> None:
    moment = dt.datetime(2026, 1, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert fmt.utc(moment) == "2025-12-31 23:30 UTC"
    assert fmt.age(moment, moment + dt.timedelta(seconds=42)) == "42 s ago"


def test_durations_use_the_unit_that_matters() -> None:
    assert fmt.duration(None) == fmt.DASH
    assert fmt.duration(45) == "45 s"
    assert fmt.duration(60 * 12 + 59) == "12 min"
    assert fmt.duration(3600 * 3 + 300) == "3 h 05 min"
    assert fmt.duration(3600 * 47 + 60 * 59) == "47 h 59 min"
    assert fmt.duration(86_400 * 2 + 3600 * 4 + 59) == "2 d 4 h"


def test_periods_from_untrusted_controls_and_their_partial_buckets() -> None:
    span = (dt.date(2026, 1, 10), dt.date(2026, 3, 20))
    assert Period.parse(None, None, "<script>", span) == Period(*span, "day")
    assert Period.parse("2026-03-01", "2026-02-01", "month", span) == Period(
        dt.date(2026, 2, 1), dt.date(2026, 3, 1), "month"
    )
    assert Period.parse("not a date", None, "week", None) is None
    months = Period(*span, "month")
    assert months.buckets() == [dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)]
    today = dt.date(2026, 6, 1)
    # January and March are cut by the range; February is whole.
    assert [months.partial(b, today) for b in months.buckets()] == [True, False, True]
    weeks = Period(dt.date(2026, 6, 1), dt.date(2026, 6, 14), "week")  # Monday to Sunday
    assert weeks.buckets() == [dt.date(2026, 6, 1), dt.date(2026, 6, 8)]
    # The week that holds today has not ended: partial, though the range covers it whole.
    assert [weeks.partial(b, dt.date(2026, 6, 10)) for b in weeks.buckets()] == [False, True]
    assert weeks.previous() == Period(dt.date(2026, 5, 18), dt.date(2026, 5, 31), "week")


def test_tiers_in_rank_order_and_rates_said_in_full() -> None:
    assert sorted(["gold", "none", "bronze", "platinum", "silver"], key=tier_rank) == [
        "bronze",
        "silver",
        "gold",
        "platinum",
        "none",
    ]
    assert fmt.rate(Decimal("0.01250000"), "stars") == "$0.0125 per star"
    assert fmt.rate_value(Decimal("1.00000000")) == "$1"
