"""The booking detail view: what was flown, what was paid, and the ledger's own record of it."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html

from dashboard.components import format as fmt
from dashboard.components import states, tables
from dashboard.data import BookingDetail, Tenant

STATUS_BADGE = {
    "confirmed": "success",
    "pending_approval": "warning",
    "rejected": "secondary",
    "cancelled": "danger",
    "failed": "dark",
}


def _facts(pairs: list[tuple[str, Any, str]]) -> html.Dl:
    items: list[Any] = []
    for label, value, key in pairs:
        items.append(html.Dt(label, className="col-sm-5 text-muted fw-normal"))
        items.append(html.Dd(value, className="col-sm-7", **{"data-field": key}))
    return html.Dl(items, className="row mb-0")


def _failure(status: str, failure: dict[str, Any] | None) -> dbc.Alert | None:
    """Why a failed booking failed, from the event that failed it."""
    if status != "failed":
        return None
    if failure is None:
        text: list[Any] = ["This booking failed; the snapshot records no reason for it."]
    else:
        step = fmt.status_label(failure["failed_from"]) if failure["failed_from"] else None
        text = [
            html.Strong("Why it failed: "),
            html.Span(failure["reason"], id="failure-reason-text"),
            html.Span(
                f" (while {step}, {fmt.utc(failure['failed_at'])})"
                if step
                else f" ({fmt.utc(failure['failed_at'])})",
                className="text-muted",
            ),
        ]
    return dbc.Alert(text, color="danger", id="failure-reason", className="mt-2 mb-0")


def booking_view(
    detail: BookingDetail, tenant: Tenant, failure: dict[str, Any] | None = None
) -> html.Div:
    """Cards for the booking, its payment and its flights, then its ledger transactions; a
    failed booking says why it failed."""
    b = detail.booking
    cur, places = b["loyalty_currency"], tenant.decimals
    header = html.Div(
        [
            html.H2([b["booking_id"], " "], className="h4 d-inline me-2"),
            dbc.Badge(
                fmt.status_label(b["status"]),
                color=STATUS_BADGE.get(b["status"], "secondary"),
                id="booking-status",
                title=fmt.status_meaning(b["status"]),
            ),
            # A failed booking's alert below says more than the general meaning would.
            html.Span(
                "" if b["status"] == "failed" else fmt.status_meaning(b["status"]),
                className="text-muted small ms-2",
            ),
            html.Div(f"{tenant.name} · member {b['member_id']}", className="text-muted"),
            _failure(b["status"], failure),
        ],
        className="mb-3",
    )
    booking_card = dbc.Card(
        [
            dbc.CardHeader("Booking"),
            dbc.CardBody(
                _facts(
                    [
                        ("Duffel order", b["duffel_order_id"] or fmt.DASH, "duffel_order_id"),
                        ("PNR", b["pnr"] or fmt.DASH, "pnr"),
                        ("Route", f"{b['origin'] or '?'} → {b['destination'] or '?'}", "route"),
                        ("Airline", b["airline_name"] or fmt.DASH, "airline"),
                        ("Cabin", fmt.status_label(b["cabin"]), "cabin"),
                        ("Passengers", fmt.count(b["passenger_count"]), "passenger_count"),
                        ("Booked", fmt.utc(b["created_at"]), "created_at"),
                        ("Departs", fmt.utc(b["departure_at"]), "departure_at"),
                        ("Approval", b["approval_id"] or fmt.DASH, "approval_id"),
                    ]
                )
            ),
        ],
        className="h-100",
    )
    fare = fmt.money(b["fare_amount"], b["fare_currency"])
    if b["is_fare_unconvertible"]:
        fare_usd = "not convertible (no FX rate that day)"
    else:
        fare_usd = fmt.usd(b["fare_usd"])
    payment_card = dbc.Card(
        [
            dbc.CardHeader("Payment"),
            dbc.CardBody(
                _facts(
                    [
                        ("Charged", fmt.units(b["loyalty_amount"], cur, places), "loyalty_amount"),
                        ("In USD", fmt.usd(b["usd_amount"]), "usd_amount"),
                        ("Rate", fmt.rate(b["usd_per_unit"], cur), "usd_per_unit"),
                        ("Airline fare", fare, "fare_amount"),
                        ("Fare in USD", fare_usd, "fare_usd"),
                        (
                            "Cashback",
                            f"{fmt.units(b['cashback_amount'], cur, places)} ({fmt.usd(b['cashback_usd'])})",
                            "cashback",
                        ),
                        (
                            "Refund",
                            f"{fmt.units(b['refund_amount'], cur, places)} ({fmt.usd(b['refund_usd'])})",
                            "refund",
                        ),
                        ("Refunded", fmt.utc(b["refunded_at"]), "refunded_at"),
                        ("Net", fmt.usd(b["net_usd"]), "net_usd"),
                    ]
                )
            ),
        ],
        className="h-100",
    )
    segments = (
        tables.segments_table(detail.segments)
        if detail.segments
        else states.empty("No flight segments: this booking has no Duffel order.")
    )
    ledger = (
        tables.ledger_table(detail.transactions, places)
        if detail.transactions
        else states.empty("The tenant's ledger holds no transaction for this booking.")
    )
    return html.Div(
        [
            header,
            dbc.Row(
                [dbc.Col(booking_card, md=6), dbc.Col(payment_card, md=6)],
                className="g-3 mb-3",
            ),
            dbc.Card([dbc.CardHeader("Flights"), dbc.CardBody(segments)], className="mb-3"),
            dbc.Card([dbc.CardHeader("Ledger transactions"), dbc.CardBody(ledger)]),
        ]
    )
