"""CoffeeChain's stand-in: an API key header, stars, and manual approval above 50,000 stars."""

from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sandbox.config import SandboxConfig
from sandbox.loyalty.common import (
    TenantSpec,
    add_fault_control,
    add_listings,
    after_acting,
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
    wire_timestamp,
)
from sandbox.loyalty.store import LoyaltyStore
from sandbox.world import TENANTS

API_KEY = "test_cc_api_key_12345"
APPROVAL_THRESHOLD = TENANTS["coffeechain"].approval_threshold  # stars (sandbox/world.py)

# Routes the fault switches know by name (sandbox.faults); paths as in the routes below.
FAULT_ROUTES = {
    "balance": ("GET", "/api/v1/members/{member_id}/balance"),
    "deduct": ("POST", "/api/v1/members/{member_id}/deduct"),
    "refund": ("POST", "/api/v1/members/{member_id}/refund"),
    "approval_check": ("POST", "/api/v1/approvals/check"),
    "ledger": ("GET", "/api/v1/ledger/transactions"),
    "members": ("GET", "/api/v1/members"),
}

SPEC = TenantSpec(
    service="coffeechain",
    title="CoffeeChain API Mock",
    member_noun="Member",
    id_field="member_id",
    refunded_field="amount_refunded",
    refund_prefix="ref_",
    insufficient_code="insufficient_balance",
    insufficient_message="Member has insufficient stars",
    current_field="current_balance",
    requested_field="requested_amount",
    simulated_current=Decimal(1000),
)


class DeductRequest(BaseModel):
    amount: int = Field(gt=0)
    reference_id: str
    description: str


class ApprovalCheckRequest(BaseModel):
    member_id: str
    amount: int
    booking_reference: str


async def _api_key(request: Request) -> None:
    if request.headers.get("x-cc-api-key") != API_KEY:
        raise error(401, "unauthorized", "Invalid API key")


def create_app(store: LoyaltyStore, config: SandboxConfig) -> FastAPI:
    app = create_service_app(SPEC, config)
    caller = guarded(_api_key, config)
    authorized = Annotated[Any, Depends(caller)]

    @app.get("/api/v1/members/{member_id}/balance")
    async def balance(member_id: str, _: authorized) -> Response:
        member = member_or_404(store, SPEC, member_id)
        return json_response(
            {
                "member_id": member_id,
                "balance": money(member.balance, SPEC.currency),
                "currency": SPEC.currency.code,
                "tier": member.tier,
                "status": member.status,
            }
        )

    @app.post("/api/v1/members/{member_id}/deduct")
    async def deduct(member_id: str, request: Request, _: authorized) -> Response:
        body = await read_body(request, DeductRequest)
        amount = Decimal(body.amount)
        if mock_mode(request) == "insufficient-balance":
            raise SPEC.insufficient(SPEC.simulated_current, amount)
        transaction_id = new_id("txn_")
        posting = debit(
            store,
            SPEC,
            member_id,
            amount,
            transaction_id=transaction_id,
            reference_id=body.reference_id,
            description=body.description,
        )
        answer = json_response(
            {
                "transaction_id": transaction_id,
                "member_id": member_id,
                "amount_deducted": body.amount,
                "remaining_balance": money(posting.balance, SPEC.currency),
                "timestamp": wire_timestamp(posting.at),
            }
        )
        return await after_acting(request, config, answer)

    @app.post("/api/v1/members/{member_id}/refund")
    async def refund_stars(member_id: str, request: Request, _: authorized) -> Response:
        return await refund(store, SPEC, member_id, request, config)

    @app.post("/api/v1/approvals/check")
    async def check_approval(request: Request, _: authorized) -> Response:
        body = await read_body(request, ApprovalCheckRequest)
        forced = mock_mode(request) == "approval-required"
        if not forced and body.amount <= APPROVAL_THRESHOLD:
            return json_response(
                {
                    "approval_required": False,
                    "approval_id": None,
                    "reason": None,
                    "estimated_time": None,
                }
            )
        approval_id = new_id("appr_")
        store.record_approval_request(
            SPEC.service,
            body.member_id,
            approval_id=approval_id,
            reference_id=body.booking_reference,
        )
        reason = (
            "Forced approval for testing"
            if forced
            else f"Booking exceeds 50,000 stars limit ({body.amount} stars)"
        )
        return json_response(
            {
                "approval_required": True,
                "approval_id": approval_id,
                "reason": reason,
                "estimated_time": "PT24H",
            }
        )

    add_listings(
        app,
        SPEC,
        store,
        config,
        feed_path="/api/v1/ledger/transactions",
        members_path="/api/v1/members",
        caller=caller,
    )
    add_fault_control(app, config, FAULT_ROUTES)
    return app
