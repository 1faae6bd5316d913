"""Whole-page bodies assembled from KPIs, figures and tables (pure: data in, components out)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components import charts, kpis, operations, states, tables
from dashboard.components import format as fmt
from dashboard.data import Breakdowns, DailyPoint, Operations, TenantKpis, TierSummary

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
    """Where a callback renders a page body, with a spinner while it works."""
    return dcc.Loading(html.Div(id=body_id, className="page-body"), delay_show=250, type="default")


def overview_body(all_kpis: Sequence[TenantKpis], daily: Sequence[DailyPoint]) -> html.Div:
    """Operators' overview: per-tenant KPI cards, daily activity per tenant, status mix."""
    if not all_kpis:
        return html.Div(states.empty("The snapshot holds no tenants."))
    tenants = [k.tenant for k in all_kpis]
    cards = [dbc.Col(kpis.totals_card(list(all_kpis)), xs=12, md=6, xl=3)] + [
        dbc.Col(kpis.tenant_summary_card(k), xs=12, md=6, xl=3) for k in all_kpis
    ]
    return html.Div(
        [
            dbc.Row(cards, className="g-3 mb-3"),
            dbc.Row(
                [
                    dbc.Col(
                        graph(charts.daily_figure(daily, tenants, "bookings"), "overview-bookings"),
                        lg=6,
                    ),
                    dbc.Col(
                        graph(charts.daily_figure(daily, tenants, "usd_volume"), "overview-usd"),
                        lg=6,
                    ),
                ],
                className="g-3 mb-3",
            ),
            dbc.Row(
                dbc.Col(graph(charts.status_mix_figure(all_kpis), "overview-status", 260), lg=12),
                className="g-3",
            ),
        ]
    )


def tenant_skeleton(tenant_id: str) -> html.Div:
    """The tenant view before its data arrives: the tenant id the body callback renders for."""
    return html.Div([dcc.Store(id="tenant-id", data=tenant_id), loading("tenant-body")])


def tenant_body(
    tenant_kpis: TenantKpis,
    daily: Sequence[DailyPoint],
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
            html.P(
                f"Pays in {tenant.currency} · {fmt.rate(tenant.usd_per_unit, tenant.currency)} today",
                className="text-muted",
            ),
            html.Div(kpis.tenant_tiles(tenant_kpis), className="mb-3"),
            dbc.Row(
                [
                    dbc.Col(
                        graph(charts.daily_figure(daily, [tenant], "bookings"), "tenant-bookings"),
                        lg=6,
                    ),
                    dbc.Col(
                        graph(charts.daily_figure(daily, [tenant], "usd_volume"), "tenant-usd"),
                        lg=6,
                    ),
                ],
                className="g-3 mb-3",
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
                className="g-3 mb-3",
            ),
            operations.checks_section([tenant.tenant_id], names, ops.checks, ops.capabilities),
            operations.funnel_section(ops, names, single=True),
            operations.approvals_section(ops, names, {tenant.tenant_id: tenant.decimals}, now),
            operations.saga_section(ops, names),
        ]
    )
