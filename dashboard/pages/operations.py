"""Operations: the booking funnel, approvals, saga health, and each tenant's checks and capabilities."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dash
from dash import Input, Output, callback, html

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import operations, states, views
from dashboard.context import snapshot

dash.register_page(
    __name__, path="/operations", name="Operations", title="Operations · Loyalty flights"
)


def layout(**_query: str) -> Any:
    """Operators see every tenant; staff see their own tenant only (the scope decides)."""
    return html.Div([html.H1("Operations", className="h3"), views.loading("operations-body")])


@callback(Output("operations-body", "children"), Input("snapshot-version", "data"))
def render_operations(version: str | None) -> Any:
    """No input names a tenant: the session's scope alone says whose figures are read."""
    scope = current_scope()
    if version is None:
        return states.no_data(snapshot().problem)
    snap = snapshot()
    return operations.operations_body(
        data.operations(snap, scope), data.tenants(snap, scope), dt.datetime.now(dt.UTC)
    )
