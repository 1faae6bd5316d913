"""Ingestion's operator commands: ``python -m ingestion replay-quarantine --tenant X``,
``python -m ingestion compact`` (merge the landing zone's small files)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingestion.compaction import compact_all
from ingestion.landing.zone import LandingZone, LockTimeout
from ingestion.replay import REPLAYABLE, replay_quarantine
from settings import get_settings
from tenants.registry import load_registry
from tenants.settings import get_registry


def _replay(args: argparse.Namespace) -> int:
    registry = load_registry(args.tenants_dir) if args.tenants_dir else get_registry()
    if args.tenant not in registry:
        print(
            f"unknown tenant {args.tenant!r} (known: {', '.join(sorted(registry))})",
            file=sys.stderr,
        )
        return 2
    zone = LandingZone.under(args.data_dir)
    try:
        results = replay_quarantine(
            zone,
            registry[args.tenant],
            source=args.source,
            entity=args.entity,
            progress=lambda line: print(line, flush=True),
        )
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    landed = sum(r.landed for r in results)
    still = sum(r.open_after for r in results)
    print(f"replay done: {landed:,} landed, {still:,} still quarantined", flush=True)
    return 0


def _compact(args: argparse.Namespace) -> int:
    try:
        results = compact_all(LandingZone.under(args.data_dir), args.tenant, wait_seconds=args.wait)
    except LockTimeout as error:
        print(f"{error}; nothing was changed, try again later", file=sys.stderr)
        return 1
    for result in results:
        print(result.line(), flush=True)
    merged = [r for r in results if r.into is not None]
    print(
        f"compaction done: {sum(r.merged_files for r in merged):,} files merged into {len(merged)}",
        flush=True,
    )
    return 0


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=get_settings().data_dir,
        help="the data folder holding landing/ and quarantine/ (default: $DATA_DIR or data)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingestion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser(
        "replay-quarantine",
        help="re-validate a tenant's open quarantined records: land what now validates",
    )
    replay.add_argument("--tenant", required=True)
    replay.add_argument("--source", choices=sorted({s for s, _ in REPLAYABLE}))
    replay.add_argument("--entity", choices=sorted({e for _, e in REPLAYABLE}))
    _data_dir(replay)
    replay.add_argument("--tenants-dir", type=Path, help="another tenant registry folder")
    replay.set_defaults(run=_replay)
    compact = sub.add_parser(
        "compact",
        help="merge the small landed files of each folder into one (safe while ingestion "
        "and builds run)",
    )
    compact.add_argument("--tenant", help="only this tenant's folders (default: all folders)")
    compact.add_argument(
        "--wait",
        type=float,
        default=600.0,
        help="seconds to wait for readers (a dbt build) to let go of the landing zone",
    )
    _data_dir(compact)
    compact.set_defaults(run=_compact)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
