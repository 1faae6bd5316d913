"""The floor of the booking benchmark: the booking API's routes as bare FastAPI endpoints.

Same paths, sync handlers (a thread each, as the booking API's), constant small bodies:
whatever latency this shows under uvicorn is the framework's, the loopback's and the load
client's, which no work in the booking API can go below.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()

_FLIGHT = {"id": "off_bare", "price": {"loyalty_amount": "100", "loyalty_currency": "stars"}}


@app.post("/api/v1/flights/search")
def search(body: dict[str, Any]) -> dict[str, Any]:
    """A search answer with one flight."""
    return {"data": {"search_id": "orq_bare", "flights": [_FLIGHT]}}


@app.post("/api/v1/bookings", status_code=201)
def book(body: dict[str, Any]) -> dict[str, Any]:
    """A confirmed booking."""
    return {"data": {"booking_id": "bkg_bare", "status": "confirmed"}}


@app.get("/api/v1/bookings/{booking_id}")
def get_booking(booking_id: str) -> dict[str, Any]:
    """One booking."""
    return {"data": {"booking_id": booking_id, "status": "confirmed"}}


@app.get("/api/v1/bookings")
def list_bookings(limit: int = 20) -> dict[str, Any]:
    """An empty page."""
    return {"data": {"bookings": [], "pagination": {"total": 0, "limit": limit, "offset": 0}}}
