"""Plotly figures (as plain figure dicts) built from the data module's results.

Amounts go to the browser as their exact decimal text (plotly.js reads numeric strings as
numbers), and hover labels carry the formatted amount with its currency. Plain dicts skip
graph_objects' per-point validation, which cost more than the queries behind the figures.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from dashboard.components import format as fmt
from dashboard.data import (
    STATUSES,
    Breakdown,
    FunnelDay,
    Period,
    PeriodPoint,
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
        # Labels a little off the axes and margins that grow to fit them: no tick label
        # overlaps another or the other axis's, and none is cut at the edge.
        "xaxis": {"gridcolor": "#eee", "automargin": True, "ticklabelstandoff": 6},
        "yaxis": {
            "gridcolor": "#eee",
            "rangemode": "tozero",
            "automargin": True,
            "ticklabelstandoff": 4,
        },
        **extra,
    }


PREVIOUS_COLOUR = "#adb5bd"
MAX_TICKS = 6
TICK_DAYS = {"day": 86_400_000, "week": 7 * 86_400_000}  # milliseconds
PARTIAL_FILL = "rgba(255, 193, 7, 0.12)"
GRAIN_TITLES = {"day": "day", "week": "week (from Monday)", "month": "month"}


def _bucket_label(bucket: dt.date, grain: str) -> str:
    return bucket.strftime("%b %Y") if grain == "month" else bucket.isoformat()


def _series(
    points: Sequence[PeriodPoint], tenant_id: str, buckets: Sequence[dt.date], usd: bool
) -> list[Any]:
    """One tenant's figure per bucket; a bucket without activity is a true zero."""
    found = {p.bucket: p for p in points if p.tenant_id == tenant_id}
    return [
        (str(found[b].usd_volume) if usd else found[b].bookings)
        if b in found
        else ("0" if usd else 0)
        for b in buckets
    ]


def period_figure(
    points: Sequence[PeriodPoint],
    tenants: Sequence[Tenant],
    metric: str,
    period: Period,
    today: dt.date,
    previous: Sequence[PeriodPoint] | None = None,
) -> Figure:
    """Bookings (``metric="bookings"``) or USD volume (``"usd_volume"``) per bucket of the
    period, one line per tenant. A bucket the period cuts or that has not ended (it holds
    today) is drawn dashed and shaded, labelled "partial": its lower figure is not a drop.
    With ``previous``, the period before is drawn dotted, bucket for bucket."""
    usd = metric == "usd_volume"
    buckets = period.buckets()
    x = [b.isoformat() for b in buckets]
    partial = [period.partial(b, today) for b in buckets]
    names = {t.tenant_id: t.name for t in tenants}

    def label(value: Any) -> str:
        return fmt.usd(Decimal(value)) if usd else f"{int(value):,}"

    traces: list[dict[str, Any]] = []
    for tenant in tenants:
        series = _series(points, tenant.tenant_id, buckets, usd)
        name = names.get(tenant.tenant_id, tenant.tenant_id)
        texts = [
            f"{_bucket_label(b, period.grain)}{' (partial)' if cut else ''}: {label(v)}"
            for b, cut, v in zip(buckets, partial, series, strict=True)
        ]
        whole = [v if not cut else None for v, cut in zip(series, partial, strict=True)]
        # The dashed part: each partial bucket and the whole bucket next to it.
        near = [
            cut or (i > 0 and partial[i - 1]) or (i + 1 < len(partial) and partial[i + 1])
            for i, cut in enumerate(partial)
        ]
        dashed = [v if keep else None for v, keep in zip(series, near, strict=True)]
        shown = {"legendgroup": tenant.tenant_id, "customdata": texts}
        hover = "%{customdata}<extra>" + name + "</extra>"
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(x) <= SHORT_SPAN_DAYS else "lines",
                "name": name,
                "x": x,
                "y": whole,
                "hovertemplate": hover,
                **shown,
            }
        )
        if any(partial):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"{name} (partial)",
                    "showlegend": False,
                    "x": x,
                    "y": dashed,
                    "line": {"dash": "dash"},
                    "marker": {"symbol": "circle-open", "size": 8},
                    "hovertemplate": hover,
                    **shown,
                }
            )
        if previous is not None:
            before = period.previous()
            earlier = Period(before.start, before.end, period.grain).buckets()
            prev_values = _series(previous, tenant.tenant_id, earlier, usd)
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{name}, previous period",
                    "legendgroup": tenant.tenant_id,
                    "x": x[: len(prev_values)],
                    "y": prev_values[: len(x)],
                    "line": {"dash": "dot", "color": PREVIOUS_COLOUR},
                    "customdata": [
                        f"{_bucket_label(b, period.grain)} (previous period): {label(v)}"
                        for b, v in zip(earlier, prev_values, strict=True)
                    ][: len(x)],
                    "hovertemplate": hover,
                }
            )
    what = "USD volume" if usd else "Bookings"
    layout = _layout(f"{what} by {GRAIN_TITLES[period.grain]}, UTC")
    layout["yaxis"] = {**layout["yaxis"], "tickprefix": "$" if usd else ""}
    # One tick per bucket, or per few buckets: at most MAX_TICKS labels, none repeated.
    every = -(-len(buckets) // MAX_TICKS)
    layout["xaxis"] = {
        **layout["xaxis"],
        "type": "date",
        "tickformat": "%b %Y" if period.grain == "month" else "%Y-%m-%d",
        "tick0": x[0] if x else None,
        "dtick": f"M{every}" if period.grain == "month" else every * TICK_DAYS[period.grain],
    }
    half = dt.timedelta(days={"day": 0.5, "week": 3.5, "month": 15}[period.grain])
    shapes, notes = [], []
    for b, cut in zip(buckets, partial, strict=True):
        if not cut:
            continue
        centre = dt.datetime.combine(b, dt.time())  # where the bucket's point is drawn
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": (centre - half).isoformat(),
                "x1": (centre + half).isoformat(),
                "y0": 0,
                "y1": 1,
                "fillcolor": PARTIAL_FILL,
                "line": {"width": 0},
                "layer": "below",
            }
        )
        notes.append(
            {
                "x": centre.isoformat(),
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "yanchor": "bottom",
                "text": "partial",
                "showarrow": False,
                "font": {"size": 10, "color": "#997404"},
            }
        )
    layout["shapes"] = shapes
    layout["annotations"] = notes
    layout["legend"] = {"orientation": "h", "y": -0.25}
    layout["margin"] = {**_MARGIN, "b": 64}
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
            "hovertemplate": "%{y}: %{x:,} (%{customdata})<br>"
            + fmt.status_label(status)
            + ": "
            + fmt.status_meaning(status)
            + "<extra></extra>",
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
        "customdata": [fmt.status_meaning(label) for label, _ in shares],
        "hovertemplate": "%{label}: %{value:,} (%{percent})<br>%{customdata}<extra></extra>",
        # Labels sit in the legend, never on slices where small ones would overlap.
        "textinfo": "percent",
        "textposition": "inside",
        "insidetextorientation": "horizontal",
        "hole": 0.5,
        "sort": False,
    }
    if colours:
        trace["marker"] = {"colors": [colours[label] for label, _ in shares]}
    # A slice too small for its percentage shows none rather than one over its neighbour.
    return {"data": [trace], "layout": _layout(title, uniformtext={"minsize": 10, "mode": "hide"})}


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
    layout = _layout("", margin={**_MARGIN, "t": 8})
    # Tiers in the order given (rank order), never re-sorted by the axis.
    layout["xaxis"] = {
        **layout["xaxis"],
        "categoryorder": "array",
        "categoryarray": [t.tier for t in tiers],
    }
    return {"data": [trace], "layout": layout}


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
