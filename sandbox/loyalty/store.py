"""The state behind the three loyalty stand-ins: an immutable generated history plus a resettable overlay.

Everything that happens while the servers run (API calls, generated traffic, tokens,
sessions) lives in the overlay, so ``reset()`` is the upstream's hourly reset: the
history stays, the overlay goes. One lock guards the overlay because a traffic thread
writes while the servers' event loop reads.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl

from sandbox.config import TENANT_SERVICES, SandboxConfig
from sandbox.loyalty.render import (
    decode_cursor,
    encode_cursor,
    ledger_record_json,
    member_row_json,
    page_json,
    render,
)
from sandbox.schema import LEDGER, MEMBERS, MONEY, UTC_TS
from sandbox.seed import reference_members_frame
from sandbox.world import CURRENCIES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Member:
    """A loyalty member as the stand-ins see it now: history plus overlay."""

    tenant_id: str
    member_id: str
    given_name: str
    family_name: str
    email: str
    tier: str
    status: str
    balance: Decimal
    total_cashback: Decimal


@dataclass(frozen=True)
class Credential:
    """A bearer token or session a stand-in issued; ``reset()`` forgets it."""

    subject: str
    expires_at: float  # unix seconds
    scope: str = ""
    partner: bool = False


@dataclass(frozen=True)
class Posting:
    """What a debit or refund did: the amount moved and the member's balances after it."""

    amount: Decimal
    balance: Decimal
    total_cashback: Decimal
    at: datetime


class UnknownMember(LookupError):
    """No such member in this tenant."""


class InsufficientFunds(Exception):
    """The member's balance is below the requested amount."""

    def __init__(self, balance: Decimal) -> None:
        super().__init__(balance)
        self.balance = balance


class RefundRefused(Exception):
    """A refund the rules forbid; ``reason`` is the wire error code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class _Deduction:
    """What a refund needs to know about the deduction it reverses."""

    owner: str
    amount: Decimal  # positive
    reference_id: str | None


@dataclass(frozen=True)
class _History:
    """One tenant's generated, immutable tables, indexed for paging and lookups."""

    ledger: pl.DataFrame  # sorted by updated_at
    updated_us: np.ndarray  # ledger.updated_at as int64 microseconds, for searchsorted
    members: pl.DataFrame
    member_rows: dict[str, int]


@dataclass
class _Overlay:
    """One tenant's changes since the last reset."""

    records: list[str] = field(default_factory=list)  # rendered feed records, feed order
    updated_us: list[int] = field(default_factory=list)  # non-decreasing
    balances: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    deductions: dict[str, _Deduction] = field(default_factory=dict)
    refunded: set[str] = field(default_factory=set)  # deduction ids that have a refund
    credentials: dict[str, Credential] = field(default_factory=dict)


def _with_reference_members(members: pl.DataFrame) -> pl.DataFrame:
    """The generated members plus any reference member they lack."""
    base = members.select(MEMBERS.names()).cast(dict(MEMBERS))
    missing = reference_members_frame().join(base, on=["tenant_id", "member_id"], how="anti")
    return pl.concat([base, missing])


def _history(tenant_id: str, members: pl.DataFrame, ledger: pl.DataFrame) -> _History:
    own = ledger.filter(pl.col("tenant_id") == tenant_id)
    updated_us = own["updated_at"].dt.epoch("us").to_numpy()
    if len(updated_us) > 1 and not bool(np.all(updated_us[1:] >= updated_us[:-1])):
        own = own.sort("updated_at", maintain_order=True)
        updated_us = own["updated_at"].dt.epoch("us").to_numpy()
    own_members = members.filter(pl.col("tenant_id") == tenant_id)
    rows = {member_id: row for row, member_id in enumerate(own_members["member_id"].to_list())}
    return _History(own, updated_us, own_members, rows)


class LoyaltyStore:
    """Members, ledgers, tokens and sessions of the three tenants, shared by their stand-ins."""

    def __init__(self, members: pl.DataFrame, ledger: pl.DataFrame, config: SandboxConfig) -> None:
        self.config = config
        all_members = _with_reference_members(members)
        ledger = ledger.select(LEDGER.names()).cast(dict(LEDGER))
        self._history = {t: _history(t, all_members, ledger) for t in TENANT_SERVICES}
        self._lock = threading.RLock()
        self._generation = 0
        self._overlay = {t: _Overlay() for t in TENANT_SERVICES}

    # --- lifecycle -------------------------------------------------------------------

    def reset(self) -> None:
        """Drop every change, token and session since the start: the upstream's hourly reset."""
        with self._lock:
            self._generation += 1
            self._overlay = {t: _Overlay() for t in TENANT_SERVICES}

    # --- members and balances ----------------------------------------------------------

    def member(self, tenant_id: str, member_id: str) -> Member | None:
        """The member with current balances, or None when the tenant has no such member."""
        history = self._history[tenant_id]
        row = history.member_rows.get(member_id)
        if row is None:
            return None
        data = history.members.row(row, named=True)
        with self._lock:
            balance, total_cashback = self._overlay[tenant_id].balances.get(
                member_id, (data["balance"], data["total_cashback"])
            )
        return Member(
            tenant_id=tenant_id,
            member_id=member_id,
            given_name=data["given_name"],
            family_name=data["family_name"],
            email=data["email"],
            tier=data["tier"],
            status=data["status"],
            balance=balance,
            total_cashback=total_cashback,
        )

    def adjust_balance(
        self, tenant_id: str, member_id: str, delta: Decimal, cashback: Decimal = Decimal(0)
    ) -> Decimal:
        """Change the balance by ``delta`` (cashback included) and total_cashback by ``cashback``.

        Returns the new balance; the caller posts the matching ledger records.
        """
        with self._lock:
            balance, total_cashback = self._balances(tenant_id, member_id)
            balance += delta
            self._overlay[tenant_id].balances[member_id] = (balance, total_cashback + cashback)
            return balance

    def _balances(self, tenant_id: str, member_id: str) -> tuple[Decimal, Decimal]:
        changed = self._overlay[tenant_id].balances.get(member_id)
        if changed is not None:
            return changed
        member = self.member(tenant_id, member_id)
        if member is None:
            raise UnknownMember(member_id)
        return member.balance, member.total_cashback

    # --- ledger ------------------------------------------------------------------------

    def ledger_count(self, tenant_id: str) -> int:
        """Records in the tenant's feed: generated history plus everything appended since."""
        with self._lock:
            return self._history[tenant_id].ledger.height + len(self._overlay[tenant_id].records)

    def append_ledger(self, tenant_id: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Append LEDGER-column rows (newer than everything before) to the tenant's feed."""
        if not rows:
            return
        frame = pl.DataFrame(list(rows), schema=LEDGER)
        with self._lock:
            self._append(tenant_id, frame)

    def _append(self, tenant_id: str, frame: pl.DataFrame) -> None:
        """Render and index new records; caller holds the lock."""
        overlay = self._overlay[tenant_id]
        frame = frame.with_columns(pl.lit(tenant_id).alias("tenant_id")).sort(
            "updated_at", maintain_order=True
        )
        last = self._last_updated_us(tenant_id)
        if last is not None:
            # The feed is ordered by updated_at and paged by position, so an overlay record
            # racing in a few microseconds "late" is moved up rather than breaking the order.
            floor = pl.lit(_EPOCH + timedelta(microseconds=last), dtype=UTC_TS)
            frame = frame.with_columns(pl.col("updated_at").clip(lower_bound=floor))
        overlay.records.extend(render(frame, ledger_record_json(CURRENCIES[tenant_id])))
        overlay.updated_us.extend(frame["updated_at"].dt.epoch("us").to_list())
        index = frame.select(
            "type",
            "transaction_id",
            "member_id",
            "amount",
            "reference_id",
            "related_transaction_id",
        )
        for kind, txn, member_id, amount, reference_id, related in index.iter_rows():
            if kind == "deduction":
                overlay.deductions[txn] = _Deduction(member_id, -amount, reference_id)
            elif kind == "refund":
                overlay.refunded.add(related)

    def _last_updated_us(self, tenant_id: str) -> int | None:
        overlay = self._overlay[tenant_id].updated_us
        if overlay:
            return overlay[-1]
        history = self._history[tenant_id].updated_us
        return int(history[-1]) if len(history) else None

    def _post(self, tenant_id: str, records: list[dict[str, object]]) -> None:
        """Append records written by the API itself; caller holds the lock."""
        self._append(tenant_id, pl.DataFrame(records, schema=LEDGER))

    # --- operations the APIs perform ---------------------------------------------------

    def debit(
        self,
        tenant_id: str,
        member_id: str,
        amount: Decimal,
        *,
        transaction_id: str,
        reference_id: str,
        description: str,
        cashback: Decimal = Decimal(0),
        cashback_id: str | None = None,
    ) -> Posting:
        """Deduct ``amount`` (crediting ``cashback`` at once) and post the ledger records."""
        if cashback > 0 and cashback_id is None:
            raise ValueError("a cashback credit needs its own transaction id")
        now = datetime.now(UTC)
        with self._lock:
            balance, total_cashback = self._balances(tenant_id, member_id)
            if balance < amount:
                raise InsufficientFunds(balance)
            balance = balance - amount + cashback
            total_cashback += cashback
            self._overlay[tenant_id].balances[member_id] = (balance, total_cashback)
            records = [
                _record(
                    transaction_id, member_id, "deduction", -amount, reference_id, description, now
                )
            ]
            if cashback > 0:
                records.append(
                    _record(
                        cashback_id,
                        member_id,
                        "cashback",
                        cashback,
                        reference_id,
                        f"Cashback on {reference_id}",
                        now,
                        related=transaction_id,
                    )
                )
            self._post(tenant_id, records)
        return Posting(amount, balance, total_cashback, now)

    def refund(
        self, tenant_id: str, member_id: str, transaction_id: str, *, refund_id: str, reason: str
    ) -> Posting:
        """Give a deduction back in full (FintechApp's cashback stays credited) and post it."""
        history_deduction, history_refunded = self._history_refund_state(tenant_id, transaction_id)
        now = datetime.now(UTC)
        with self._lock:
            overlay = self._overlay[tenant_id]
            deduction = overlay.deductions.get(transaction_id, history_deduction)
            if deduction is None:
                raise RefundRefused(
                    "transaction_not_found", f"Transaction {transaction_id} not found"
                )
            if deduction.owner != member_id:
                raise RefundRefused("unauthorized", "Transaction does not belong to this member")
            # The reference service pays a second refund of the same deduction again.
            repeated = history_refunded or transaction_id in overlay.refunded
            if repeated and not self.config.reference:
                raise RefundRefused(
                    "already_refunded", f"Transaction {transaction_id} has already been refunded"
                )
            balance, total_cashback = self._balances(tenant_id, member_id)
            balance += deduction.amount
            overlay.balances[member_id] = (balance, total_cashback)
            self._post(
                tenant_id,
                [
                    _record(
                        refund_id,
                        member_id,
                        "refund",
                        deduction.amount,
                        deduction.reference_id,
                        reason,
                        now,
                        related=transaction_id,
                    )
                ],
            )
        return Posting(deduction.amount, balance, total_cashback, now)

    def record_approval_request(
        self, tenant_id: str, member_id: str, *, approval_id: str, reference_id: str
    ) -> None:
        """Post the approval request a check opened, so the feed shows it."""
        record = _record(
            approval_id,
            member_id,
            "approval_request",
            Decimal(0),
            reference_id,
            f"Approval requested for {reference_id}",
            datetime.now(UTC),
            status="requested",
            approval_id=approval_id,
        )
        with self._lock:
            self._post(tenant_id, [record])

    def _history_refund_state(
        self, tenant_id: str, transaction_id: str
    ) -> tuple[_Deduction | None, bool]:
        """A generated deduction and whether the history already refunds it."""
        ledger = self._history[tenant_id].ledger
        related = ledger.filter(
            (pl.col("transaction_id") == transaction_id)
            | (pl.col("related_transaction_id") == transaction_id),
            pl.col("raw_override").is_null(),
        )
        deductions = related.filter(
            pl.col("type") == "deduction", pl.col("transaction_id") == transaction_id
        )
        deduction = None
        if deductions.height:
            first = deductions.row(0, named=True)
            deduction = _Deduction(first["member_id"], -first["amount"], first["reference_id"])
        refunded = related.filter(
            pl.col("type") == "refund", pl.col("related_transaction_id") == transaction_id
        ).height
        return deduction, refunded > 0

    # --- credentials -------------------------------------------------------------------

    def add_credential(self, tenant_id: str, key: str, credential: Credential) -> None:
        with self._lock:
            self._overlay[tenant_id].credentials[key] = credential

    def credential(self, tenant_id: str, key: str) -> Credential | None:
        with self._lock:
            return self._overlay[tenant_id].credentials.get(key)

    def drop_credential(self, tenant_id: str, key: str) -> None:
        with self._lock:
            self._overlay[tenant_id].credentials.pop(key, None)

    # --- paged listings ----------------------------------------------------------------

    def ledger_page(
        self,
        tenant_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        updated_since: datetime | None = None,
    ) -> bytes:
        """One feed page as JSON bytes: history positions first, then the overlay's."""
        history = self._history[tenant_id]
        scope = f"ledger|{tenant_id}|{history.ledger.height}"
        known = history.ledger.height
        with self._lock:
            generation = self._generation
            overlay = self._overlay[tenant_id]
            total = known + len(overlay.records)
            start = 0
            if cursor is not None:
                start, issued_in = decode_cursor(scope, cursor)
                if issued_in != generation and start > known:
                    # The overlay it pointed into was reset: its new records start afresh.
                    start = known
            if updated_since is not None:
                since_us = _micros(updated_since)
                since = int(np.searchsorted(history.updated_us, since_us, side="left"))
                if since == known:
                    since += bisect.bisect_left(overlay.updated_us, since_us)
                start = max(start, since)
            start = min(start, total)
            end = min(start + limit, total)
            tail = overlay.records[max(start - known, 0) : max(end - known, 0)]
        records = []
        if start < known:
            records = render(
                history.ledger.slice(start, min(end, known) - start),
                ledger_record_json(CURRENCIES[tenant_id]),
            )
        records.extend(tail)
        next_cursor = encode_cursor(scope, end, generation) if end < total else None
        return page_json(records, next_cursor)

    def member_page(self, tenant_id: str, *, limit: int, cursor: str | None = None) -> bytes:
        """One member-list page as JSON bytes, balances as they are now."""
        history = self._history[tenant_id]
        total = history.members.height
        scope = f"members|{tenant_id}|{total}"
        start = min(decode_cursor(scope, cursor)[0], total) if cursor is not None else 0
        page = history.members.slice(start, limit)
        ids = page["member_id"].to_list()
        with self._lock:
            changed = self._overlay[tenant_id].balances
            balances = {m: changed[m][0] for m in ids if m in changed}
        if balances:
            page = page.with_columns(
                pl.col("member_id")
                .replace_strict(
                    list(balances),
                    pl.Series(list(balances.values()), dtype=MONEY),
                    default=pl.col("balance"),
                    return_dtype=MONEY,
                )
                .alias("balance")
            )
        end = start + page.height
        next_cursor = encode_cursor(scope, end, 0) if end < total else None
        return page_json(render(page, member_row_json(CURRENCIES[tenant_id])), next_cursor)


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _record(
    transaction_id: str,
    member_id: str,
    kind: str,
    amount: Decimal,
    reference_id: str | None,
    description: str | None,
    at: datetime,
    *,
    status: str = "posted",
    related: str | None = None,
    approval_id: str | None = None,
) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "member_id": member_id,
        "type": kind,
        "amount": amount,
        "status": status,
        "reference_id": reference_id,
        "related_transaction_id": related,
        "approval_id": approval_id,
        "description": description,
        "created_at": at,
        "updated_at": at,
        "raw_override": None,
    }
