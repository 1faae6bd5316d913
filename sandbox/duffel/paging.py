"""Duffel's cursor pagination: opaque ``after``/``before`` cursors and ``meta`` blocks."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from sandbox.duffel.errors import validation

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """``limit`` plus at most one decoded cursor (``after`` wins if both are sent)."""

    limit: int
    after: list[Any] | None = None
    before: list[Any] | None = None


def encode_cursor(kind: str, *parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, *parts])).decode()


def decode_cursor(text: str, kind: str, field: str) -> list[Any]:
    """The parts of a cursor made by ``encode_cursor(kind, ...)``; 422 when it is not one."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        value = None
    if not isinstance(value, list) or not value or value[0] != kind:
        raise validation(field, f"Field '{field}' is not a valid pagination cursor")
    return value[1:]


def parse_page(params: dict[str, str], kind: str) -> PageRequest:
    """Read ``limit`` (1..200, default 50), ``after`` and ``before`` from query parameters."""
    text = params.get("limit")
    limit = DEFAULT_LIMIT
    if text is not None:
        try:
            limit = int(text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise validation("limit", f"Field 'limit' must be an integer between 1 and {MAX_LIMIT}")
    after, before = params.get("after"), params.get("before")
    if after is not None:
        return PageRequest(limit, after=decode_cursor(after, kind, "after"))
    if before is not None:
        return PageRequest(limit, before=decode_cursor(before, kind, "before"))
    return PageRequest(limit)


def meta(limit: int, after: str | None, before: str | None) -> dict[str, Any]:
    return {"limit": limit, "after": after, "before": before}


def page_of(items: Sequence[T], page: PageRequest, kind: str) -> tuple[Sequence[T], dict[str, Any]]:
    """One page of a fixed list, with index cursors; returns (items, meta)."""
    start, stop = 0, len(items)
    if page.after is not None:
        start = min(max(_index(page.after, "after") + 1, 0), len(items))
        stop = min(start + page.limit, len(items))
    elif page.before is not None:
        stop = min(max(_index(page.before, "before"), 0), len(items))
        start = max(stop - page.limit, 0)
    else:
        stop = min(page.limit, len(items))
    after = encode_cursor(kind, stop - 1) if stop < len(items) and stop > start else None
    before = encode_cursor(kind, start) if start > 0 else None
    return items[start:stop], meta(page.limit, after, before)


def _index(parts: list[Any], name: str) -> int:
    if len(parts) != 1 or not isinstance(parts[0], int):
        raise validation(name, f"Field '{name}' is not a valid pagination cursor")
    return parts[0]
