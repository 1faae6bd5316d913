"""The booking API as a real process (``python -m booking``) on a free loopback port, with the
environment that points it at running stand-ins."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from settings import child_environment

OPERATOR_TOKEN = "operator-secret-for-tests"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ApiServer:
    """``python -m booking`` on a free loopback port, its log kept in a file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, workers: int = 1, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "booking",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(self.url + "/openapi.json", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the API did not start within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def api_env(stand_ins: Any, database: Path | str, **extra: str) -> dict[str, str]:
    return child_environment(
        stand_ins.client_env(),
        {
            "BOOKING_DATABASE_URL": database
            if isinstance(database, str)
            else f"sqlite:///{database}",
            "BOOKING_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "BOOKING_RECONCILE_INTERVAL_SECONDS": "0.5",
            "PYTHONPATH": str(ROOT),
            **extra,
        },
        without=("BOOKING_",),
    )


def book_body(flight: dict[str, Any], amount: str | None = None) -> dict[str, Any]:
    """A booking request for ``flight`` (one adult), paying its loyalty price or ``amount``."""
    return {
        "flight_id": flight["id"],
        "passengers": [
            {
                "type": "adult",
                "title": "Ms",
                "first_name": "Grace",
                "last_name": "Hopper",
                "date_of_birth": "1980-12-09",
                "email": "grace@example.com",
                "phone": "+15550100",
            }
        ],
        "payment": {
            "method": "loyalty_points",
            "amount": amount or flight["price"]["loyalty_amount"],
        },
        "contact": {"email": "grace@example.com", "phone": "+15550100"},
    }
