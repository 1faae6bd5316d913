"""An S3-compatible object store on a free loopback port (moto's server, as a subprocess), and
the settings that put the landing zone on it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingestion.landing.storage import location
from settings import Settings
from testing.booking_api import free_port

ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key-never-logged"  # moto accepts any keys
REGION = "eu-west-1"


@dataclass(frozen=True)
class ObjectStore:
    """A running store: its endpoint, and the settings of a landing zone in one bucket."""

    endpoint_url: str

    def env(self, landing_uri: str) -> dict[str, str]:
        """The variables that put the landing zone at ``landing_uri`` on this store."""
        return {
            "LANDING_URI": landing_uri,
            "LANDING_S3_ENDPOINT_URL": self.endpoint_url,
            "LANDING_S3_REGION": REGION,
            "LANDING_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "LANDING_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def create_bucket(self, name: str) -> None:
        settings = Settings(**{k.lower(): v for k, v in self.env(f"s3://{name}").items()})
        location(f"s3://{name}", settings).mkdir()

    def keys(self, bucket: str) -> list[str]:
        """Every object in ``bucket`` (what any client of the store would see)."""
        settings = Settings(**{k.lower(): v for k, v in self.env(f"s3://{bucket}").items()})
        root = location(f"s3://{bucket}", settings)
        return sorted(root.fs.find(root.path))


@contextmanager
def object_store(log_path: Path) -> Iterator[ObjectStore]:
    """moto's S3 server on a free loopback port while the context is open."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(process, url, log_path)
            yield ObjectStore(url)
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the object store exited: {log_path.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the object store did not start within 60 s")
