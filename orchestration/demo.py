"""The demo (``make demo``): stand-ins, the booking API, one pipeline run, Dagster, the dashboard.

It prints one line per step, then a box with the URLs, the sign-ins and where the logs are;
each service's and step's own output goes to ``<data>/logs/<name>.log``. Every process it
starts runs in a session of its own, so Ctrl-C (or SIGTERM) reaches the demo alone, which
then stops them all within a few seconds, at any moment: Dagster runs in progress are
canceled (marked so in the instance first, so they end as CANCELED, not as failures).
The dashboard's demo users keep their passwords between starts (``--new-passwords`` makes
new ones); a process that dies early stops the demo with its name and exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from sandbox.config import DEFAULT_PORTS, SandboxConfig
from sandbox.runner import client_env
from settings import DataLayout

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SANDBOX = [PY, "-m", "sandbox"]
STANDIN_PORT = DEFAULT_PORTS["coffeechain"]  # the first of the four stand-ins' ports
OPERATOR_TOKEN = Path("booking") / "operator-token"  # under the data folder
DEMO_PASSWORDS = Path("dashboard") / "demo-passwords"  # under the data folder
# Once stopping, children get SIGTERM; whatever still runs this long after Ctrl-C is killed.
STOP_SECONDS = 3.0


class Stopped(Exception):
    """Ctrl-C or SIGTERM: the demo stops what it started."""


def standin_env(config: SandboxConfig) -> dict[str, str]:
    """Where the demo's stand-ins listen and the credentials they accept (their fixed ones).

    Set for every child, so a ``.env`` holding real tenants' values never meets the stand-ins.
    """
    urls = {name: f"http://{config.host}:{port}" for name, port in config.ports.items()}
    return client_env(config, urls)


def operator_token(path: Path) -> str:
    """The booking API's operator token: made on the first start, kept (owner-only) for the next."""
    from dashboard.auth import write_private

    if path.exists() and (token := path.read_text().strip()):
        return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def demo_sign_ins(
    users_file: Path, passwords_file: Path, tenant_ids: list[str], *, new: bool = False
) -> list[tuple[str, str]]:
    """The dashboard's demo users and their passwords, kept between starts.

    The passwords are kept in ``passwords_file`` (owner-only, "user password" lines) beside
    the users file's hashes. New users and passwords are made when ``new`` is set, when
    either file is missing, or when a kept password no longer matches its user's hash (the
    users file was rewritten, e.g. by ``python -m dashboard create-demo-users``).
    """
    from dashboard import auth
    from dashboard.auth import write_private

    if not new and passwords_file.exists() and users_file.exists():
        kept = [tuple(line.split(" ", 1)) for line in passwords_file.read_text().splitlines()]
        users = auth.UserStore(users_file).users()
        if kept and all(
            name in users and auth.verify_password(password, users[name].password_hash)
            for name, password in kept
        ):
            return [(name, password) for name, password in kept]
    created = [
        (user.username, password)
        for user, password in auth.create_demo_users(users_file, tenant_ids)
    ]
    write_private(passwords_file, "".join(f"{name} {password}\n" for name, password in created))
    return created


def start_child(
    name: str, args: list[str], env: dict[str, str], log_dir: Path, **popen: object
) -> subprocess.Popen:
    """Start ``args`` with its output in ``<log_dir>/<name>.log`` (unless ``popen`` says else)."""
    if "stdout" not in popen:
        popen["stdout"] = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    popen.setdefault("stderr", subprocess.STDOUT)
    # A new session per child: signals reach its whole tree, and it ignores our terminal's SIGINT.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, **popen)


def wait_healthy(url: str, seconds: float, process: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"demo: {name} did not come up: it exited with {process.returncode} (see its log)"
            )
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"demo: {name} did not answer at {url} within {seconds:.0f} s")


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


def _signal_tree(pids: list[int], process: subprocess.Popen, signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


class DagsterRuns:
    """The Dagster instance's runs, loaded in the background (importing Dagster takes seconds),
    so that a stop can cancel the runs in progress without waiting for it."""

    def __init__(self) -> None:
        self.instance = None
        self._thread = threading.Thread(target=self._load, name="dagster-instance", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        import dagster as dg

        self.instance = dg.DagsterInstance.get()

    def _in_progress(self, seconds: float) -> list:
        self._thread.join(seconds)
        if self.instance is None:
            return []
        from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, RunsFilter

        return list(self.instance.get_runs(RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES)))

    def request_cancel(self) -> None:
        """Before the processes are signalled: a run executing is marked canceling (when
        interrupted, Dagster then ends it CANCELED, not failed); a run not executing yet
        (queued, or its process still loading the code) is canceled outright."""
        from dagster import DagsterRunStatus

        for run in self._in_progress(STOP_SECONDS / 2):
            if run.status == DagsterRunStatus.STARTED:
                self.instance.report_run_canceling(run, message="The demo is stopping.")
            elif run.status != DagsterRunStatus.CANCELING:
                self.instance.report_run_canceled(run, message="The demo stopped.")

    def cancel_leftovers(self) -> None:
        """Once every process is gone: a run none of them could close is canceled here."""
        for run in self._in_progress(0):
            self.instance.report_run_canceled(run, message="The demo stopped.")


def stop_children(children: dict[str, subprocess.Popen], runs: DagsterRuns | None) -> None:
    """SIGTERM to every process tree (Dagster's once its runs are marked canceling), SIGKILL
    to what is left after ``STOP_SECONDS``; then the runs no process closed are canceled."""
    deadline = time.monotonic() + STOP_SECONDS
    trees = {name: _descendants(p.pid) for name, p in children.items() if p.poll() is None}
    dagster = {"pipeline", "dagster"}
    for name in trees.keys() - dagster:
        _signal_tree(trees[name], children[name], signal.SIGTERM)
    if runs is not None and trees.keys() & dagster:
        runs.request_cancel()
    for name in trees.keys() & dagster:
        _signal_tree(trees[name], children[name], signal.SIGTERM)
    for name, process in children.items():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.05, deadline - time.monotonic()))
        alive = [pid for pid in trees.get(name, []) if Path(f"/proc/{pid}").exists()]
        if process.poll() is None or alive:
            _signal_tree(alive, process, signal.SIGKILL)
            process.wait()
    if runs is not None:
        runs.cancel_leftovers()


class Progress:
    """One line per step: ``[2/7] booking API .... up``; on a terminal, a running step's line
    is rewritten in place as it goes."""

    def __init__(self, steps: int) -> None:
        self.steps, self.done = steps, 0
        self.tty = sys.stdout.isatty()

    def _line(self, name: str, detail: str) -> str:
        return f"[{self.done + 1}/{self.steps}] {name} {'.' * max(2, 22 - len(name))} {detail}"

    def update(self, name: str, detail: str) -> None:
        if self.tty:
            print("\r\033[K" + self._line(name, detail), end="", flush=True)

    def step(self, name: str, detail: str) -> None:
        print(("\r\033[K" if self.tty else "") + self._line(name, detail), flush=True)
        self.done += 1


def box(title: str, lines: list[str]) -> str:
    width = max(len(title) + 2, *(len(line) for line in lines))
    top = f"╭─ {title} " + "─" * (width - len(title) - 2) + "╮"
    body = [f"│ {line:<{width}} │" for line in lines]
    return "\n".join([top, *body, "╰" + "─" * (width + 2) + "╯"])


PIPELINE_STEP = re.compile(r"^\s+([✓✗]) (\S+) in [\d.]+ s — (.*)$")
LANDED = re.compile(r"([\d,]+) landed")


class PipelineProgress:
    """Reads the first pipeline run's output: every line to its log, the counts for the demo."""

    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.ok = self.failed = self.landed = 0
        self.last = ""
        self._thread = threading.Thread(
            target=self._read, args=(process, log), name="pipeline-output", daemon=True
        )
        self._thread.start()

    def _read(self, process: subprocess.Popen, log: Path) -> None:
        with log.open("a") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()
                if match := PIPELINE_STEP.match(line):
                    self.ok += match[1] == "✓"
                    self.failed += match[1] == "✗"
                    self.landed += sum(int(n.replace(",", "")) for n in LANDED.findall(match[3]))
                    self.last = match[2]

    def finish(self) -> None:
        self._thread.join()

    def summary(self) -> str:
        jobs = self.ok + self.failed
        text = f"{self.ok}/{jobs} jobs ok, {self.landed:,} records landed"
        return text if not self.failed else f"{text}; {self.failed} failed (see its log)"


def wait_for(process: subprocess.Popen, tick: Callable[[], None], name: str) -> None:
    while process.poll() is None:
        tick()
        time.sleep(0.2)
    if process.returncode not in (0, 1):  # 1: some jobs failed (counted); else it broke
        raise SystemExit(f"demo: {name} exited with {process.returncode} (see its log)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=Path, default=Path("data/sandbox/history"))
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", "data")),
        help="the demo's data folder (landing, warehouse, Dagster, logs, users)",
    )
    parser.add_argument(
        "--traffic",
        type=float,
        default=30.0,
        help="bookings per minute by members through the booking API (0: none)",
    )
    parser.add_argument(
        "--new-passwords",
        action="store_true",
        help="give the dashboard's demo users new passwords (else they are kept)",
    )
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--dashboard-port", type=int, default=8050)
    parser.add_argument("--api-port", type=int, default=8000, help="the booking API's port")
    parser.add_argument(
        "--standin-port",
        type=int,
        default=STANDIN_PORT,
        help="the first of the four stand-ins' consecutive ports",
    )
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    from orchestration.pipeline import ensure_dagster_home
    from tenants.settings import get_registry

    data = args.data_dir.resolve()
    log_dir = data / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(data / "dagster_home")
    home = ensure_dagster_home()
    offset = args.standin_port - STANDIN_PORT
    standins = SandboxConfig(ports={k: v + offset for k, v in DEFAULT_PORTS.items()})
    token = operator_token(data / OPERATOR_TOKEN)
    api = f"http://127.0.0.1:{args.api_port}"
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
        # Live mode: each tenant's activity is ingested again as soon as its last run ends
        # and the warehouse follows (ingestion/definitions.py). Production runs on the
        # 15-minute schedule alone.
        "INGEST_LIVE": os.environ.get("INGEST_LIVE", "1"),
        **standin_env(standins),
        # The pipeline reads the booking API's feeds (events, searches), the traffic's operator
        # and the dashboard's approvals queue decide approvals: all with the operator token
        # (the dashboard's server only; it never reaches a browser).
        "BOOKING_API_URL": api,
        "BOOKING_OPERATOR_TOKEN": token,
    }
    api_env = {
        **env,
        # Its own store under data/ (SQLite), whatever .env says about a production database.
        "BOOKING_DATABASE_URL": f"sqlite:///{data / 'booking' / 'booking.sqlite3'}",
    }
    # The dashboard reads the serving snapshot and its users, and calls the booking API's
    # operator routes: no tenant secret.
    hidden = {name for name in standin_env(standins) if not name.endswith("_URL")}
    dashboard_env = {k: v for k, v in env.items() if k not in hidden}
    children: dict[str, subprocess.Popen] = {}
    runs: DagsterRuns | None = None
    first: PipelineProgress | None = None
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stopped

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    progress = Progress(7 if args.traffic > 0 else 6)
    print(f"demo: data in {data}, each service's log in {log_dir}/", flush=True)

    def start(name: str, argv: list[str], child_env: dict[str, str], **popen: object):
        children[name] = start_child(name, argv, child_env, log_dir, **popen)
        return children[name]

    try:
        sign_ins = demo_sign_ins(
            data / "dashboard_users.json",
            data / DEMO_PASSWORDS,
            sorted(get_registry()),
            new=args.new_passwords,
        )
        port_offset = ["--port-offset", str(offset)]
        sandbox = start(
            "sandbox",
            # /_sandbox/faults on each stand-in: operators can try the failure paths.
            [*SANDBOX, "serve", "--history", str(args.history), "--fault-control", *port_offset],
            env,
        )
        for port in standins.ports.values():
            wait_healthy(f"http://127.0.0.1:{port}/health", 60, sandbox, "sandbox")
        progress.step(
            "stand-ins",
            f"4 up on ports {min(standins.ports.values())}-{max(standins.ports.values())}",
        )
        # The history's bookings and events go into the API's store before it starts, so it
        # serves them (its feed included); a store that already holds them is left alone.
        loaded = start(
            "import-history",
            [PY, "-m", "booking", "import-history", str(args.history)],
            api_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        output, _ = loaded.communicate()
        (log_dir / "import-history.log").write_text(output)
        if loaded.returncode != 0:
            raise SystemExit(
                f"demo: loading the history into the booking store failed (see "
                f"{log_dir / 'import-history.log'}); the demo's store is "
                f"{api_env['BOOKING_DATABASE_URL']}: remove it to load a newly generated history"
            )
        progress.step(
            "booking store", output.strip().splitlines()[-1].removeprefix("booking store: ")
        )
        start(
            "booking-api",
            [PY, "-m", "booking", "--host", "127.0.0.1", "--port", str(args.api_port)],
            api_env,
        )
        # Healthy (200) once it reaches its store, Duffel and the tenants' stand-ins.
        wait_healthy(f"{api}/api/v1/health", 60, children["booking-api"], "booking-api")
        progress.step("booking API", f"up at {api}")
        if args.traffic > 0:
            start(
                "traffic",
                [*SANDBOX, "traffic", "--rate", str(args.traffic), "--history", str(args.history)],
                env,
            )
            progress.step("traffic", f"{args.traffic:g} bookings/min by members")
        runs = DagsterRuns()
        pipeline = start(
            "pipeline", [PY, "-m", "orchestration.pipeline"], env, stdout=subprocess.PIPE, text=True
        )
        first = PipelineProgress(pipeline, log_dir / "pipeline.log")
        started = time.monotonic()
        wait_for(
            pipeline,
            lambda: progress.update("first pipeline run", f"{first.summary()} … {first.last}"),
            "the first pipeline run",
        )
        first.finish()
        progress.step(
            "first pipeline run", f"{first.summary()} in {time.monotonic() - started:.0f} s"
        )
        port = str(args.dagster_port)
        start(
            "dagster",
            [str(Path(PY).parent / "dagster"), "dev", "-w", "workspace.yaml", "-p", port],
            env,
        )
        wait_healthy(
            f"http://127.0.0.1:{args.dagster_port}/server_info", 600, children["dagster"], "dagster"
        )
        if env["INGEST_LIVE"] == "1":  # live mode's micro-batches, reported to the same instance
            start("live", [PY, "-m", "orchestration.live"], env)
        progress.step("Dagster", "UI and daemon up, live mode (micro-batches every few seconds)")
        start(
            "dashboard", [PY, "-m", "dashboard", "--port", str(args.dashboard_port)], dashboard_env
        )
        wait_healthy(
            f"http://127.0.0.1:{args.dashboard_port}/login", 60, children["dashboard"], "dashboard"
        )
        progress.step("dashboard", f"up, {len(sign_ins)} demo users")
        ports = standins.ports
        print(
            box(
                "The demo is running",
                [
                    f"Dashboard    http://127.0.0.1:{args.dashboard_port}",
                    *(f"  sign in    {name:<22} {password}" for name, password in sign_ins),
                    f"  passwords  kept in {data / DEMO_PASSWORDS} (owner-only);",
                    "             new ones: make demo ARGS=--new-passwords",
                    f"Dagster UI   http://127.0.0.1:{args.dagster_port}",
                    f"Booking API  {api}/api/v1   docs {api}/docs",
                    f"  operator token (admin routes) in {data / OPERATOR_TOKEN}",
                    f"Stand-ins    CoffeeChain http://127.0.0.1:{ports['coffeechain']}"
                    f"  TelcoCorp http://127.0.0.1:{ports['telcocorp']}",
                    f"             FintechApp http://127.0.0.1:{ports['fintechapp']}"
                    f"   Duffel http://127.0.0.1:{ports['duffel']}",
                    "             fault switches: POST <stand-in>/_sandbox/faults",
                    f"Logs         {log_dir}/ (one file per service and step)",
                    f"Serving data {DataLayout(data).serving}/ (serving.json names a file per table)",
                    "Ctrl-C stops everything.",
                ],
            ),
            flush=True,
        )
        while True:
            for name, process in children.items():
                if name not in ("import-history", "pipeline") and process.poll() is not None:
                    print(f"demo: {name} exited with {process.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.5)
    except Stopped:
        print("\ndemo: stopping ...", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(children, runs)
        if first is not None:
            first.finish()  # the last lines of its output into its log
        print("demo: stopped", flush=True)


if __name__ == "__main__":
    code = main()
    # Everything it started is stopped: skip the interpreter's teardown of Dagster's modules,
    # which takes seconds on a busy machine.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
