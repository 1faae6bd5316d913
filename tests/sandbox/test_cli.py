"""`python -m sandbox`: generate a history, serve it, stop cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sandbox.config import DEFAULT_PORTS
from sandbox.servers import free_port


def _free_offset() -> int:
    # An offset that puts all four default ports on free loopback ports.
    for _ in range(50):
        offset = free_port() - DEFAULT_PORTS["coffeechain"]
        ports = [port + offset for port in DEFAULT_PORTS.values()]
        if all(0 < p < 65536 for p in ports) and all(_is_free(p) for p in ports):
            return offset
    raise RuntimeError("no free block of four ports")


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def serve_cli(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``python -m sandbox serve ARGS`` started, and what it printed until it said it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops" in line or not line:
                break
    except BaseException:
        proc.kill()
        raise
    return proc, lines


def test_generate_then_serve_then_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "history"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "generate",
            "--size",
            "1500",
            "--out",
            str(out),
            "--anchor",
            "2026-11-01",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1,500 bookings" in done.stdout and "planted anomalies" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["size"] == 1500

    offset = _free_offset()
    proc, lines = serve_cli("--history", str(out), "--port-offset", str(offset))
    try:
        assert any("Ctrl-C stops" in line for line in lines), "".join(lines)
        for name, port in DEFAULT_PORTS.items():
            health = httpx.get(f"http://127.0.0.1:{port + offset}/health", timeout=5)
            assert health.status_code == 200, name
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rest = proc.stdout.read()
    assert "stopping stand-ins" in rest
    assert "Traceback" not in rest


def test_serve_refuses_a_missing_history(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--history", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "python -m sandbox generate" in done.stderr
