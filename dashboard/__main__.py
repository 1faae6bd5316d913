"""``python -m dashboard``: serve the dashboard; ``python -m dashboard create-demo-users``: make users."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from dashboard import auth


def _users_file(explicit: str | None) -> Path:
    data_dir = Path(os.environ.get("DATA_DIR", "data"))
    return Path(explicit or os.environ.get("DASHBOARD_USERS_FILE") or data_dir / auth.USERS_FILE)


def create_demo_users(users_file: Path) -> None:
    """Write an operator and one staff user per tenant with fresh random passwords, and print them."""
    from tenants.registry import get_registry

    created = auth.create_demo_users(users_file, get_registry())
    print(f"Demo users written to {users_file} (the passwords are shown only now):")
    for user, password in created:
        reach = "all tenants" if user.tenant_id is None else f"tenant {user.tenant_id}"
        print(f"  {user.username:<20} {password:<20} {user.role} ({reach})")


def serve(host: str, port: int) -> None:
    """Run the dashboard's web server (debug off, so no stack trace ever reaches a browser)."""
    from dashboard.app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise
    app = create_app()
    print(f"Dashboard: http://{host}:{port}/", flush=True)
    app.run(host=host, port=port, debug=False)


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
