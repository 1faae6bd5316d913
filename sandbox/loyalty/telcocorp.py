"""TelcoCorp's stand-in: OAuth 2.0 client credentials, points, and economy class only."""

import secrets
import time
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sandbox.config import SandboxConfig
from sandbox.loyalty.common import (
    EXTENSION_ROUTES,
    TenantSpec,
    add_fault_control,
    add_listings,
    after_acting,
    bearer_token,
    create_service_app,
    debit,
    error,
    guarded,
    json_response,
    member_or_404,
    mock_mode,
    money,
    new_id,
    read_body,
    refund,
    simulate_failures,
    wire_timestamp,
)
from sandbox.loyalty.store import Credential, LoyaltyStore

CLIENT_ID = "telcocorp_client_id"
CLIENT_SECRET = "telcocorp_client_secret"
DEFAULT_SCOPE = "points:read points:use"
ALLOWED_CLASSES = ["economy"]
RESTRICTIONS = ["Economy class only", "No upgrades available"]

# Routes the fault switches know by name (sandbox.faults); paths as in the routes below.
FAULT_ROUTES = {
    "token": ("POST", "/oauth/token"),
    "balance": ("GET", "/api/v2/customers/{customer_id}/points"),
    "deduct": ("POST", "/api/v2/customers/{customer_id}/points/use"),
    "refund": ("POST", "/api/v2/customers/{customer_id}/points/refund"),
    "eligibility": ("GET", "/api/v2/customers/{customer_id}/travel/eligibility"),
    "ledger": ("GET", "/api/v2/ledger/transactions"),
    "members": ("GET", "/api/v2/customers"),
}

SPEC = TenantSpec(
    service="telcocorp",
    title="TelcoCorp API Mock",
    member_noun="Customer",
    id_field="customer_id",
    refunded_field="points_refunded",
    refund_prefix="tcref_",
    insufficient_code="insufficient_points",
    insufficient_message="Customer has insufficient points",
    current_field="current_points",
    requested_field="requested_points",
    simulated_current=Decimal(1000),
)


class TokenRequest(BaseModel):
    grant_type: str
    client_id: str
    client_secret: str
    scope: str | None = None


class UsePointsRequest(BaseModel):
    points: int = Field(gt=0)
    reference_id: str
    description: str
    travel_class: str = "economy"


def create_app(store: LoyaltyStore, config: SandboxConfig) -> FastAPI:
    app = create_service_app(SPEC, config)

    async def access_token(request: Request) -> Credential:
        token = bearer_token(request)
        credential = store.credential(SPEC.service, token)
        if credential is None:
            raise error(401, "invalid_token", "Invalid or expired token")
        if credential.expires_at <= time.time():
            # Like the reference: an expired token is reported once, then forgotten.
            store.drop_credential(SPEC.service, token)
            raise error(401, "token_expired", "Token has expired")
        return credential

    caller = guarded(access_token, config)
    authorized = Annotated[Any, Depends(caller)]

    @app.post("/oauth/token")
    async def issue_token(request: Request) -> Response:
        await simulate_failures(request, config)
        body = await read_body(request, TokenRequest)
        if body.grant_type != "client_credentials":
            raise error(
                400, "unsupported_grant_type", "Only client_credentials grant type is supported"
            )
        if body.client_id != CLIENT_ID or body.client_secret != CLIENT_SECRET:
            raise error(401, "invalid_client", "Invalid client credentials")
        token = f"tc_token_{secrets.token_urlsafe(32)}"
        scope = body.scope or DEFAULT_SCOPE
        ttl = config.telcocorp_token_ttl_seconds
        store.add_credential(
            SPEC.service,
            token,
            Credential(subject=body.client_id, expires_at=time.time() + ttl, scope=scope),
        )
        return json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope}
        )

    @app.get("/api/v2/customers/{customer_id}/points")
    async def points(customer_id: str, _: authorized) -> Response:
        customer = member_or_404(store, SPEC, customer_id)
        return json_response(
            {
                "customer_id": customer_id,
                "points": money(customer.balance, SPEC.currency),
                "tier": customer.tier,
                "status": customer.status,
            }
        )

    @app.post("/api/v2/customers/{customer_id}/points/use")
    async def use_points(customer_id: str, request: Request, _: authorized) -> Response:
        body = await read_body(request, UsePointsRequest)
        amount = Decimal(body.points)
        if mock_mode(request) == "insufficient-balance":
            raise SPEC.insufficient(SPEC.simulated_current, amount)
        if body.travel_class not in ALLOWED_CLASSES:
            raise error(
                400,
                "invalid_travel_class",
                "TelcoCorp members can only book economy class",
                allowed_classes=ALLOWED_CLASSES,
            )
        transaction_id = new_id("tctxn_")
        posting = debit(
            store,
            SPEC,
            customer_id,
            amount,
            transaction_id=transaction_id,
            reference_id=body.reference_id,
            description=body.description,
        )
        answer = json_response(
            {
                "transaction_id": transaction_id,
                "customer_id": customer_id,
                "points_used": body.points,
                "remaining_points": money(posting.balance, SPEC.currency),
                "timestamp": wire_timestamp(posting.at),
            }
        )
        return await after_acting(request, config, answer)

    if not config.reference:  # an extension: the reference service has no refunds

        @app.post("/api/v2/customers/{customer_id}/points/refund")
        async def refund_points(customer_id: str, request: Request, _: authorized) -> Response:
            return await refund(store, SPEC, customer_id, request, config)

    @app.get("/api/v2/customers/{customer_id}/travel/eligibility")
    async def eligibility(customer_id: str, _: authorized) -> Response:
        customer = member_or_404(store, SPEC, customer_id)
        return json_response(
            {
                "customer_id": customer_id,
                "eligible": customer.status == "active",
                "allowed_classes": ALLOWED_CLASSES,
                "restrictions": RESTRICTIONS,
            }
        )

    add_listings(
        app,
        SPEC,
        store,
        config,
        feed_path="/api/v2/ledger/transactions",
        members_path="/api/v2/customers",
        caller=caller,
    )
    add_fault_control(app, config, FAULT_ROUTES, EXTENSION_ROUTES | {"refund"})
    return app
