"""Overview for operators: every tenant's KPIs in USD, the activity of a chosen period, status mix."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, html

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import period, states, views
from dashboard.components.urlstate import url_state
from dashboard.context import snapshot

PATH = "/"
dash.register_page(__name__, path=PATH, name="Overview", title="Overview · Loyalty flights")
url_state(PATH, period.control_ids("overview"))


def layout(**_query: str) -> Any:
    """Operators get the overview; staff get their own tenant's view in its place."""
    scope = current_scope()
    if not scope.is_operator:
        return views.tenant_skeleton(scope.tenant_id or "")
    return html.Div(
        [
            html.H1("Overview", className="h3"),
            period.controls("overview"),
            views.loading("overview-body"),
        ]
    )


@callback(Output("overview-body", "children"), Input("snapshot-version", "data"))
def render_overview(version: str | None) -> Any:
    """Re-rendered whenever a new snapshot is published."""
    scope = current_scope()
    scope.require_operator()
    if version is None:
        return states.no_data(snapshot().problem)
    snap = snapshot()
    return views.overview_body(
        data.tenant_kpis(snap, scope), data.usd_rates(snap, scope, None, None)
    )


@callback(
    Output("overview-activity", "children"),
    Input("snapshot-version", "data"),
    *(Input(component_id, prop) for component_id, prop in period.control_ids("overview")),
)
def render_overview_activity(
    version: str | None, start: object, end: object, grain: object, compare: object
) -> Any:
    """Every tenant's activity in the period the time controls pick."""
    scope = current_scope()
    scope.require_operator()
    if version is None:
        return states.no_data(snapshot().problem)
    return views.period_activity(snapshot(), scope, "overview", start, end, grain, compare)
