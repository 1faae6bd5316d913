"""The operations sections: booking funnel, approvals, saga health, checks and capabilities.

Pure builders (data in, components out), shared by the operations page (every tenant in
scope) and the tenant page (one tenant). A section whose mart the snapshot lacks says so
instead of showing nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.bookingapi import PendingApproval
from dashboard.components import charts, states, tables
from dashboard.components import format as fmt
from dashboard.data import (
    WORK_STATES,
    ApprovalSummary,
    Capability,
    FunnelTotals,
    Operations,
    ReconciliationCheck,
    Tenant,
    WorkItem,
    WorkPage,
    work_item_state,
)

_GRAPH_CONFIG = {"displayModeBar": False, "responsive": True}
CHECK_LABELS = {
    "ledger_vs_platform": "Ledger reconciliation",
    "duffel_vs_platform": "Duffel order reconciliation",
    "member_liability": "Member liability",
}
CAPABILITY_LABELS = {
    "ledger_feed": "Ledger feed",
    "member_list": "Member list",
    "refunds": "Refunds",
    "partner_session": "Partner session",
}
SAGA_LABELS = {
    "needs_reconciliation": "Needs reconciliation",
    "refund_pending": "Refund pending",
}


def not_available(what: str, key: str) -> html.Div:
    """A mart the snapshot being served does not have yet (published before it existed)."""
    alert = dbc.Alert(
        [
            html.Strong(f"{what}: not available yet. "),
            "The snapshot being served was published before this view existed; it appears "
            "with the first publish that includes it.",
        ],
        color="light",
        className="not-available mb-2",
    )
    return html.Div(alert, **{"data-missing": key})


def _card(title: str, body: Any, section_id: str, subtitle: str | None = None) -> dbc.Card:
    header: list[Any] = [html.Span(title, className="fw-semibold")]
    if subtitle:
        header.append(html.Span(f" · {subtitle}", className="text-muted small"))
    return dbc.Card([dbc.CardHeader(header), dbc.CardBody(body)], className="mb-3", id=section_id)


def _name(names: dict[str, str], tenant_id: str) -> str:
    return names.get(tenant_id, tenant_id)


# ---------------------------------------------------------------- funnel


def _funnel_table(totals: Sequence[FunnelTotals], names: dict[str, str]) -> dbc.Table:
    def days(t: FunnelTotals) -> str:
        if t.first_day is None or t.last_day is None:
            return fmt.DASH
        return f"{t.first_day.isoformat()} to {t.last_day.isoformat()}"

    return tables.table(
        [vars(t) | {"row": t} for t in totals],
        [
            ("tenant", "Tenant", lambda r: _name(names, r["tenant_id"])),
            ("days", "Days (UTC)", lambda r: days(r["row"])),
            ("searches", "Searches", lambda r: fmt.count(r["searches"])),
            ("bookings", "Bookings", lambda r: fmt.count(r["bookings"])),
            ("confirmed", "Confirmed", lambda r: fmt.count(r["confirmed"])),
            ("abandoned", "Abandoned searches", lambda r: fmt.count(r["abandoned_searches"])),
            (
                "search_to_booking",
                "Bookings per search",
                lambda r: fmt.percent(r["bookings"], r["searches"]),
            ),
            (
                "booking_to_confirmed",
                "Bookings confirmed",
                lambda r: fmt.percent(r["confirmed"], r["bookings"]),
            ),
        ],
        "funnel-table",
    )


def funnel_section(ops: Operations, names: dict[str, str], single: bool) -> dbc.Card:
    """Searches → bookings → confirmed per tenant, with abandoned searches, and per day."""
    title, subtitle = "Booking funnel", "searches → bookings → confirmed, counts per UTC day"
    if ops.funnel is None or ops.funnel_totals is None:
        return _card(title, not_available("Booking funnel", "booking_funnel"), "funnel")
    if not ops.funnel:
        return _card(
            title,
            states.empty("No searches or bookings recorded yet."),
            "funnel",
            subtitle,
        )
    chart_title = "By day (UTC)" if single else "All tenants in view, by day (UTC)"
    body = [
        _funnel_table(ops.funnel_totals, names),
        html.P(
            "Abandoned searches: searches by a member who made no booking with that tenant "
            "on that day.",
            className="text-muted small mt-2",
        ),
        dcc.Graph(
            id="funnel-daily",
            figure=charts.funnel_figure(ops.funnel, chart_title),
            config=_GRAPH_CONFIG,
            style={"height": "300px"},
        ),
    ]
    return _card(title, body, "funnel", subtitle)


# ---------------------------------------------------------------- approvals


def _approvals_table(
    summaries: Sequence[ApprovalSummary], names: dict[str, str], now: dt.datetime
) -> dbc.Table:
    def oldest(s: ApprovalSummary) -> str:
        if s.oldest_pending_since is None:
            return fmt.DASH
        return f"{fmt.utc(s.oldest_pending_since)} ({fmt.age(s.oldest_pending_since, now)})"

    return tables.table(
        [{"tenant_id": s.tenant_id, "row": s} for s in summaries],
        [
            ("tenant", "Tenant", lambda r: _name(names, r["tenant_id"])),
            ("pending", "Pending", lambda r: fmt.count(r["row"].pending)),
            ("oldest_pending", "Oldest pending since", lambda r: oldest(r["row"])),
            ("decided", "Decided", lambda r: fmt.count(r["row"].decided)),
            ("approved", "Approved", lambda r: fmt.count(r["row"].approved)),
            ("rejected", "Rejected", lambda r: fmt.count(r["row"].rejected)),
            (
                "median",
                "Time to decision, median",
                lambda r: fmt.duration(r["row"].median_decision_seconds),
            ),
            ("p90", "Time to decision, p90", lambda r: fmt.duration(r["row"].p90_decision_seconds)),
        ],
        "approvals-table",
    )


def _pending_table(
    rows: Sequence[dict[str, Any]],
    names: dict[str, str],
    decimals: dict[str, int],
    now: dt.datetime,
) -> dbc.Table:
    def amount(r: dict[str, Any]) -> str:
        units = fmt.units(
            r["loyalty_amount"], r["loyalty_currency"], decimals.get(r["tenant_id"], 0)
        )
        return f"{units} ({fmt.usd(r['usd_amount'])})"

    return tables.table(
        rows,
        [
            ("tenant", "Tenant", lambda r: _name(names, r["tenant_id"])),
            (
                "booking_id",
                "Booking",
                lambda r: dcc.Link(
                    r["booking_id"], href=tables.booking_href(r["tenant_id"], r["booking_id"])
                ),
            ),
            ("member_id", "Member", lambda r: r["member_id"] or fmt.DASH),
            ("requested_at", "Requested", lambda r: fmt.utc(r["requested_at"])),
            ("waiting", "Waiting", lambda r: fmt.age(r["requested_at"], now)),
            ("amount", "Amount", amount),
        ],
        "pending-table",
    )


def approvals_section(
    ops: Operations, names: dict[str, str], decimals: dict[str, int], now: dt.datetime
) -> dbc.Card:
    """Pending approvals and their age, time to decision (median, p90), approved vs rejected."""
    title, subtitle = "Approvals", "bookings above a tenant's approval threshold"
    if ops.approvals is None or ops.pending is None:
        return _card(title, not_available("Approvals", "approvals"), "approvals")
    if not any(s.pending or s.decided for s in ops.approvals):
        return _card(title, states.empty("No approval requests yet."), "approvals", subtitle)
    body: list[Any] = [_approvals_table(ops.approvals, names, now)]
    if ops.pending:
        body += [
            html.H2(f"Oldest pending ({len(ops.pending)} shown)", className="h6 mt-3"),
            _pending_table(ops.pending, names, decimals, now),
        ]
    else:
        body.append(html.P("Nothing is waiting for a decision.", className="mt-2 mb-0"))
    return _card(title, body, "approvals", subtitle)


# ---------------------------------------------------------------- saga health


def saga_section(ops: Operations, names: dict[str, str]) -> dbc.Card:
    """Bookings waiting on a refund or on reconciliation, with the oldest wait."""
    title, subtitle = "Saga health", "bookings waiting on a refund or a reconciliation"
    if ops.saga is None:
        return _card(title, not_available("Saga health", "saga_health"), "saga")
    if not ops.saga:
        return _card(title, states.empty("No saga health figures yet."), "saga", subtitle)
    rows = [vars(s) for s in ops.saga]
    table = tables.table(
        rows,
        [
            ("tenant", "Tenant", lambda r: _name(names, r["tenant_id"])),
            ("status", "Status", lambda r: SAGA_LABELS.get(r["status"], r["status"])),
            ("bookings", "Bookings", lambda r: fmt.count(r["bookings"])),
            ("oldest_since", "Oldest waiting since", lambda r: fmt.utc(r["oldest_since"])),
            (
                "oldest_age_hours",
                "Oldest wait at publish",
                lambda r: (
                    fmt.DASH if r["oldest_age_hours"] is None else f"{r['oldest_age_hours']:,} h"
                ),
            ),
        ],
        "saga-table",
    )
    waiting = sum(s.bookings for s in ops.saga)
    note = (
        "Nothing waits."
        if waiting == 0
        else "Refund pending: the tenant still owes the member a refund. Needs reconciliation: "
        "only the tenant's ledger, Duffel or an operator can settle the outcome."
    )
    body = [table, html.P(note, className="text-muted small mt-2 mb-0")]
    return _card(title, body, "saga", subtitle)


# ---------------------------------------------------------------- checks and capabilities


def check_sentence(check: ReconciliationCheck, tenant_name: str) -> str:
    """A check in plain words: ``Ledger reconciliation unavailable: <why>``."""
    label = CHECK_LABELS.get(check.check_name, fmt.status_label(check.check_name))
    if not check.available:
        return f"{label} unavailable for {tenant_name}: {check.reason or 'no reason recorded'}"
    return f"{label} runs: {check.reason}" if check.reason else f"{label} runs"


def _found(capability: Capability) -> str:
    if capability.offered is None:
        return "not probed yet"
    return "offered" if capability.offered else "not offered"


def _capabilities_table(found: Sequence[Capability], table_id: str) -> dbc.Table:
    return tables.table(
        [vars(c) | {"row": c} for c in found],
        [
            (
                "capability",
                "Capability",
                lambda r: html.Span(
                    CAPABILITY_LABELS.get(r["capability"], r["capability"]),
                    **{"data-capability": f"{r['tenant_id']}:{r['capability']}"},
                ),
            ),
            (
                "declared",
                "In the tenant's configuration",
                lambda r: "yes" if r["declared"] else "no",
            ),
            ("found", "Found", lambda r: _found(r["row"])),
            ("checked_at", "Last probed", lambda r: fmt.utc(r["checked_at"])),
            ("detail", "Detail", lambda r: r["detail"] or fmt.DASH),
        ],
        table_id,
    )


def _tenant_checks(
    tenant_id: str,
    name: str,
    checks: Sequence[ReconciliationCheck] | None,
    capabilities: Sequence[Capability] | None,
) -> html.Div:
    parts: list[Any] = [html.H2(name, className="h6 mt-2")]
    if checks is None:
        parts.append(not_available("Reconciliation checks", "reconciliation_checks"))
    elif not checks:
        parts.append(states.empty("No reconciliation checks recorded for this tenant yet."))
    else:
        parts.append(
            html.Ul(
                [
                    html.Li(
                        check_sentence(c, name),
                        className="fw-semibold text-danger-emphasis" if not c.available else "",
                        **{
                            "data-check": f"{tenant_id}:{c.check_name}",
                            "data-available": "yes" if c.available else "no",
                        },
                    )
                    for c in checks
                ],
                className="mb-2",
            )
        )
    if capabilities is None:
        parts.append(not_available("Capabilities", "tenant_capabilities"))
    elif not capabilities:
        parts.append(states.empty("No capabilities probed for this tenant yet."))
    else:
        parts.append(_capabilities_table(capabilities, f"capabilities-{tenant_id}"))
    return html.Div(parts, className="mb-3", **{"data-tenant-checks": tenant_id})


def checks_section(
    tenant_ids: Sequence[str],
    names: dict[str, str],
    checks: Sequence[ReconciliationCheck] | None,
    capabilities: Sequence[Capability] | None,
) -> dbc.Card:
    """Per tenant: which reconciliation checks run (and which cannot, and why), and which
    optional API capabilities the probe found."""
    if checks is None and capabilities is None:
        body: Any = not_available("Checks and capabilities", "reconciliation_checks")
    else:
        body = [
            _tenant_checks(
                t,
                _name(names, t),
                None if checks is None else [c for c in checks if c.tenant_id == t],
                None if capabilities is None else [c for c in capabilities if c.tenant_id == t],
            )
            for t in tenant_ids
        ]
    return _card(
        "Checks and capabilities",
        body,
        "checks",
        "what each tenant's API offers, and the checks that depend on it",
    )


def unavailable_checks(
    checks: Sequence[ReconciliationCheck] | None, names: dict[str, str]
) -> html.Div:
    """Near the reconciliation issues: the checks that could not run, so no issue means nothing."""
    if checks is None:
        return html.Div(not_available("Which checks ran", "reconciliation_checks"))
    missing = [c for c in checks if not c.available]
    if not missing:
        return html.Div(
            html.P("Every reconciliation check ran for the tenants in view.", id="all-checks-ran")
        )
    return html.Div(
        dbc.Alert(
            [
                html.P(
                    "These checks cannot run, so the issues they would find are not looked for:",
                    className="mb-1",
                ),
                html.Ul(
                    [
                        html.Li(
                            check_sentence(c, _name(names, c.tenant_id)),
                            **{"data-unavailable": f"{c.tenant_id}:{c.check_name}"},
                        )
                        for c in missing
                    ],
                    className="mb-0",
                ),
            ],
            color="warning",
            id="unavailable-checks",
        )
    )


def operations_body(ops: Operations, tenants: Sequence[Tenant], now: dt.datetime) -> html.Div:
    """The operations page: every section for the tenants in scope."""
    if not tenants:
        return html.Div(states.empty("The snapshot holds no tenants."))
    names = {t.tenant_id: t.name for t in tenants}
    decimals = {t.tenant_id: t.decimals for t in tenants}
    single = len(tenants) == 1
    return html.Div(
        [
            funnel_section(ops, names, single),
            approvals_section(ops, names, decimals, now),
            saga_section(ops, names),
            checks_section([t.tenant_id for t in tenants], names, ops.checks, ops.capabilities),
        ]
    )


# ---------------------------------------------------------------- approvals queue (operators)


def approvals_queue(
    pending: Sequence[PendingApproval],
    names: dict[str, str],
    decimals: dict[str, int],
    now: dt.datetime,
) -> Any:
    """Pending bookings, oldest first, each with approve and reject (read live from the API)."""
    if not pending:
        return states.empty("Nothing is waiting for a decision.")

    def amount(r: dict[str, Any]) -> str:
        p: PendingApproval = r["row"]
        units = fmt.units(p.loyalty_amount, p.loyalty_currency, decimals.get(p.tenant_id, 0))
        return f"{units} ({fmt.usd(p.usd_amount)})"

    def buttons(r: dict[str, Any]) -> html.Div:
        booking_id = r["row"].booking_id
        return html.Div(
            [
                dbc.Button(
                    "Approve",
                    id={"type": "approval-decide", "decision": "approve", "booking": booking_id},
                    color="success",
                    size="sm",
                    className="me-1",
                ),
                dbc.Button(
                    "Reject",
                    id={"type": "approval-decide", "decision": "reject", "booking": booking_id},
                    color="outline-danger",
                    size="sm",
                ),
            ],
            className="text-nowrap",
        )

    return tables.table(
        [{"row": p, "booking_id": p.booking_id} for p in pending],
        [
            ("tenant", "Tenant", lambda r: _name(names, r["row"].tenant_id)),
            ("booking_id", "Booking", lambda r: r["booking_id"]),
            ("member_id", "Member", lambda r: r["row"].member_id),
            ("route", "Route", lambda r: r["row"].route or fmt.DASH),
            ("requested_at", "Requested", lambda r: fmt.utc(r["row"].requested_at)),
            (
                "age",
                "Waiting",
                lambda r: fmt.duration(int((now - r["row"].requested_at).total_seconds())),
            ),
            ("amount", "Amount", amount),
            ("decide", "Decision", buttons),
        ],
        "approvals-queue-table",
    )


def decision_result(view: dict[str, Any], decision: str, actor: str, at: dt.datetime) -> dbc.Alert:
    """What the booking API did with a decision, and who made it when."""
    verb = "Approved" if decision == "approve" else "Rejected"
    return dbc.Alert(
        [
            html.Strong(f"{verb} {view['booking_id']}"),
            f": the booking is now {fmt.status_label(view['status'])}. Recorded in the booking "
            f"API's event feed as operator:{actor} at {fmt.utc_seconds(at)}.",
        ],
        color="success" if decision == "approve" else "secondary",
        id="approval-result-alert",
        className="mb-2",
    )


def problem_alert(message: str, alert_id: str) -> dbc.Alert:
    """A refusal or an outage, said plainly."""
    return dbc.Alert(message, color="danger", id=alert_id, className="mb-2")


# ---------------------------------------------------------------- the booking API at a glance


def _share(part: int, whole: int) -> str:
    return fmt.percent(part, whole)


def api_glance(stats: dict[str, Any], names: dict[str, str]) -> Any:
    """Requests, errors, 429s and latency per tenant and route; failing rows stand out."""
    rows = stats["routes"]
    if not rows:
        return states.empty("No requests in this window.")
    rows = sorted(
        rows,
        key=lambda r: (-(r["server_errors"] + r["throttled"] + r["client_errors"]), -r["requests"]),
    )

    def latency(r: dict[str, Any]) -> str:
        p50, p95 = r["latency_ms_p50_at_most"], r["latency_ms_p95_at_most"]
        bound = lambda v: "over 10 s" if v is None else f"≤ {v:,} ms"  # noqa: E731
        return f"median {bound(p50)}, p95 {bound(p95)}, max {r['latency_ms_max']:,.0f} ms"

    def tenant(r: dict[str, Any]) -> Any:
        label = _name(names, r["tenant_id"]) if r["tenant_id"] else "(no tenant named)"
        failing = r["server_errors"] or r["throttled"]
        return html.Span(
            label,
            className="fw-semibold text-danger" if failing else "",
            **{"data-api-row": f"{r['tenant_id'] or ''} {r['route']}"},
        )

    table = tables.table(
        rows,
        [
            ("tenant", "Tenant", tenant),
            ("route", "Route", lambda r: html.Code(r["route"])),
            ("requests", "Requests", lambda r: fmt.count(r["requests"])),
            (
                "client_errors",
                "4xx (not 429)",
                lambda r: (
                    f"{fmt.count(r['client_errors'])} ({_share(r['client_errors'], r['requests'])})"
                ),
            ),
            (
                "server_errors",
                "5xx",
                lambda r: (
                    f"{fmt.count(r['server_errors'])} ({_share(r['server_errors'], r['requests'])})"
                ),
            ),
            (
                "throttled",
                "429",
                lambda r: f"{fmt.count(r['throttled'])} ({_share(r['throttled'], r['requests'])})",
            ),
            ("latency", "Latency", latency),
        ],
        "api-glance-table",
    )
    note = html.P(
        f"Since {stats['since'][:16].replace('T', ' ')} UTC, from the booking API's own request "
        "counts. Latency is read from fixed buckets: \u201c≤ 250 ms\u201d means the value lies "
        "in the bucket ending at 250 ms.",
        className="text-muted small mt-2 mb-0",
    )
    return html.Div([table, note])


# ---------------------------------------------------------------- issues and quarantine

STATE_COLORS = {"open": "warning", "acknowledged": "info", "resolved": "success"}


def _state_cell(item: WorkItem, action: Any) -> html.Div:
    state = work_item_state(item, action)
    parts: list[Any] = [
        html.Span(
            dbc.Badge(state, color=STATE_COLORS[state], className="me-1"),
            **{"data-state": state},
        )
    ]
    if action is not None:
        said = f" by {action.actor}, {fmt.utc_seconds(action.at)}"
        parts.append(html.Span(f"{action.action}{said}", className="small text-muted"))
        if action.note:
            parts.append(html.Div(f"\u201c{action.note}\u201d", className="small"))
    elif item.outcome:
        parts.append(html.Span(f"quarantine: {item.outcome}", className="small text-muted"))
    return html.Div(parts, **{"data-item": item.item_id})


def _actions_cell(item: WorkItem, action: Any, can_replay: bool) -> html.Div:
    state = work_item_state(item, action)
    buttons = []

    def button(label: str, verb: str, color: str, title: str | None = None) -> dbc.Button:
        return dbc.Button(
            label,
            id={"type": "work-action", "action": verb, "kind": item.kind, "item": item.item_id},
            color=color,
            size="sm",
            className="me-1 mb-1",
            title=title,
        )

    if state == "open":
        buttons.append(button("Acknowledge", "acknowledged", "outline-primary"))
    if state != "resolved":
        buttons.append(button("Resolve", "resolved", "outline-success"))
    else:
        buttons.append(button("Reopen", "reopened", "outline-secondary"))
    if can_replay and item.kind == "quarantine" and item.outcome is None:
        buttons.append(
            button(
                "Replay",
                "replayed",
                "outline-dark",
                "Re-validates every open record of this tenant, source and entity",
            )
        )
    return html.Div(buttons, className="text-nowrap")


def work_list(page: WorkPage, names: dict[str, str], can_replay: Any) -> Any:
    """One page of issues or quarantined records, with their state and the actions left."""
    if not page.total:
        return states.empty("Nothing matches these filters.")
    quarantine = any(item.kind == "quarantine" for item, _ in page.items)
    rows = [{"item": item, "action": action} for item, action in page.items]
    return html.Div(
        [
            html.P(
                f"{fmt.count(page.total)} matching · page {page.page} of {page.pages}",
                className="small text-muted mb-1",
                id="work-count",
            ),
            tables.table(
                rows,
                [
                    ("tenant", "Tenant", lambda r: _name(names, r["item"].tenant_id)),
                    (
                        "category",
                        "Source" if quarantine else "Kind",
                        lambda r: fmt.status_label(r["item"].category),
                    ),
                    (
                        "reference",
                        "Record" if quarantine else "Booking",
                        lambda r: r["item"].reference or fmt.DASH,
                    ),
                    (
                        "summary",
                        "Why" if quarantine else "What disagrees",
                        lambda r: r["item"].summary,
                    ),
                    (
                        "seen_at",
                        "Quarantined" if quarantine else "Booked",
                        lambda r: fmt.utc(r["item"].seen_at),
                    ),
                    ("state", "State", lambda r: _state_cell(r["item"], r["action"])),
                    (
                        "actions",
                        "Actions",
                        lambda r: _actions_cell(r["item"], r["action"], can_replay(r["item"])),
                    ),
                ],
                "work-table",
            ),
        ]
    )


def _dropdown(
    control_id: str,
    options: list[dict[str, str]],
    values: dict[str, Any],
    placeholder: str,
    width: int,
    disabled: bool = False,
) -> dbc.Col:
    return dbc.Col(
        dcc.Dropdown(
            id=control_id,
            options=options,
            value=values.get(control_id),
            placeholder=placeholder,
            disabled=disabled,
        ),
        md=4,
        lg=width,
    )


def work_filters(names: dict[str, str], values: dict[str, Any], single: bool) -> html.Div:
    """The list's filters: which list, tenant (operators), kind, state."""
    tenant_options = [{"label": name, "value": tenant_id} for tenant_id, name in names.items()]
    controls = [
        dbc.Col(
            dbc.RadioItems(
                id="work-list",
                options=[
                    {"label": "Reconciliation issues", "value": "issue"},
                    {"label": "Quarantined records", "value": "quarantine"},
                ],
                value=values.get("work-list") or "issue",
                inline=True,
            ),
            md=12,
            lg=4,
        ),
        _dropdown("work-tenant", tenant_options, values, "Every tenant", 2, disabled=single),
        # The kinds are filled in with those the chosen list holds.
        _dropdown("work-category", [], values, "Every kind", 3),
        _dropdown(
            "work-state", [{"label": s, "value": s} for s in WORK_STATES], values, "Any state", 3
        ),
    ]
    return html.Div(
        [
            dbc.Row(controls, className="g-2 mb-2 align-items-center"),
            dbc.Input(
                id="work-note",
                placeholder="Note for the next acknowledge / resolve / replay (optional)",
                maxLength=1000,
                size="sm",
                className="mb-2",
            ),
        ]
    )
