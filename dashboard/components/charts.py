"""Plotly figures (as plain figure dicts) built from the data module's results.

Amounts go to the browser as their exact decimal text (plotly.js reads numeric strings as
numbers), and hover labels carry the formatted amount with its currency. Plain dicts skip
graph_objects' per-point validation, which cost more than the queries behind the figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from dashboard.components import format as fmt
from dashboard.data import (
    STATUSES,
    Breakdown,
    DailyPoint,
    FunnelDay,
    Tenant,
    TenantKpis,
    TierSummary,
)

Figure = dict[str, Any]
STATUS_COLOURS = {
    "confirmed": "#198754",
    "pending_approval": "#ffc107",
    "rejected": "#6c757d",
    "cancelled": "#dc3545",
    "failed": "#212529",
}
_MARGIN = {"l": 48, "r": 16, "t": 40, "b": 40}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0},
        "margin": _MARGIN,
        "legend": {"orientation": "h", "y": -0.2},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hovermode": "closest",
        "font": {"size": 12},
        "xaxis": {"gridcolor": "#eee"},
        "yaxis": {"gridcolor": "#eee", "rangemode": "tozero"},
        **extra,
    }


def daily_figure(points: Sequence[DailyPoint], tenants: Sequence[Tenant], metric: str) -> Figure:
    """Bookings (``metric="bookings"``) or USD volume (``"usd_volume"``) per day, one line per tenant."""
    names = {t.tenant_id: t.name for t in tenants}
    by_tenant: dict[str, list[DailyPoint]] = defaultdict(list)
    for point in points:
        by_tenant[point.tenant_id].append(point)
    usd = metric == "usd_volume"
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": names.get(tenant_id, tenant_id),
            "x": [p.day.isoformat() for p in series],
            "y": [str(p.usd_volume) if usd else p.bookings for p in series],
            "customdata": [fmt.usd(p.usd_volume) if usd else f"{p.bookings:,}" for p in series],
            "hovertemplate": "%{x}: %{customdata}<extra>%{fullData.name}</extra>",
        }
        for tenant_id, series in by_tenant.items()
    ]
    title = "USD volume by day (UTC)" if usd else "Bookings by day (UTC)"
    layout = _layout(title)
    layout["yaxis"] = {**layout["yaxis"], "tickprefix": "$" if usd else ""}
    return {"data": traces, "layout": layout}


def status_mix_figure(kpis: Sequence[TenantKpis]) -> Figure:
    """Share of each booking status per tenant, as stacked bars."""
    names = [k.tenant.name for k in kpis]
    traces = [
        {
            "type": "bar",
            "orientation": "h",
            "name": fmt.status_label(status),
            "y": names,
            "x": [k.statuses.get(status, 0) for k in kpis],
            "customdata": [fmt.percent(k.statuses.get(status, 0), k.bookings) for k in kpis],
            "hovertemplate": "%{y}: %{x:,} (%{customdata})<extra>"
            + fmt.status_label(status)
            + "</extra>",
            "marker": {"color": STATUS_COLOURS[status]},
        }
        for status in STATUSES
    ]
    layout = _layout(
        "Status mix (% of bookings)",
        barmode="stack",
        barnorm="percent",
        margin={**_MARGIN, "l": 100},
    )
    return {"data": traces, "layout": layout}


def breakdown_figure(items: Sequence[Breakdown], title: str) -> Figure:
    """Horizontal bars of bookings per label (routes, airlines), the largest on top."""
    ordered = list(reversed(items))
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [i.label for i in ordered],
        "x": [i.bookings for i in ordered],
        "customdata": [fmt.usd(i.usd_volume) for i in ordered],
        "hovertemplate": "%{y}: %{x:,} bookings, %{customdata}<extra></extra>",
        "marker": {"color": "#0d6efd"},
    }
    return {"data": [trace], "layout": _layout(title, margin={**_MARGIN, "l": 140})}


def share_figure(
    shares: Sequence[tuple[str, int]], title: str, colours: dict[str, str] | None = None
) -> Figure:
    """A donut of bookings per label (cabins, statuses)."""
    trace: dict[str, Any] = {
        "type": "pie",
        "labels": [fmt.status_label(label) for label, _ in shares],
        "values": [n for _, n in shares],
        "hole": 0.5,
        "sort": False,
    }
    if colours:
        trace["marker"] = {"colors": [colours[label] for label, _ in shares]}
    return {"data": [trace], "layout": _layout(title)}


def tier_figure(tiers: Sequence[TierSummary], currency: str) -> Figure:
    """Members per tier, with the balance they hold in the hover."""
    trace = {
        "type": "bar",
        "x": [t.tier for t in tiers],
        "y": [t.members for t in tiers],
        "customdata": [
            f"{fmt.units(t.balance, currency)} ({fmt.usd(t.balance_usd)})" for t in tiers
        ],
        "hovertemplate": "%{x}: %{y:,} members holding %{customdata}<extra></extra>",
        "marker": {"color": "#6f42c1"},
    }
    return {"data": [trace], "layout": _layout("", margin={**_MARGIN, "t": 8})}


SHORT_SPAN_DAYS = 14  # up to this many days, every day gets a tick and a marker
FUNNEL_STEPS = (
    ("searches", "Searches", "#0d6efd"),
    ("bookings", "Bookings", "#6f42c1"),
    ("confirmed", "Confirmed", "#198754"),
    ("abandoned_searches", "Abandoned searches", "#adb5bd"),
)


def funnel_figure(days: Sequence[FunnelDay], title: str) -> Figure:
    """Searches, bookings, confirmed and abandoned searches per UTC day (tenants in view summed)."""
    by_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in days:
        for step, _, _ in FUNNEL_STEPS:
            by_day[d.day.isoformat()][step] += getattr(d, step)
    x = sorted(by_day)
    short = (
        bool(days) and (max(d.day for d in days) - min(d.day for d in days)).days < SHORT_SPAN_DAYS
    )
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers" if short else "lines",
            "name": label,
            "x": x,
            "y": [by_day[day][step] for day in x],
            "line": {"color": colour, **({"dash": "dot"} if step == "abandoned_searches" else {})},
            "hovertemplate": "%{x}: %{y:,}<extra>" + label + "</extra>",
        }
        for step, label, colour in FUNNEL_STEPS
    ]
    layout = _layout(title)
    # Whole days on the axis: a short span would otherwise be ticked in hours.
    layout["xaxis"] = {**layout["xaxis"], "type": "date", "tickformat": "%Y-%m-%d"}
    if short:
        layout["xaxis"]["dtick"] = 86_400_000
    return {"data": traces, "layout": layout}
