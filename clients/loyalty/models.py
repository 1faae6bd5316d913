"""The loyalty API's answers as typed values: money as Decimal, instants timezone-aware.

Every tenant dialect is mapped onto these same models, so callers never see a tenant's
field names (``points``, ``coins``, ``customer_id``...).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _assume_utc(value: dt.datetime) -> dt.datetime:
    # The reference services stamp operation results with naive UTC times.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


UtcDatetime = Annotated[dt.datetime, AfterValidator(_assume_utc)]


def utc_text(moment: dt.datetime) -> str:
    """An aware datetime as the ISO-8601 UTC text upstream filters take (``...Z``)."""
    if moment.tzinfo is None:
        raise ValueError("filters take timezone-aware datetimes")
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


Money = Annotated[Decimal, Field(allow_inf_nan=False)]

LedgerType = Literal["deduction", "refund", "cashback", "approval_request", "approval_decision"]


class _Model(BaseModel):
    """Base of the loyalty models: immutable, tolerant of fields a tenant adds."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Balance(_Model):
    """A member's balance in the tenant's loyalty currency."""

    tenant_id: str
    member_id: str
    balance: Money
    currency: str
    tier: str | None = None
    status: str | None = None
    total_cashback: Money | None = None


class Deduction(_Model):
    """Loyalty currency taken from a member for a booking (cashback already credited)."""

    tenant_id: str
    transaction_id: str
    member_id: str
    amount: Money
    remaining_balance: Money
    currency: str
    cashback_earned: Money = Decimal(0)
    timestamp: UtcDatetime | None = None


class Refund(_Model):
    """Loyalty currency given back against an earlier deduction."""

    tenant_id: str
    refund_id: str
    transaction_id: str
    member_id: str
    amount: Money
    new_balance: Money
    currency: str
    timestamp: UtcDatetime | None = None


class ApprovalCheck(_Model):
    """Whether a booking of this size needs manual approval first (CoffeeChain)."""

    tenant_id: str
    member_id: str
    amount: Money
    booking_reference: str
    approval_required: bool
    approval_id: str | None = None
    reason: str | None = None
    estimated_time: str | None = None


class TravelEligibility(_Model):
    """Which cabins a member may book (TelcoCorp)."""

    tenant_id: str
    member_id: str
    eligible: bool
    allowed_classes: tuple[str, ...] = ()
    restrictions: tuple[Any, ...] = ()


class LedgerTransaction(_Model):
    """One record of a tenant's ledger feed; money records are signed (deductions negative)."""

    transaction_id: str = Field(min_length=1)
    member_id: str = Field(min_length=1)
    type: LedgerType
    amount: Money
    currency: str
    status: str
    reference_id: str | None = None
    related_transaction_id: str | None = None
    approval_id: str | None = None
    description: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class Member(_Model):
    """One row of a tenant's member list: the loyalty liability, without personal data."""

    member_id: str = Field(min_length=1)
    tier: str | None = None
    status: str | None = None
    balance: Money
    currency: str
