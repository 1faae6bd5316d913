"""Command line: ``python -m sandbox generate`` writes a history, ``python -m sandbox serve`` runs the
stand-ins, ``python -m sandbox traffic`` sends members through the booking API."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import signal
import sys
import threading
from pathlib import Path

from sandbox.config import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_LIMITS,
    DEFAULT_PORTS,
    Limit,
    SandboxConfig,
)
from settings import STANDIN_PORT_RANGE

DEFAULT_HISTORY = Path("data/sandbox/history")


def _generate(args: argparse.Namespace) -> int:
    from sandbox.generator import generate

    anchor = dt.date.fromisoformat(args.anchor) if args.anchor else None
    print(f"generating {args.size:,} bookings (seed {args.seed}) into {args.out} ...", flush=True)
    result = generate(
        args.size,
        args.seed,
        args.out,
        anchor=anchor,
        months=args.months,
        anomaly_rate=args.anomaly_rate,
        chunk_size=args.chunk_size,
    )
    print(
        f"done in {result.seconds:.1f} s; history {result.manifest['history_start'][:10]} .. "
        f"{result.manifest['history_end'][:10]}"
    )
    for tenant, counts in result.manifest["counts"].items():
        print(
            f"  {tenant:12} {counts['bookings']:>9,} bookings  {counts['events']:>9,} events  "
            f"{counts['ledger_delivered']:>9,} ledger "
            f"records  {counts['orders_delivered']:>9,} orders  {counts['members']:>7,} members"
        )
    print(
        f"  {len(result.manifest['anomalies'])} planted anomalies listed in {args.out / 'manifest.json'}"
    )
    return 0


def _limit(text: str) -> tuple[str, Limit]:
    # SERVICE=REQUESTS[/WINDOW_SECONDS], e.g. duffel=1000000 or coffeechain=20/2
    name, _, value = text.partition("=")
    requests, _, window = value.partition("/")
    if name not in DEFAULT_LIMITS or not requests.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected SERVICE=REQUESTS[/SECONDS] with SERVICE in {sorted(DEFAULT_LIMITS)}"
        )
    return name, Limit(int(requests), float(window or 60))


def _serve(args: argparse.Namespace) -> int:
    from sandbox.runner import start_sandbox

    # The reference services hold only their seeded members, never a generated history.
    history = None if args.reference else args.history
    if history is not None and not (history / "ledger.parquet").exists():
        print(
            f"no generated history in {history}; run `python -m sandbox generate` first "
            "(or pass --no-history for the reference members only)",
            file=sys.stderr,
        )
        return 2
    limits = dict(DEFAULT_LIMITS)
    if args.unlimited:
        limits = {name: Limit(10**9) for name in limits}
    limits.update(dict(args.limit or []))
    config = SandboxConfig(
        host=args.host,
        history_dir=history,
        limits=limits,
        reset_interval_seconds=args.reset_interval,
        traffic_per_minute=args.traffic,
        telcocorp_token_ttl_seconds=args.token_ttl or 3600,
        fintechapp_session_ttl_seconds=args.token_ttl or 86400,
        fault_control=args.fault_control,
        reference=args.reference,
    )
    config = dataclasses.replace(
        config,
        ports={
            **DEFAULT_PORTS,
            **(
                {}
                if args.port_offset == 0
                else {k: v + args.port_offset for k, v in DEFAULT_PORTS.items()}
            ),
        },
    )
    print("starting stand-ins ...", flush=True)
    try:
        sandbox = start_sandbox(config)
    except ValueError as error:  # traffic without an operator token: say what to set
        print(f"cannot start the traffic: {error}", file=sys.stderr)
        return 2
    for name, url in sandbox.urls.items():
        print(f"  {name:12} {url}")
    if sandbox.traffic is not None:
        print(f"  traffic      through the booking API at {sandbox.traffic.api_url}")
    print(
        f"traffic: {args.traffic:g} bookings/min; reset: "
        f"{f'every {args.reset_interval:g}s' if args.reset_interval else 'off'}; "
        f"{'reference behaviour only; ' if args.reference else ''}Ctrl-C stops",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("stopping stand-ins ...", flush=True)
    sandbox.stop()
    return 0


def _traffic(args: argparse.Namespace) -> int:
    import polars as pl

    from clients.platform import PlatformSettings
    from sandbox.seed import reference_members_frame
    from sandbox.traffic import Traffic, members_from_frame
    from tenants.settings import get_registry

    if args.rate <= 0:
        print("--rate: bookings per minute must be more than 0", file=sys.stderr)
        return 2
    settings = PlatformSettings()
    if args.api_url:
        settings = settings.model_copy(update={"booking_api_url": args.api_url})
    if settings.booking_operator_token is None:
        print(
            "set BOOKING_OPERATOR_TOKEN to the booking API's operator token (the operator "
            "decides the bookings that need approval)",
            file=sys.stderr,
        )
        return 2
    members_file = args.history / "members.parquet" if args.history else None
    if members_file is not None and not members_file.exists():
        print(
            f"no members in {args.history}; pass --no-history for the seeded ones", file=sys.stderr
        )
        return 2
    frame = pl.read_parquet(members_file) if members_file else reference_members_frame()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Traffic(
        settings.booking_api_url,
        settings.booking_operator_token,
        members_from_frame(frame),
        get_registry(),
        seed=args.seed,
    ) as traffic:
        print(
            f"traffic: {args.rate:g} bookings/min through {settings.booking_api_url} for "
            f"{sum(len(m) for m in traffic.members.values()):,} members; Ctrl-C stops",
            flush=True,
        )
        traffic.run(args.rate, stop)
        print(f"traffic stopped after {traffic.ticks:,} bookings: {dict(traffic.outcomes)}")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    """One pipeline run against the stand-ins, started for it unless some already answer.

    Here rather than in ``orchestration.pipeline``: the pipeline itself never imports the
    sandbox (it talks to whatever URLs its settings name); this is the dev convenience."""
    import httpx

    from orchestration import pipeline
    from settings import LOCALHOST, STANDIN_PORTS

    first = min(STANDIN_PORTS.values())
    sandbox = None
    try:
        httpx.get(f"http://{LOCALHOST}:{first}/health", timeout=1)
        print(
            f"pipeline: using the stand-ins already running on {LOCALHOST}:{STANDIN_PORT_RANGE}",
            flush=True,
        )
    except httpx.HTTPError:
        print(f"pipeline: starting stand-ins over {args.history}", flush=True)
        from sandbox.runner import start_sandbox

        sandbox = start_sandbox(SandboxConfig(history_dir=args.history, log_requests=False))
    try:
        forwarded = args.pipeline_args
        return pipeline.main(forwarded[1:] if forwarded[:1] == ["--"] else forwarded)
    finally:
        if sandbox is not None:
            sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a deterministic booking history")
    gen.add_argument(
        "--size", type=int, default=20_000, help="bookings to generate (default 20,000)"
    )
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--out", type=Path, default=DEFAULT_HISTORY)
    gen.add_argument("--anchor", help="last day of history, YYYY-MM-DD (default: today, UTC)")
    gen.add_argument("--months", type=int, default=12)
    gen.add_argument(
        "--anomaly-rate", type=float, default=0.001, help="share of bookings per anomaly kind"
    )
    gen.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="bookings drawn and written at a time, in whole days (memory grows with it, "
        f"the history does not; default {DEFAULT_CHUNK_SIZE:,})",
    )
    gen.set_defaults(run=_generate)
    serve = sub.add_parser("serve", help="run the four stand-ins until Ctrl-C")
    serve.add_argument("--history", type=Path, default=DEFAULT_HISTORY)
    serve.add_argument(
        "--no-history",
        dest="history",
        action="store_const",
        const=None,
        help="serve the reference members only",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help=f"add to the default ports {STANDIN_PORT_RANGE}",
    )
    serve.add_argument(
        "--traffic",
        type=float,
        default=0.0,
        help="bookings per minute by members through the booking API (BOOKING_API_URL, "
        "BOOKING_OPERATOR_TOKEN)",
    )
    serve.add_argument(
        "--reset-interval", type=float, default=None, help="seconds between resets to the seed"
    )
    serve.add_argument(
        "--token-ttl",
        type=int,
        default=None,
        help="seconds a TelcoCorp token / FintechApp session lives",
    )
    serve.add_argument("--limit", type=_limit, action="append", help="SERVICE=REQUESTS[/SECONDS]")
    serve.add_argument("--unlimited", action="store_true", help="lift every rate limit (load runs)")
    serve.add_argument(
        "--fault-control",
        action="store_true",
        help="serve /_sandbox/faults on each stand-in (tests and demos; not in the reference)",
    )
    serve.add_argument(
        "--reference",
        action="store_true",
        help="tenant stand-ins with the reference behaviour only: seeded members, no ledger "
        "feed, member list, TelcoCorp/FintechApp refunds or partner session, fixed rate-limit "
        "headers",
    )
    serve.set_defaults(run=_serve)
    run = sub.add_parser(
        "pipeline",
        help="one pipeline run (python -m orchestration.pipeline ARGS...) against the stand-ins, "
        "started for the run over --history unless they already answer",
    )
    run.add_argument("--history", type=Path, default=DEFAULT_HISTORY)
    run.add_argument(
        "pipeline_args", nargs=argparse.REMAINDER, help="-- then the pipeline's own options"
    )
    run.set_defaults(run=_pipeline)
    traffic = sub.add_parser(
        "traffic",
        help="members searching and booking through a running booking API until Ctrl-C",
    )
    traffic.add_argument("--rate", type=float, default=30.0, help="bookings per minute")
    traffic.add_argument("--api-url", help="the booking API (default: BOOKING_API_URL)")
    traffic.add_argument(
        "--history", type=Path, default=DEFAULT_HISTORY, help="whose members.parquet to act for"
    )
    traffic.add_argument(
        "--no-history",
        dest="history",
        action="store_const",
        const=None,
        help="act for the seeded reference members only",
    )
    traffic.add_argument("--seed", type=int, default=0)
    traffic.set_defaults(run=_traffic)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
