"""Filters in the URL: a page's controls and the query string of ``dcc.Location(id="url")``
kept in step both ways, so a filtered view survives a reload, can be shared, and Back works.

    url_state(page_path, [(component_id, property), ...])

On load (and on Back/Forward) the controls take their values from the query string; when a
control changes, the query string is updated (a history push, no reload). Query keys are
the component ids; a list value is one key repeated. Values arrive as strings: a control
whose property holds a number gets it back as a number when it parses as one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

from dash import Input, Output, State, callback, ctx, no_update

URL_ID = "url"


def _from_query(text: str | None, key: str, current: Any) -> Any:
    """The key's value from the query string; the control's own value when the key is absent."""
    values = parse_qs((text or "").lstrip("?")).get(key)
    if not values:
        return current
    if isinstance(current, list):
        return values
    value = values[-1]
    if isinstance(current, int) and not isinstance(current, bool):
        try:
            return int(value)
        except ValueError:
            return current
    return value


def _query(values: list[tuple[str, Any]]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in values:
        if value is None or value == "" or value == []:
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, str(item)))
    return "?" + urlencode(pairs) if pairs else ""


def url_state(page_path: str, controls: list[tuple[str, str]]) -> None:
    """Register the two-way sync between ``controls`` on ``page_path`` and the query string.

    One callback over the controls alone (so it runs only where they exist; the page's
    controls are drawn again on Back and Forward): drawn, they take the query string's
    values; changed by the user, the query string takes theirs.
    """
    keys = [component_id for component_id, _ in controls]

    @callback(
        Output(URL_ID, "search", allow_duplicate=True),
        *[Output(cid, prop, allow_duplicate=True) for cid, prop in controls],
        *[Input(cid, prop) for cid, prop in controls],
        State(URL_ID, "search"),
        State(URL_ID, "pathname"),
        prevent_initial_call="initial_duplicate",
    )
    def sync(*args: Any) -> tuple[Any, ...]:
        *values, search, pathname = args
        unchanged = (no_update,) * (len(controls) + 1)
        if pathname != page_path:
            return unchanged
        if ctx.triggered_id in keys:
            # A control changed: the query string follows.
            wanted = _query(list(zip(keys, values, strict=True)))
            return (wanted if wanted != (search or "") else no_update, *unchanged[1:])
        # Drawn (a load, Back or Forward): the controls follow the query string.
        found = [_from_query(search, key, value) for key, value in zip(keys, values, strict=True)]
        return (
            no_update,
            *(f if f != v else no_update for f, v in zip(found, values, strict=True)),
        )
