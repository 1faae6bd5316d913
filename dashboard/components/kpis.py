"""KPI cards: per tenant in USD for operators, in the tenant's currency and USD for its view."""

from __future__ import annotations

from decimal import Decimal

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components import format as fmt
from dashboard.data import TenantKpis


def _row(label: str, value: str, key: str, secondary: str | None = None) -> html.Tr:
    cells = [html.Span(value, **{"data-kpi": key}, className="kpi-value")]
    if secondary is not None:
        cells.append(html.Span(secondary, **{"data-kpi": f"{key}:usd"}, className="kpi-usd"))
    return html.Tr([html.Th(label, scope="row"), html.Td(cells, className="text-end")])


def tenant_summary_card(kpis: TenantKpis) -> dbc.Card:
    """One tenant's KPIs in USD, with a link to its own view (the operator overview)."""
    t = kpis.tenant.tenant_id
    return dbc.Card(
        [
            dbc.CardHeader(
                [
                    html.Div(
                        [
                            html.Span(kpis.tenant.name, className="fw-semibold"),
                            html.Span(f" · pays in {kpis.tenant.currency}", className="text-muted"),
                        ]
                    ),
                    dcc.Link("Open", href=f"/t/{t}", className="ms-2"),
                ],
                className="d-flex justify-content-between",
            ),
            dbc.Table(
                html.Tbody(
                    [
                        _row("Bookings", fmt.count(kpis.bookings), f"{t}:bookings"),
                        _row("USD volume", fmt.usd(kpis.usd_volume), f"{t}:usd_volume"),
                        _row(
                            "Cancellation rate",
                            fmt.percent(kpis.cancelled, kpis.bookings),
                            f"{t}:cancellation_rate",
                        ),
                        _row("Refunds", fmt.usd(kpis.refunds_usd), f"{t}:refunds_usd"),
                        _row("Cashback cost", fmt.usd(kpis.cashback_usd), f"{t}:cashback_usd"),
                        _row(
                            "Pending approvals",
                            fmt.count(kpis.pending_approval),
                            f"{t}:pending_approval",
                        ),
                        _row(
                            "Loyalty liability", fmt.usd(kpis.liability_usd), f"{t}:liability_usd"
                        ),
                    ]
                ),
                className="mb-0 kpi-table",
                size="sm",
                borderless=True,
            ),
        ],
        className="h-100",
    )


def totals_card(all_kpis: list[TenantKpis]) -> dbc.Card:
    """All tenants together, in USD (the only currency they share)."""
    bookings = sum(k.bookings for k in all_kpis)
    cancelled = sum(k.cancelled for k in all_kpis)
    zero = Decimal(0)
    return dbc.Card(
        [
            dbc.CardHeader(html.Span("All tenants", className="fw-semibold")),
            dbc.Table(
                html.Tbody(
                    [
                        _row("Bookings", fmt.count(bookings), "all:bookings"),
                        _row(
                            "USD volume",
                            fmt.usd(sum((k.usd_volume for k in all_kpis), zero)),
                            "all:usd_volume",
                        ),
                        _row(
                            "Cancellation rate",
                            fmt.percent(cancelled, bookings),
                            "all:cancellation_rate",
                        ),
                        _row(
                            "Refunds",
                            fmt.usd(sum((k.refunds_usd for k in all_kpis), zero)),
                            "all:refunds_usd",
                        ),
                        _row(
                            "Cashback cost",
                            fmt.usd(sum((k.cashback_usd for k in all_kpis), zero)),
                            "all:cashback_usd",
                        ),
                        _row(
                            "Pending approvals",
                            fmt.count(sum(k.pending_approval for k in all_kpis)),
                            "all:pending_approval",
                        ),
                        _row(
                            "Loyalty liability",
                            fmt.usd(sum((k.liability_usd for k in all_kpis), zero)),
                            "all:liability_usd",
                        ),
                    ]
                ),
                className="mb-0 kpi-table",
                size="sm",
                borderless=True,
            ),
        ],
        className="h-100 border-primary",
    )


def _tile(label: str, value: str, key: str, usd: str | None = None) -> dbc.Col:
    body = [
        html.Div(label, className="text-muted small"),
        html.Div(value, className="fs-4 fw-semibold", **{"data-kpi": key}),
    ]
    if usd is not None:
        body.append(html.Div(usd, className="text-muted", **{"data-kpi": f"{key}:usd"}))
    return dbc.Col(dbc.Card(dbc.CardBody(body), className="h-100"), xs=6, md=4, xl=3)


def tenant_tiles(kpis: TenantKpis) -> dbc.Row:
    """One tenant's KPIs as tiles: loyalty units first, USD beneath."""
    t, cur, places = kpis.tenant.tenant_id, kpis.tenant.currency, kpis.tenant.decimals
    return dbc.Row(
        [
            _tile("Bookings", fmt.count(kpis.bookings), f"{t}:bookings"),
            _tile(
                "Volume charged",
                fmt.units(kpis.loyalty_volume, cur, places),
                f"{t}:loyalty_volume",
                fmt.usd(kpis.usd_volume),
            ),
            _tile(
                "Cancellation rate",
                fmt.percent(kpis.cancelled, kpis.bookings),
                f"{t}:cancellation_rate",
            ),
            _tile(
                "Refunds",
                fmt.units(kpis.refunds, cur, places),
                f"{t}:refunds",
                fmt.usd(kpis.refunds_usd),
            ),
            _tile(
                "Cashback cost",
                fmt.units(kpis.cashback, cur, places),
                f"{t}:cashback",
                fmt.usd(kpis.cashback_usd),
            ),
            _tile("Pending approvals", fmt.count(kpis.pending_approval), f"{t}:pending_approval"),
            _tile(
                "Loyalty liability",
                fmt.units(kpis.liability, cur, places),
                f"{t}:liability",
                fmt.usd(kpis.liability_usd),
            ),
            _tile("Members", fmt.count(kpis.members), f"{t}:members"),
        ],
        className="g-3",
    )
