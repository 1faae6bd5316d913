"""Overview for operators: every tenant's KPIs in USD, daily activity and status mix."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, html

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import states, views
from dashboard.context import snapshot

dash.register_page(__name__, path="/", name="Overview", title="Overview · Loyalty flights")


def layout(**_query: str) -> Any:
    """Operators get the overview; staff get their own tenant's view in its place."""
    scope = current_scope()
    if not scope.is_operator:
        return views.tenant_skeleton(scope.tenant_id or "")
    return html.Div([html.H1("Overview", className="h3"), views.loading("overview-body")])


@callback(Output("overview-body", "children"), Input("snapshot-version", "data"))
def render_overview(version: str | None) -> Any:
    """Re-rendered whenever a new snapshot is published."""
    scope = current_scope()
    scope.require_operator()
    if version is None:
        return states.no_data(snapshot().problem)
    all_kpis = data.tenant_kpis(snapshot(), scope)
    return views.overview_body(all_kpis, data.daily_activity(snapshot(), scope))
