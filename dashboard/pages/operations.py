"""Operations: the approvals queue and the booking API at a glance (operators), reconciliation
issues and quarantined records to acknowledge, resolve or replay, then the booking funnel,
approval figures, saga health, and each tenant's checks and capabilities.

Every action is checked on the server against the signed-in user's scope, whatever the
browser sends: decisions and the API's figures are for operators only; staff see and act on
their own tenant's issues and records only. Dash callbacks are POSTs that carry this site's
CSRF token (Flask-WTF, see ``dashboard.app``), so no other site can trigger one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from dashboard import data
from dashboard.auth import current_scope
from dashboard.bookingapi import BookingApiError
from dashboard.components import format as fmt
from dashboard.components import operations, states, views
from dashboard.components.urlstate import url_state
from dashboard.context import runtime, snapshot, tenant_names
from dashboard.data import WorkFilters, WorkItem
from dashboard.scope import Scope, ScopeError

PATH = "/operations"
API_WINDOWS = {15: "last 15 minutes", 60: "last hour", 1440: "last 24 hours"}

dash.register_page(__name__, path=PATH, name="Operations", title="Operations · Loyalty flights")


def _names(scope: Scope) -> dict[str, str]:
    return {t: name for t, name in tenant_names().items() if scope.allows(t)}


def _card(title: str, subtitle: str, body: list[Any], card_id: str) -> dbc.Card:
    header = [
        html.Span(title, className="fw-semibold"),
        html.Span(f" · {subtitle}", className="text-muted small"),
    ]
    return dbc.Card([dbc.CardHeader(header), dbc.CardBody(body)], className="mb-3", id=card_id)


def _operator_cards() -> list[Any]:
    window = "60"  # the default; url_state sets the query's value in the browser
    return [
        _card(
            "Approvals queue",
            "pending bookings, read live from the booking API",
            [
                dbc.Row(
                    [
                        dbc.Col(
                            dbc.Input(
                                id="approval-note",
                                placeholder="Note recorded with the next decision (optional)",
                                maxLength=1000,
                                size="sm",
                            )
                        ),
                        dbc.Col(
                            dbc.Button(
                                "Refresh", id="approvals-refresh", size="sm", color="secondary"
                            ),
                            width="auto",
                        ),
                    ],
                    className="g-2 mb-2",
                ),
                html.Div(id="approvals-result", **{"aria-live": "polite"}),
                dcc.Loading(html.Div(id="approvals-queue"), delay_show=300),
            ],
            "approvals-queue-card",
        ),
        _card(
            "Booking API at a glance",
            "requests, errors, 429s and latency per tenant and route",
            [
                dbc.Row(
                    [
                        dbc.Col(
                            dbc.Select(
                                id="api-window",
                                options=[
                                    {"label": v, "value": str(k)} for k, v in API_WINDOWS.items()
                                ],
                                value=window if window in {str(k) for k in API_WINDOWS} else "60",
                                size="sm",
                            ),
                            width="auto",
                        ),
                        dbc.Col(
                            dbc.Button("Refresh", id="api-refresh", size="sm", color="secondary"),
                            width="auto",
                        ),
                    ],
                    className="g-2 mb-2",
                ),
                dcc.Loading(html.Div(id="api-glance"), delay_show=300),
            ],
            "api-glance-card",
        ),
    ]


def _window_placeholder() -> html.Div:
    """Staff have no API figures; the window control is kept (hidden) so every filter of the
    page exists for the URL sync."""
    return html.Div(dbc.Select(id="api-window", options=[], value=None), hidden=True)


def layout(**query: str) -> Any:
    """Operators get the queue and the API's figures; everyone in scope gets the work lists.

    The controls start at their defaults whatever the query string holds: ``url_state``
    gives them the query's values in the browser, and leaves a control at its default out of
    the query string, so a layout seeded from the query would drop those values on the next
    change."""
    del query  # read in the browser by url_state, not here
    scope = current_scope()
    names = _names(scope)
    work = _card(
        "Issues and quarantine",
        "acknowledge, resolve, replay; kept across publishes and restarts",
        [
            operations.work_filters(names, {}, single=not scope.is_operator),
            html.Div(id="work-result", **{"aria-live": "polite"}),
            dcc.Store(id="work-changed"),
            dcc.Loading(html.Div(id="work-body"), delay_show=300),
            dbc.Pagination(
                id="work-page",
                max_value=1,
                active_page=1,
                first_last=True,
                previous_next=True,
                fully_expanded=False,
                size="sm",
                className="mt-2",
            ),
        ],
        "work-card",
    )
    return html.Div(
        [
            html.H1("Operations", className="h3"),
            *(_operator_cards() if scope.is_operator else [_window_placeholder()]),
            work,
            views.loading("operations-body"),
        ]
    )


url_state(
    PATH,
    [
        ("work-list", "value"),
        ("work-tenant", "value"),
        ("work-category", "value"),
        ("work-state", "value"),
        ("work-page", "active_page"),
        ("api-window", "value"),
    ],
)


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


# ---------------------------------------------------------------- approvals queue


def _decimals(scope: Scope) -> dict[str, int]:
    from tenants.settings import get_registry

    return {t: c.currency.decimals for t, c in get_registry().items() if scope.allows(t)}


def _queue(scope: Scope) -> Any:
    admin = runtime().booking
    if admin is None:
        return states.empty(
            "The booking API is not configured for the dashboard: set BOOKING_API_URL and "
            "BOOKING_OPERATOR_TOKEN in its environment."
        )
    now = dt.datetime.now(dt.UTC)
    try:
        pending = admin.pending_approvals()
    except BookingApiError as exc:
        return operations.problem_alert(f"The queue could not be read: {exc}.", "approvals-error")
    return html.Div(
        [
            html.P(
                f"{fmt.count(len(pending))} pending · read from the booking API at "
                f"{fmt.utc_seconds(now)}",
                className="small text-muted mb-1",
                id="approvals-read-at",
            ),
            operations.approvals_queue(pending, _names(scope), _decimals(scope), now),
        ]
    )


@callback(
    Output("approvals-queue", "children"),
    Input("snapshot-version", "data"),
    Input("approvals-refresh", "n_clicks"),
)
def render_queue(_version: str | None, _refresh: int | None) -> Any:
    """Operators only: the live queue (the snapshot's copy would be minutes old)."""
    scope = current_scope()
    scope.require_operator()
    return _queue(scope)


@callback(
    Output("approvals-result", "children"),
    Output("approvals-queue", "children", allow_duplicate=True),
    Input({"type": "approval-decide", "decision": ALL, "booking": ALL}, "n_clicks"),
    State("approval-note", "value"),
    prevent_initial_call=True,
)
def decide(clicks: list[int | None], note: str | None) -> tuple[Any, Any]:
    """Approve or reject through the booking API's admin route, as the signed-in operator.

    The role is checked here, on the server: a staff user's crafted callback is refused."""
    scope = current_scope()
    scope.require_operator()
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not any(clicks):
        return no_update, no_update
    if not ctx.triggered[0]["value"]:
        return no_update, no_update  # the buttons were just drawn, not clicked
    decision, booking_id = trigger["decision"], str(trigger["booking"])
    if decision not in ("approve", "reject"):
        raise ValueError(f"decision: {decision!r} is neither approve nor reject")
    admin = runtime().booking
    if admin is None:
        return operations.problem_alert(
            "The booking API is not configured.", "approval-error"
        ), no_update
    try:
        view = admin.decide(booking_id, decision, scope.username, note)
    except BookingApiError as exc:
        message = f"{booking_id} was not {decision}d: {exc}."
        return operations.problem_alert(message, "approval-error"), _queue(scope)
    result = operations.decision_result(view, decision, scope.username, dt.datetime.now(dt.UTC))
    return result, _queue(scope)


# ---------------------------------------------------------------- the booking API at a glance


@callback(
    Output("api-glance", "children"),
    Input("api-window", "value"),
    Input("api-refresh", "n_clicks"),
    Input("snapshot-version", "data"),
)
def render_api(window: str | None, _refresh: int | None, _version: str | None) -> Any:
    """Operators only: the API's own figures, read from its admin feed."""
    scope = current_scope()
    scope.require_operator()
    admin = runtime().booking
    if admin is None:
        return states.empty("The booking API is not configured for the dashboard.")
    minutes = int(window) if window in {str(k) for k in API_WINDOWS} else 60
    try:
        stats = admin.request_stats(minutes)
    except BookingApiError as exc:
        return operations.problem_alert(f"The figures could not be read: {exc}.", "api-error")
    return operations.api_glance(stats, _names(scope))


# ---------------------------------------------------------------- issues and quarantine


def _items(scope: Scope, kind: str, tenant_id: str | None) -> list[WorkItem]:
    if kind == "quarantine":
        return data.quarantine_items(runtime().data_dir, scope, tenant_id)
    if snapshot().version() is None:
        return []
    return data.reconciliation_items(snapshot(), scope, tenant_id)


def _replayable(scope: Scope) -> Any:
    from ingestion.replay import REPLAYABLE

    def can(item: WorkItem) -> bool:
        return scope.is_operator and tuple(item.category.split("/")) in REPLAYABLE

    return can


@callback(
    Output("work-body", "children"),
    Output("work-category", "options"),
    Output("work-page", "max_value"),
    Input("work-list", "value"),
    Input("work-tenant", "value"),
    Input("work-category", "value"),
    Input("work-state", "value"),
    Input("work-page", "active_page"),
    Input("work-changed", "data"),
    Input("snapshot-version", "data"),
)
def render_work(
    kind: str | None,
    tenant_id: str | None,
    category: str | None,
    state: str | None,
    page: int | None,
    _changed: Any,
    _version: str | None,
) -> tuple[Any, Any, int]:
    """The chosen list in the user's scope (a tenant from the browser is checked first)."""
    scope = current_scope()
    kind = "quarantine" if kind == "quarantine" else "issue"
    filters = WorkFilters.parse(tenant_id, category, state, page)
    items = _items(scope, kind, filters.tenant_id)
    tenants = None if scope.is_operator else [scope.tenant_id or ""]
    actions = runtime().ops.latest(kind, tenants)  # type: ignore[arg-type]
    result = data.work_page(items, actions, filters)
    options = [{"label": fmt.status_label(c), "value": c} for c in result.categories]
    body = operations.work_list(result, _names(scope), _replayable(scope))
    return body, options, result.pages


def _find(scope: Scope, kind: str, item_id: str) -> WorkItem:
    """The item, read again in the user's scope: an id from the browser is never trusted."""
    for item in _items(scope, kind, None):
        if item.item_id == item_id:
            return item
    raise ScopeError(f"{scope.username} has no {kind} {item_id!r} in scope")


def _replay(item: WorkItem) -> str:
    from ingestion.landing.zone import LandingZone
    from ingestion.replay import replay_quarantine
    from tenants.settings import get_registry

    source, entity = item.category.split("/")
    results = replay_quarantine(
        LandingZone.under(runtime().data_dir),
        get_registry()[item.tenant_id],
        source=source,
        entity=entity,
    )
    return "; ".join(r.line() for r in results)


@callback(
    Output("work-result", "children"),
    Output("work-changed", "data"),
    Input({"type": "work-action", "action": ALL, "kind": ALL, "item": ALL}, "n_clicks"),
    State("work-note", "value"),
    prevent_initial_call=True,
)
def act(clicks: list[int | None], note: str | None) -> tuple[Any, Any]:
    """Acknowledge, resolve, reopen or replay one item, recorded with who and when."""
    scope = current_scope()
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not any(clicks) or not ctx.triggered[0]["value"]:
        return no_update, no_update
    action, kind = str(trigger["action"]), str(trigger["kind"])
    if kind not in ("issue", "quarantine"):
        raise ValueError(f"kind: {kind!r} is neither issue nor quarantine")
    item = _find(scope, kind, str(trigger["item"]))
    note_text = note
    if action == "replayed":
        scope.require_operator()  # a replay writes to the platform's landing zone
        if not _replayable(scope)(item):
            raise ValueError(f"action: {item.category} records cannot be replayed")
        outcome = _replay(item)
        note_text = f"{note}. {outcome}" if note else outcome
    done = runtime().ops.record(
        kind, item.item_id, item.tenant_id, action, scope.username, note_text
    )  # type: ignore[arg-type]
    message = dbc.Alert(
        [
            html.Strong(f"{fmt.status_label(action).capitalize()}: "),
            f"{item.reference or item.item_id} by {done.actor} at {fmt.utc_seconds(done.at)}",
            f" — {done.note}" if done.note else "",
        ],
        color="success",
        id="work-result-alert",
        className="mb-2",
    )
    return message, done.at.isoformat()
