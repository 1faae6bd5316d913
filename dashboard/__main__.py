"""``python -m dashboard``: serve the dashboard; ``python -m dashboard create-demo-users``: make users."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gunicorn.app.base import BaseApplication

from dashboard import auth
from settings import current_settings


def _users_file(explicit: str | None) -> Path:
    return Path(explicit) if explicit else auth.users_file(current_settings())


def create_demo_users(users_file: Path) -> None:
    """Write an operator and one staff user per tenant with fresh random passwords, and print them."""
    from tenants.settings import get_registry

    created = auth.create_demo_users(users_file, get_registry())
    print(f"Demo users written to {users_file} (the passwords are shown only now):")
    for user, password in created:
        reach = "all tenants" if user.tenant_id is None else f"tenant {user.tenant_id}"
        print(f"  {user.username:<20} {password:<20} {user.role} ({reach})")


class _Gunicorn(BaseApplication):
    """gunicorn, configured here rather than by a config file, serving ``create_app()``."""

    def __init__(self, options: dict[str, object]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> object:
        from dashboard.app import create_app

        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per booking API call
        return create_app().server


def serve(host: str, port: int) -> None:
    """Serve the dashboard with gunicorn (debug off: no stack trace ever reaches a browser).

    One process with threads: the snapshot's DuckDB cache, the sign-in throttling counts and
    the CSRF/session state are then shared by every request. ``DASHBOARD_THREADS`` (16) sets
    how many requests run at once (throttled sign-ins wait in a thread, not on a core).
    """
    print(f"Dashboard: http://{host}:{port}/", flush=True)
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": current_settings().dashboard_threads,
            "timeout": 120,  # a CSV export of a million bookings takes a few seconds
            "graceful_timeout": 10,
            # Forwarded headers are trusted only as DASHBOARD_PROXIES says (the app's ProxyFix).
            "forwarded_allow_ips": "",
            "accesslog": None,  # one line per request (every poll) is noise
            "errorlog": "-",
            "loglevel": "warning",
        }
    ).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("create-demo-users", help="write demo users with random passwords")
    demo.add_argument(
        "--users-file", help="default: $DASHBOARD_USERS_FILE or $DATA_DIR/dashboard_users.json"
    )
    args = parser.parse_args(argv)
    if args.command == "create-demo-users":
        create_demo_users(_users_file(args.users_file))
    else:
        serve(args.host, args.port)


if __name__ == "__main__":
    main()
