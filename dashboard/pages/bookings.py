"""Bookings explorer: a server-paged grid with filters, search, CSV export and row click to detail."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import (
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    dcc,
    html,
)
from dash.exceptions import PreventUpdate

from dashboard import data
from dashboard.auth import current_scope
from dashboard.components import format as fmt
from dashboard.components import grid, states, tables
from dashboard.components.tables import booking_href
from dashboard.components.urlstate import url_state
from dashboard.context import snapshot, tenant_names

PATH = "/bookings"
dash.register_page(__name__, path=PATH, name="Bookings", title="Bookings · Loyalty flights")

FILTERS = [
    State("bookings-tenant", "value"),
    State("bookings-status", "value"),
    State("bookings-date-field", "value"),
    State("bookings-dates", "start_date"),
    State("bookings-dates", "end_date"),
    State("bookings-search", "value"),
]
FILTER_INPUTS = [Input(s.component_id, s.component_property) for s in FILTERS]
# Every filter, the sort and the picked columns live in the query string.
url_state(
    PATH,
    [(s.component_id, s.component_property) for s in FILTERS]
    + [("bookings-sort", "data"), ("bookings-columns", "value")],
)


def _filters(
    tenant: object, statuses: object, date_field: object, start: object, end: object, search: object
) -> data.BookingFilters:
    return data.BookingFilters.parse(
        tenant_id=tenant,
        statuses=statuses,
        date_field=date_field,
        date_from=start,
        date_to=end,
        search=search,
    )


def layout(**_query: str) -> Any:
    """Filters above the grid; staff see their tenant fixed in the tenant filter."""
    scope = current_scope()
    names = tenant_names()
    if scope.is_operator:
        tenant_filter = dcc.Dropdown(
            id="bookings-tenant",
            options=[{"label": name, "value": t} for t, name in names.items()],
            placeholder="All tenants",
        )
    else:
        tenant_filter = dcc.Dropdown(
            id="bookings-tenant",
            options=[
                {
                    "label": names.get(scope.tenant_id or "", scope.tenant_id),
                    "value": scope.tenant_id,
                }
            ],
            value=scope.tenant_id,
            clearable=False,
            disabled=True,
        )
    filters = dbc.Row(
        [
            dbc.Col(
                [dbc.Label("Tenant", html_for="bookings-tenant"), tenant_filter], xs=12, md=6, xl=2
            ),
            dbc.Col(
                [
                    dbc.Label("Status", html_for="bookings-status"),
                    dcc.Dropdown(
                        id="bookings-status",
                        options=[{"label": fmt.status_label(s), "value": s} for s in data.STATUSES],
                        multi=True,
                        value=[],
                        placeholder="Any status",
                    ),
                ],
                xs=12,
                md=6,
                xl=3,
            ),
            dbc.Col(
                [
                    dbc.RadioItems(
                        id="bookings-date-field",
                        options=[
                            {"label": "Booked", "value": "created_at"},
                            {"label": "Departure", "value": "departure_at"},
                        ],
                        value="created_at",
                        inline=True,
                    ),
                    dcc.DatePickerRange(
                        id="bookings-dates",
                        display_format="YYYY-MM-DD",
                        clearable=True,
                        start_date_placeholder_text="From (UTC)",
                        end_date_placeholder_text="To (UTC)",
                    ),
                ],
                xs=12,
                md=6,
                xl=4,
            ),
            dbc.Col(
                [
                    dbc.Label("Search", html_for="bookings-search"),
                    dbc.Input(
                        id="bookings-search",
                        type="search",
                        placeholder="Booking id, member id or PNR",
                        debounce=True,
                        maxLength=data.SEARCH_MAX,
                    ),
                ],
                xs=12,
                md=6,
                xl=3,
            ),
        ],
        className="g-3 mb-3",
    )
    return html.Div(
        [
            html.H1("Bookings", className="h3"),
            filters,
            tables.status_legend(data.STATUSES, "status-legend"),
            html.Div(
                [
                    html.Span(id="bookings-count", className="me-3"),
                    html.A(
                        "Export CSV",
                        id="bookings-export",
                        href="/export/bookings.csv",
                        className="btn btn-sm btn-outline-primary me-3",
                        download="bookings.csv",
                    ),
                    dbc.Button(
                        "Columns",
                        id="bookings-column-chooser",
                        size="sm",
                        color="secondary",
                        outline=True,
                    ),
                    dbc.Popover(
                        [
                            dbc.PopoverHeader("More columns"),
                            dbc.PopoverBody(
                                dcc.Checklist(
                                    id="bookings-columns",
                                    options=grid.column_choices(),
                                    value=[],
                                    inputClassName="me-2",
                                    labelClassName="d-block",
                                )
                            ),
                        ],
                        target="bookings-column-chooser",
                        trigger="legacy",  # a click elsewhere closes it
                        placement="bottom-start",
                    ),
                ],
                className="d-flex align-items-center mb-2",
            ),
            html.Div(id="bookings-state"),
            grid.bookings_grid(show_tenant=scope.is_operator),
            dcc.Location(id="bookings-nav", refresh="callback-nav"),
            dcc.Store(id="bookings-purged"),
            dcc.Store(id="bookings-sort", data=grid.DEFAULT_SORT),
            dcc.Store(id="bookings-show-tenant", data=scope.is_operator),
        ]
    )


@callback(
    Output("bookings-grid", "getRowsResponse"),
    Output("bookings-count", "children"),
    Output("bookings-state", "children"),
    Input("bookings-grid", "getRowsRequest"),
    State("snapshot-version", "data"),
    *FILTERS,
)
def load_rows(request: dict | None, version: str | None, *values: object) -> tuple[Any, Any, Any]:
    """One block of rows for the grid, filtered and sorted on the server, scoped by the session."""
    if not request:
        raise PreventUpdate
    scope = current_scope()
    filters = _filters(*values)
    filters.where(scope)  # refuse an out-of-scope tenant before anything else
    if version is None:
        return {"rowData": [], "rowCount": 0}, "", states.no_data(snapshot().problem)
    snap = snapshot()
    page = data.bookings_page(
        snap,
        scope,
        filters,
        data.parse_sort(request.get("sortModel")),
        int(request.get("startRow") or 0),
        int(request.get("endRow") or grid.BLOCK_ROWS),
    )
    tenants = {t.tenant_id: t for t in data.tenants(snap, scope)}
    # The sort the grid asked for goes to the query string.
    dash.set_props("bookings-sort", {"data": grid.sort_text(request.get("sortModel"))})
    empty = states.empty("No bookings match these filters.") if page.total == 0 else None
    counted = (
        html.Span([html.Strong(fmt.count(page.total), id="bookings-total"), " bookings match"])
        if page.total
        else None
    )
    return (
        {"rowData": grid.grid_rows(page.rows, tenants), "rowCount": page.total},
        counted,
        empty,
    )


clientside_callback(
    ClientsideFunction(namespace="dashboard", function_name="purgeGrid"),
    Output("bookings-purged", "data"),
    *FILTER_INPUTS,
    Input("snapshot-version", "data"),
    prevent_initial_call=True,
)


clientside_callback(
    ClientsideFunction(namespace="dashboard", function_name="applySort"),
    Input("bookings-sort", "data"),
)


@callback(
    Output("bookings-grid", "columnDefs"),
    Input("bookings-columns", "value"),
    State("bookings-show-tenant", "data"),
    prevent_initial_call=True,
)
def choose_columns(picked: object, show_tenant: object) -> list[dict[str, Any]]:
    """The main columns always; the others as picked in the column chooser."""
    return grid.column_defs(show_tenant is True, picked)


@callback(Output("bookings-export", "href"), *FILTER_INPUTS)
def export_link(*values: object) -> str:
    """The CSV link carries the same filters as the grid (the route re-checks the scope)."""
    filters = _filters(*values)
    params: list[tuple[str, str]] = []
    if filters.tenant_id:
        params.append(("tenant", filters.tenant_id))
    params += [("status", s) for s in filters.statuses]
    params.append(("date_field", filters.date_field))
    if filters.date_from:
        params.append(("from", filters.date_from.isoformat()))
    if filters.date_to:
        params.append(("to", filters.date_to.isoformat()))
    if filters.search:
        params.append(("q", filters.search))
    return f"/export/bookings.csv?{urlencode(params)}"


@callback(
    Output("bookings-nav", "href"),
    Input("bookings-grid", "cellClicked"),
    prevent_initial_call=True,
)
def open_booking(clicked: dict | None) -> str:
    """A click on a row opens that booking's detail page."""
    row_id = (clicked or {}).get("rowId")
    if not isinstance(row_id, str) or "/" not in row_id:
        raise PreventUpdate
    tenant_id, booking_id = row_id.split("/", 1)
    return booking_href(tenant_id, booking_id)
