"""The states a view can be in besides "here is your data": no snapshot, refused, empty."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html


def no_snapshot() -> dbc.Alert:
    """Shown until the pipeline has published its first serving snapshot."""
    return dbc.Alert(
        [
            html.H4("No data published yet", className="alert-heading"),
            html.P(
                "The dashboard reads the serving snapshot the pipeline publishes, and there "
                "is none in the data folder yet."
            ),
            html.P(["Run ", html.Code("make pipeline"), " (or ", html.Code("make demo"), ")."]),
            html.P(
                "This page picks the data up by itself as soon as it is published.",
                className="mb-0",
            ),
        ],
        color="info",
        id="no-snapshot",
    )


def data_unavailable(problem: str) -> dbc.Alert:
    """Shown while the published data cannot be read and there is no good snapshot to show."""
    return dbc.Alert(
        [
            html.H4("Data unavailable", className="alert-heading"),
            html.P(problem),
            html.P(
                "This page shows the data again by itself after the next good publish.",
                className="mb-0",
            ),
        ],
        color="warning",
        id="data-unavailable",
    )


def no_data(problem: str | None) -> dbc.Alert:
    """The state for "no version to show": unreadable data if there is a problem, else none yet."""
    return data_unavailable(problem) if problem else no_snapshot()


def refused(message: str = "Your account does not give access to this tenant.") -> dbc.Alert:
    """Shown instead of data the signed-in user may not see."""
    return dbc.Alert(
        [html.H4("Not available", className="alert-heading"), html.P(message, className="mb-0")],
        color="warning",
        id="refused",
    )


def empty(message: str) -> dbc.Alert:
    """Shown where a query matched nothing."""
    return dbc.Alert(message, color="light", className="empty-state")


def not_found(message: str) -> dbc.Alert:
    """Shown for an id that is not in the snapshot."""
    return dbc.Alert(message, color="secondary", id="not-found")
