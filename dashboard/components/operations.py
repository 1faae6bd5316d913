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

from dashboard.components import charts, states, tables
from dashboard.components import format as fmt
from dashboard.data import (
    ApprovalSummary,
    Capability,
    FunnelTotals,
    Operations,
    ReconciliationCheck,
    Tenant,
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
