"""Any path the dashboard does not serve."""

from __future__ import annotations

import dash
from dash import dcc, html

from dashboard.components import states

dash.register_page(__name__, path="/404", name="Not found", title="Not found · Loyalty flights")


def layout(**_query: str) -> html.Div:
    """A short note and a way back."""
    return html.Div(
        [states.not_found("There is no page here."), dcc.Link("Back to the dashboard", href="/")]
    )
