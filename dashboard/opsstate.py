"""What operators did about reconciliation issues and quarantined records: who acknowledged or
resolved what, when, and why. A SQLite file the dashboard owns, under the data folder
(``<DATA_DIR>/dashboard/ops.sqlite``), beside and never inside the published snapshot: a
publish replaces the snapshot, and this survives it, and restarts.

The table is append-only: an item's state is its latest action, and its history stays.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

OPS_FILE = Path("dashboard") / "ops.sqlite"
Kind = Literal["issue", "quarantine"]
Action = Literal["acknowledged", "resolved", "reopened", "replayed"]
ACTIONS: tuple[Action, ...] = ("acknowledged", "resolved", "reopened", "replayed")
STATES = ("open", "acknowledged", "resolved")
NOTE_MAX = 1000

_SCHEMA = """
create table if not exists item_actions (
    id integer primary key autoincrement,
    kind text not null,
    item_id text not null,
    tenant_id text not null,
    action text not null,
    actor text not null,
    at text not null,
    note text
);
create index if not exists item_actions_item on item_actions (kind, item_id, id);
"""


@dataclass(frozen=True)
class ItemAction:
    """One thing an operator did to one item."""

    kind: Kind
    item_id: str
    tenant_id: str
    action: Action
    actor: str
    at: dt.datetime
    note: str | None

    @property
    def state(self) -> str:
        """The item's state after this action (a replay leaves it to the replay's outcome)."""
        return {"acknowledged": "acknowledged", "resolved": "resolved"}.get(self.action, "open")


class OpsState:
    """The operators' state of items, in one SQLite file (one connection per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=10)
        try:
            con.execute("pragma journal_mode = wal")
            with con:  # one transaction, committed on success
                yield con
        finally:
            con.close()

    def record(
        self,
        kind: Kind,
        item_id: str,
        tenant_id: str,
        action: Action,
        actor: str,
        note: str | None = None,
        at: dt.datetime | None = None,
    ) -> ItemAction:
        """Append one action (the caller has checked the actor may act on the tenant)."""
        if action not in ACTIONS:
            raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
        note = (note or "").strip()[:NOTE_MAX] or None
        done = ItemAction(
            kind, item_id, tenant_id, action, actor, at or dt.datetime.now(dt.UTC), note
        )
        with self._connect() as con:
            con.execute(
                "insert into item_actions (kind, item_id, tenant_id, action, actor, at, note)"
                " values (?, ?, ?, ?, ?, ?, ?)",
                (kind, item_id, tenant_id, action, actor, done.at.isoformat(), note),
            )
        return done

    def latest(self, kind: Kind, tenant_ids: Iterable[str] | None = None) -> dict[str, ItemAction]:
        """Each item's latest action (of the given tenants; None: every tenant)."""
        query = (
            "select kind, item_id, tenant_id, action, actor, at, note from item_actions a"
            " where kind = ? and id = (select max(id) from item_actions b"
            " where b.kind = a.kind and b.item_id = a.item_id)"
        )
        params: list[str] = [kind]
        if tenant_ids is not None:
            tenants = sorted(set(tenant_ids))
            query += f" and tenant_id in ({', '.join('?' * len(tenants))})"
            params += tenants
        with self._connect() as con:
            rows = con.execute(query, params).fetchall()
        return {row[1]: _action(row) for row in rows}

    def history(self, kind: Kind, item_id: str) -> Sequence[ItemAction]:
        """Every action on one item, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "select kind, item_id, tenant_id, action, actor, at, note from item_actions"
                " where kind = ? and item_id = ? order by id",
                (kind, item_id),
            ).fetchall()
        return [_action(row) for row in rows]


def _action(row: tuple) -> ItemAction:
    kind, item_id, tenant_id, action, actor, at, note = row
    return ItemAction(kind, item_id, tenant_id, action, actor, dt.datetime.fromisoformat(at), note)
