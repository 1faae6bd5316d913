"""Duffel flights API: the client and its lenient models."""

from clients.duffel.client import DuffelClient, build_duffel_client
from clients.duffel.models import (
    Airline,
    Airport,
    DuffelOrder,
    Offer,
    OfferRequest,
    OrderCancellation,
    Payment,
    parse_duration,
)
from clients.duffel.webhooks import (
    DuffelWebhook,
    DuffelWebhookEvent,
    WebhookSignatureError,
    parse_webhook_event,
    verify_webhook_signature,
)

__all__ = [
    "Airline",
    "Airport",
    "DuffelClient",
    "DuffelOrder",
    "DuffelWebhook",
    "DuffelWebhookEvent",
    "Offer",
    "OfferRequest",
    "OrderCancellation",
    "Payment",
    "WebhookSignatureError",
    "build_duffel_client",
    "parse_duration",
    "parse_webhook_event",
    "verify_webhook_signature",
]
