"""Serve several ASGI apps from one process, each on its own loopback port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _QuietServer(uvicorn.Server):
    # Signals belong to whoever owns the process (the CLI or pytest), not to each server.
    def install_signal_handlers(self) -> None:
        return None


@dataclass
class RunningServers:
    """Servers started in a background thread; ``stop()`` ends them all."""

    urls: dict[str, str]
    _servers: list[uvicorn.Server] = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        for server in self._servers:
            server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_servers(
    apps: Mapping[str, object], host: str, ports: Mapping[str, int], *, access_log: bool
) -> tuple[dict[str, str], list[uvicorn.Server]]:
    urls, servers = {}, []
    for name, app in apps.items():
        port = ports.get(name, 0) or free_port(host)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=access_log,
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
        servers.append(_QuietServer(config))
        urls[name] = f"http://{host}:{port}"
    return urls, servers


async def serve_all(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))


def serve_in_background(
    apps: Mapping[str, object],
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    *,
    access_log: bool = False,
    startup_timeout: float = 15.0,
) -> RunningServers:
    """Start every app (port 0 or missing = a free port) and return once all accept requests."""
    urls, servers = build_servers(apps, host, ports or {}, access_log=access_log)
    thread = threading.Thread(target=lambda: asyncio.run(serve_all(servers)), daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not all(server.started for server in servers):
        if not thread.is_alive() or time.monotonic() > deadline:
            for server in servers:
                server.should_exit = True
            raise RuntimeError(f"stand-in servers did not start: {sorted(urls)}")
        time.sleep(0.02)
    return RunningServers(urls=urls, _servers=servers, _thread=thread)
