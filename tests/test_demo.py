"""The demo's wiring of the booking API: the stand-ins' own credentials and a kept operator token."""

from __future__ import annotations

import stat
from pathlib import Path

from orchestration.demo import operator_token, standin_env
from sandbox.config import DEFAULT_PORTS
from sandbox.runner import Sandbox


def test_the_demo_hands_out_the_credentials_the_standins_accept(sandbox: Sandbox) -> None:
    demo = standin_env(sandbox.config)
    running = sandbox.client_env()
    # Same variables, same secrets; only the URLs differ (the demo's stand-ins use 8001-8004).
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
