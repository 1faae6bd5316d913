"""The wire contract's request bodies (and the documented shapes of its answers)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Cabin = Literal["economy", "premium_economy", "business", "first"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassengerCounts(_Body):
    adults: int = Field(default=1, ge=0, le=9)
    children: int = Field(default=0, ge=0, le=9)
    infants: int = Field(default=0, ge=0, le=9)


class SearchRequest(_Body):
    origin: str = Field(pattern=r"^[A-Za-z]{3}$", description="IATA airport or city code")
    destination: str = Field(pattern=r"^[A-Za-z]{3}$")
    departure_date: dt.date
    return_date: dt.date | None = None
    passengers: PassengerCounts = PassengerCounts()
    cabin_class: Cabin = "economy"
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3,16}$")

    @field_validator("return_date")
    @classmethod
    def _return_after_departure(cls, value: dt.date | None, info: Any) -> dt.date | None:
        departure = info.data.get("departure_date")
        if value is not None and departure is not None and value < departure:
            raise ValueError("must not be before departure_date")
        return value


class Passenger(_Body):
    type: Literal["adult", "child", "infant"] = "adult"
    title: str | None = Field(default=None, max_length=10)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: dt.date | None = None
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


class Payment(_Body):
    method: Literal["loyalty_points"] = "loyalty_points"
    amount: Decimal | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="the price the member was shown"
    )
    currency: str | None = None


class Contact(_Body):
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


class BookingRequest(_Body):
    flight_id: str = Field(min_length=1, max_length=64, description="an offer id from a search")
    passengers: list[Passenger] = Field(min_length=1, max_length=9)
    payment: Payment = Payment()
    contact: Contact | None = None


class CancelRequest(_Body):
    reason: str | None = Field(default=None, max_length=500)
    refund_requested: bool = True


class ApprovalDecision(_Body):
    decision: Literal["approve", "reject"]
    note: str | None = Field(default=None, max_length=1000)
