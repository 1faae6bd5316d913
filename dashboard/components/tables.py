"""Small server-rendered tables: members by tier, segments, ledger, landing health, issues."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components import format as fmt
from dashboard.data import TierSummary

Column = tuple[str, str, Callable[[dict[str, Any]], Any]]


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], table_id: str) -> dbc.Table:
    """A responsive striped table: one (key, header, render) per column."""
    return dbc.Table(
        [
            html.Thead(html.Tr([html.Th(header) for _, header, _ in columns])),
            html.Tbody(
                [
                    html.Tr(
                        [html.Td(render(row), **{"data-col": key}) for key, _, render in columns]
                    )
                    for row in rows
                ]
            ),
        ],
        id=table_id,
        striped=True,
        hover=True,
        size="sm",
        responsive=True,
        className="mb-0",
    )


def tiers_table(tiers: Sequence[TierSummary], currency: str, decimals: int) -> dbc.Table:
    """Members, balance and its USD value per tier."""
    rows = [
        {
            "tier": t.tier,
            "members": fmt.count(t.members),
            "balance": fmt.units(t.balance, currency, decimals),
            "balance_usd": fmt.usd(t.balance_usd),
        }
        for t in tiers
    ]
    return table(
        rows,
        [
            ("tier", "Tier", lambda r: r["tier"]),
            ("members", "Members", lambda r: r["members"]),
            ("balance", "Balance", lambda r: r["balance"]),
            ("balance_usd", "Balance (USD)", lambda r: r["balance_usd"]),
        ],
        "tiers-table",
    )


def segments_table(segments: Sequence[dict[str, Any]]) -> dbc.Table:
    """The flights of a booking's order, outbound slice first."""
    return table(
        segments,
        [
            ("slice", "Slice", lambda r: "outbound" if r["slice_index"] == 0 else "return"),
            (
                "flight",
                "Flight",
                lambda r: f"{r['marketing_carrier'] or ''}{r['flight_number'] or ''}" or fmt.DASH,
            ),
            ("route", "From → to", lambda r: f"{r['origin']} → {r['destination']}"),
            ("departing_at", "Departs", lambda r: fmt.utc(r["departing_at"])),
            ("arriving_at", "Arrives", lambda r: fmt.utc(r["arriving_at"])),
            (
                "duration",
                "Duration",
                lambda r: (
                    fmt.DASH
                    if r["duration_minutes"] is None
                    else f"{r['duration_minutes'] // 60} h {r['duration_minutes'] % 60:02d} min"
                ),
            ),
        ],
        "segments-table",
    )


def ledger_table(transactions: Sequence[dict[str, Any]], decimals: int) -> dbc.Table:
    """The tenant ledger's records about a booking, oldest first."""
    return table(
        transactions,
        [
            ("transaction_id", "Transaction", lambda r: r["transaction_id"]),
            ("type", "Type", lambda r: fmt.status_label(r["type"])),
            ("status", "Status", lambda r: r["status"] or fmt.DASH),
            ("amount", "Amount", lambda r: fmt.units(r["amount"], r["currency"], decimals)),
            ("related", "Related to", lambda r: r["related_transaction_id"] or fmt.DASH),
            ("created_at", "Created", lambda r: fmt.utc_seconds(r["created_at"])),
        ],
        "ledger-table",
    )


def landing_table(
    rows: Sequence[dict[str, Any]],
    names: dict[str, str],
    published_at: dt.datetime | None,
    now: dt.datetime,
) -> dbc.Table:
    """What landed per tenant and source, when, and how much was quarantined."""
    return table(
        rows,
        [
            ("tenant", "Tenant", lambda r: names.get(r["tenant_id"], r["tenant_id"])),
            ("source", "Source", lambda r: f"{r['source']} / {r['entity']}"),
            ("rows_landed", "Rows landed", lambda r: fmt.count(r["rows_landed"])),
            (
                "last_loaded_at",
                "Last landed",
                lambda r: f"{fmt.utc(r['last_loaded_at'])} ({fmt.age(r['last_loaded_at'], now)})",
            ),
            ("published_at", "Last published", lambda _: fmt.utc(published_at)),
            ("quarantined", "Quarantined", lambda r: fmt.count(r["quarantined"])),
            (
                "last_quarantined_at",
                "Last quarantined",
                lambda r: fmt.utc(r["last_quarantined_at"]),
            ),
        ],
        "landing-table",
    )


def issue_counts_table(rows: Sequence[dict[str, Any]], names: dict[str, str]) -> dbc.Table:
    """Open reconciliation issues per tenant and kind."""
    return table(
        rows,
        [
            ("tenant", "Tenant", lambda r: names.get(r["tenant_id"], r["tenant_id"])),
            ("kind", "Kind", lambda r: fmt.status_label(r["kind"])),
            ("issues", "Open issues", lambda r: fmt.count(r["issues"])),
        ],
        "issue-counts-table",
    )


def _booking_link(row: dict[str, Any]) -> Any:
    if not row["booking_id"]:
        return fmt.DASH
    return dcc.Link(row["booking_id"], href=booking_href(row["tenant_id"], row["booking_id"]))


def booking_href(tenant_id: str, booking_id: str) -> str:
    """The detail page of one booking."""
    return f"/booking/{quote(tenant_id, safe='')}/{quote(booking_id, safe='')}"


def issues_table(
    rows: Sequence[dict[str, Any]], names: dict[str, str], decimals: dict[str, int]
) -> dbc.Table:
    """The most recent reconciliation issues, explained, linked to their bookings."""

    def amount(value: Any, currency: str | None) -> str:
        return fmt.units(value, currency, decimals.get(currency or "", 2))

    return table(
        rows,
        [
            ("tenant", "Tenant", lambda r: names.get(r["tenant_id"], r["tenant_id"])),
            ("kind", "Kind", lambda r: fmt.status_label(r["kind"])),
            ("booking_id", "Booking", _booking_link),
            ("expected", "Expected", lambda r: amount(r["expected"], r["currency"])),
            ("actual", "Actual", lambda r: amount(r["actual"], r["currency"])),
            ("explanation", "What disagrees", lambda r: r["explanation"]),
            ("booked_at", "Booked", lambda r: fmt.utc(r["booked_at"])),
        ],
        "issues-table",
    )


def status_legend(statuses: Sequence[str], legend_id: str) -> html.Details:
    """What each booking status means, folded under the charts and filters that show them."""
    return html.Details(
        [
            html.Summary("What the statuses mean", className="small"),
            html.Dl(
                [
                    part
                    for status in statuses
                    for part in (
                        html.Dt(fmt.status_label(status), className="col-sm-3 fw-normal"),
                        html.Dd(
                            fmt.status_meaning(status),
                            className="col-sm-9 mb-1",
                            **{"data-status": status},
                        ),
                    )
                ],
                className="row small text-muted mb-0 mt-1",
            ),
        ],
        id=legend_id,
        className="status-legend mt-2",
    )
