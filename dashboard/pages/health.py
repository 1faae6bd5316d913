"""Data health: what landed when per tenant and source, quarantines, publishes, open issues,
and which reconciliation checks could not run for lack of a tenant API capability."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, html

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import format as fmt
from dashboard.components import operations, states, tables, views
from dashboard.context import snapshot

dash.register_page(
    __name__, path="/health", name="Data health", title="Data health · Loyalty flights"
)


def layout(**_query: str) -> Any:
    """Freshness and quality of the data the signed-in user may see."""
    return html.Div([html.H1("Data health", className="h3"), views.loading("health-body")])


@callback(Output("health-body", "children"), Input("snapshot-version", "data"))
def render_health(version: str | None) -> Any:
    """Scoped like every view: staff see their own tenant's rows only."""
    scope = current_scope()
    if version is None:
        return states.no_data(snapshot().problem)
    snap = snapshot()
    health = data.data_health(snap, scope)
    known = data.tenants(snap, scope)
    names = {t.tenant_id: t.name for t in known}
    decimals = {t.currency: t.decimals for t in known}
    now = dt.datetime.now(dt.UTC)
    published = html.P(
        [
            "Snapshot published ",
            html.Strong(fmt.utc_seconds(health.published_at), id="published-at"),
            f" ({fmt.age(health.published_at, now)}).",
        ]
    )
    if health.landing is None:
        landing: Any = states.empty("This snapshot was published without landing health.")
    elif not health.landing:
        landing = states.empty("Nothing has landed yet.")
    else:
        landing = tables.landing_table(health.landing, names, health.published_at, now)
    checks, capabilities = data.checks_and_capabilities(snap, scope)
    open_issues = sum(row["issues"] for row in health.issue_counts)
    issues: list[Any] = [
        operations.unavailable_checks(checks, names),
        html.P(
            [html.Strong(fmt.count(open_issues), id="open-issues"), " open reconciliation issues."]
        ),
    ]
    if health.issue_counts:
        issues += [
            tables.issue_counts_table(health.issue_counts, names),
            html.H2(f"Most recent {len(health.issues)}", className="h6 mt-3"),
            tables.issues_table(health.issues, names, decimals),
        ]
    return html.Div(
        [
            published,
            dbc.Card(
                [dbc.CardHeader("Landing, per tenant and source"), dbc.CardBody(landing)],
                className="mb-3",
            ),
            dbc.Card([dbc.CardHeader("Reconciliation"), dbc.CardBody(issues)], className="mb-3"),
            operations.checks_section([t.tenant_id for t in known], names, checks, capabilities),
        ]
    )
