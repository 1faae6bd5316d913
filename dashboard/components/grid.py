"""The bookings explorer's grid: infinite row model, so the browser holds only the blocks it shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_ag_grid as dag

from dashboard.components import format as fmt
from dashboard.data import Tenant

BLOCK_ROWS = 100
DEFAULT_SORT = "created_at:desc"
# The columns that matter, shown together at 1280 px without cutting a value: each is as
# wide as the longest value it holds (a 24-character booking id, "needs reconciliation",
# "1,234,567.89 points"), and they add up to less than the page's width.
MAIN_COLUMNS: list[dict[str, Any]] = [
    {"field": "booking_id", "headerName": "Booking", "pinned": "left", "width": 215},
    {"field": "tenant", "colId": "tenant_id", "headerName": "Tenant", "width": 115},
    {"field": "member_id", "headerName": "Member", "width": 115},
    {"field": "status", "headerName": "Status", "width": 165},
    {"field": "route", "headerName": "Route", "width": 110},
    {"field": "departure_at", "headerName": "Departs (UTC)", "width": 150},
    {"field": "loyalty_amount", "headerName": "Paid", "type": "rightAligned", "width": 165},
    {"field": "usd_amount", "headerName": "USD", "type": "rightAligned", "width": 110},
]
# The rest, shown through the column chooser.
OPTIONAL_COLUMNS: list[dict[str, Any]] = [
    {"field": "created_at", "headerName": "Booked (UTC)", "width": 165},
    {"field": "airline_name", "headerName": "Airline", "width": 160},
    {"field": "cabin", "headerName": "Cabin", "width": 150},
    {"field": "passenger_count", "headerName": "Pax", "width": 80},
    {"field": "pnr", "headerName": "PNR", "width": 100},
]


def column_choices() -> list[dict[str, str]]:
    """The column chooser's options: the columns hidden unless asked for."""
    return [{"label": c["headerName"], "value": c["field"]} for c in OPTIONAL_COLUMNS]


def column_defs(show_tenant: bool, extra: object = ()) -> list[dict[str, Any]]:
    """The grid's columns: the main ones, then the optional ones picked in the chooser.

    The sort is an initial one: changing the columns keeps the user's sort.
    """
    picked = set(extra) if isinstance(extra, list | tuple) else set()
    columns = [{**c, "hide": c["field"] == "tenant" and not show_tenant} for c in MAIN_COLUMNS]
    columns += [{**c, "hide": c["field"] not in picked} for c in OPTIONAL_COLUMNS]
    field, direction = DEFAULT_SORT.split(":")
    for column in columns:
        if column.get("colId", column["field"]) == field:
            column["initialSort"] = direction
    return columns


def sort_text(sort_model: object) -> str:
    """The grid's sort model as the query string keeps it: ``column:asc`` or ``column:desc``."""
    if isinstance(sort_model, list) and sort_model and isinstance(sort_model[0], dict):
        first = sort_model[0]
        direction = "asc" if first.get("sort") == "asc" else "desc"
        return f"{first.get('colId')}:{direction}"
    return ""


def bookings_grid(show_tenant: bool) -> dag.AgGrid:
    """An empty grid that asks the server for rows block by block (``getRowsRequest``)."""
    return dag.AgGrid(
        id="bookings-grid",
        rowModelType="infinite",
        columnDefs=column_defs(show_tenant),
        defaultColDef={"sortable": True, "filter": False, "resizable": True, "minWidth": 70},
        dashGridOptions={
            "cacheBlockSize": BLOCK_ROWS,
            "maxBlocksInCache": 10,
            "infiniteInitialRowCount": BLOCK_ROWS,
            "maxConcurrentDatasourceRequests": 2,
            "blockLoadDebounceMillis": 50,
            "rowBuffer": 10,
            "suppressCellFocus": True,
            # The page says "no bookings match" itself: the grid's own overlay would be a second.
            "suppressNoRowsOverlay": True,
        },
        getRowId="params.data.row_id",
        className="bookings-grid",
        style={"height": "65vh", "width": "100%"},
    )


def grid_rows(rows: Sequence[dict[str, Any]], tenants: dict[str, Tenant]) -> list[dict[str, Any]]:
    """Booking rows as the grid shows them: formatted text, money with its currency."""
    shown = []
    for row in rows:
        tenant = tenants.get(row["tenant_id"])
        shown.append(
            {
                "row_id": f"{row['tenant_id']}/{row['booking_id']}",
                "booking_id": row["booking_id"],
                "tenant": tenant.name if tenant else row["tenant_id"],
                "created_at": fmt.utc_minutes(row["created_at"]),
                "departure_at": fmt.utc_minutes(row["departure_at"]),
                "status": fmt.status_label(row["status"]),
                "route": f"{row['origin'] or '?'} → {row['destination'] or '?'}",
                "airline_name": row["airline_name"] or fmt.DASH,
                "cabin": fmt.status_label(row["cabin"]),
                "passenger_count": row["passenger_count"],
                "loyalty_amount": fmt.units(
                    row["loyalty_amount"], row["loyalty_currency"], tenant.decimals if tenant else 2
                ),
                "usd_amount": fmt.usd(row["usd_amount"]),
                "member_id": row["member_id"],
                "pnr": row["pnr"] or fmt.DASH,
            }
        )
    return shown
