"""The bookings explorer's grid: infinite row model, so the browser holds only the blocks it shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_ag_grid as dag

from dashboard.components import format as fmt
from dashboard.data import Tenant

BLOCK_ROWS = 100


def bookings_grid(show_tenant: bool) -> dag.AgGrid:
    """An empty grid that asks the server for rows block by block (``getRowsRequest``)."""
    columns: list[dict[str, Any]] = [
        {"field": "booking_id", "headerName": "Booking", "pinned": "left", "width": 150},
        {
            "field": "tenant",
            "colId": "tenant_id",
            "headerName": "Tenant",
            "hide": not show_tenant,
            "width": 120,
        },
        {"field": "created_at", "headerName": "Booked (UTC)", "sort": "desc", "width": 170},
        {"field": "departure_at", "headerName": "Departs (UTC)", "width": 170},
        {"field": "status", "headerName": "Status", "width": 130},
        {"field": "route", "headerName": "Route", "width": 115},
        {"field": "airline_name", "headerName": "Airline", "width": 160},
        {"field": "cabin", "headerName": "Cabin", "width": 150},
        {"field": "passenger_count", "headerName": "Pax", "width": 80},
        {"field": "loyalty_amount", "headerName": "Paid", "type": "rightAligned", "width": 150},
        {"field": "usd_amount", "headerName": "USD", "type": "rightAligned", "width": 120},
        {"field": "member_id", "headerName": "Member", "width": 130},
        {"field": "pnr", "headerName": "PNR", "width": 100},
    ]
    return dag.AgGrid(
        id="bookings-grid",
        rowModelType="infinite",
        columnDefs=columns,
        defaultColDef={"sortable": True, "filter": False, "resizable": True, "minWidth": 70},
        dashGridOptions={
            "cacheBlockSize": BLOCK_ROWS,
            "maxBlocksInCache": 10,
            "infiniteInitialRowCount": BLOCK_ROWS,
            "maxConcurrentDatasourceRequests": 2,
            "blockLoadDebounceMillis": 50,
            "rowBuffer": 10,
            "suppressCellFocus": True,
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
                "created_at": fmt.utc(row["created_at"]),
                "departure_at": fmt.utc(row["departure_at"]),
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
