"""Whole-page bodies assembled from KPIs, figures and tables (pure: data in, components out)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard import data
from dashboard.components import charts, kpis, operations, period, states, tables
from dashboard.data import (
    STATUSES,
    Breakdowns,
    Operations,
    Period,
    PeriodPoint,
    RateRange,
    Snapshot,
    Tenant,
    TenantKpis,
    TierSummary,
)
from dashboard.scope import Scope

_GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}


def graph(figure: object, graph_id: str, height: int = 320) -> dbc.Card:
    """A figure in a card, sized to its column."""
    return dbc.Card(
        dbc.CardBody(
            dcc.Graph(
                id=graph_id, figure=figure, config=_GRAPH_CONFIG, style={"height": f"{height}px"}
            ),
            className="p-2",
        ),
        className="graph-card h-100",
    )


def loading(body_id: str) -> dcc.Loading:
    """Where a callback renders a page body, with a spinner while it works.

    The spinner follows this output only: a part rendered into the body by a callback of
    its own (the period's activity) loads beside it and never hides the rest of the page.
    """
    return dcc.Loading(
        html.Div(id=body_id, className="page-body"),
        delay_show=250,
        type="default",
        target_components={body_id: "children"},
    )


def overview_body(all_kpis: Sequence[TenantKpis], rates: dict[str, RateRange] | None) -> html.Div:
    """Operators' overview: per-tenant KPI cards (all time), the activity of the period the
    time controls pick (rendered beside, into ``overview-activity``), status mix."""
    if not all_kpis:
        return html.Div(states.empty("The snapshot holds no tenants."))
    tenants = [k.tenant for k in all_kpis]
    cards = [dbc.Col(kpis.totals_card(list(all_kpis)), xs=12, md=6, xl=3)] + [
        dbc.Col(kpis.tenant_summary_card(k), xs=12, md=6, xl=3) for k in all_kpis
    ]
    return html.Div(
        [
            html.H2("In the period", className="h5"),
            loading("overview-activity"),
            html.H2("All time", className="h5"),
            dbc.Row(cards, className="g-3 mb-2"),
            html.Div(period.rate_notes(tenants, rates, "over all bookings"), className="mb-3"),
            dbc.Row(
                dbc.Col(graph(charts.status_mix_figure(all_kpis), "overview-status", 300), lg=12),
                className="g-3",
            ),
            tables.status_legend(STATUSES, "status-legend"),
        ]
    )


def activity(
    picked: Period | None,
    points: Sequence[PeriodPoint],
    previous: Sequence[PeriodPoint] | None,
    tenants: Sequence[Tenant],
    rates: dict[str, RateRange] | None,
    today: dt.date,
    prefix: str,
) -> html.Div:
    """The period's totals (against the period before), its charts and its rates."""
    if picked is None:
        return html.Div(states.empty("No activity to show yet."))
    return html.Div(
        [
            period.totals(picked, points, previous, today),
            dbc.Row(
                [
                    dbc.Col(
                        graph(
                            charts.period_figure(
                                points, tenants, "bookings", picked, today, previous
                            ),
                            f"{prefix}-bookings",
                            340,
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        graph(
                            charts.period_figure(
                                points, tenants, "usd_volume", picked, today, previous
                            ),
                            f"{prefix}-usd",
                            340,
                        ),
                        lg=6,
                    ),
                ],
                className="g-3 mb-2",
            ),
            html.Div(period.rate_notes(tenants, rates, "over this period"), className="mb-3"),
        ]
    )


def tenant_skeleton(tenant_id: str) -> html.Div:
    """The tenant view before its data arrives: the tenant id the body callback renders for,
    and the time controls, which outlive every re-render of the body (a new snapshot)."""
    return html.Div(
        [
            dcc.Store(id="tenant-id", data=tenant_id),
            period.controls("tenant"),
            loading("tenant-body"),
        ]
    )


def tenant_body(
    tenant_kpis: TenantKpis,
    rates: dict[str, RateRange] | None,
    slices: Breakdowns,
    tiers: Sequence[TierSummary],
    ops: Operations,
    now: dt.datetime,
) -> html.Div:
    """One tenant's KPIs in its currency and USD, activity, routes, airlines, cabins, tiers,
    then its funnel, approvals, saga health, checks and capabilities."""
    tenant = tenant_kpis.tenant
    names = {tenant.tenant_id: tenant.name}
    status_mix = [(status, n) for status, n in tenant_kpis.statuses.items() if n]
    cabin_mix = [(c.label, c.bookings) for c in slices.cabins]
    return html.Div(
        [
            html.H1(tenant.name, className="h3", id="tenant-name"),
            html.P(f"Pays in {tenant.currency}.", className="text-muted mb-1"),
            html.H2("In the period", className="h5"),
            loading("tenant-activity"),
            html.H2("All time", className="h5"),
            html.Div(kpis.tenant_tiles(tenant_kpis), className="mb-2"),
            html.Div(
                [
                    period.rate_notes([tenant], rates, "over all its bookings"),
                    html.Div(
                        "Balances and the loyalty liability are valued at the rate in force "
                        "when the balances were read.",
                        className="small text-muted",
                    ),
                ],
                className="mb-3",
                id="tenant-rate",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        graph(
                            charts.breakdown_figure(slices.routes, "Top routes"),
                            "tenant-routes",
                            360,
                        ),
                        lg=6,
                    ),
                    dbc.Col(
                        graph(
                            charts.breakdown_figure(slices.airlines, "Airlines"),
                            "tenant-airlines",
                            360,
                        ),
                        lg=6,
                    ),
                ],
                className="g-3 mb-3",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        graph(charts.share_figure(cabin_mix, "Cabin mix"), "tenant-cabins"),
                        md=6,
                        lg=4,
                    ),
                    dbc.Col(
                        graph(
                            charts.share_figure(status_mix, "Status mix", charts.STATUS_COLOURS),
                            "tenant-status",
                        ),
                        md=6,
                        lg=4,
                    ),
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader("Members by tier and balance"),
                                dbc.CardBody(
                                    [
                                        dcc.Graph(
                                            id="tenant-tiers",
                                            figure=charts.tier_figure(tiers, tenant.currency),
                                            config=_GRAPH_CONFIG,
                                            style={"height": "200px"},
                                        ),
                                        tables.tiers_table(tiers, tenant.currency, tenant.decimals),
                                    ]
                                ),
                            ],
                            className="h-100",
                        ),
                        lg=4,
                    ),
                ],
                className="g-3 mb-2",
            ),
            tables.status_legend([status for status, _ in status_mix] or STATUSES, "status-legend"),
            html.Div(className="mb-3"),
            operations.checks_section([tenant.tenant_id], names, ops.checks, ops.capabilities),
            operations.funnel_section(ops, names, single=True),
            operations.approvals_section(ops, names, {tenant.tenant_id: tenant.decimals}, now),
            operations.saga_section(ops, names),
        ]
    )


def period_activity(
    snap: Snapshot,
    scope: Scope,
    prefix: str,
    start: object,
    end: object,
    grain: object,
    compare: object,
    tenant_id: str | None = None,
) -> html.Div:
    """Read and lay out the activity of the period the time controls ask for (untrusted
    values: a bad date or grain falls back to the data's own span, or "day")."""
    span = data.activity_span(snap, scope, tenant_id)
    picked = data.Period.parse(start, end, grain, span)
    known = data.tenants(snap, scope)
    shown = [t for t in known if tenant_id is None or t.tenant_id == tenant_id]
    if picked is None:
        return activity(None, [], None, shown, None, dt.date.today(), prefix)
    previous = (
        data.period_activity(snap, scope, picked.previous(), tenant_id) if compare is True else None
    )
    return activity(
        picked,
        data.period_activity(snap, scope, picked, tenant_id),
        previous,
        shown,
        data.usd_rates(snap, scope, picked.start, picked.end, tenant_id),
        dt.datetime.now(dt.UTC).date(),
        prefix,
    )
