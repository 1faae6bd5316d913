"""The demo (``make demo``): stand-ins, the booking API, one pipeline run, Dagster, the dashboard.

Every process it starts runs in its own process group, so Ctrl-C (or SIGTERM) stops them
all cleanly, and a process that dies early stops the demo with its name and exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from orchestration.pipeline import ensure_dagster_home
from sandbox.config import SandboxConfig
from sandbox.runner import client_env
from settings import STANDIN_PORTS

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
OPERATOR_TOKEN_FILE = ROOT / "data" / "booking" / "operator-token"


def standin_env(config: SandboxConfig) -> dict[str, str]:
    """Where the demo's stand-ins listen and the credentials they accept (their fixed ones).

    Set for every child, so a ``.env`` holding real tenants' values never meets the stand-ins.
    """
    urls = {name: f"http://{config.host}:{port}" for name, port in STANDIN_PORTS.items()}
    return client_env(config, urls)


def operator_token(path: Path = OPERATOR_TOKEN_FILE) -> str:
    """The booking API's operator token: made on the first start, kept (owner-only) for the next."""
    if path.exists() and (token := path.read_text().strip()):
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # Created owner-only from the start: the token is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


def start_child(
    name: str, args: list[str], env: dict[str, str], log_dir: Path
) -> tuple[str, subprocess.Popen]:
    log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child process owns it
    print(f"  starting {name} (log: {log.name})", flush=True)
    # A new session per child: signals reach its whole tree, and it ignores our terminal's SIGINT.
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return name, process


def wait_healthy(url: str, seconds: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} did not come up: its process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Dagster starts code servers in process groups of their own)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_tree(process: subprocess.Popen, signum: int) -> None:
    for pid in _descendants(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def stop_children(children: list[tuple[str, subprocess.Popen]]) -> None:
    for name, process in reversed(children):
        if process.poll() is None:
            print(f"  stopping {name}", flush=True)
            _signal_tree(process, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _name, process in children:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_tree(process, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=Path, default=Path("data/sandbox/history"))
    parser.add_argument(
        "--traffic",
        type=float,
        default=30.0,
        help="bookings per minute by members through the booking API (0: none)",
    )
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--dashboard-port", type=int, default=8050)
    parser.add_argument("--api-port", type=int, default=8000, help="the booking API's port")
    args = parser.parse_args(argv)

    home = ensure_dagster_home()
    log_dir = ROOT / "data" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        # Live mode: each tenant's activity is ingested again as soon as its last run ends
        # and the warehouse follows (ingestion/definitions.py). Production runs on the
        # 15-minute schedule alone.
        "INGEST_LIVE": os.environ.get("INGEST_LIVE", "1"),
        **standin_env(SandboxConfig()),
    }
    token = operator_token()
    api = f"http://127.0.0.1:{args.api_port}"
    # The pipeline reads the booking API's feeds (events, searches) and the traffic's operator
    # decides approvals: both with the operator token. The dashboard never gets it (below).
    env.update(BOOKING_API_URL=api, BOOKING_OPERATOR_TOKEN=token)
    api_env = {
        **env,
        # Its own store under data/ (SQLite), whatever .env says about a production database.
        "BOOKING_DATABASE_URL": f"sqlite:///{ROOT / 'data' / 'booking' / 'booking.sqlite3'}",
        "BOOKING_OPERATOR_TOKEN": token,
    }
    # The dashboard reads the serving snapshot and its users: no tenant secret, no API token.
    hidden = {name for name in standin_env(SandboxConfig()) if not name.endswith("_URL")}
    dashboard_env = {
        k: v for k, v in env.items() if k not in hidden and not k.startswith("BOOKING_")
    }
    children: list[tuple[str, subprocess.Popen]] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("demo: stand-ins", flush=True)
        children.append(
            start_child(
                "sandbox",
                [
                    PY,
                    "-m",
                    "sandbox",
                    "serve",
                    "--history",
                    str(args.history),
                    # /_sandbox/faults on each stand-in: operators can try the failure paths.
                    "--fault-control",
                ],
                env,
                log_dir,
            )
        )
        for port in STANDIN_PORTS.values():
            wait_healthy(f"http://127.0.0.1:{port}/health", 60, children[0][1])
        # The history's bookings and events go into the API's store before it starts, so it
        # serves them (its feed included); a store that already holds them is left alone.
        print("demo: booking store: loading the history ...", end="", flush=True)
        loaded = subprocess.run(
            [PY, "-m", "booking", "import-history", str(args.history)],
            cwd=ROOT,
            env=api_env,
            capture_output=True,
            text=True,
        )
        if loaded.returncode != 0:
            raise SystemExit(
                f"\n{loaded.stderr.strip()}\n(the demo's store is {api_env['BOOKING_DATABASE_URL']}; "
                "remove it to load a newly generated history)"
            )
        print(" " + loaded.stdout.strip().removeprefix("booking store: "), flush=True)
        print("demo: booking API (its store in data/booking/)", flush=True)
        children.append(
            start_child(
                "booking-api",
                [PY, "-m", "booking", "--host", "127.0.0.1", "--port", str(args.api_port)],
                api_env,
                log_dir,
            )
        )
        # Healthy (200) once it reaches its store, Duffel and the tenants' stand-ins.
        wait_healthy(f"{api}/api/v1/health", 60, children[-1][1])
        if args.traffic > 0:
            print(
                f"demo: traffic, {args.traffic:g} bookings/min by members through the booking API",
                flush=True,
            )
            children.append(
                start_child(
                    "traffic",
                    [
                        PY,
                        "-m",
                        "sandbox",
                        "traffic",
                        "--rate",
                        str(args.traffic),
                        "--history",
                        str(args.history),
                    ],
                    env,
                    log_dir,
                )
            )
        print("demo: first pipeline run (ingest -> dbt build -> publish)", flush=True)
        first = subprocess.run([PY, "-m", "orchestration.pipeline"], cwd=ROOT, env=env)
        if first.returncode != 0:
            print(
                "demo: the first pipeline run reported failures (see above); continuing", flush=True
            )
        print(
            "demo: Dagster UI and daemon, live mode (micro-batches every few seconds)", flush=True
        )
        children.append(
            start_child(
                "dagster",
                [
                    str(Path(PY).parent / "dagster"),
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-p",
                    str(args.dagster_port),
                ],
                env,
                log_dir,
            )
        )
        wait_healthy(f"http://127.0.0.1:{args.dagster_port}/server_info", 120, children[-1][1])
        print("demo: dashboard (demo users get fresh passwords every start)", flush=True)
        subprocess.run(
            [PY, "-m", "dashboard", "create-demo-users"], cwd=ROOT, env=dashboard_env, check=True
        )
        children.append(
            start_child(
                "dashboard",
                [PY, "-m", "dashboard", "--port", str(args.dashboard_port)],
                dashboard_env,
                log_dir,
            )
        )
        wait_healthy(f"http://127.0.0.1:{args.dashboard_port}/login", 60, children[-1][1])
        print(
            "\nThe demo is running:\n"
            f"  Dashboard      http://127.0.0.1:{args.dashboard_port}   (sign in with a user above)\n"
            f"  Dagster UI     http://127.0.0.1:{args.dagster_port}\n"
            f"  Booking API    {api}/api/v1   docs {api}/docs\n"
            "                 operator token (admin routes): in "
            f"{OPERATOR_TOKEN_FILE.relative_to(ROOT)}\n"
            "  CoffeeChain    http://127.0.0.1:8001   TelcoCorp http://127.0.0.1:8002\n"
            "  FintechApp     http://127.0.0.1:8003   Duffel    http://127.0.0.1:8004\n"
            "                 fault switches: POST <stand-in>/_sandbox/faults\n"
            f"  serving data   {ROOT / 'data' / 'serving' / 'serving.duckdb'}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while not stopping:
            for name, process in children:
                if process.poll() is not None:
                    print(f"demo: {name} exited with {process.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        stop_children(children)
        print("demo: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
