"""The image's HEALTHCHECK: is this container's role doing its job? Exit 0 healthy, 1 not.

deploy/entrypoint.sh records the role; the ports come from the same variables it reads, the
stand-ins' from ``settings.STANDIN_PORTS`` (read from the file's text: importing ``settings``
would load pydantic). Standard library only, so a check costs a few milliseconds (the
daemon's excepted).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLE_FILE = Path("/tmp/container-role")
SETTINGS = Path(__file__).resolve().parents[1] / "settings.py"


def standin_ports(settings: Path = SETTINGS) -> list[int]:
    """The values of the ``STANDIN_PORTS = {...}`` literal in settings.py."""
    for node in ast.parse(settings.read_text(), str(settings)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "STANDIN_PORTS" for t in node.targets
        ):
            return list(ast.literal_eval(node.value).values())
    raise LookupError(f"{settings}: no STANDIN_PORTS literal")


def _probe_host(variable: str) -> str:
    # A server bound to every interface answers on loopback.
    host = os.environ.get(variable, "0.0.0.0")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _answers(url: str) -> bool:
    # Never through a proxy: the target is this container.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}")
        return False
    print(f"{url}: {'ok' if ok else response.status}")
    return ok


def main() -> int:
    if not ROLE_FILE.exists():
        print("starting: the entrypoint has not recorded a role yet")
        return 1
    role = ROLE_FILE.read_text().strip()
    if role == "sandbox":
        host = _probe_host("SANDBOX_HOST")
        offset = int(os.environ.get("SANDBOX_PORT_OFFSET") or 0)
        urls = [f"http://{host}:{port + offset}/health" for port in standin_ports()]
    elif role == "webserver":
        host = _probe_host("DAGSTER_WEBSERVER_HOST")
        urls = [f"http://{host}:{os.environ.get('DAGSTER_WEBSERVER_PORT', '3000')}/server_info"]
    elif role == "dashboard":
        host = _probe_host("DASHBOARD_HOST")
        urls = [f"http://{host}:{os.environ.get('DASHBOARD_PORT', '8050')}/login"]
    elif role == "api":
        # 200 only while the booking API can take bookings: its store, Duffel and a tenant API.
        host = _probe_host("BOOKING_HOST")
        urls = [f"http://{host}:{os.environ.get('BOOKING_PORT', '8000')}/api/v1/health"]
    elif role == "daemon":
        # Every daemon (scheduler, sensors, run queue, ...) wrote a heartbeat recently.
        return subprocess.run(["dagster-daemon", "liveness-check"], check=False).returncode
    else:
        # One-shot roles (pipeline, create-users) and custom commands: running is healthy.
        return 0
    return 0 if all([_answers(url) for url in urls]) else 1


if __name__ == "__main__":
    sys.exit(main())
