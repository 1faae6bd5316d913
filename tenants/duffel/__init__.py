"""Duffel flights API: the client and its lenient models."""

from tenants.duffel.client import DuffelClient, build_duffel_client
from tenants.duffel.models import (
    Airline,
    Airport,
    DuffelOrder,
    Offer,
    OfferRequest,
    OrderCancellation,
    Payment,
    parse_duration,
)

__all__ = [
    "Airline",
    "Airport",
    "DuffelClient",
    "DuffelOrder",
    "Offer",
    "OfferRequest",
    "OrderCancellation",
    "Payment",
    "build_duffel_client",
    "parse_duration",
]
