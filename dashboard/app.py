"""The Dash app factory: pages, the sign-in gate, the CSV export route and the error pages.

Security comes from the Flask extensions made for it: Flask-Login (who is signed in),
Flask-Session (sessions kept on the server, in the data folder, so a sign-out is final and
survives restarts), Flask-WTF (CSRF tokens on every POST, Dash callbacks included),
Flask-Limiter (sign-in throttling per account and per client address) and Flask-Talisman
(CSP, frame and HSTS headers, secure cookies).

Operations: ``BOOKING_API_URL`` and ``BOOKING_OPERATOR_TOKEN`` let operators decide approvals
and see the booking API's request figures (server-side calls; the token never reaches a
browser). Settings: ``DASHBOARD_HTTPS=1`` when users reach the dashboard over HTTPS (a TLS-terminating
proxy in front): cookies are marked Secure and HSTS is sent. ``DASHBOARD_PROXIES=N``: trust
the ``X-Forwarded-For``/``-Proto`` headers of the N proxies in front (the client address the
throttling counts by).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import dash
import flask
import jinja2
import pyarrow as pa
import pyarrow.csv as pa_csv
from cachelib.file import FileSystemCache
from dash import ClientsideFunction, Input, Output, State, no_update
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_session import Session as ServerSessions
from flask_talisman import Talisman
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from dashboard import auth
from dashboard.bookingapi import BookingAdmin
from dashboard.components import format as fmt
from dashboard.components.shell import shell
from dashboard.context import EXTENSION, Runtime, runtime, snapshot, tenant_names
from dashboard.data import (
    EXPORT_COLUMNS,
    BookingFilters,
    Snapshot,
    SnapshotMissing,
    SnapshotUnavailable,
    iter_bookings,
)
from dashboard.opsstate import OPS_FILE, OpsState
from dashboard.scope import ScopeError
from settings import current_settings

HERE = Path(__file__).resolve().parent
POLL_MS = 3000
SESSION_HOURS = 8
SESSIONS_DIR = "dashboard_sessions"
SESSIONS_KEPT = 10_000
# Failed sign-ins: per account (ASVS: well under 100 an hour) and per client address.
ACCOUNT_LIMIT = "10 per 15 minutes"
ADDRESS_LIMIT = "30 per 10 minutes"
# A refused sign-in is answered after this pause: a flooding client then gets one answer per
# connection per pause instead of as many as the CPU can give, and signed-in users keep it.
THROTTLE_PAUSE_S = 0.5
CSV_IN_MEMORY = 8 << 20  # an export larger than this is put together on disk
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
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
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
    settings = current_settings()
    data_dir = Path(data_dir or settings.data_dir)
    poll_ms = poll_ms or settings.dashboard_poll_ms or POLL_MS
    users_path = Path(users_file or settings.dashboard_users_file or data_dir / auth.USERS_FILE)
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
    https = settings.dashboard_https
    proxies = settings.dashboard_proxies
    if proxies:
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    lifetime = dt.timedelta(hours=SESSION_HOURS)
    server.config.update(
        SECRET_KEY=auth.secret_key(data_dir, settings.dashboard_secret_key),
        SESSION_TYPE="cachelib",
        # One file per session (the sign-in form's CSRF token needs one too). Past the
        # threshold the expired go first, then the oldest: the folder cannot grow unbounded.
        SESSION_CACHELIB=FileSystemCache(
            str(data_dir / SESSIONS_DIR),
            threshold=SESSIONS_KEPT,
            default_timeout=int(lifetime.total_seconds()),
        ),
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=lifetime,
        # Only sign-in and sign-out write the session: a poll still in flight when the user
        # signs out must not store the old session again. The lifetime is absolute.
        SESSION_REFRESH_EACH_REQUEST=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # The CSRF token lives as long as the session (the page polls for hours).
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1_000_000,
    )
    # The limiter first: a throttled sign-in is refused before any other work is done for it.
    limiter = Limiter(get_remote_address, app=server, storage_uri="memory://")
    ServerSessions(server)
    CSRFProtect(server)
    logins = LoginManager(server)
    store = auth.UserStore(users_path)
    logins.user_loader(store.load)
    script_src = ["'self'"]

    @server.before_request
    def hash_dash_inline_scripts() -> None:
        """Allow Dash's inline scripts by their hashes (its pages add one at the first request)."""
        if len(script_src) == 1:
            script_src.extend(app.csp_hashes())

    Talisman(
        server,
        force_https=False,  # the TLS proxy redirects; the app must also answer plain HTTP locally
        strict_transport_security=https,
        session_cookie_secure=https,
        frame_options="DENY",
        referrer_policy="same-origin",
        content_security_policy={
            "default-src": "'self'",
            # Dash's inline scripts by their hashes; nothing evaluated from strings.
            "script-src": script_src,
            # Plotly and the grid set styles at run time.
            "style-src": ["'self'", "'unsafe-inline'"],
            "img-src": ["'self'", "data:"],
            "font-src": ["'self'", "data:"],
            "connect-src": "'self'",
            "object-src": "'none'",
            "base-uri": "'self'",
            "form-action": "'self'",
            "frame-ancestors": "'none'",
        },
    )
    server.extensions[EXTENSION] = Runtime(
        data_dir,
        Snapshot(data_dir),
        store,
        poll_ms,
        OpsState(data_dir / OPS_FILE),
        BookingAdmin.from_env(),
    )
    _register_gate(server, app.config.assets_url_path, https)
    _register_routes(server, limiter)
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
        generate_csrf() if scope is not None else "",
    )


# ---------------------------------------------------------------- sign-in gate


def _wants_json() -> bool:
    path = flask.request.path
    return (
        path.startswith("/_dash-") or flask.request.method != "GET" or path.startswith("/export/")
    )


def _register_gate(server: flask.Flask, assets_path: str, https: bool) -> None:
    public_prefix = "/" + assets_path.strip("/") + "/"

    @server.before_request
    def gate() -> Response | None:
        """Nothing but the sign-in page and static assets without a signed-in user."""
        path = flask.request.path
        if path == "/login" or path.startswith(public_prefix):
            return None
        user = current_user
        if not user.is_authenticated:
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
        if response.mimetype == "text/html":
            # Dash's front end sends this cookie back as the X-CSRFToken header of each
            # callback; another site can neither read it nor set the header.
            response.set_cookie(
                "_csrf_token", generate_csrf(), secure=https, samesite="Strict", httponly=False
            )
        return response


def _safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this site, or "/"."""
    target = (target or "/").rstrip("?")
    # Printable ASCII only (browsers drop tabs and newlines, so "/\t/host" becomes "//host"),
    # one leading slash, no backslash (read as a slash): nothing that can name another host.
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or not all(" " < ch < "\x7f" for ch in target)
        or target == "/login"
    ):
        return "/"
    return target


# ---------------------------------------------------------------- routes


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _account() -> str:
    return "account:" + flask.request.form.get("username", "").strip().lower()[:64]


@functools.cache
def _login_template(app: flask.Flask) -> jinja2.Template:
    return app.jinja_env.from_string(_LOGIN_PAGE)  # compiled once: refusals must be cheap


def _login_page(error: str | None, next_path: str, status: int = 200) -> tuple[str, int]:
    page = flask.render_template(
        _login_template(flask.current_app._get_current_object()),  # type: ignore[attr-defined]
        error=error,
        next=next_path,
        no_users=not runtime().users.users(),
    )
    return page, status


def _register_routes(server: flask.Flask, limiter: Limiter) -> None:
    @server.route("/login", methods=["GET", "POST"])
    @limiter.limit(
        ACCOUNT_LIMIT,
        key_func=_account,
        methods=["POST"],
        deduct_when=_failed,
        error_message="Too many sign-in attempts for this account.",
    )
    @limiter.limit(
        ADDRESS_LIMIT,
        methods=["POST"],
        deduct_when=_failed,
        error_message="Too many sign-in attempts from your address.",
    )
    def login() -> Any:
        """Username and password against the users file's hashes; failures are throttled."""
        next_path = _safe_next(flask.request.values.get("next"))
        if flask.request.method == "POST":
            user = runtime().users.authenticate(
                flask.request.form.get("username", ""), flask.request.form.get("password", "")
            )
            if user is not None:
                flask.current_app.session_interface.regenerate(flask.session)  # no fixation
                login_user(user)
                return flask.redirect(next_path)
            LOG.warning("failed sign-in for %r", flask.request.form.get("username", "")[:64])
            return _login_page("Wrong username or password.", next_path, 401)
        return _login_page(None, next_path)

    @server.route("/logout", methods=["POST"])
    def logout() -> Response:
        """End the session on the server (POST with a CSRF token: no other site can sign out)."""
        logout_user()
        flask.session.clear()
        return flask.redirect("/login")

    @server.route("/export/bookings.csv")
    def export_bookings() -> Response:
        """The explorer's filtered bookings as CSV, scoped by the session, sent only when whole."""
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
        batches = iter_bookings(snapshot(), scope, filters)  # refuses out-of-scope tenants now
        # Written out in full before the status line goes: a snapshot that fails to read
        # half-way is a 503, never a 200 with a cut-off file.
        spool = tempfile.SpooledTemporaryFile(max_size=CSV_IN_MEMORY)  # noqa: SIM115
        try:
            for chunk in _csv_chunks(batches):
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        size = spool.tell()
        spool.seek(0)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        response = Response(
            iter(lambda: spool.read(1 << 16), b""),
            mimetype="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="bookings-{stamp}.csv"',
                "Content-Length": str(size),
            },
        )
        response.call_on_close(spool.close)
        return response


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

    @server.errorhandler(SnapshotUnavailable)
    def unavailable(_: SnapshotUnavailable) -> tuple[Any, int]:
        """A snapshot that cannot be read, and no good one to show instead."""
        return _error(
            503,
            "Data unavailable",
            "The serving snapshot cannot be read; the data returns with the next good publish.",
        )

    @server.errorhandler(RateLimitExceeded)
    def throttled(error: RateLimitExceeded) -> Any:
        """Too many failed sign-ins: say so, and when to try again."""
        time.sleep(THROTTLE_PAUSE_S)  # holds a thread, not a core
        retry = max(1, int(error.limit.limit.get_expiry()))
        minutes = -(-retry // 60)
        message = f"{error.description} Try again in {minutes} minute{'s' * (minutes > 1)}."
        page, _ = _login_page(message, _safe_next(flask.request.values.get("next")))
        return page, 429, {"Retry-After": str(retry)}

    @server.errorhandler(CSRFError)
    def forged(error: CSRFError) -> Any:
        """A POST without this site's CSRF token: refused, whoever sent it."""
        LOG.warning("CSRF check failed on %s: %s", flask.request.path, error.description)
        if flask.request.path == "/login":
            return _login_page("The sign-in form expired; please sign in again.", "/", 400)
        return _error(400, "Request refused", "Reload the page and try again.")

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
        version, problem = snapshot().version(), snapshot().problem
        if version is None:
            label = "data unavailable" if problem else "no data yet"
            return (None if known is not None else no_update), label, problem or ""
        current = str(version.version)  # a string: JS numbers cannot hold a nanosecond stamp
        label = f"updated {fmt.age(version.published_at, dt.datetime.now(dt.UTC))}"
        title = f"snapshot published {fmt.utc_seconds(version.published_at)}"
        if problem:
            label, title = f"{label} · newest data unreadable", f"{title}. {problem}"
        return (current if current != known else no_update), label, title

    app.clientside_callback(
        ClientsideFunction(namespace="dashboard", function_name="toggle"),
        Output("navbar-collapse", "is_open"),
        Input("navbar-toggler", "n_clicks"),
        State("navbar-collapse", "is_open"),
        prevent_initial_call=True,
    )
