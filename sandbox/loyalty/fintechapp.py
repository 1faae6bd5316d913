"""FintechApp's stand-in: session-bound JWTs, coins with 2% cashback, and a partner session."""

import time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

import jwt
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sandbox.config import SandboxConfig
from sandbox.loyalty.common import (
    EXTENSION_ROUTES,
    ApiError,
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
from sandbox.world import TENANTS

CASHBACK_RATE = TENANTS["fintechapp"].cashback_rate  # sandbox/world.py
JWT_ALGORITHM = "HS256"

# Routes the fault switches know by name (sandbox.faults); paths as in the routes below.
FAULT_ROUTES = {
    "session": ("POST", "/api/v1/sessions/validate"),
    "balance": ("GET", "/api/v1/users/{user_id}/coins"),
    "deduct": ("POST", "/api/v1/users/{user_id}/coins/deduct"),
    "refund": ("POST", "/api/v1/users/{user_id}/coins/refund"),
    "webhook_validate": ("POST", "/api/v1/webhooks/validate"),
    "ledger": ("GET", "/api/v1/ledger/transactions"),
    "members": ("GET", "/api/v1/users"),
}

SPEC = TenantSpec(
    service="fintechapp",
    title="FintechApp API Mock",
    member_noun="User",
    id_field="user_id",
    refunded_field="amount_refunded",
    refund_prefix="faref_",
    insufficient_code="insufficient_coins",
    insufficient_message="User has insufficient coins",
    current_field="current_coins",
    requested_field="requested_amount",
    simulated_current=Decimal("10.00"),
)


class SessionRequest(BaseModel):
    user_id: str
    device_id: str
    partner_secret: str | None = None  # only the partner principal sends it


class DeductCoinsRequest(BaseModel):
    amount: Decimal = Field(gt=0, decimal_places=2)
    reference_id: str
    description: str


class WebhookRequest(BaseModel):
    webhook_url: str
    secret: str


def cashback_on(amount: Decimal) -> Decimal:
    """2% of the amount, half-even to the cent."""
    return (amount * CASHBACK_RATE).quantize(SPEC.currency.quantum(), rounding=ROUND_HALF_EVEN)


def _session_expired() -> ApiError:
    return error(401, "session_expired", "Session has expired or is invalid")


def _own(session: Credential, user_id: str) -> None:
    """A member session reaches only its own user's data (a partner session none)."""
    if session.partner or session.subject != user_id:
        raise error(403, "forbidden", "Cannot access other user's data")


def create_app(store: LoyaltyStore, config: SandboxConfig) -> FastAPI:
    app = create_service_app(SPEC, config)

    async def session(request: Request) -> Credential:
        token = bearer_token(request)
        try:
            claims = jwt.decode(token, config.fintechapp_jwt_secret, algorithms=[JWT_ALGORITHM])
        except jwt.ExpiredSignatureError:
            raise _session_expired() from None
        except jwt.InvalidTokenError:
            raise error(401, "invalid_token", "Could not validate token") from None
        user_id, session_id = claims.get("sub"), claims.get("session_id")
        if not user_id or not session_id:
            raise error(401, "invalid_token", "Invalid token structure")
        credential = store.credential(SPEC.service, session_id)
        if credential is None or credential.expires_at <= time.time():
            raise _session_expired()
        if credential.subject != user_id:
            raise error(401, "session_mismatch", "Session does not match token")
        return credential

    async def partner_session(request: Request) -> Credential:
        credential = await session(request)
        if not credential.partner:
            raise error(403, "forbidden", "The ledger feed and member list need a partner session")
        return credential

    member_session = Annotated[Credential, Depends(guarded(session, config))]

    @app.post("/api/v1/sessions/validate")
    async def validate_session(request: Request) -> Response:
        await simulate_failures(request, config)
        body = await read_body(request, SessionRequest)
        if mock_mode(request) == "invalid-member":
            raise SPEC.not_found(body.user_id)
        # The partner principal is an extension; to the reference it is an unknown user.
        partner = not config.reference and body.user_id == config.fintechapp_partner_id
        if partner:
            if body.partner_secret != config.fintechapp_partner_secret:
                raise error(401, "invalid_credentials", "Invalid partner credentials")
            user = {
                "user_id": body.user_id,
                "name": "Partner service",
                "email": f"{body.user_id}@partners.fintechapp.invalid",
                "status": "active",
            }
        else:
            found = member_or_404(store, SPEC, body.user_id)
            user = {
                "user_id": body.user_id,
                "name": f"{found.given_name} {found.family_name}",
                "email": found.email,
                "status": found.status,
            }
        session_id = new_id("sess_", 16)
        issued = int(time.time())
        ttl = config.fintechapp_session_ttl_seconds
        store.add_credential(
            SPEC.service,
            session_id,
            Credential(subject=body.user_id, expires_at=issued + ttl, partner=partner),
        )
        token = jwt.encode(
            {"sub": body.user_id, "session_id": session_id, "exp": issued + ttl, "iat": issued},
            config.fintechapp_jwt_secret,
            algorithm=JWT_ALGORITHM,
        )
        return json_response(
            {"session_id": session_id, "jwt_token": token, "expires_in": ttl, "user": user}
        )

    @app.get("/api/v1/users/{user_id}/coins")
    async def coins(user_id: str, caller: member_session) -> Response:
        _own(caller, user_id)
        found = member_or_404(store, SPEC, user_id)
        return json_response(
            {
                "user_id": user_id,
                "coins": money(found.balance, SPEC.currency),
                "cashback_rate": orjson.Fragment(str(CASHBACK_RATE)),
                "total_cashback": money(found.total_cashback, SPEC.currency),
                "currency": "USD",
            }
        )

    @app.post("/api/v1/users/{user_id}/coins/deduct")
    async def deduct_coins(user_id: str, request: Request, caller: member_session) -> Response:
        body = await read_body(request, DeductCoinsRequest)
        if mock_mode(request) == "insufficient-balance":
            raise SPEC.insufficient(SPEC.simulated_current, body.amount)
        _own(caller, user_id)
        transaction_id = new_id("fatxn_")
        cashback = cashback_on(body.amount)
        posting = debit(
            store,
            SPEC,
            user_id,
            body.amount,
            transaction_id=transaction_id,
            reference_id=body.reference_id,
            description=body.description,
            cashback=cashback,
            cashback_id=new_id("facb_"),
        )
        answer = json_response(
            {
                "transaction_id": transaction_id,
                "user_id": user_id,
                "amount_deducted": money(body.amount, SPEC.currency),
                "cashback_earned": money(cashback, SPEC.currency),
                "remaining_coins": money(posting.balance, SPEC.currency),
                "timestamp": wire_timestamp(posting.at),
            }
        )
        return await after_acting(request, config, answer)

    if not config.reference:  # an extension: the reference service has no refunds

        @app.post("/api/v1/users/{user_id}/coins/refund")
        async def refund_coins(user_id: str, request: Request, caller: member_session) -> Response:
            _own(caller, user_id)
            return await refund(store, SPEC, user_id, request, config)

    @app.post("/api/v1/webhooks/validate")
    async def validate_webhook(request: Request, caller: member_session) -> Response:
        await read_body(request, WebhookRequest)
        if caller.partner:
            raise error(403, "forbidden", "A partner session reads the ledger feed only")
        return json_response({"validated": True, "webhook_id": new_id("whk_")})

    add_listings(
        app,
        SPEC,
        store,
        config,
        feed_path="/api/v1/ledger/transactions",
        members_path="/api/v1/users",
        caller=guarded(partner_session, config),
    )
    add_fault_control(app, config, FAULT_ROUTES, EXTENSION_ROUTES | {"refund"})
    return app
