"""Claims on the warehouse pool left by runs whose process is gone: found, failed and freed.

A run killed outright (SIGKILL, out of memory, a power cut) never reports its end, so
Dagster keeps it "started" and keeps its pool slot claimed: every later warehouse build
would wait for it forever. Dagster records the process of each run (the engine events
"Started process for run (pid: N)" and "Executing steps in process (pid: N)"); runs
started by this project also carry the host they run on (``HOST_TAG``). A run whose
recorded process no longer exists on its host is reported as failed, and the slots of
every ended run are freed, before a new build claims the pool.

``python -m warehouse.pool`` shows who holds the pool; ``python -m warehouse.pool free
RUN_ID`` marks a run failed and frees its slots (for a run on another host that is gone).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

# The warehouse has one writer at a time: every asset that writes it shares this pool (limit 1).
WAREHOUSE_POOL = "warehouse"
# Which machine (and boot of it) a run's process runs on, so its pid can be judged.
HOST_TAG = "loyalty_flights/host"
UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
CLEAR_HINT = "python -m warehouse.pool free {run_id}"


def host_identity() -> str:
    """This machine's name and boot: a pid means something only on the same host and boot."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}#{boot.read_text().strip() if boot.exists() else ''}"


def host_tags() -> dict[str, str]:
    """Tags to give a run so a later process can tell whether it is still running."""
    return {HOST_TAG: host_identity()}


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _process_state(pid: int) -> tuple[str, float | None] | None:
    """(state letter, start time) of a process from /proc, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ("?", None)
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (name) "
    boot = _boot_time()
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") if boot is not None else None
    return fields[0], started


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and (pid reuse) began by ``since``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state = _process_state(pid)
    if state is None:
        return False
    letter, started = state
    if letter in ("Z", "X"):  # killed, not yet reaped: the run's work is over
        return False
    # A process that began after the run did is another one that got the same pid.
    return not (since is not None and started is not None and started > since + 2.0)


def recorded_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid Dagster recorded for the run's process, and when (the latest engine event)."""
    found = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        value = data.metadata.get("pid") if data is not None and data.metadata else None
        if value is not None:
            try:
                found = (int(value.value), entry.timestamp)
            except (TypeError, ValueError):
                continue
    return found


@dataclass(frozen=True)
class RunState:
    """What is known about one run that holds (or may hold) the pool."""

    run_id: str
    job_name: str
    status: str
    pid: int | None
    host: str | None
    created: float | None
    verdict: str  # "ended", "gone", "running", "unknown" (another host, or no pid yet)

    def describe(self) -> str:
        if self.status == "DELETED":
            return f"run {self.run_id} (no longer in this instance)"
        since = (
            dt.datetime.fromtimestamp(self.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if self.created
            else "an unknown time"
        )
        where = f"pid {self.pid}" if self.pid else "no pid recorded yet"
        if self.host and self.host != host_identity():
            where += f" on host {self.host.split('#')[0]}"
        return f"run {self.run_id} ({self.job_name}, {self.status.lower()} since {since}, {where})"


def judge(instance: dg.DagsterInstance, run_id: str) -> RunState:
    """Whether ``run_id`` has ended, is running, or is gone (its process no longer exists)."""
    record = next(iter(instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)), None)
    if record is None:
        return RunState(run_id, "deleted run", "DELETED", None, None, None, "ended")
    run = record.dagster_run
    created = record.create_timestamp.timestamp()
    if run.is_finished:
        return RunState(run_id, run.job_name, run.status.value, None, None, created, "ended")
    recorded, host = recorded_pid(instance, run_id), run.tags.get(HOST_TAG)
    pid = recorded[0] if recorded else None
    here = host_identity()
    if host is None or recorded is None:
        verdict = "unknown"
    elif host == here:
        # The process existed when Dagster recorded its pid; one started later is another.
        verdict = "running" if process_alive(recorded[0], since=recorded[1]) else "gone"
    elif host.split("#")[0] == here.split("#")[0]:
        verdict = "gone"  # this machine has restarted since: every process of that boot is gone
    else:
        verdict = "unknown"
    return RunState(run_id, run.job_name, run.status.value, pid, host, created, verdict)


def pool_holders(
    instance: dg.DagsterInstance, pool: str = WAREHOUSE_POOL, *, exclude: Iterable[str] = ()
) -> list[RunState]:
    """Every run that holds a slot of ``pool`` (other than ``exclude``), judged."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    skip = set(exclude)
    run_ids = dict.fromkeys(slot.run_id for slot in info.claimed_slots if slot.run_id not in skip)
    return [judge(instance, run_id) for run_id in run_ids]


def waiting_in_pool(instance: dg.DagsterInstance, run_id: str, pool: str = WAREHOUSE_POOL) -> bool:
    """Whether ``run_id`` has a step waiting for a slot of ``pool``."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    claimed = {slot.run_id for slot in info.claimed_slots}
    return run_id not in claimed and any(step.run_id == run_id for step in info.pending_steps)


def release(instance: dg.DagsterInstance, state: RunState, why: str) -> None:
    """Report an unfinished run as failed (with ``why``) and free every slot it holds."""
    run = instance.get_run_by_id(state.run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, why)
    instance.event_log_storage.free_concurrency_slots_for_run(state.run_id)


def reap(
    instance: dg.DagsterInstance, pool: str = WAREHOUSE_POOL, *, exclude: Iterable[str] = ()
) -> list[str]:
    """Fail unfinished runs whose process is gone and free slots of ended runs; one line each."""
    skip = set(exclude)
    done: list[str] = []
    unfinished = instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED), limit=200)
    candidates = [r.dagster_run.run_id for r in unfinished if r.dagster_run.run_id not in skip]
    for state in [judge(instance, run_id) for run_id in candidates]:
        if state.verdict == "gone":
            why = (
                f"Its process (pid {state.pid}) is no longer running (killed or crashed without "
                "reporting its end); marked failed so its pool slots can be used again."
            )
            release(instance, state, why)
            done.append(f"{state.describe()} is no longer running: marked failed, slots freed")
    for state in pool_holders(instance, pool, exclude=skip):
        if state.verdict == "ended":
            release(instance, state, "")
            done.append(f"{state.describe()} had ended but still held the {pool} pool: freed")
    return done


def waiting_message(holders: list[RunState], pool: str = WAREHOUSE_POOL) -> str:
    """One line: what a build waits for, and how to stop waiting."""
    parts = []
    for state in holders:
        if state.verdict == "running":
            how = "it frees the pool when it ends (terminate it in the Dagster UI to stop it now)"
        else:
            how = (
                "its process cannot be checked from here; if it is no longer running, "
                f"clear it with `{CLEAR_HINT.format(run_id=state.run_id)}`"
            )
        parts.append(f"{state.describe()}: {how}")
    return f"waiting for the {pool} pool, held by " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", nargs="?", choices=["status", "reap", "free"], default="status")
    parser.add_argument("run_id", nargs="?", help="the run to mark failed and free (with free)")
    args = parser.parse_args(argv)
    instance = dg.DagsterInstance.get()
    if args.action == "free":
        if not args.run_id:
            parser.error("free needs a RUN_ID")
        state = judge(instance, args.run_id)
        if state.verdict == "running":
            print(
                f"{state.describe()} is still running here; terminate it instead", file=sys.stderr
            )
            return 1
        release(
            instance, state, "Marked failed by hand (warehouse.pool free): its process is gone."
        )
        print(f"{state.describe()}: marked failed, slots freed")
        return 0
    if args.action == "reap":
        for line in reap(instance):
            print(line)
        return 0
    holders = pool_holders(instance)
    print(waiting_message(holders) if holders else f"the {WAREHOUSE_POOL} pool is free")
    return 0


if __name__ == "__main__":
    sys.exit(main())
