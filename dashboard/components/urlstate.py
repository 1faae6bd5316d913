"""Filters and sorts in the query string: reload, share a link, and Back all work.

``url_state(page_path, controls)`` ties the query string of the shell's
``dcc.Location(id="url")`` to a page's controls, given as ``(component id, property)``
pairs; the query keys are the component ids (``id.property`` for a component that gives two
properties, such as a date range's ``start_date`` and ``end_date``). Both directions run in the browser
(``assets/dashboard.js``, namespace ``urlstate``):

- read: when the page's controls appear, and whenever the query string changes (Back,
  Forward, a shared link), each control takes its value from the query string, or the
  value the page's layout gave it when its key is absent;
- write: a change of a control puts the query string together again and pushes it as a
  new history entry (``refresh=False``: no reload), so Back returns to the previous filters.

A control left at its layout value is left out of the query string, so a page opened
without one pushes nothing. Lists go as repeated keys; a value is read back as the type of
the layout's value (a list control should start as a list, e.g. ``[]``; numbers and booleans
come back as such). Whatever arrives this way is only a control value: each page's callbacks
validate it and check it against the signed-in user's scope, as they do for any input.
"""

from __future__ import annotations

from dash import ClientsideFunction, Input, Output, State, clientside_callback

URL_ID = "url"
_REGISTERED: dict[str, list[tuple[str, str]]] = {}


def url_state(page_path: str, controls: list[tuple[str, str]]) -> None:
    """Sync the page's ``controls`` with the query string of ``dcc.Location(id="url")``."""
    if not controls:
        raise ValueError(f"url_state({page_path!r}): no controls given")
    keys = [component_id for component_id, _ in controls]
    if len(set(controls)) != len(controls):
        raise ValueError(f"url_state({page_path!r}): a control is given twice: {controls}")
    taken = {key for other in _REGISTERED.values() for key, _ in other}
    if page_path not in _REGISTERED and taken & set(keys):
        raise ValueError(f"url_state({page_path!r}): component ids {taken & set(keys)} are taken")
    if page_path in _REGISTERED:
        return  # a page module imported twice registers nothing twice
    _REGISTERED[page_path] = list(controls)
    clientside_callback(
        ClientsideFunction(namespace="urlstate", function_name="read"),
        [Output(component_id, prop) for component_id, prop in controls],
        Input(URL_ID, "search"),
        Input(keys[0], "id"),  # fires when the page's controls appear
        [State(component_id, prop) for component_id, prop in controls],
    )
    clientside_callback(
        ClientsideFunction(namespace="urlstate", function_name="write"),
        [Input(component_id, prop) for component_id, prop in controls],
        prevent_initial_call=True,
    )
