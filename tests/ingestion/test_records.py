"""The fast, columnar page decoders give exactly what record-by-record validation gives.

``duffel_orders.order_page`` / ``loyalty_ledger.ledger_page`` take a fast path for records in
canonical form and validate everything else one by one; these tests feed pages mixing both
kinds and compare the outcome with the reference: every record validated one by one
(``duffel_orders.orders_one_by_one``; ``validate_page`` + the checks + ``ledger_row``).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import polars as pl
import pydantic
import pytest

from clients.duffel.client import DuffelClient
from clients.duffel.models import DuffelOrder
from clients.errors import DuffelError
from clients.loyalty.models import LedgerTransaction
from ingestion import validation
from ingestion.duffel import orders as duffel_orders
from ingestion.landing.quarantine import Known, digest, payload_text
from ingestion.loyalty import ledger as loyalty_ledger
from ingestion.sync import _prefetched

FIXTURE = Path(__file__).parents[1] / "fixtures" / "duffel" / "order.json"
TENANT = "coffeechain"


def base_order() -> dict[str, Any]:
    order = json.loads(FIXTURE.read_text())["data"]
    order["metadata"] = {
        "tenant_id": TENANT,
        "member_id": "CC1234567",
        "booking_id": "bkg_000000000001",
        "loyalty_transaction_id": "txn_000000000001",
    }
    return order


def variant(order_id: str, change) -> dict[str, Any]:
    order = base_order()
    order["id"] = order_id
    change(order)
    return order


def first_segment(order: dict[str, Any]) -> dict[str, Any]:
    return order["slices"][0]["segments"][0]


def _set(path: str, value: Any):
    def change(order: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target: Any = order
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[leaf] = value

    return change


def _drop(key: str):
    return lambda order: order.pop(key)


CANCELLATION = {
    "id": "ore_0000001",
    "refund_amount": "150.00",
    "refund_currency": "EUR",
    "refund_to": "balance",
    "confirmed_at": "2022-07-03T10:00:00.5Z",
}

# (id, change): canonical ones take the fast path; the others must come out as the models say.
VARIANTS = [
    ("ord_plain", lambda o: None),
    (
        "ord_cancelled",
        lambda o: o.update(cancelled_at="2022-07-03T10:00:00Z", cancellation=CANCELLATION),
    ),
    (
        "ord_hold",
        _set(
            "payment_status",
            {
                "awaiting_payment": True,
                "payment_required_by": "2022-07-02T00:00:00Z",
                "paid_at": None,
            },
        ),
    ),
    (
        "ord_paid_later",
        _set(
            "payment_status", {"awaiting_payment": False, "paid_at": "2022-07-09T08:07:06.123456Z"}
        ),
    ),
    ("ord_no_zone", lambda o: first_segment(o)["origin"].pop("time_zone")),
    ("ord_one_decimal", _set("total_amount", "193.1")),
    ("ord_no_metadata", _drop("metadata")),
    ("ord_no_passengers", _drop("passengers")),
    ("ord_dst_gap", lambda o: first_segment(o).update(departing_at="2022-03-27T02:30:00")),
    # valid, but not canonical: the one-by-one path lands them
    ("ord_offset_created", _set("created_at", "2022-07-01T16:59:40.165602+02:00")),
    ("ord_space_created", _set("created_at", "2022-07-01 14:59:40Z")),
    ("ord_fraction_local", lambda o: first_segment(o).update(departing_at="2022-07-15T23:00:00.5")),
    ("ord_aware_local", lambda o: first_segment(o).update(departing_at="2022-07-15T21:00:00Z")),
    ("ord_awaiting_text", _set("payment_status", {"awaiting_payment": "true"})),
    # malformed: quarantined with a reason naming the record and the field
    ("ord_money_number", _set("total_amount", 193.06)),
    ("ord_money_text", _set("total_amount", "N/A")),
    ("ord_money_comma", _set("base_amount", "12,50")),
    ("ord_money_3_places", _set("tax_amount", "1.005")),
    ("ord_refund_number", lambda o: o.update(cancellation={**CANCELLATION, "refund_amount": 150})),
    ("ord_no_slices", _set("slices", [])),
    ("ord_null_slices", _set("slices", None)),
    ("ord_no_segments", lambda o: o["slices"][0].update(segments=[])),
    ("ord_bad_created", _set("created_at", "yesterday")),
    ("ord_naive_created", _set("created_at", "2022-07-01T14:59:40")),
    ("ord_leap_second", _set("created_at", "2022-06-30T23:59:60Z")),
    ("ord_feb_30", _set("created_at", "2022-02-30T10:00:00Z")),
    ("ord_other_tenant", lambda o: o["metadata"].update(tenant_id="telcocorp")),
    ("ord_metadata_number", lambda o: o["metadata"].update(points=5)),
    ("ord_null_passengers", _set("passengers", None)),
    ("ord_passenger_not_object", _set("passengers", ["pas_1"])),
    ("ord_currency_long", _set("total_currency", "EURO")),
    ("ord_unknown_zone", lambda o: first_segment(o)["origin"].update(time_zone="Mars/Olympus")),
    ("ord_iata_number", lambda o: first_segment(o)["origin"].update(iata_code=7)),
    ("ord_bad_local", lambda o: first_segment(o).update(departing_at="tomorrow")),
    ("", lambda o: None),  # an empty id
]


def page_body(items: list[Any], after: str | None = None) -> bytes:
    return json.dumps({"data": items, "meta": {"limit": 200, "after": after}}).encode()


def reference_orders(items: list[Any]) -> tuple[pl.DataFrame, pl.DataFrame, list[tuple]]:
    """Every record of the page validated and flattened one by one (lenient readers)."""
    raw = [msgspec.Raw(json.dumps(item).encode()) for item in items]
    rows, segments, rejected, _ = duffel_orders.orders_one_by_one(
        TENANT, list(range(len(raw))), raw, validation.NOTHING_HELD
    )
    return (
        duffel_orders.orders_frame(rows).drop("_idx"),
        duffel_orders.segments_frame(segments).drop("_idx"),
        [(r.record_key, r.reason) for r in rejected],
    )


# The field each malformed variant's reason names.
MALFORMED = {
    "ord_money_number": "total_amount",
    "ord_money_text": "total_amount",
    "ord_money_comma": "base_amount",
    "ord_money_3_places": "tax_amount",
    "ord_refund_number": "cancellation.refund_amount",
    "ord_no_slices": "slices",
    "ord_null_slices": "slices",
    "ord_no_segments": "slices",
    "ord_bad_created": "created_at",
    "ord_naive_created": "created_at",
    "ord_leap_second": "created_at",
    "ord_feb_30": "created_at",
    "ord_other_tenant": "metadata.tenant_id",
    "ord_metadata_number": "metadata.*",
    "ord_null_passengers": "passengers",
    "ord_passenger_not_object": "passengers.0",
    "ord_currency_long": "total_currency",
    "ord_unknown_zone": "slices.0.segments.0.origin.time_zone",
    "ord_iata_number": "slices.0.segments.0.origin.iata_code",
    "ord_bad_local": "slices.0.segments.0.departing_at",
    "": "id",
}


def _without_idx(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k != "_idx"}


def fast_orders(
    body: bytes, skip: validation.Held = validation.NOTHING_HELD
) -> duffel_orders.OrderPage:
    return duffel_orders.order_page(body, TENANT, skip)


def test_order_page_matches_record_by_record_validation() -> None:
    items: list[Any] = [variant(order_id, change) for order_id, change in VARIANTS]
    items += [5, "not an order", None]
    page = fast_orders(page_body(items))
    orders, segments, rejected = reference_orders(items)
    assert duffel_orders.orders_frame(page.orders).drop("_idx").equals(orders)
    assert duffel_orders.segments_frame(page.segments).drop("_idx").equals(segments)
    assert [(r.record_key, r.reason) for r in page.rejected] == rejected
    assert page.fetched == len(items)
    # Canonical records stayed on the fast path; the unusual ones went one by one.
    assert page.slow == len(items) - 10
    landed = set(orders["order_id"])
    assert {
        "ord_offset_created",
        "ord_space_created",
        "ord_fraction_local",
        "ord_aware_local",
        "ord_dst_gap",
        "ord_awaiting_text",
    } <= landed
    assert landed.isdisjoint(MALFORMED)
    reasons = {r.record_key: r.reason for r in page.rejected}
    for order_id, field in MALFORMED.items():
        assert reasons[order_id].startswith(f"id {order_id!r}: field '{field}'"), reasons[order_id]
    not_objects = [r for r in page.rejected if r.record_key is None]
    assert [r.reason for r in not_objects] == ["record is not a JSON object"] * 3


def test_non_canonical_orders_land_with_the_canonical_values() -> None:
    canonical = fast_orders(page_body([variant("ord_x", lambda o: None)]))
    assert canonical.slow == 0
    spelled = variant("ord_x", _set("created_at", "2022-07-01T16:59:40.165602+02:00"))
    first_segment(spelled)["origin"]["time_zone"] = "Europe/London"
    first_segment(spelled)["departing_at"] = first_segment(base_order())["departing_at"] + ".0"
    other = fast_orders(page_body([spelled]))
    assert other.slow == 1 and not other.rejected
    row = dict(zip(duffel_orders.ORDER_COLUMNS, other.orders[0], strict=True))
    expected = dict(zip(duffel_orders.ORDER_COLUMNS, canonical.orders[0], strict=True))
    assert row["created_at"] == expected["created_at"]
    assert row["total_amount"] == expected["total_amount"]
    assert row["departing_at_local"] == expected["departing_at_local"]


def test_a_page_of_canonical_orders_never_touches_the_models() -> None:
    items = [variant(f"ord_{i}", lambda o: None) for i in range(20)]
    page = fast_orders(page_body(items))
    assert page.slow == 0 and not page.rejected
    orders, segments, _ = reference_orders(items)
    assert duffel_orders.orders_frame(page.orders).drop("_idx").equals(orders)
    assert duffel_orders.segments_frame(page.segments).drop("_idx").equals(segments)


def reasons(body: bytes) -> dict[str | None, str]:
    return {r.record_key: r.reason for r in fast_orders(body).rejected}


def test_money_as_a_json_number_is_malformed_never_read_through_float() -> None:
    found = reasons(page_body([variant("ord_number", _set("total_amount", 193.06))]))
    assert "field 'total_amount'" in found["ord_number"]
    assert "ord_number" in found["ord_number"]
    found = reasons(page_body([variant("ord_int", _set("total_amount", 193))]))
    assert "field 'total_amount'" in found["ord_int"]


def test_money_that_does_not_fit_exact_cents_is_quarantined_not_rounded() -> None:
    found = reasons(page_body([variant("ord_mills", _set("total_amount", "193.065"))]))
    assert "field 'total_amount'" in found["ord_mills"]
    assert "more than 2 decimal places" in found["ord_mills"]
    big = reasons(page_body([variant("ord_big", _set("total_amount", "1" + "0" * 16))]))
    assert "field 'total_amount'" in big["ord_big"]


def test_amounts_are_landed_as_exact_decimals() -> None:
    items = [variant("ord_cents", _set("total_amount", "1234567890123456.78"))]
    orders = duffel_orders.orders_frame(fast_orders(page_body(items)).orders)
    assert orders.schema["total_amount"] == pl.Decimal(18, 2)
    assert orders["total_amount"].to_list() == [Decimal("1234567890123456.78")]


def test_an_unknown_time_zone_is_quarantined_with_the_field() -> None:
    bad = variant("ord_zone", lambda o: first_segment(o)["origin"].update(time_zone="Nowhere/X"))
    found = reasons(page_body([bad]))
    assert "field 'slices.0.segments.0.origin.time_zone'" in found["ord_zone"]


@pytest.mark.parametrize(
    ("local", "zone", "utc"),
    [
        ("2022-07-15T23:00:00", "Europe/Berlin", "2022-07-15T21:00:00+00:00"),
        ("2022-01-15T23:00:00", "Europe/Berlin", "2022-01-15T22:00:00+00:00"),
        # spring forward: 02:30 does not exist; fold=0 reads it with the offset before
        ("2026-03-08T02:30:00", "America/New_York", "2026-03-08T07:30:00+00:00"),
        # fall back: 01:30 happens twice; fold=0 is the first (still daylight time)
        ("2026-11-01T01:30:00", "America/New_York", "2026-11-01T05:30:00+00:00"),
        ("2026-04-05T01:45:00", "Australia/Lord_Howe", "2026-04-04T14:45:00+00:00"),
        ("2026-09-27T02:50:00", "Pacific/Chatham", "2026-09-26T14:05:00+00:00"),
        ("2026-06-01T12:00:00", "Asia/Kathmandu", "2026-06-01T06:15:00+00:00"),
    ],
)
def test_local_times_convert_to_utc_like_the_model(local: str, zone: str, utc: str) -> None:
    reference = validation.local_to_utc(dt.datetime.fromisoformat(local), zone)
    assert reference is not None and reference.isoformat() == utc
    fast = validation.local_us(local, zone)
    assert fast == (reference - validation.EPOCH) // validation.MICROSECOND
    # and through a whole page: the landed segment says the same
    order = variant("ord_tz", lambda o: first_segment(o).update(departing_at=local))
    first_segment(order)["origin"]["time_zone"] = zone
    segments = duffel_orders.segments_frame(fast_orders(page_body([order])).segments)
    assert segments["departing_at"][0] == reference
    assert segments["departing_at_local"][0] == local


def test_local_times_agree_with_the_model_hour_by_hour_through_a_year() -> None:
    zones = ["Europe/London", "America/Sao_Paulo", "Australia/Lord_Howe", "Pacific/Chatham"]
    start = dt.datetime(2026, 1, 1)
    for zone in zones:
        for hours in range(0, 365 * 24, 7):
            local = (start + dt.timedelta(hours=hours, minutes=hours % 60)).isoformat()
            reference = validation.local_to_utc(dt.datetime.fromisoformat(local), zone)
            assert (
                validation.local_us(local, zone)
                == (reference - validation.EPOCH) // validation.MICROSECOND
            )


def test_previously_quarantined_payloads_are_skipped_other_versions_are_validated() -> None:
    bad = variant("ord_bad", _set("total_amount", "N/A"))
    fixed = variant("ord_fixed", lambda o: None)
    held = Known({}, {})
    for item in (bad, variant("ord_fixed", _set("total_amount", "N/A"))):
        record = json.loads(json.dumps(item), parse_float=Decimal)
        held.payloads.setdefault(item["id"], set()).add(digest(payload_text(record)))
    page = fast_orders(page_body([bad, fixed]), skip=held)
    # the identical bad payload is not quarantined again; the corrected version lands
    assert page.skipped == 1 and not page.rejected
    assert [row[duffel_orders.ORDER_KEY_AT[0]] for row in page.orders] == ["ord_fixed"]


# ---- ledger ---------------------------------------------------------------------------


def txn(transaction_id: str, **change: Any) -> dict[str, Any]:
    record = {
        "transaction_id": transaction_id,
        "member_id": "CC1234567",
        "type": "deduction",
        "amount": -41250,
        "currency": "stars",
        "status": "posted",
        "reference_id": "bkg_00000000abcd",
        "related_transaction_id": None,
        "approval_id": None,
        "description": "Flight booking LHR-JFK",
        "created_at": "2026-03-01T10:15:02.123456Z",
        "updated_at": "2026-03-01T10:15:02.123456Z",
    }
    record.update(change)
    return record


LEDGER_VARIANTS = [
    txn("t_plain"),
    txn("t_decimal", amount=Decimal("-412.50")),
    txn("t_refund", type="refund", amount=41250, related_transaction_id="t_plain"),
    txn("t_whole_seconds", created_at="2026-03-01T10:15:02Z"),
    # valid but not canonical: the model lands them
    txn("t_offset", updated_at="2026-03-01T11:15:02.123456+01:00"),
    txn("t_text_amount", amount="-12.50"),
    txn("t_exponent", amount=Decimal("1E+3")),
    # malformed
    txn("t_comma", amount="12,50 stars"),
    txn("t_mills", amount=Decimal("-1.005")),
    txn("t_yesterday", created_at="yesterday", updated_at="yesterday"),
    txn("t_type", type="bonus"),
    txn("t_currency", currency="points"),
    txn("t_member_number", member_id=1234567),
    txn("", member_id=""),
    {k: v for k, v in txn("t_no_member").items() if k != "member_id"},
    7,
]


def reference_ledger(items: list[Any]) -> tuple[pl.DataFrame, list[tuple]]:
    checked = validation.validate_page(
        LedgerTransaction, items, "transaction_id", loyalty_ledger.ledger_problem(TENANT, "stars")
    )
    rows = [loyalty_ledger.ledger_row(TENANT, t) for t, _raw in checked.good]
    return (
        pl.DataFrame(rows, schema=_without_idx(loyalty_ledger.LEDGER_SCHEMA)),
        [(r.record_key, r.reason) for r in checked.rejected],
    )


def test_ledger_page_matches_the_model_record_for_record() -> None:
    items = copy.deepcopy(LEDGER_VARIANTS)
    page = loyalty_ledger.ledger_page(items, TENANT, "stars")
    rows, rejected = reference_ledger(copy.deepcopy(LEDGER_VARIANTS))
    assert page.rows.drop("_idx").equals(rows)
    assert [(r.record_key, r.reason) for r in page.rejected] == rejected
    assert page.slow == len(items) - 4
    reasons = dict(rejected)
    assert "field 'amount'" in reasons["t_comma"]
    assert "more than 2 decimal places" in reasons["t_mills"]
    assert "field 'currency'" in reasons["t_currency"]


def test_ledger_amounts_are_exact_decimals() -> None:
    page = loyalty_ledger.ledger_page(
        [txn("a", amount=Decimal("-0.10")), txn("b", amount=-7)], TENANT, "stars"
    )
    assert page.rows.schema["amount"] == pl.Decimal(18, 2)
    assert page.rows["amount"].to_list() == [Decimal("-0.10"), Decimal("-7.00")]


# ---- the Duffel client's raw pages ------------------------------------------------------


def raw_client(pages: dict[str | None, bytes]) -> DuffelClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=pages[request.url.params.get("after")])

    return DuffelClient(
        httpx.Client(base_url="https://duffel.test", transport=httpx.MockTransport(handler))
    )


def test_raw_order_pages_follow_meta_after_and_hand_back_the_bytes() -> None:
    first = page_body([base_order()], after="c1")
    second = page_body([], after=None)
    client = raw_client({None: first, "c1": second})
    pages = list(client.iter_order_pages_raw())
    assert [p.body for p in pages] == [first, second]
    assert [p.after for p in pages] == ["c1", None]


def test_raw_pages_without_a_data_array_or_with_a_repeated_cursor_fail() -> None:
    with pytest.raises(DuffelError, match="'data' array"):
        list(raw_client({None: b'{"data": {}, "meta": {}}'}).iter_order_pages_raw())
    with pytest.raises(DuffelError):
        list(raw_client({None: b"<html>502</html>"}).iter_order_pages_raw())
    loop = raw_client({None: page_body([], "c1"), "c1": page_body([], "c1")})
    with pytest.raises(DuffelError, match="already returned"):
        list(loop.iter_order_pages_raw())


def test_prefetching_keeps_order_and_raises_the_source_error_in_place() -> None:
    def pages():
        yield 1
        yield 2
        raise RuntimeError("upstream broke")

    got = []
    with pytest.raises(RuntimeError, match="upstream broke"):
        for page in _prefetched(pages()):
            got.append(page)
    assert got == [1, 2]
    early = _prefetched(iter(range(1000)))
    assert next(early) == 0
    early.close()  # stops the background thread


# ---- money in the tenant's currency, and payloads kept exactly ------------------------------


@pytest.mark.parametrize(
    ("amount", "places", "problem"),
    [
        (Decimal("-100"), 0, None),
        (Decimal("-100.0"), 0, None),
        (Decimal("-100.5"), 0, "is finer than stars allow (0 decimal places)"),
        (Decimal("12.34"), 2, None),
        (Decimal("12.345"), 2, "more than 2 decimal places; stars allow 2"),
        (Decimal("1E+17"), 0, "outside the range of Decimal(18, 2)"),
        (Decimal("1E+400"), 0, "outside the range of Decimal(18, 2)"),
        (2**70, 0, "outside the range of Decimal(18, 2)"),
    ],
)
def test_money_that_cannot_land_exactly_in_the_currency_is_named(
    amount: Decimal | int, places: int, problem: str | None
) -> None:
    found = validation.money_problem("amount", amount, places, "stars")
    assert (found is None) if problem is None else (problem in found and "'amount'" in found)


def test_the_fast_ledger_path_leaves_finer_amounts_to_the_model() -> None:
    items = [txn("whole", amount=-100), txn("half", amount=Decimal("-100.5"))]
    page = loyalty_ledger.ledger_page(items, TENANT, "stars", places=0)
    assert page.rows["transaction_id"].to_list() == ["whole"]
    assert [r.record_key for r in page.rejected] == ["half"]


def test_quarantined_payloads_keep_big_integers_and_decimals_exactly() -> None:
    raw = {"id": "x", "amount": 2**70, "balance": Decimal("1E+400"), "fine": Decimal("12.345")}
    text = payload_text(raw)
    assert json.loads(text, parse_float=Decimal) == raw
    assert payload_text(json.loads(text, parse_float=Decimal)) == text


def test_the_landed_part_of_an_order_is_named_as_the_duffel_client_names_it() -> None:
    """The booking side's client model of an order (``DuffelOrder``, all of it) and the
    ingestion's wire schema (the landed part) are two readings of one payload: every field
    the ingestion reads must be one the client model knows, at the same place."""

    def missing(struct: type, model: type, at: str) -> list[str]:
        found = []
        for field in msgspec.structs.fields(struct):
            if field.name not in model.model_fields:
                found.append(f"{at}{field.name}")
                continue
            inner = _struct_of(field.type)
            if inner is not None:
                annotation = model.model_fields[field.name].annotation
                found += missing(inner, _model_of(annotation), f"{at}{field.name}.")
        return found

    assert missing(duffel_orders.WireOrder, DuffelOrder, "") == []


def _struct_of(annotation: Any) -> type | None:
    """The msgspec struct inside ``X``, ``X | None`` or ``list[X]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        for inner in (candidate, *typing.get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
                return inner
    return None


def _model_of(annotation: Any) -> type:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        for inner in (candidate, *typing.get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel):
                return inner
    raise AssertionError(f"no model in {annotation!r}")


def test_bad_money_is_named_before_what_else_is_wrong_with_the_order() -> None:
    """The generator's malformed order: money as 'N/A' and no slices; the reason names the
    amount (its wire form), as the planted anomaly says."""
    bad = variant("ord_na", lambda o: o.update(total_amount="N/A", slices=[]))
    assert reasons(page_body([bad]))["ord_na"].startswith("id 'ord_na': field 'total_amount'")
