"""One tenant's view: KPIs in its own currency and USD, the activity of a chosen period,
routes, airlines, cabins, members, its booking funnel, approvals, saga health, and which
checks and capabilities it has."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dash
from dash import Input, Output, callback

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import period, states, views
from dashboard.components.urlstate import url_state
from dashboard.context import snapshot
from dashboard.scope import ScopeError

PATH = "/t/<tenant_id>"
dash.register_page(__name__, path_template=PATH, name="Tenant", title="Tenant · Loyalty flights")
url_state(PATH, period.control_ids("tenant"))


def layout(tenant_id: str | None = None, **_query: str) -> Any:
    """The skeleton for an allowed tenant; a refusal (and no data) for any other."""
    scope = current_scope()
    if not tenant_id or not scope.allows(tenant_id):
        return states.refused()
    return views.tenant_skeleton(tenant_id)


def _checked(tenant_id: object) -> str:
    scope = current_scope()
    if not isinstance(tenant_id, str):
        raise ScopeError(f"{scope.username} sent no usable tenant id")
    return scope.check(tenant_id)


@callback(
    Output("tenant-body", "children"),
    Input("snapshot-version", "data"),
    Input("tenant-id", "data"),
)
def render_tenant(version: str | None, tenant_id: object) -> Any:
    """Checked against the session's scope before any query: a forged tenant id gets a 403."""
    scope = current_scope()
    tenant_id = _checked(tenant_id)
    if version is None:
        return states.no_data(snapshot().problem)
    snap = snapshot()
    found = data.tenant_kpis(snap, scope, tenant_id)
    if not found:
        return states.not_found(f"The snapshot holds no tenant {tenant_id!r}.")
    return views.tenant_body(
        found[0],
        data.usd_rates(snap, scope, None, None, tenant_id),
        data.breakdowns(snap, scope, tenant_id),
        data.members_by_tier(snap, scope, tenant_id),
        data.operations(snap, scope, tenant_id),
        dt.datetime.now(dt.UTC),
    )


@callback(
    Output("tenant-activity", "children"),
    Input("snapshot-version", "data"),
    Input("tenant-id", "data"),
    *(Input(component_id, prop) for component_id, prop in period.control_ids("tenant")),
)
def render_tenant_activity(
    version: str | None,
    tenant_id: object,
    start: object,
    end: object,
    grain: object,
    compare: object,
) -> Any:
    """The tenant's activity in the period the time controls pick; the tenant id is checked
    against the session's scope first, whatever the query string said."""
    scope = current_scope()
    tenant_id = _checked(tenant_id)
    if version is None:
        return states.no_data(snapshot().problem)
    return views.period_activity(snapshot(), scope, "tenant", start, end, grain, compare, tenant_id)
