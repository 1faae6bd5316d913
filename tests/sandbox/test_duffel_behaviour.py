"""The Duffel stand-in behaves like Duffel: auth, isolation, paging, booking, limits, failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import polars as pl
import pytest

from sandbox.config import Limit, SandboxConfig
from sandbox.duffel.app import create_app
from sandbox.duffel.sample import sample_orders
from sandbox.duffel.store import DuffelStore
from sandbox.servers import serve_in_background

ORGS = ("coffeechain", "telcocorp", "fintechapp")
RAW_ORDER = '{"id":"ord_0000BROKENBROKENBROKEN01","total_amount":"N/A","slices":[]}'


def _history() -> pl.DataFrame:
    orders = sample_orders(600, ORGS, seed=11)
    broken = orders.filter(pl.col("tenant_id") == "fintechapp").head(1)
    broken = broken.with_columns(
        order_id=pl.lit("ord_0000BROKENBROKENBROKEN01"), raw_override=pl.lit(RAW_ORDER)
    )
    return pl.concat([orders, broken]).sort(["tenant_id", "created_at"])


class Clock:
    """A settable clock, so offers can expire without waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Sandbox:
    urls: dict[str, str]
    store: DuffelStore
    frame: pl.DataFrame
    clock: Clock


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    frame = _history()
    store = DuffelStore(frame, ORGS)
    clock = Clock()
    apps = {
        "duffel": create_app(
            store, SandboxConfig(limits={"duffel": Limit(10**6)}, timeout_stall_seconds=0.5)
        ),
        "limited": create_app(
            DuffelStore(frame, ORGS),
            SandboxConfig(limits={"duffel": Limit(5, 2.0)}),
        ),
        "clocked": create_app(
            DuffelStore(frame, ORGS, clock=clock), SandboxConfig(limits={"duffel": Limit(10**6)})
        ),
    }
    servers = serve_in_background(apps)
    yield Sandbox(servers.urls, store, frame, clock)
    servers.stop()


@pytest.fixture(autouse=True)
def fresh(sandbox: Sandbox) -> None:
    sandbox.store.reset()


def client(url: str, org: str = "coffeechain", **headers: str) -> httpx.Client:
    base = {"Authorization": f"Bearer duffel_test_{org}_sandbox", "Duffel-Version": "v2"}
    return httpx.Client(base_url=url, headers={**base, **headers}, timeout=10)


def history_ids(frame: pl.DataFrame, org: str) -> list[str]:
    return (
        frame.filter(pl.col("tenant_id") == org)
        .sort("created_at", "order_id")["order_id"]
        .to_list()
    )


def drain(api: httpx.Client, params: dict[str, Any]) -> tuple[list[str], int]:
    """Every order id across pages (following meta.after) and how many pages it took."""
    ids, pages, cursor = [], 0, None
    while True:
        response = api.get(
            "/air/orders", params={**params, **({"after": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [order["id"] for order in body["data"]]
        pages += 1
        assert (body["meta"]["before"] is None) == (pages == 1)
        cursor = body["meta"]["after"]
        if cursor is None:
            return ids, pages


def search(api: httpx.Client, origin: str = "LHR", destination: str = "JFK", **extra: Any) -> dict:
    day = (date.today() + timedelta(days=30)).isoformat()
    body = {
        "data": {
            "slices": [{"origin": origin, "destination": destination, "departure_date": day}],
            "passengers": [{"type": "adult"}, {"age": 9}],
            **extra,
        }
    }
    response = api.post("/air/offer_requests", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def order_body(offer: dict, kind: str = "instant", **changes: Any) -> dict:
    data: dict[str, Any] = {
        "type": kind,
        "selected_offers": [offer["id"]],
        "passengers": [
            {"id": p["id"], "given_name": f"Given{i}", "family_name": "Family", "title": "mr"}
            for i, p in enumerate(offer["passengers"])
        ],
        "metadata": {"tenant_id": "coffeechain", "member_id": "CC1234567", "booking_id": "bkg_1"},
    }
    if kind == "instant":
        data["payments"] = [
            {
                "type": "balance",
                "amount": offer["total_amount"],
                "currency": offer["total_currency"],
            }
        ]
    return {"data": {**data, **changes}}


def first_offer(request: dict, hold: bool) -> dict:
    return next(
        o
        for o in request["offers"]
        if o["payment_requirements"]["requires_instant_payment"] is not hold
    )


def error_code(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["errors"][0]
    return response.status_code, error["type"], error["code"]


# --- edge: auth, version, request ids -----------------------------------------------------


def test_auth_and_version_errors(sandbox: Sandbox) -> None:
    url = sandbox.urls["duffel"]
    with httpx.Client(base_url=url) as bare:
        assert error_code(bare.get("/air/orders", headers={"Duffel-Version": "v2"})) == (
            401,
            "authentication_error",
            "missing_authorization_header",
        )
        unknown = {"Authorization": "Bearer duffel_test_nobody", "Duffel-Version": "v2"}
        assert error_code(bare.get("/air/orders", headers=unknown))[2] == "access_token_not_found"
        basic = {"Authorization": "Basic abc", "Duffel-Version": "v2"}
        assert (
            error_code(bare.get("/air/orders", headers=basic))[2] == "invalid_authorization_header"
        )
        health = bare.get("/health")
        assert health.status_code == 200 and health.headers["x-request-id"]
    with client(url) as api:
        missing = api.get("/air/orders", headers={"Duffel-Version": ""})
        assert missing.status_code == 400
        no_version = httpx.get(
            f"{url}/air/orders", headers={"Authorization": "Bearer duffel_test_coffeechain_sandbox"}
        )
        assert error_code(no_version) == (400, "invalid_request_error", "missing_version_header")
        assert error_code(api.get("/air/orders", headers={"Duffel-Version": "v1"}))[2] == (
            "unsupported_version"
        )
        ids = {api.get("/air/airlines").headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3


def test_unknown_route_and_bad_body_use_the_envelope(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        assert error_code(api.get("/air/nothing_here")) == (
            404,
            "invalid_request_error",
            "not_found",
        )
        malformed = api.post(
            "/air/orders", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert error_code(malformed)[2] == "malformed_data_param"
        assert (
            error_code(api.post("/air/orders", json={"type": "instant"}))[2] == "missing_data_param"
        )


# --- orders: isolation, paging, determinism -------------------------------------------------


def test_an_organisation_sees_only_its_own_orders(sandbox: Sandbox) -> None:
    theirs = history_ids(sandbox.frame, "telcocorp")[0]
    with client(sandbox.urls["duffel"], "coffeechain") as api:
        ids, _ = drain(api, {"limit": 200})
        assert set(ids) == set(history_ids(sandbox.frame, "coffeechain"))
        assert theirs not in ids
        assert error_code(api.get(f"/air/orders/{theirs}"))[2] == "not_found"
        quote = api.post("/air/order_cancellations", json={"data": {"order_id": theirs}})
        assert quote.status_code == 404
    with client(sandbox.urls["duffel"], "telcocorp") as api:
        assert api.get(f"/air/orders/{theirs}").json()["data"]["id"] == theirs


def test_pages_follow_created_at_then_id_without_gaps_or_repeats(sandbox: Sandbox) -> None:
    expected = history_ids(sandbox.frame, "coffeechain")
    with client(sandbox.urls["duffel"]) as api:
        ids, pages = drain(api, {"limit": 50})
    assert pages >= 4
    assert ids == expected


def test_created_at_filters_select_exactly_the_window(sandbox: Sandbox) -> None:
    orgs = sandbox.frame.filter(pl.col("tenant_id") == "coffeechain").sort("created_at", "order_id")
    stamps = orgs["created_at"].to_list()
    low, high = stamps[20], stamps[140]
    expected = orgs.filter((pl.col("created_at") > low) & (pl.col("created_at") < high))
    params = {
        "limit": 25,
        "created_at[after]": low.isoformat(),
        "created_at[before]": high.isoformat(),
    }
    with client(sandbox.urls["duffel"]) as api:
        ids, pages = drain(api, params)
    assert pages >= 3
    assert ids == expected["order_id"].to_list()
    assert len(ids) == len(set(ids))


def test_before_cursor_pages_backwards(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        first = api.get("/air/orders", params={"limit": 30}).json()
        second = api.get(
            "/air/orders", params={"limit": 30, "after": first["meta"]["after"]}
        ).json()
        back = api.get(
            "/air/orders", params={"limit": 30, "before": second["meta"]["before"]}
        ).json()
    assert [o["id"] for o in back["data"]] == [o["id"] for o in first["data"]]
    assert back["meta"]["before"] is None
    assert back["meta"]["after"] is not None


def test_booking_reference_and_awaiting_payment_filters(sandbox: Sandbox) -> None:
    orgs = sandbox.frame.filter(pl.col("tenant_id") == "coffeechain")
    reference = orgs["booking_reference"][7]
    waiting = orgs.filter(
        (pl.col("order_type") == "hold")
        & pl.col("paid_at").is_null()
        & pl.col("cancelled_at").is_null()
    )
    with client(sandbox.urls["duffel"]) as api:
        found = api.get("/air/orders", params={"booking_reference": reference}).json()["data"]
        ids, _ = drain(api, {"limit": 10, "awaiting_payment": "true"})
    assert [o["booking_reference"] for o in found] == [reference]
    assert set(ids) == set(waiting["order_id"].to_list())


def test_invalid_list_parameters_are_422(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}):
            response = api.get("/air/orders", params=params)
            assert error_code(response) == (422, "validation_error", "validation_format")
            assert response.json()["errors"][0]["source"]["field"] == "limit"
        assert api.get("/air/orders", params={"after": "garbage"}).status_code == 422
        assert api.get("/air/orders", params={"created_at[after]": "yesterday"}).status_code == 422
        assert api.get("/air/orders", params={"awaiting_payment": "maybe"}).status_code == 422


def test_the_same_order_renders_byte_identically(sandbox: Sandbox) -> None:
    order_id = history_ids(sandbox.frame, "coffeechain")[5]
    with client(sandbox.urls["duffel"], **{"Accept-Encoding": "identity"}) as api:
        first, second = (api.get(f"/air/orders/{order_id}").content for _ in range(2))
    assert first == second
    order = httpx.Response(200, content=first).json()["data"]
    row = sandbox.frame.filter(pl.col("order_id") == order_id).row(0, named=True)
    assert order["total_amount"] == str(row["total_amount"])
    assert len(order["passengers"]) == row["passenger_count"]
    assert order["passengers"][0]["given_name"] == row["member_given_name"]
    assert order["metadata"]["booking_id"] == row["booking_id"]
    assert len(order["slices"]) == (2 if row["return_departure"] else 1)
    segments = order["slices"][0]["segments"]
    assert len(segments) == (2 if row["via"] else 1)
    assert "+" not in segments[0]["departing_at"] and not segments[0]["departing_at"].endswith("Z")


def test_malformed_history_record_is_served_verbatim(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"], "fintechapp", **{"Accept-Encoding": "identity"}) as api:
        single = api.get("/air/orders/ord_0000BROKENBROKENBROKEN01")
        page = api.get("/air/orders", params={"limit": 200})
    assert single.content == b'{"data":' + RAW_ORDER.encode() + b"}"
    assert RAW_ORDER.encode() in page.content


def test_traffic_orders_continue_the_history_and_reset_drops_them(sandbox: Sandbox) -> None:
    store = sandbox.store
    before = store.order_count("telcocorp")
    row = sandbox.frame.filter(pl.col("tenant_id") == "telcocorp").row(-1, named=True)
    newest = row["created_at"] + timedelta(minutes=5)
    live = {**row, "order_id": "ord_0000LIVELIVELIVELIVE01", "created_at": newest}
    store.add_order(live)
    with pytest.raises(ValueError):
        store.add_order(live)
    assert store.order_count("telcocorp") == before + 1
    with client(sandbox.urls["duffel"], "telcocorp") as api:
        ids, _ = drain(api, {"limit": 7})
        assert ids == [*history_ids(sandbox.frame, "telcocorp"), "ord_0000LIVELIVELIVELIVE01"]
        store.reset()
        assert api.get("/air/orders/ord_0000LIVELIVELIVELIVE01").status_code == 404
    assert store.order_count("telcocorp") == before


# --- searching ---------------------------------------------------------------------------


def test_identical_searches_give_identical_offers(sandbox: Sandbox) -> None:
    def summary(request: dict) -> list[tuple]:
        return [
            (
                o["owner"]["iata_code"],
                o["slices"][0]["segments"][0]["passengers"][0]["cabin_class"],
                o["total_amount"],
                o["total_currency"],
                o["slices"][0]["segments"][0]["departing_at"],
            )
            for o in request["offers"]
        ]

    with client(sandbox.urls["duffel"]) as api:
        first, second = search(api), search(api)
    assert first["id"] != second["id"] and first["id"].startswith("orq_")
    assert summary(first) == summary(second)
    assert {o["owner"]["iata_code"] for o in first["offers"]} >= {"ZZ"}
    assert len({row[1] for row in summary(first)}) == 4  # every cabin when none is asked for
    assert all(Decimal(o["total_amount"]) > 0 for o in first["offers"])


def test_currency_follows_the_departure_country(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        for origin, currency in (("LHR", "GBP"), ("CDG", "EUR"), ("JFK", "USD")):
            destination = "DXB" if origin != "DXB" else "LHR"
            offers = search(api, origin, destination, cabin_class="business")["offers"]
            assert {o["total_currency"] for o in offers} == {currency}
            assert {
                o["slices"][0]["segments"][0]["passengers"][0]["cabin_class"] for o in offers
            } == {"business"}


def test_unknown_airport_is_a_validation_error(sandbox: Sandbox) -> None:
    day = (date.today() + timedelta(days=30)).isoformat()
    body = {
        "data": {
            "slices": [{"origin": "XXX", "destination": "JFK", "departure_date": day}],
            "passengers": [{"type": "adult"}],
        }
    }
    with client(sandbox.urls["duffel"]) as api:
        response = api.post("/air/offer_requests", json=body)
    assert error_code(response) == (422, "validation_error", "validation_format")
    assert response.json()["errors"][0]["source"]["field"] == "origin"


def test_offers_can_be_listed_and_fetched_without_return_offers(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        created = api.post(
            "/air/offer_requests",
            params={"return_offers": "false"},
            json={
                "data": {
                    "slices": [
                        {
                            "origin": "SIN",
                            "destination": "SYD",
                            "departure_date": (date.today() + timedelta(days=9)).isoformat(),
                        }
                    ],
                    "passengers": [{"type": "adult"}],
                }
            },
        ).json()["data"]
        assert "offers" not in created
        page = api.get(
            "/air/offers",
            params={"offer_request_id": created["id"], "limit": 3, "sort": "total_amount"},
        ).json()
        amounts = [Decimal(o["total_amount"]) for o in page["data"]]
        assert amounts == sorted(amounts) and page["meta"]["after"]
        offer = api.get(f"/air/offers/{page['data'][0]['id']}").json()["data"]
        assert offer["id"] == page["data"][0]["id"]
        again = api.get(f"/air/offer_requests/{created['id']}").json()["data"]
        assert len(again["offers"]) >= 3
    with client(sandbox.urls["duffel"], "telcocorp") as other:
        assert other.get(f"/air/offers/{offer['id']}").status_code == 404


# --- booking, paying, cancelling -----------------------------------------------------------


def test_instant_order_checks_the_payment(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        offer = first_offer(search(api), hold=False)
        wrong_amount = order_body(
            offer,
            payments=[{"type": "balance", "amount": "1.00", "currency": offer["total_currency"]}],
        )
        assert error_code(api.post("/air/orders", json=wrong_amount)) == (
            422,
            "validation_error",
            "payment_amount_does_not_match_order_amount",
        )
        wrong_currency = order_body(
            offer,
            payments=[{"type": "balance", "amount": offer["total_amount"], "currency": "JPY"}],
        )
        assert error_code(api.post("/air/orders", json=wrong_currency))[2] == (
            "payment_currency_does_not_match_order_currency"
        )
        created = api.post("/air/orders", json=order_body(offer))
        assert created.status_code == 201, created.text
        order = created.json()["data"]
        assert order["id"].startswith("ord_") and order["total_amount"] == offer["total_amount"]
        assert [p["id"] for p in order["passengers"]] == [p["id"] for p in offer["passengers"]]
        assert order["metadata"] == {
            "tenant_id": "coffeechain",
            "member_id": "CC1234567",
            "booking_id": "bkg_1",
        }
        assert len(order["documents"]) == 2
        again = api.post("/air/orders", json=order_body(offer))
        assert error_code(again) == (422, "invalid_state_error", "offer_request_already_booked")
        unknown = order_body({**offer, "id": "off_0000doesnotexist000000"})
        assert error_code(api.post("/air/orders", json=unknown))[2] == "offer_no_longer_available"
        listed, _ = drain(api, {"limit": 200})
    stored = sandbox.store.get_order("coffeechain", order["id"])
    assert (stored["member_id"], stored["booking_id"], stored["member_given_name"]) == (
        "CC1234567",
        "bkg_1",
        "Given0",
    )
    assert listed[-1] == order["id"]  # newer than all of the history


def test_order_request_validation(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        offer = first_offer(search(api), hold=False)
        too_much = order_body(offer, metadata={f"k{i}": "v" for i in range(51)})
        assert error_code(api.post("/air/orders", json=too_much))[2] == "validation_format"
        long_key = order_body(offer, metadata={"k" * 41: "v"})
        assert api.post("/air/orders", json=long_key).status_code == 422
        strangers = order_body(
            offer, passengers=[{"id": "pas_0000nobody", "given_name": "A", "family_name": "B"}]
        )
        assert api.post("/air/orders", json=strangers).status_code == 422
        held = api.post("/air/orders", json=order_body(offer, kind="hold"))
        assert error_code(held) == (422, "invalid_state_error", "unsupported_action")


def test_expired_offer_cannot_be_booked(sandbox: Sandbox) -> None:
    with client(sandbox.urls["clocked"]) as api:
        offer = first_offer(search(api), hold=False)
        sandbox.clock.now += timedelta(minutes=31)
        response = api.post("/air/orders", json=order_body(offer))
    assert error_code(response) == (422, "invalid_state_error", "offer_no_longer_available")


def test_hold_then_pay_issues_documents(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        offer = first_offer(search(api), hold=True)
        created = api.post("/air/orders", json=order_body(offer, kind="hold"))
        assert created.status_code == 201, created.text
        order = created.json()["data"]
        assert order["payment_status"]["awaiting_payment"] is True
        assert order["payment_status"]["payment_required_by"].endswith("Z")
        assert order["documents"] == []
        waiting, _ = drain(api, {"awaiting_payment": "true", "limit": 200})
        assert order["id"] in waiting
        pay = {
            "order_id": order["id"],
            "payment": {
                "type": "balance",
                "amount": offer["total_amount"],
                "currency": offer["total_currency"],
            },
        }
        short = {**pay, "payment": {**pay["payment"], "amount": "0.01"}}
        assert error_code(api.post("/air/payments", json={"data": short}))[2] == (
            "payment_amount_does_not_match_order_amount"
        )
        paid = api.post("/air/payments", json={"data": pay})
        assert paid.status_code == 201 and paid.json()["data"]["id"].startswith("pay_")
        now = api.get(f"/air/orders/{order['id']}").json()["data"]
        assert now["payment_status"]["awaiting_payment"] is False
        assert now["payment_status"]["paid_at"] is not None
        assert [d["passenger_ids"] for d in now["documents"]] == [
            [p["id"]] for p in offer["passengers"]
        ]
        assert {d["type"] for d in now["documents"]} == {"electronic_ticket"}
        assert error_code(api.post("/air/payments", json={"data": pay}))[2] == "already_paid"
        waiting, _ = drain(api, {"awaiting_payment": "true", "limit": 200})
        assert order["id"] not in waiting


def test_cancel_confirm_then_already_cancelled(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:
        offer = first_offer(search(api), hold=False)
        order = api.post("/air/orders", json=order_body(offer)).json()["data"]
        quote = api.post("/air/order_cancellations", json={"data": {"order_id": order["id"]}})
        assert quote.status_code == 201
        pending = quote.json()["data"]
        assert pending["id"].startswith("ore_") and pending["confirmed_at"] is None
        assert (pending["refund_amount"], pending["refund_to"]) == (
            order["total_amount"],
            "balance",
        )
        expires = datetime.fromisoformat(pending["expires_at"])
        assert expires - datetime.fromisoformat(pending["created_at"]) <= timedelta(hours=1)
        confirmed = api.post(f"/air/order_cancellations/{pending['id']}/actions/confirm")
        assert confirmed.status_code == 200 and confirmed.json()["data"]["confirmed_at"]
        assert api.get(f"/air/order_cancellations/{pending['id']}").json()["data"]["confirmed_at"]
        cancelled = api.get(f"/air/orders/{order['id']}").json()["data"]
        assert cancelled["cancelled_at"] and cancelled["cancellation"]["id"] == pending["id"]
        assert cancelled["available_actions"] == []
        again = api.post("/air/order_cancellations", json={"data": {"order_id": order["id"]}})
        assert error_code(again) == (422, "invalid_state_error", "already_cancelled")
        reconfirm = api.post(f"/air/order_cancellations/{pending['id']}/actions/confirm")
        assert error_code(reconfirm)[2] == "already_cancelled"


def test_history_cancellations_are_visible(sandbox: Sandbox) -> None:
    cancelled = sandbox.frame.filter(
        (pl.col("tenant_id") == "coffeechain") & pl.col("cancellation_id").is_not_null()
    ).row(0, named=True)
    with client(sandbox.urls["duffel"]) as api:
        quote = api.get(f"/air/order_cancellations/{cancelled['cancellation_id']}").json()["data"]
        order = api.get(f"/air/orders/{cancelled['order_id']}").json()["data"]
        again = api.post(
            "/air/order_cancellations", json={"data": {"order_id": cancelled["order_id"]}}
        )
    assert (
        quote["order_id"] == cancelled["order_id"] and quote["refund_to"] == cancelled["refund_to"]
    )
    assert order["cancellation"]["id"] == cancelled["cancellation_id"]
    assert error_code(again)[2] == "already_cancelled"


# --- limits, compression, simulated failures -------------------------------------------------


def test_rate_limit_per_token(sandbox: Sandbox) -> None:
    with (
        client(sandbox.urls["limited"]) as api,
        client(sandbox.urls["limited"], "telcocorp") as other,
    ):
        for _attempt in range(3):
            time.sleep(2.0 - time.time() % 2.0 + 0.02)  # start at a fresh window
            responses = [api.get("/air/airlines") for _ in range(6)]
            resets = {r.headers["ratelimit-reset"] for r in responses}
            if len(resets) == 1:  # all six fell into one window
                break
        assert [r.status_code for r in responses] == [200] * 5 + [429]
        assert other.get("/air/airlines").status_code == 200  # another token has its own budget
    limited = responses[-1]
    assert error_code(limited) == (429, "rate_limit_error", "rate_limit_exceeded")
    assert limited.headers["ratelimit-limit"] == "5"
    assert limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["retry-after"]) >= 1
    reset = parsedate_to_datetime(limited.headers["ratelimit-reset"])
    assert reset.tzinfo is not None
    assert [r.headers["ratelimit-remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]


def test_gzip_when_asked(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"], **{"Accept-Encoding": "gzip"}) as api:
        page = api.get("/air/orders", params={"limit": 200})
        one = api.get(f"/air/orders/{history_ids(sandbox.frame, 'coffeechain')[0]}")
    assert page.headers["content-encoding"] == "gzip"
    assert len(page.json()["data"]) == 200
    assert one.headers["content-encoding"] == "gzip" and one.json()["data"]["id"]
    with client(sandbox.urls["duffel"], **{"Accept-Encoding": "identity"}) as api:
        assert "content-encoding" not in api.get("/air/orders", params={"limit": 200}).headers


def test_mock_errors(sandbox: Sandbox) -> None:
    with client(sandbox.urls["duffel"]) as api:

        def call(mode: str) -> httpx.Response:
            return api.get("/air/airlines", headers={"X-Mock-Error": mode})

        assert error_code(call("true")) == (500, "api_error", "internal_server_error")
        gateway = call("bad-gateway")
        assert gateway.status_code == 502
        assert gateway.headers["content-type"].startswith("text/html")
        assert gateway.text.lstrip().startswith("<html>")
        assert error_code(call("unavailable"))[:2] == (503, "api_error")
        stalled = call("api-timeout")
        assert stalled.status_code == 200 and stalled.json()["data"]
