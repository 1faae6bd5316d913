"""Our additions to the loyalty stand-ins: ledger feed, member list, refunds, partner session, limits."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import polars as pl
import pytest

from sandbox.config import SERVICES, Limit, SandboxConfig
from sandbox.loyalty import LoyaltyStore, create_apps
from sandbox.schema import LEDGER, MEMBERS
from sandbox.servers import serve_in_background

SECRET = "extension-test-signing-key-32-bytes-long"
CONFIG = SandboxConfig(
    ports=dict.fromkeys(SERVICES, 0),
    limits={name: Limit(100_000) for name in SERVICES},
    timeout_stall_seconds=0.3,
    fintechapp_jwt_secret=SECRET,
    log_requests=False,
)
CC_KEY = {"X-CC-API-Key": "test_cc_api_key_12345"}
TC_CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "telcocorp_client_id",
    "client_secret": "telcocorp_client_secret",
}
PARTNER = {
    "user_id": CONFIG.fintechapp_partner_id,
    "device_id": "etl-1",
    "partner_secret": CONFIG.fintechapp_partner_secret,
}
FEED = {
    "coffeechain": "/api/v1/ledger/transactions",
    "telcocorp": "/api/v2/ledger/transactions",
    "fintechapp": "/api/v1/ledger/transactions",
}
MEMBER_LIST = {
    "coffeechain": "/api/v1/members",
    "telcocorp": "/api/v2/customers",
    "fintechapp": "/api/v1/users",
}
RECORD_KEYS = [
    "transaction_id",
    "member_id",
    "type",
    "amount",
    "currency",
    "status",
    "reference_id",
    "related_transaction_id",
    "approval_id",
    "description",
    "created_at",
    "updated_at",
]
WIRE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
RAW_OVERRIDE = '{"transaction_id":"bad_000000000001","member_id":null,"amount":"oops"}'

# --- a small synthetic history --------------------------------------------------------------


def _member_ids(tenant: str) -> list[str]:
    return {
        "coffeechain": [f"CC{n:07d}" for n in range(100, 112)],
        "telcocorp": [f"TC-A{n:05d}" for n in range(100, 105)],
        "fintechapp": [f"FA_{n:08d}" for n in range(100, 105)],
    }[tenant]


def _members() -> pl.DataFrame:
    rows = [
        {
            "tenant_id": tenant,
            "member_id": member_id,
            "given_name": "Gen",
            "family_name": f"Member {i}",
            "email": f"gen{i}@example.com",
            "tier": "silver",
            "status": "active",
            "balance": Decimal("90000.00") if tenant != "fintechapp" else Decimal("900.10"),
            "total_cashback": Decimal("0.00"),
            "joined_at": START - timedelta(days=400),
        }
        for tenant in ("coffeechain", "telcocorp", "fintechapp")
        for i, member_id in enumerate(_member_ids(tenant))
    ]
    return pl.DataFrame(rows, schema=MEMBERS)


def _ledger_rows(tenant: str, count: int) -> list[dict]:
    prefix = {"coffeechain": "txn_", "telcocorp": "tctxn_", "fintechapp": "fatxn_"}[tenant]
    refund_prefix = {"coffeechain": "ref_", "telcocorp": "tcref_", "fintechapp": "faref_"}[tenant]
    members = _member_ids(tenant)
    rows = []
    for i in range(count):
        # Pairs of records share a timestamp, so ties are ordered by position.
        at = START + timedelta(seconds=i // 2, microseconds=7 * (i // 2))
        amount = Decimal(-(100 + i)) if tenant != "fintechapp" else Decimal(f"-{i}.{i % 100:02d}")
        kind, related, txn = "deduction", None, f"{prefix}{i:012x}"
        if i % 10 == 9:  # every tenth record refunds the one before it
            kind, related, txn = "refund", rows[-1]["transaction_id"], f"{refund_prefix}{i:012x}"
            amount = -rows[-1]["amount"]
        rows.append(
            {
                "tenant_id": tenant,
                "transaction_id": txn,
                "member_id": members[(i if kind == "deduction" else i - 1) % len(members)],
                "type": kind,
                "amount": amount,
                "status": "posted",
                "reference_id": f"bkg_{i:012x}",
                "related_transaction_id": related,
                "approval_id": None,
                "description": f'Flight "{i}" LHR-JFK',
                "created_at": at,
                "updated_at": at,
                "raw_override": None,
            }
        )
    rows.insert(101, dict(rows[100]))  # a duplicate delivery, right after the original
    rows[500] = {**rows[500], "transaction_id": "bad_000000000001", "raw_override": RAW_OVERRIDE}
    return rows


def _ledger() -> pl.DataFrame:
    rows = (
        _ledger_rows("coffeechain", 2_400)
        + _ledger_rows("telcocorp", 900)
        + _ledger_rows("fintechapp", 900)
    )
    # Shuffled tenants, as a generator might concatenate them; the store keeps each in order.
    return pl.DataFrame(rows, schema=LEDGER).sort("tenant_id", "updated_at", maintain_order=True)


HISTORY = _ledger()


def _history(tenant: str) -> pl.DataFrame:
    return HISTORY.filter(pl.col("tenant_id") == tenant)


# --- servers and clients --------------------------------------------------------------------


@pytest.fixture(scope="module")
def store() -> LoyaltyStore:
    return LoyaltyStore(_members(), HISTORY, CONFIG)


@pytest.fixture(scope="module")
def urls(store: LoyaltyStore) -> Iterator[dict[str, str]]:
    servers = serve_in_background(create_apps(store, CONFIG))
    yield servers.urls
    servers.stop()


@pytest.fixture(autouse=True)
def from_history(store: LoyaltyStore) -> None:
    store.reset()


def _session(client: httpx.Client, payload: dict) -> str:
    response = client.post("/api/v1/sessions/validate", json=payload)
    assert response.status_code == 200, response.text
    return response.json()["jwt_token"]


@pytest.fixture
def clients(urls: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    """Clients for each tenant with the auth its feed needs (FintechApp: the partner's)."""
    token = httpx.post(f"{urls['telcocorp']}/oauth/token", json=TC_CREDENTIALS).json()
    with httpx.Client(base_url=urls["fintechapp"]) as anonymous:
        partner = _session(anonymous, PARTNER)
    made = {
        "coffeechain": httpx.Client(base_url=urls["coffeechain"], headers=CC_KEY),
        "telcocorp": httpx.Client(
            base_url=urls["telcocorp"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
        ),
        "fintechapp": httpx.Client(
            base_url=urls["fintechapp"], headers={"Authorization": f"Bearer {partner}"}
        ),
    }
    yield made
    for client in made.values():
        client.close()


@contextmanager
def member_client(urls: dict[str, str], user_id: str) -> Iterator[httpx.Client]:
    """A FintechApp client holding a member's own session."""
    with httpx.Client(base_url=urls["fintechapp"]) as client:
        token = _session(client, {"user_id": user_id, "device_id": "phone"})
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def decimal_json(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def read_all(client: httpx.Client, path: str, **params: object) -> tuple[list[dict], list[str]]:
    """Every record of a listing, and the raw text of each page."""
    records, pages = [], []
    query = {key: value for key, value in params.items() if value is not None}
    while True:
        response = client.get(path, params=query)
        page = decimal_json(response)
        assert page["has_more"] is (page["next_cursor"] is not None)
        records.extend(page["data"])
        pages.append(response.text)
        if not page["has_more"]:
            return records, pages
        query["cursor"] = page["next_cursor"]


def _wire(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- ledger feed ----------------------------------------------------------------------------


def test_feed_pages_through_the_history_in_order(clients: dict[str, httpx.Client]) -> None:
    records, pages = read_all(clients["coffeechain"], FEED["coffeechain"], limit=1_000)
    expected = _history("coffeechain")
    assert len(pages) == 3
    assert [r["transaction_id"] for r in records] == expected["transaction_id"].to_list()
    duplicated = expected["transaction_id"][100]
    copies = [r for r in records if r["transaction_id"] == duplicated]
    assert len(copies) == 2 and copies[0] == copies[1]
    assert any(RAW_OVERRIDE in text for text in pages)  # served verbatim


def test_feed_records_have_the_documented_shape(clients: dict[str, httpx.Client]) -> None:
    page = decimal_json(clients["coffeechain"].get(FEED["coffeechain"], params={"limit": 20}))
    first, row = page["data"][0], _history("coffeechain").row(0, named=True)
    assert list(first) == RECORD_KEYS
    assert first == {
        "transaction_id": row["transaction_id"],
        "member_id": row["member_id"],
        "type": "deduction",
        "amount": int(row["amount"]),
        "currency": "stars",
        "status": "posted",
        "reference_id": row["reference_id"],
        "related_transaction_id": None,
        "approval_id": None,
        "description": row["description"],
        "created_at": _wire(row["created_at"]),
        "updated_at": _wire(row["updated_at"]),
    }
    assert WIRE_TIME.fullmatch(first["created_at"])
    refund = next(r for r in page["data"] if r["type"] == "refund")
    assert refund["amount"] > 0 and refund["related_transaction_id"].startswith("txn_")


@pytest.mark.parametrize(("tenant", "currency"), [("telcocorp", "points"), ("fintechapp", "coins")])
def test_feed_amounts_are_exact(
    clients: dict[str, httpx.Client], tenant: str, currency: str
) -> None:
    records, pages = read_all(clients[tenant], FEED[tenant], limit=400)
    money = [r for r in records if "currency" in r]
    expected = _history(tenant).filter(pl.col("raw_override").is_null())
    assert [r["amount"] for r in money] == expected["amount"].to_list()
    assert {r["currency"] for r in money} == {currency}
    if tenant == "fintechapp":
        assert '"amount":-412.12,' in "".join(pages)  # two decimals as a JSON number
    else:
        assert all(isinstance(r["amount"], int) for r in money)


def test_updated_since_is_inclusive(clients: dict[str, httpx.Client]) -> None:
    history = _history("coffeechain")
    since = history["updated_at"][1_001]  # shared by records 1,000 and 1,001 (a tie)
    records, _ = read_all(
        clients["coffeechain"], FEED["coffeechain"], limit=250, updated_since=since.isoformat()
    )
    expected = history.filter(pl.col("updated_at") >= since)["transaction_id"].to_list()
    assert [r["transaction_id"] for r in records] == expected
    assert records[0]["updated_at"] == _wire(since)
    later, _ = read_all(
        clients["coffeechain"],
        FEED["coffeechain"],
        updated_since=(since + timedelta(microseconds=1)).isoformat(),
    )
    assert len(later) == len(expected) - (history["updated_at"] == since).sum()


def test_an_invalid_cursor_is_refused(clients: dict[str, httpx.Client]) -> None:
    listing = clients["coffeechain"].get(MEMBER_LIST["coffeechain"], params={"limit": 1})
    for cursor in ("not-a-cursor", listing.json()["next_cursor"]):
        response = clients["coffeechain"].get(FEED["coffeechain"], params={"cursor": cursor})
        assert response.status_code == 400
        assert response.json()["detail"]["error"] == "invalid_cursor"


def _tail(client: httpx.Client, tenant: str) -> list[dict]:
    """The records after the generated history."""
    last = _history(tenant)["updated_at"].max()
    records, _ = read_all(client, FEED[tenant], updated_since=last.isoformat())
    return records[(_history(tenant)["updated_at"] == last).sum() :]


def test_api_activity_appears_at_the_end_of_the_feed(
    clients: dict[str, httpx.Client], urls: dict[str, str]
) -> None:
    cc = clients["coffeechain"]
    deducted = cc.post(
        "/api/v1/members/CC0000105/deduct",
        json={"amount": 60_001, "reference_id": "bkg_live00000001", "description": "Live booking"},
    ).json()
    approval = cc.post(
        "/api/v1/approvals/check",
        json={"member_id": "CC0000105", "amount": 60_001, "booking_reference": "bkg_live00000001"},
    ).json()
    tail = _tail(cc, "coffeechain")
    assert [r["type"] for r in tail] == ["deduction", "approval_request"]
    deduction, request = tail
    assert deduction["transaction_id"] == deducted["transaction_id"]
    assert deduction["amount"] == -60_001
    assert deduction["reference_id"] == "bkg_live00000001"
    assert deduction["status"] == "posted"
    assert request["approval_id"] == request["transaction_id"] == approval["approval_id"]
    assert request["amount"] == 0 and request["status"] == "requested"
    assert WIRE_TIME.fullmatch(deduction["updated_at"])
    assert deduction["updated_at"] > _wire(_history("coffeechain")["updated_at"].max())

    with member_client(urls, "FA_12345678") as sarah:
        spent = sarah.post(
            "/api/v1/users/FA_12345678/coins/deduct",
            json={"amount": 200, "reference_id": "bkg_live00000002", "description": "Live"},
        ).json()
    debit, cashback = _tail(clients["fintechapp"], "fintechapp")
    assert debit["transaction_id"] == spent["transaction_id"]
    assert debit["amount"] == Decimal("-200.00")
    assert cashback["type"] == "cashback"
    assert cashback["transaction_id"].startswith("facb_")
    assert cashback["amount"] == Decimal("4.00")
    assert cashback["related_transaction_id"] == spent["transaction_id"]


# --- member list ----------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["coffeechain", "telcocorp", "fintechapp"])
def test_member_list_pages_without_personal_data(
    clients: dict[str, httpx.Client], tenant: str
) -> None:
    members, pages = read_all(clients[tenant], MEMBER_LIST[tenant], limit=4)
    assert len(pages) > 1
    ids = [m["member_id"] for m in members]
    generated = _members().filter(pl.col("tenant_id") == tenant)["member_id"].to_list()
    assert ids[: len(generated)] == generated  # the reference members follow
    assert len(ids) == len(set(ids)) == len(generated) + {"coffeechain": 4}.get(tenant, 3)
    assert all(list(m) == ["member_id", "tier", "status", "balance", "currency"] for m in members)


def test_member_list_shows_current_balances(clients: dict[str, httpx.Client]) -> None:
    clients["coffeechain"].post(
        "/api/v1/members/CC1234567/deduct",
        json={"amount": 1_500, "reference_id": "bkg_x", "description": "x"},
    )
    members, _ = read_all(clients["coffeechain"], MEMBER_LIST["coffeechain"], limit=1_000)
    john = next(m for m in members if m["member_id"] == "CC1234567")
    assert john == {
        "member_id": "CC1234567",
        "tier": "gold",
        "status": "active",
        "balance": 148_500,
        "currency": "stars",
    }
    sarah = decimal_json(clients["fintechapp"].get(MEMBER_LIST["fintechapp"], params={"limit": 6}))
    assert {"member_id": "FA_12345678", "tier": "gold", "status": "active",
            "balance": Decimal("2500.00"), "currency": "coins"} in sarah["data"]  # fmt: skip


# --- refunds --------------------------------------------------------------------------------


def test_telcocorp_refund(clients: dict[str, httpx.Client]) -> None:
    tc = clients["telcocorp"]
    used = tc.post(
        "/api/v2/customers/TC-ABC123/points/use",
        json={"points": 4_000, "reference_id": "bkg_r1", "description": "Flight"},
    ).json()
    response = tc.post(
        "/api/v2/customers/TC-ABC123/points/refund",
        json={"transaction_id": used["transaction_id"], "reason": "cancelled"},
    )
    refund = decimal_json(response)
    assert list(refund) == [
        "refund_id",
        "transaction_id",
        "customer_id",
        "points_refunded",
        "new_balance",
        "timestamp",
    ]
    assert re.fullmatch(r"tcref_[0-9a-f]{12}", refund["refund_id"])
    assert refund["transaction_id"] == used["transaction_id"]
    assert refund["customer_id"] == "TC-ABC123"
    assert refund["points_refunded"] == 4_000
    assert refund["new_balance"] == 25_000
    record = _tail(tc, "telcocorp")[-1]
    assert record["type"] == "refund" and record["amount"] == 4_000
    assert record["transaction_id"] == refund["refund_id"]
    assert record["related_transaction_id"] == used["transaction_id"]
    assert record["reference_id"] == "bkg_r1"


def test_refund_errors(clients: dict[str, httpx.Client]) -> None:
    tc = clients["telcocorp"]
    history = _history("telcocorp")
    refunded = history["transaction_id"][8]  # record 9 refunds it
    owner = history["member_id"][8]
    open_deduction, open_owner = history["transaction_id"][1], history["member_id"][1]

    def refund(customer: str, txn: str) -> httpx.Response:
        return tc.post(
            f"/api/v2/customers/{customer}/points/refund",
            json={"transaction_id": txn, "reason": "x"},
        )

    unknown = refund(owner, "tctxn_ffffffffffff")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == {
        "error": "transaction_not_found",
        "message": "Transaction tctxn_ffffffffffff not found",
    }
    foreign = refund("TC-ABC123", open_deduction)
    assert foreign.status_code == 403
    assert foreign.json()["detail"]["error"] == "unauthorized"
    twice = refund(owner, refunded)
    assert twice.status_code == 400
    assert twice.json()["detail"]["error"] == "already_refunded"
    generated = refund(open_owner, open_deduction)  # a deduction from the history
    assert generated.status_code == 200
    assert generated.json()["points_refunded"] == 101
    assert refund(open_owner, open_deduction).json()["detail"]["error"] == "already_refunded"


def test_fintechapp_refund_keeps_the_cashback(urls: dict[str, str]) -> None:
    with member_client(urls, "FA_87654321") as michael:
        spent = michael.post(
            "/api/v1/users/FA_87654321/coins/deduct",
            json={"amount": 1000.10, "reference_id": "bkg_r2", "description": "Flight"},
        ).json()
        response = michael.post(
            "/api/v1/users/FA_87654321/coins/refund",
            json={"transaction_id": spent["transaction_id"], "reason": "cancelled"},
        )
        refund = decimal_json(response)
        assert list(refund) == [
            "refund_id",
            "transaction_id",
            "user_id",
            "amount_refunded",
            "new_balance",
            "timestamp",
        ]
        assert re.fullmatch(r"faref_[0-9a-f]{12}", refund["refund_id"])
        assert refund["user_id"] == "FA_87654321"
        assert refund["amount_refunded"] == Decimal("1000.10")
        assert refund["new_balance"] == Decimal("10020.00")  # 10,000.00 + 20.00 cashback
        assert '"amount_refunded":1000.10' in response.text
        other = michael.post(
            "/api/v1/users/FA_12345678/coins/refund",
            json={"transaction_id": spent["transaction_id"], "reason": "x"},
        )
        assert other.status_code == 403 and other.json()["detail"]["error"] == "forbidden"


# --- FintechApp partner session ---------------------------------------------------------------


def test_partner_session_reads_the_feed_and_nothing_else(
    clients: dict[str, httpx.Client], urls: dict[str, str]
) -> None:
    partner = clients["fintechapp"]
    assert partner.get(FEED["fintechapp"], params={"limit": 5}).status_code == 200
    assert partner.get(MEMBER_LIST["fintechapp"], params={"limit": 5}).status_code == 200
    coins = partner.get("/api/v1/users/FA_12345678/coins")
    assert coins.status_code == 403 and coins.json()["detail"]["error"] == "forbidden"
    hook = partner.post(
        "/api/v1/webhooks/validate", json={"webhook_url": "https://x", "secret": "s"}
    )
    assert hook.status_code == 403 and hook.json()["detail"]["error"] == "forbidden"
    with member_client(urls, "FA_12345678") as sarah:
        for path in (FEED["fintechapp"], MEMBER_LIST["fintechapp"]):
            refused = sarah.get(path)
            assert refused.status_code == 403
            assert refused.json()["detail"]["error"] == "forbidden"


def test_partner_session_needs_the_partner_secret(urls: dict[str, str]) -> None:
    response = httpx.post(
        f"{urls['fintechapp']}/api/v1/sessions/validate", json={**PARTNER, "partner_secret": "no"}
    )
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "invalid_credentials"


# --- reset ------------------------------------------------------------------------------------


def test_reset_drops_sessions_tokens_and_the_overlay(
    store: LoyaltyStore, clients: dict[str, httpx.Client], urls: dict[str, str]
) -> None:
    cc = clients["coffeechain"]
    before = store.ledger_count("coffeechain")
    cc.post(
        "/api/v1/members/CC1234567/deduct",
        json={"amount": 2_000, "reference_id": "bkg_z", "description": "x"},
    )
    assert store.ledger_count("coffeechain") == before + 1
    records = decimal_json(cc.get(FEED["coffeechain"], params={"limit": 1_000}))
    cursor = records["next_cursor"]
    last_page = cc.get(
        FEED["coffeechain"],
        params={"updated_since": _history("coffeechain")["updated_at"].max().isoformat()},
    ).json()
    with member_client(urls, "FA_12345678") as sarah:
        store.reset()
        expired = sarah.get("/api/v1/users/FA_12345678/coins")
        assert expired.status_code == 401
        assert expired.json()["detail"] == {
            "error": "session_expired",
            "message": "Session has expired or is invalid",
        }
    stale = clients["telcocorp"].get("/api/v2/customers/TC-ABC123/points")
    assert stale.status_code == 401 and stale.json()["detail"]["error"] == "invalid_token"
    assert store.ledger_count("coffeechain") == before
    assert cc.get("/api/v1/members/CC1234567/balance").json()["balance"] == 150_000
    assert len(read_all(cc, FEED["coffeechain"], cursor=cursor)[0]) == before - 1_000
    assert last_page["data"][-1]["amount"] == -2_000


def test_a_cursor_into_a_reset_overlay_restarts_at_its_new_records(store: LoyaltyStore) -> None:
    known = _history("coffeechain").height
    store.append_ledger("coffeechain", [_live_row("txn_live00000001", 0)])
    store.append_ledger("coffeechain", [_live_row("txn_live00000002", 1)])
    page = json.loads(store.ledger_page("coffeechain", limit=known + 1))
    store.reset()
    store.append_ledger("coffeechain", [_live_row("txn_live00000003", 2)])
    after = json.loads(store.ledger_page("coffeechain", limit=10, cursor=page["next_cursor"]))
    assert [r["transaction_id"] for r in after["data"]] == ["txn_live00000003"]


# --- the store directly -----------------------------------------------------------------------


def _live_row(transaction_id: str, second: int, amount: str = "-1250") -> dict:
    at = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(seconds=second)
    return {
        "tenant_id": "coffeechain",
        "transaction_id": transaction_id,
        "member_id": "CC0000101",
        "type": "deduction",
        "amount": Decimal(amount),
        "status": "posted",
        "reference_id": "bkg_live",
        "related_transaction_id": None,
        "approval_id": None,
        "description": "Traffic",
        "created_at": at,
        "updated_at": at,
        "raw_override": None,
    }


def test_appended_records_render_exactly_like_the_history() -> None:
    rows = _history("fintechapp").head(30).to_dicts()
    from_history = LoyaltyStore(MEMBERS.to_frame(), pl.DataFrame(rows, schema=LEDGER), CONFIG)
    appended = LoyaltyStore(MEMBERS.to_frame(), LEDGER.to_frame(), CONFIG)
    appended.append_ledger("fintechapp", rows[:10])
    appended.append_ledger("fintechapp", rows[10:])
    assert appended.ledger_count("fintechapp") == 30
    page = from_history.ledger_page("fintechapp", limit=100)
    assert appended.ledger_page("fintechapp", limit=100) == page


def test_a_late_record_is_moved_up_to_keep_the_feed_ordered(store: LoyaltyStore) -> None:
    store.append_ledger("coffeechain", [_live_row("txn_live00000010", 10)])
    store.append_ledger("coffeechain", [_live_row("txn_live00000011", 5)])
    tail = json.loads(store.ledger_page("coffeechain", limit=5, cursor=_cursor_at_overlay(store)))
    assert [r["transaction_id"] for r in tail["data"]] == ["txn_live00000010", "txn_live00000011"]
    assert tail["data"][0]["updated_at"] == tail["data"][1]["updated_at"]
    assert tail["data"][1]["created_at"] < tail["data"][1]["updated_at"]


def _cursor_at_overlay(store: LoyaltyStore) -> str:
    known = _history("coffeechain").height
    return json.loads(store.ledger_page("coffeechain", limit=known))["next_cursor"]


def test_adjust_balance_and_member(store: LoyaltyStore) -> None:
    balance = store.adjust_balance("fintechapp", "FA_00000101", Decimal("-98.00"), Decimal("2.00"))
    assert balance == Decimal("802.10")
    member = store.member("fintechapp", "FA_00000101")
    assert member is not None
    assert (member.balance, member.total_cashback) == (Decimal("802.10"), Decimal("2.00"))
    assert store.member("fintechapp", "FA_99999999") is None
    seeded = store.member("telcocorp", "TC-GHI789")
    assert seeded is not None and seeded.balance == Decimal(5000)


def test_traffic_writes_while_the_feed_is_read(store: LoyaltyStore) -> None:
    known = store.ledger_count("coffeechain")

    def traffic(offset: int) -> None:
        for i in range(150):
            store.append_ledger("coffeechain", [_live_row(f"txn_t{offset}_{i:08d}", i)])
            store.adjust_balance("coffeechain", "CC0000101", Decimal(-1))

    writers = [threading.Thread(target=traffic, args=(n,)) for n in range(2)]
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers):
        json.loads(store.ledger_page("coffeechain", limit=1_000, cursor=_cursor_at_overlay(store)))
    for writer in writers:
        writer.join()
    assert store.ledger_count("coffeechain") == known + 300
    tail = json.loads(
        store.ledger_page("coffeechain", limit=1_000, cursor=_cursor_at_overlay(store))
    )
    stamps = [r["updated_at"] for r in tail["data"]]
    assert len(stamps) == 300 and stamps == sorted(stamps)
    member = store.member("coffeechain", "CC0000101")
    assert member is not None and member.balance == Decimal("89700.00")


# --- enforced limits and token expiry -----------------------------------------------------------


@pytest.fixture(scope="module")
def tight_urls() -> Iterator[dict[str, str]]:
    config = dataclasses.replace(
        CONFIG,
        limits={**CONFIG.limits, "coffeechain": Limit(5, 2.0)},
        telcocorp_token_ttl_seconds=1,
    )
    store = LoyaltyStore(MEMBERS.to_frame(), LEDGER.to_frame(), config)
    servers = serve_in_background(create_apps(store, config))
    yield servers.urls
    servers.stop()


def test_the_sixth_call_in_a_window_is_refused(tight_urls: dict[str, str]) -> None:
    with httpx.Client(base_url=tight_urls["coffeechain"], headers=CC_KEY) as client:
        time.sleep(2.0 - time.time() % 2.0 + 0.05)  # start at the beginning of a window
        answers = [client.get("/api/v1/members/CC1234567/balance") for _ in range(6)]
        health = client.get("/health")
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["4", "3", "2", "1", "0", "0"]
    refused = answers[-1]
    assert refused.headers["x-ratelimit-limit"] == "5"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert int(refused.headers["x-ratelimit-reset"]) % 2 == 0
    assert refused.json()["detail"]["error"] == "rate_limit_exceeded"
    assert refused.json()["detail"]["retry_after"] == int(refused.headers["retry-after"])
    assert health.status_code == 200  # never limited
    assert "x-ratelimit-remaining" in health.headers


def test_an_expired_token_is_refused(tight_urls: dict[str, str]) -> None:
    with httpx.Client(base_url=tight_urls["telcocorp"]) as client:
        token = client.post("/oauth/token", json=TC_CREDENTIALS).json()
        assert token["expires_in"] == 1
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        time.sleep(1.1)
        expired = client.get("/api/v2/customers/TC-ABC123/points")
        assert expired.status_code == 401
        assert expired.json()["detail"] == {
            "error": "token_expired",
            "message": "Token has expired",
        }
