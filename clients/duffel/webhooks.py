"""Duffel's webhooks on the receiving side: the endpoint and event models, and the signature check.

Duffel signs every delivery with ``X-Duffel-Signature: t=<unix seconds>,v1=<hex>``, where
``v1`` is the lower-case hex HMAC-SHA256, keyed by the webhook's secret (its UTF-8 bytes),
of ``<t>.<raw request body>``. The check must run over the body bytes exactly as received,
never over re-serialised JSON. Deliveries are at least once and unordered: receivers
de-duplicate by the event ``id``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from clients.duffel.models import DuffelWebhook
from clients.loyalty.models import UtcDatetime

__all__ = [
    "DuffelWebhook",
    "DuffelWebhookEvent",
    "WebhookSignatureError",
    "parse_webhook_event",
    "sign_webhook",
    "verify_webhook_signature",
]

SIGNATURE_HEADER = "X-Duffel-Signature"
# Duffel states no tolerance; five minutes is the usual guard against replayed deliveries.
DEFAULT_TOLERANCE_SECONDS = 300.0


class WebhookSignatureError(ValueError):
    """A webhook delivery whose signature does not prove it came from Duffel unaltered."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DuffelWebhookEvent(_Lenient):
    """One delivered event: ``data.object`` is the resource (an order for ``order.created``)."""

    id: str
    type: str
    api_version: str | None = None
    live_mode: bool | None = None
    idempotency_key: str | None = None
    created_at: UtcDatetime | None = None
    identity_organisation_id: str | None = None
    data: dict[str, Any] = {}

    @property
    def object(self) -> dict[str, Any]:
        found = self.data.get("object")
        return found if isinstance(found, dict) else {}


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Duffel-Signature`` value Duffel would send for ``body`` at ``timestamp``."""
    digest = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_webhook_signature(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance: float | None = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> int:
    """Check a delivery's ``X-Duffel-Signature`` against the raw ``body``; returns its timestamp.

    Raises ``WebhookSignatureError`` (saying why, never echoing the secret) when the header
    is missing or malformed, no ``v1`` signature matches, or the timestamp is more than
    ``tolerance`` seconds from ``now`` (``None`` turns the age check off). Several ``v1``
    values are accepted, any one matching, as during a secret rotation.
    """
    if not secret:
        raise WebhookSignatureError("no webhook secret configured")
    if not header:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp_text: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            timestamp_text = value
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp_text is None or not timestamp_text.isdigit():
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} has no valid timestamp")
    if not signatures:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} has no v1 signature")
    timestamp = int(timestamp_text)
    expected = sign_webhook(secret, body, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookSignatureError("signature does not match the body")
    if tolerance is not None:
        age = (time.time() if now is None else now) - timestamp
        if abs(age) > tolerance:
            raise WebhookSignatureError(
                f"signature timestamp is {age:.0f} s from now (tolerance {tolerance:g} s)"
            )
    return timestamp


def parse_webhook_event(body: bytes) -> DuffelWebhookEvent:
    """The event in a (verified) delivery body; ``ValueError`` when it is not one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"webhook body is not JSON: {exc}") from exc
    return DuffelWebhookEvent.model_validate(payload)
