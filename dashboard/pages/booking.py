"""Booking detail: flight segments, payment in loyalty units and USD, refunds, ledger records."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, dcc, html

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import detail, states, views
from dashboard.context import snapshot
from dashboard.scope import ScopeError

dash.register_page(
    __name__,
    path_template="/booking/<tenant_id>/<booking_id>",
    name="Booking",
    title="Booking · Loyalty flights",
)


def layout(tenant_id: str | None = None, booking_id: str | None = None, **_query: str) -> Any:
    """The skeleton for a booking of an allowed tenant; a refusal for any other."""
    scope = current_scope()
    if not tenant_id or not booking_id or not scope.allows(tenant_id):
        return states.refused()
    return html.Div(
        [
            dcc.Link("← Bookings", href="/bookings", className="d-inline-block mb-2"),
            dcc.Store(id="booking-key", data={"tenant_id": tenant_id, "booking_id": booking_id}),
            views.loading("booking-body"),
        ]
    )


@callback(
    Output("booking-body", "children"),
    Input("snapshot-version", "data"),
    Input("booking-key", "data"),
)
def render_booking(version: str | None, key: object) -> Any:
    """Re-read on every publish; the tenant id is checked against the session's scope first."""
    scope = current_scope()
    if not isinstance(key, dict) or not all(
        isinstance(key.get(k), str) for k in ("tenant_id", "booking_id")
    ):
        raise ScopeError(f"{scope.username} sent no usable booking key")
    tenant_id = scope.check(key["tenant_id"])
    if version is None:
        return states.no_data(snapshot().problem)
    snap = snapshot()
    found = data.booking_detail(snap, scope, tenant_id, key["booking_id"])
    tenant = next(iter(t for t in data.tenants(snap, scope) if t.tenant_id == tenant_id), None)
    if found is None or tenant is None:
        return states.not_found(f"No booking {key['booking_id']!r} in this snapshot.")
    failure = (
        data.failure_reason(snap, scope, tenant_id, key["booking_id"])
        if found.booking["status"] == "failed"
        else None
    )
    return detail.booking_view(found, tenant, failure)
