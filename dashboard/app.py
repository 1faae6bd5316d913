"""The Dash app factory: pages, the sign-in gate, the CSV export route and the error pages."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import dash
import flask
import pyarrow as pa
import pyarrow.csv as pa_csv
from dash import ClientsideFunction, Input, Output, State, no_update
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from dashboard import auth
from dashboard.components import format as fmt
from dashboard.components.shell import shell
from dashboard.context import EXTENSION, Runtime, runtime, snapshot, tenant_names
from dashboard.data import (
    EXPORT_COLUMNS,
    BookingFilters,
    Snapshot,
    SnapshotMissing,
    iter_bookings,
)
from dashboard.scope import ScopeError

HERE = Path(__file__).resolve().parent
POLL_MS = 3000
SESSION_HOURS = 8
LOG = logging.getLogger(__name__)

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Loyalty flights</title>
<link rel="stylesheet" href="/assets/bootstrap.min.css">
<link rel="stylesheet" href="/assets/dashboard.css"></head>
<body class="bg-light"><main class="container login-box">
<h1 class="h3 mb-3">Loyalty flights</h1>
{% if no_users %}<div class="alert alert-info" id="no-users">No dashboard users exist yet.
Create demo users with <code>python -m dashboard create-demo-users</code>.</div>{% endif %}
{% if error %}<div class="alert alert-danger" id="login-error">{{ error }}</div>{% endif %}
<form method="post" action="/login" class="card card-body">
<input type="hidden" name="next" value="{{ next }}">
<label class="form-label" for="username">Username</label>
<input class="form-control mb-3" id="username" name="username" autocomplete="username" required autofocus>
<label class="form-label" for="password">Password</label>
<input class="form-control mb-3" id="password" name="password" type="password" autocomplete="current-password" required>
<button class="btn btn-primary" type="submit" id="sign-in">Sign in</button>
</form></main></body></html>"""

_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · Loyalty flights</title>
<link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body><main class="container py-5"><h1 class="h3">{{ title }}</h1><p>{{ message }}</p>
<p><a href="/">Back to the dashboard</a></p></main></body></html>"""


def create_app(
    data_dir: Path | str | None = None,
    users_file: Path | str | None = None,
    poll_ms: int | None = None,
) -> dash.Dash:
    """Build the dashboard over ``data_dir`` (default ``$DATA_DIR`` or ``data``)."""
    data_dir = Path(data_dir or os.environ.get("DATA_DIR", "data"))
    poll_ms = poll_ms or int(os.environ.get("DASHBOARD_POLL_MS", POLL_MS))
    users_path = Path(
        users_file or os.environ.get("DASHBOARD_USERS_FILE") or data_dir / auth.USERS_FILE
    )
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        suppress_callback_exceptions=True,  # page components exist only on their page
        serve_locally=True,
        title="Loyalty flights",
        update_title=None,
    )
    server = app.server
    server.secret_key = auth.secret_key(data_dir)
    lifetime = dt.timedelta(hours=SESSION_HOURS)
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=lifetime,
        # Only sign-in and sign-out set the cookie: a poll still in flight when the user signs
        # out must not hand the old session back to the browser.
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=1_000_000,
    )
    server.extensions[EXTENSION] = Runtime(
        data_dir,
        Snapshot(data_dir),
        auth.UserStore(users_path),
        auth.SignedOut(lifetime),
        poll_ms,
    )
    _register_gate(server, app.config.assets_url_path)
    _register_routes(server)
    _register_error_handlers(server)
    app.layout = _layout
    _register_frame_callbacks(app)
    return app


def _layout() -> Any:
    scope = flask.g.get("scope")
    version = snapshot().version() if scope is not None else None
    return shell(
        scope,
        tenant_names(),
        str(version.version) if version else None,
        runtime().poll_ms,
        dash.page_container,
    )


# ---------------------------------------------------------------- sign-in gate


def _wants_json() -> bool:
    path = flask.request.path
    return (
        path.startswith("/_dash-") or flask.request.method != "GET" or path.startswith("/export/")
    )


def _register_gate(server: flask.Flask, assets_path: str) -> None:
    public_prefix = "/" + assets_path.strip("/") + "/"

    @server.before_request
    def gate() -> Response | None:
        """Nothing but the sign-in page and static assets without a signed-in user."""
        path = flask.request.path
        if path == "/login" or path.startswith(public_prefix):
            return None
        user = auth.session_user(runtime().users, runtime().signed_out)
        if user is None:
            if _wants_json():
                return flask.jsonify(error="sign in first"), 401
            return flask.redirect(
                "/login?" + urlencode({"next": _safe_next(flask.request.full_path)})
            )
        flask.g.scope = user.scope()
        if path == "/" and user.tenant_id:
            return flask.redirect(f"/t/{user.tenant_id}")
        return None

    @server.after_request
    def no_caching_of_data(response: Response) -> Response:
        """Pages and callback answers are per-user: keep them out of shared caches."""
        if not flask.request.path.startswith(public_prefix):
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//host" or "/\\host" would send the user elsewhere.
    target = (target or "/").rstrip("?")
    if not target.startswith("/") or target.startswith(("//", "/\\")) or target == "/login":
        return "/"
    return target


# ---------------------------------------------------------------- routes


def _register_routes(server: flask.Flask) -> None:
    @server.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        """Username and password against the users file's scrypt hashes."""
        store = runtime().users
        next_path = _safe_next(flask.request.values.get("next"))
        if flask.request.method == "POST":
            user = store.authenticate(
                flask.request.form.get("username", ""), flask.request.form.get("password", "")
            )
            if user is not None:
                auth.sign_in(user)
                return flask.redirect(next_path)
            LOG.warning("failed sign-in for %r", flask.request.form.get("username", "")[:64])
            return flask.render_template_string(
                _LOGIN_PAGE,
                error="Wrong username or password.",
                next=next_path,
                no_users=not store.users(),
            ), 401
        return flask.render_template_string(
            _LOGIN_PAGE, error=None, next=next_path, no_users=not store.users()
        )

    @server.route("/logout", methods=["POST"])
    def logout() -> Response:
        """Forget the session (POST only, so another site cannot sign a user out with a link)."""
        auth.sign_out(runtime().signed_out)
        return flask.redirect("/login")

    @server.route("/export/bookings.csv")
    def export_bookings() -> Response:
        """The explorer's filtered bookings as CSV, streamed row by row, scoped by the session."""
        scope = auth.current_scope()
        args = flask.request.args
        filters = BookingFilters.parse(
            tenant_id=args.get("tenant"),
            statuses=args.getlist("status"),
            date_field=args.get("date_field"),
            date_from=args.get("from"),
            date_to=args.get("to"),
            search=args.get("q"),
        )
        if snapshot().version() is None:
            raise SnapshotMissing(str(snapshot().path))
        batches = iter_bookings(snapshot(), scope, filters)  # refuses out-of-scope tenants now
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return Response(
            flask.stream_with_context(_csv_chunks(batches)),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="bookings-{stamp}.csv"'},
        )


def _csv_chunks(batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    # Arrow writes decimals exactly (no float) and instants with their +0000 offset.
    yield (",".join(EXPORT_COLUMNS) + "\n").encode()
    options = pa_csv.WriteOptions(include_header=False)
    for batch in batches:
        sink = io.BytesIO()
        pa_csv.write_csv(batch, sink, options)
        yield sink.getvalue()


# ---------------------------------------------------------------- errors


def _error(status: int, title: str, message: str) -> tuple[Any, int]:
    if _wants_json():
        return flask.jsonify(error=title, message=message), status
    return flask.render_template_string(_ERROR_PAGE, title=title, message=message), status


def _register_error_handlers(server: flask.Flask) -> None:
    @server.errorhandler(ScopeError)
    def refused(error: ScopeError) -> tuple[Any, int]:
        """Out-of-scope requests get a refusal and no data."""
        LOG.warning("refused: %s", error)
        return _error(403, "Not allowed", "Your account does not give access to this data.")

    @server.errorhandler(SnapshotMissing)
    def no_snapshot(_: SnapshotMissing) -> tuple[Any, int]:
        """Before the first publish: say how to get data."""
        return _error(503, "No data yet", "No serving snapshot yet: run `make pipeline`.")

    @server.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        """Log the trace on the server; the browser gets a plain message, never a stack trace."""
        if isinstance(error, HTTPException):
            return error
        LOG.exception("unhandled error on %s", flask.request.path)
        return _error(500, "Something went wrong", "The error was logged; try again shortly.")


# ---------------------------------------------------------------- frame callbacks


def _register_frame_callbacks(app: dash.Dash) -> None:
    @app.callback(
        Output("snapshot-version", "data"),
        Output("freshness", "children"),
        Output("freshness", "title"),
        Input("version-poll", "n_intervals"),
        State("snapshot-version", "data"),
    )
    def poll_version(_: int | None, known: str | None) -> tuple[Any, str, str]:
        """Cheap check of serving.json; a new version re-renders every view that listens."""
        auth.current_scope()
        version = snapshot().version()
        if version is None:
            return (None if known is not None else no_update), "no data yet", ""
        current = str(version.version)  # a string: JS numbers cannot hold a nanosecond stamp
        label = f"updated {fmt.age(version.published_at, dt.datetime.now(dt.UTC))}"
        title = f"snapshot published {fmt.utc_seconds(version.published_at)}"
        return (current if current != known else no_update), label, title

    app.clientside_callback(
        ClientsideFunction(namespace="dashboard", function_name="toggle"),
        Output("navbar-collapse", "is_open"),
        Input("navbar-toggler", "n_clicks"),
        State("navbar-collapse", "is_open"),
        prevent_initial_call=True,
    )
