"""The demo: its wiring of the booking API (the stand-ins' own credentials, a kept operator
token), kept sign-ins, and a real start: quiet output with one box, Ctrl-C at any moment."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dashboard import auth
from orchestration.demo import (
    DEMO_PASSWORDS,
    ROOT,
    _descendants,
    demo_sign_ins,
    operator_token,
    standin_env,
)
from sandbox.config import DEFAULT_PORTS
from sandbox.generator import generate
from sandbox.runner import Sandbox


def test_the_demo_hands_out_the_credentials_the_standins_accept(sandbox: Sandbox) -> None:
    demo = standin_env(dataclasses.replace(sandbox.config, ports=dict(DEFAULT_PORTS)))
    running = sandbox.client_env()
    # Same variables, same secrets; only the URLs differ (the demo's stand-ins use 8001-8004
    # unless told otherwise).
    assert set(demo) == set(running)
    secrets = {name for name in running if not name.endswith("_URL")}
    assert {name: demo[name] for name in secrets} == {name: running[name] for name in secrets}
    assert demo["COFFEECHAIN_API_URL"] == f"http://127.0.0.1:{DEFAULT_PORTS['coffeechain']}"
    assert demo["DUFFEL_BASE_URL"] == f"http://127.0.0.1:{DEFAULT_PORTS['duffel']}"


def test_the_operator_token_is_made_once_and_kept_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "booking" / "operator-token"
    first = operator_token(path)
    assert len(first) >= 40  # 32 random bytes, URL-safe
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert operator_token(path) == first  # the next start keeps it
    path.write_text("\n")
    renewed = operator_token(path)  # an emptied file is never an empty token
    assert renewed.strip() and renewed != first


def test_demo_sign_ins_are_kept_between_starts_until_new_ones_are_asked_for(
    tmp_path: Path,
) -> None:
    users, passwords = tmp_path / "dashboard_users.json", tmp_path / "dashboard" / "demo-passwords"
    tenants = ["coffeechain", "telcocorp"]
    first = demo_sign_ins(users, passwords, tenants)
    assert [name for name, _ in first] == ["operator", "staff-coffeechain", "staff-telcocorp"]
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    store = auth.UserStore(users)
    assert all(store.authenticate(name, password) for name, password in first)
    assert demo_sign_ins(users, passwords, tenants) == first  # the next start keeps them
    renewed = demo_sign_ins(users, passwords, tenants, new=True)  # --new-passwords
    assert {p for _, p in renewed}.isdisjoint(p for _, p in first)
    assert all(store.authenticate(name, password) for name, password in renewed)
    assert not any(store.authenticate(name, password) for name, password in first)
    # Users rewritten behind its back (create-demo-users): the kept passwords no longer
    # sign in, so new ones are made rather than shown wrong.
    auth.create_demo_users(users, tenants)
    again = demo_sign_ins(users, passwords, tenants)
    assert again != renewed
    assert all(store.authenticate(name, password) for name, password in again)


# --- the demo as `make demo` runs it, on free ports and a data folder of its own ---------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (the stand-ins take four in a row)."""
    while True:
        first = _free_port()
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue


class Demo:
    """``python -m orchestration.demo`` in a session of its own (as a terminal runs it), its output collected."""

    def __init__(self, history: Path, data: Path, *extra: str) -> None:
        self.data = data
        self.ports = {
            "standins": _free_ports(4),
            "api": _free_port(),
            "dagster": _free_port(),
            "dashboard": _free_port(),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestration.demo",
                "--history",
                str(history),
                "--data-dir",
                str(data),
                "--traffic",
                "6",
                "--standin-port",
                str(self.ports["standins"]),
                "--api-port",
                str(self.ports["api"]),
                "--dagster-port",
                str(self.ports["dagster"]),
                "--dashboard-port",
                str(self.ports["dashboard"]),
                *extra,
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "DATA_DIR")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_until(self, ready, what: str) -> None:
        """Wait (as long as it takes on a busy machine) until ``ready()``; fail if it exits."""
        while not ready():
            if self.process.poll() is not None:
                self.reader.join()
                pytest.fail(
                    f"the demo exited ({self.process.returncode}) before {what}:\n"
                    + "\n".join(self.lines)
                )
            time.sleep(0.5)

    def ctrl_c(self) -> None:
        """Ctrl-C as a terminal sends it (to the foreground process group); the demo and
        every process below it must be gone within 5 s."""
        below = _descendants(self.process.pid)
        groups = {os.getpgid(pid) for pid in below if _running(pid)}
        assert len(below) >= 5, below  # the services at least
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("the demo did not stop within 5 s of Ctrl-C")
        self.reader.join()
        assert code == 130, "\n".join(self.lines)
        assert [pid for pid in below if _running(pid)] == []
        assert _group_members(groups) == []
        assert self.lines[-1] == "demo: stopped"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended (whoever reaps it)


def _group_members(groups: set[int]) -> list[int]:
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups and fields[0] != "Z":
            members.append(int(stat_file.parent.name))
    return members


def _runs(data: Path) -> list:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(data / "dagster_home"))) as instance:
        return list(instance.get_runs())


def _assert_nothing_failed_or_left_running(data: Path) -> list[tuple[str, str]]:
    """No run failed, none is left running; returns (job, status) of every run."""
    runs = _runs(data)
    statuses = [(r.job_name, r.status.value) for r in runs]
    assert [name for name, status in statuses if status == "FAILURE"] == [], statuses
    assert all(r.is_finished for r in runs), statuses
    return statuses


def _assert_canceled_not_failed(data: Path, job: str) -> None:
    """The stop canceled ``job``'s run; no run failed, none is left running."""
    assert (job, "CANCELED") in _assert_nothing_failed_or_left_running(data)


@pytest.fixture(scope="module")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    generate(300, 7, out, months=2)
    return out


@pytest.fixture
def start_demo() -> Iterator[Callable[..., Demo]]:
    """Start demos; one a failed test leaves running is stopped (its whole tree) afterwards."""
    started: list[Demo] = []

    def start(*args: object) -> Demo:
        started.append(Demo(*args))
        return started[-1]

    yield start
    for demo in started:
        if demo.process.poll() is None:
            below = _descendants(demo.process.pid)
            os.killpg(demo.process.pid, signal.SIGINT)
            try:
                demo.process.wait(timeout=30)
            finally:
                for pid in [demo.process.pid, *below]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


# Two real starts of the whole demo (a first pipeline run each): minutes on a busy machine.
@pytest.mark.timeout(1800)
def test_ctrl_c_stops_the_demo_at_any_moment_and_cancels_its_runs(
    small_history: Path, tmp_path: Path, start_demo: Callable[..., Demo]
) -> None:
    data = tmp_path / "data"
    pipeline_log = data / "logs" / "pipeline.log"  # the Dagster instance exists once it has a line

    # 1. During the first pipeline run, while its warehouse job (dbt build) runs.
    first = start_demo(small_history, data)
    first.wait_until(
        lambda: (
            pipeline_log.exists()
            and "  … warehouse_job" in pipeline_log.read_text()
            and any(
                r.job_name == "warehouse_job" and r.status.value == "STARTED" for r in _runs(data)
            )
        ),
        "its first pipeline run's dbt build",
    )
    first.ctrl_c()
    _assert_canceled_not_failed(data, "warehouse_job")
    sign_ins = (data / DEMO_PASSWORDS).read_text()

    # 2. Once everything is up (and live mode has published a cycle).
    second = start_demo(small_history, data)
    second.wait_until(lambda: "Ctrl-C stops everything." in "".join(second.lines[-3:]), "the box")
    output = "\n".join(second.lines)
    # A line per step and one box: the sign-ins are not buried.
    assert len(second.lines) <= 30, output
    assert [line[:5] for line in second.lines if line.startswith("[")] == [
        f"[{n}/7]" for n in range(1, 8)
    ]
    box = output[output.index("╭") :]
    ports = second.ports
    for url in (
        f"http://127.0.0.1:{ports['dashboard']}",
        f"http://127.0.0.1:{ports['dagster']}",
        f"http://127.0.0.1:{ports['api']}/api/v1",
        f"http://127.0.0.1:{ports['api']}/docs",
        *(f"http://127.0.0.1:{ports['standins'] + n}" for n in range(4)),
    ):
        assert url in box, url
    # The same sign-ins as at the first start, each shown with its password.
    assert (data / DEMO_PASSWORDS).read_text() == sign_ins
    store = auth.UserStore(data / "dashboard_users.json")
    for line in sign_ins.splitlines():
        name, password = line.split(" ")
        assert re.search(rf"sign in\s+{re.escape(name)}\s+{re.escape(password)}\b", box), name
        assert store.authenticate(name, password)
    assert str(data / DEMO_PASSWORDS) in box and "ARGS=--new-passwords" in box
    assert f"{data / 'logs'}/" in box
    logs = {path.stem for path in (data / "logs").glob("*.log")}
    assert {"sandbox", "import-history", "booking-api", "traffic", "pipeline", "dagster"} <= logs
    assert "dashboard" in logs
    # Nothing of the pipeline's own output (quarantine lines, dbt's log) on the screen.
    assert "quarantined" not in output and "dbt" not in output
    # Live mode is a service beside Dagster (no run): stop it while it cycles.
    live_log = data / "logs" / "live.log"
    second.wait_until(
        lambda: live_log.exists() and "live: cycle" in live_log.read_text(),
        "live mode's first cycle",
    )
    second.ctrl_c()
    _assert_nothing_failed_or_left_running(data)
