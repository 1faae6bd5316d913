"""``python -m booking``: serve the API (migrations first), ``migrate`` the store by hand, or
``import-history DIR``: load a generated history's bookings and events into an empty store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from booking.config import get_booking_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m booking", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve the API (the default)")
    commands.add_parser("migrate", help="bring the store's schema up to date and exit")
    history = commands.add_parser(
        "import-history",
        help="bulk-load a generated history (bookings.parquet, events.parquet) into an empty "
        "store; a store already holding it is left alone, any other is refused",
    )
    history.add_argument("history_dir", type=Path)
    for target in (parser, serve):
        # Unset: BOOKING_HOST / BOOKING_PORT, else 127.0.0.1:8000 (booking/config.py).
        target.add_argument("--host", default=None)
        target.add_argument("--port", type=int, default=None)
        target.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    from booking.store.db import create_store_engine, migrate

    settings = get_booking_settings()
    if args.command == "import-history":
        from booking.history import HistoryImportError, describe, import_history

        try:
            result = import_history(settings.url(), args.history_dir)
        except HistoryImportError as error:
            sys.exit(f"booking store: {error}")
        print(describe(result, args.history_dir), flush=True)
        return
    engine = create_store_engine(settings.url())
    migrate(engine)
    engine.dispose()
    if args.command == "migrate":
        print("booking store is up to date")
        return

    import uvicorn

    from booking.api import SKIP_MIGRATIONS_ENV

    # Migrated once above: the workers need not race each other to do it again.
    os.environ[SKIP_MIGRATIONS_ENV] = "1"
    _share_upstream_limits()
    uvicorn.run(
        "booking.api:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_level="warning",
    )


def _share_upstream_limits() -> None:
    """Make every worker count against one budget per tenant API and Duffel token.

    Each worker process has its own tenants/ clients; naming one state folder (under the data
    folder unless ``RATE_LIMIT_STATE_DIR`` already names one) makes their limiters share it.
    """
    from clients.ratelimit import STATE_DIR_ENV
    from settings import get_settings
    from tenants.settings import env_value

    if not env_value(STATE_DIR_ENV):
        folder = get_settings().data_dir / "booking" / "ratelimit"
        os.environ[STATE_DIR_ENV] = str(folder.resolve())


if __name__ == "__main__":
    main()
