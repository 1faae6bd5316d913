"""The frame around every page: navigation for the user's role, data freshness, sign-out."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.scope import Scope


def navbar(scope: Scope | None, tenant_names: dict[str, str], csrf_token: str = "") -> dbc.Navbar:
    """Links the signed-in user may follow; operators get every tenant, staff only theirs."""
    links: list = []
    if scope is not None and scope.is_operator:
        links.append(dbc.NavItem(dbc.NavLink("Overview", href="/", active="exact")))
        links.append(
            dbc.DropdownMenu(
                [
                    dbc.DropdownMenuItem(name, href=f"/t/{tenant_id}")
                    for tenant_id, name in tenant_names.items()
                ],
                label="Tenants",
                nav=True,
                in_navbar=True,
            )
        )
    elif scope is not None and scope.tenant_id:
        name = tenant_names.get(scope.tenant_id, scope.tenant_id)
        links.append(dbc.NavItem(dbc.NavLink(name, href=f"/t/{scope.tenant_id}", active="exact")))
    if scope is not None:
        links.append(dbc.NavItem(dbc.NavLink("Bookings", href="/bookings", active="partial")))
        links.append(dbc.NavItem(dbc.NavLink("Operations", href="/operations", active="exact")))
        links.append(dbc.NavItem(dbc.NavLink("Data health", href="/health", active="exact")))
    right = []
    if scope is not None:
        role = (
            "operator"
            if scope.is_operator
            else f"staff · {tenant_names.get(scope.tenant_id or '', scope.tenant_id)}"
        )
        right = [
            html.Span(
                f"{scope.username} ({role})", className="navbar-text small me-3", id="whoami"
            ),
            html.Form(
                [
                    dcc.Input(type="hidden", name="csrf_token", value=csrf_token),
                    html.Button(
                        "Sign out",
                        type="submit",
                        className="btn btn-sm btn-outline-light",
                        id="sign-out",
                    ),
                ],
                action="/logout",
                method="POST",
                className="d-inline",
            ),
        ]
    # Freshness stays outside the collapsible part: it matters on narrow screens too.
    freshness = html.Span(
        "checking for data…" if scope is not None else "",
        id="freshness",
        className="navbar-text small me-auto ms-2",
        **{"aria-live": "polite"},
    )
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("Loyalty flights", href="/"),
                freshness,
                dbc.NavbarToggler(id="navbar-toggler"),
                dbc.Collapse(
                    [
                        dbc.Nav(links, navbar=True, className="me-auto"),
                        html.Div(right, className="d-flex align-items-center flex-wrap"),
                    ],
                    id="navbar-collapse",
                    navbar=True,
                ),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        expand="lg",
        className="mb-3",
    )


def shell(
    scope: Scope | None,
    tenant_names: dict[str, str],
    version: str | None,
    poll_ms: int,
    page: object,
    csrf_token: str = "",
) -> html.Div:
    """The page frame: the version poll, the known snapshot version, the navbar and the page."""
    return html.Div(
        [
            dcc.Interval(id="version-poll", interval=poll_ms),
            dcc.Store(id="snapshot-version", data=version),
            navbar(scope, tenant_names, csrf_token),
            dbc.Container(page, fluid=True, className="pb-4"),
            # The query string every page's filters live in (components/urlstate.py).
            dcc.Location(id="url", refresh=False),
        ]
    )
