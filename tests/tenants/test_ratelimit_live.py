"""Many threads hammering one tenant and one Duffel token never exceed the limit: zero 429s."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from clients.duffel import build_duffel_client
from clients.loyalty.client import build_loyalty_client
from sandbox.config import Limit
from tenants.registry import RateLimit

from .conftest import LIVE_RETRY, Wire

REQUESTS = 20
WINDOW_SECONDS = 2.0
CALLS = 50  # two and a half windows' worth
THREADS = 8


def test_threads_share_the_limit_and_never_earn_a_429(tenants, sandbox_factory, point_at) -> None:
    point_at(
        sandbox_factory(
            limits={
                "coffeechain": Limit(REQUESTS, WINDOW_SECONDS),
                "telcocorp": Limit(REQUESTS, WINDOW_SECONDS),
                "fintechapp": Limit(REQUESTS, WINDOW_SECONDS),
                "duffel": Limit(REQUESTS, WINDOW_SECONDS),
            }
        )
    )
    limit = RateLimit(requests=REQUESTS, window_seconds=WINDOW_SECONDS)
    coffee = tenants["coffeechain"].model_copy(update={"rate_limit": limit})
    telco = tenants["telcocorp"].model_copy(
        update={
            "rate_limit": limit,
            "duffel": tenants["telcocorp"].duffel.model_copy(update={"rate_limit": limit}),
        }
    )
    wire = Wire()
    # Several clients per quota, as several assets in one process would have.
    loyalty_clients = [
        build_loyalty_client(tenant, retry=LIVE_RETRY, event_hooks=wire.hooks)
        for tenant in (coffee, telco, coffee, telco)
    ]
    duffel_clients = [
        build_duffel_client(telco, retry=LIVE_RETRY, event_hooks=wire.hooks) for _ in range(2)
    ]

    def loyalty_call(n: int) -> None:
        client = loyalty_clients[n % len(loyalty_clients)]
        member = "CC1234567" if client.tenant.id == "coffeechain" else "TC-ABC123"
        client.balance(member)

    def duffel_call(n: int) -> None:
        next(duffel_clients[n % 2].list_airlines(limit=5))

    with ThreadPoolExecutor(THREADS) as pool:
        jobs = []
        for n in range(CALLS):  # interleaved, so the three quotas are used at once
            jobs += [pool.submit(loyalty_call, 2 * n), pool.submit(loyalty_call, 2 * n + 1)]
            jobs.append(pool.submit(duffel_call, n))
        for job in jobs:
            job.result()
    for client in [*loyalty_clients, *duffel_clients]:
        client.close()
    assert wire.count(status=429) == 0
    assert wire.count(path="/balance", status=200) == CALLS
    assert wire.count(path="/points", status=200) == CALLS
    assert wire.count(path="/air/airlines", status=200) == CALLS
    # Each TelcoCorp client's token request counted against the quota too, and still fit.
    assert wire.sends("/oauth/token") == 2
