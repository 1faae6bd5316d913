"""Time controls (date range, granularity, comparison) and what goes beside them: the
period's totals against the period before, and the rates its USD figures were converted at."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components import format as fmt
from dashboard.data import GRAINS, Period, PeriodPoint, RateRange, Tenant


def control_ids(prefix: str) -> list[tuple[str, str]]:
    """The (component id, property) pairs of a page's time controls, for ``url_state``."""
    return [
        (f"{prefix}-range", "start_date"),
        (f"{prefix}-range", "end_date"),
        (f"{prefix}-grain", "value"),
        (f"{prefix}-compare", "value"),
    ]


def controls(prefix: str) -> dbc.Card:
    """Date range (empty: all the data), granularity and comparison with the period before."""
    return dbc.Card(
        dbc.CardBody(
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("Period (UTC days)", html_for=f"{prefix}-range"),
                            dcc.DatePickerRange(
                                id=f"{prefix}-range",
                                display_format="YYYY-MM-DD",
                                clearable=True,
                                start_date_placeholder_text="First day",
                                end_date_placeholder_text="Last day",
                            ),
                        ],
                        xs=12,
                        md="auto",
                    ),
                    dbc.Col(
                        [
                            dbc.Label("Per", html_for=f"{prefix}-grain"),
                            dbc.RadioItems(
                                id=f"{prefix}-grain",
                                options=[{"label": g, "value": g} for g in GRAINS],
                                value="day",
                                inline=True,
                            ),
                        ],
                        xs=12,
                        md="auto",
                    ),
                    dbc.Col(
                        dbc.Switch(
                            id=f"{prefix}-compare",
                            label="Compare with the previous period",
                            value=False,
                        ),
                        xs=12,
                        md="auto",
                        className="align-self-end",
                    ),
                ],
                className="g-3 align-items-end",
            ),
            className="py-2",
        ),
        className="mb-3 time-controls",
    )


def _change(now: Decimal | int, before: Decimal | int) -> str:
    if not before:
        return "no activity in the previous period"
    change = (Decimal(now) - Decimal(before)) * 100 / Decimal(before)
    sign = "+" if change > 0 else ""
    return f"{sign}{change.quantize(Decimal('0.1'), ROUND_HALF_EVEN)} % on the previous period"


def _stat(label: str, value: str, key: str, change: str | None) -> dbc.Col:
    body = [
        html.Div(label, className="text-muted small"),
        html.Div(value, className="fs-5 fw-semibold", **{"data-period": key}),
    ]
    if change is not None:
        body.append(
            html.Div(change, className="small text-muted", **{"data-period": f"{key}:change"})
        )
    return dbc.Col(body, xs=6, md="auto", className="me-4")


def totals(
    period: Period,
    points: Sequence[PeriodPoint],
    previous: Sequence[PeriodPoint] | None,
    today: dt.date,
) -> html.Div:
    """The period in words, its bookings and USD volume, and their change on the period before."""
    bookings = sum(p.bookings for p in points)
    usd = sum((p.usd_volume for p in points), Decimal(0))
    before = period.previous()
    stats = [
        _stat(
            "Bookings",
            fmt.count(bookings),
            "bookings",
            _change(bookings, sum(p.bookings for p in previous)) if previous is not None else None,
        ),
        _stat(
            "USD volume",
            fmt.usd(usd),
            "usd_volume",
            _change(usd, sum((p.usd_volume for p in previous), Decimal(0)))
            if previous is not None
            else None,
        ),
    ]
    described = f"{period.start.isoformat()} to {period.end.isoformat()} ({period.days} days)"
    if previous is not None:
        described += f", against {before.start.isoformat()} to {before.end.isoformat()}"
    if period.end >= today:
        described += "; today is not over yet"
    return html.Div(
        [
            html.P(described, className="text-muted small mb-1", id="period-described"),
            dbc.Row(stats, className="g-2 mb-2"),
        ]
    )


def rate_note(tenant: Tenant, rates: RateRange | None, over: str) -> str:
    """How a tenant's USD figures were converted: the rate in force on each booking's day,
    the rate today, and the range of rates behind the figures ``over`` the period named."""
    today = fmt.rate(tenant.usd_per_unit, tenant.currency)
    if rates is None:
        return f"{tenant.name}: {today} today; no bookings to convert {over}."
    if rates.low == rates.high:
        used = f"all at {fmt.rate(rates.low, tenant.currency)}"
    else:
        used = f"ranging {fmt.rate_value(rates.low)} to {fmt.rate(rates.high, tenant.currency)}"
    return (
        f"{tenant.name}: USD converted at the rate in force on each booking's day; "
        f"today {today}; {used} {over}."
    )


def rate_notes(
    tenants: Sequence[Tenant], rates: dict[str, RateRange] | None, over: str
) -> html.Div | None:
    """One line per tenant saying which rates stand behind its USD figures."""
    if rates is None:
        return None  # a snapshot published before the rates mart: nothing to say
    return html.Div(
        [
            html.Div(
                rate_note(t, rates.get(t.tenant_id), over),
                **{"data-rate": t.tenant_id},
            )
            for t in tenants
        ],
        className="small text-muted rate-notes",
    )
