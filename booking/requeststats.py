"""Per-request statistics (tenant, route template, status, latency), cheap on the request path.

Each request adds itself to an in-memory bucket of its process: one dictionary update under
a lock, no I/O. The buckets are flushed to the store (the ``request_stats`` table) by the
API's background loop and before every read, so the admin feed sums every worker process.
Latency is kept as a fixed histogram; percentiles are read from it as the upper bound of the
bucket they fall in (an observed bound, never interpolated).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Upper bounds of the latency buckets, in milliseconds; one more bucket holds the rest.
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
BUCKET_SECONDS = 60


@dataclass
class Bucket:
    """One minute of one tenant's requests to one route."""

    requests: int = 0
    client_errors: int = 0  # 4xx other than 429
    server_errors: int = 0  # 5xx
    throttled: int = 0  # 429
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))

    def add(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        if status == 429:
            self.throttled += 1
        elif status >= 500:
            self.server_errors += 1
        elif status >= 400:
            self.client_errors += 1
        self.latency_ms_sum += latency_ms
        self.latency_ms_max = max(self.latency_ms_max, latency_ms)
        self.histogram[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1

    def merge(self, other: Bucket) -> None:
        self.requests += other.requests
        self.client_errors += other.client_errors
        self.server_errors += other.server_errors
        self.throttled += other.throttled
        self.latency_ms_sum += other.latency_ms_sum
        self.latency_ms_max = max(self.latency_ms_max, other.latency_ms_max)
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]


# (minute start as epoch seconds, tenant id or "" when no tenant was named, "METHOD /route")
Key = tuple[int, str, str]


class RequestStats:
    """This process's buckets not yet flushed to the store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Key, Bucket] = {}

    def record(
        self, tenant_id: str | None, route: str, status: int, latency_ms: float, now: float
    ) -> None:
        key = (int(now // BUCKET_SECONDS * BUCKET_SECONDS), tenant_id or "", route)
        with self._lock:
            bucket = self._open.get(key)
            if bucket is None:
                bucket = self._open[key] = Bucket()
            bucket.add(status, latency_ms)

    def drain(self) -> dict[Key, Bucket]:
        """Hand over every bucket kept so far (the next requests start new ones)."""
        with self._lock:
            drained, self._open = self._open, {}
        return drained


def histogram_text(histogram: Iterable[int]) -> str:
    return ",".join(str(n) for n in histogram)


def parse_histogram(text: str) -> list[int]:
    counts = [int(n) for n in text.split(",")]
    if len(counts) != len(BOUNDS_MS) + 1:
        raise ValueError(f"a latency histogram has {len(BOUNDS_MS) + 1} buckets, not {len(counts)}")
    return counts


def percentile_bound(histogram: list[int], share: float) -> int | None:
    """The upper bound (ms) of the bucket holding the ``share`` quantile; None above the last
    bound or without requests."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, -(-int(share * 1000) * total // 1000))  # nearest rank, in integers
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return BOUNDS_MS[index] if index < len(BOUNDS_MS) else None
    return None


def summary(rows: Iterable[tuple[str, str, Bucket]], since: dt.datetime) -> dict[str, Any]:
    """Per tenant and route over the window: counts, error and 429 shares, latency."""
    merged: dict[tuple[str, str], Bucket] = {}
    for tenant_id, route, bucket in rows:
        merged.setdefault((tenant_id, route), Bucket()).merge(bucket)
    routes = []
    for (tenant_id, route), b in sorted(merged.items()):
        routes.append(
            {
                "tenant_id": tenant_id or None,
                "route": route,
                "requests": b.requests,
                "client_errors": b.client_errors,
                "server_errors": b.server_errors,
                "throttled": b.throttled,
                "latency_ms_mean": round(b.latency_ms_sum / b.requests, 1) if b.requests else None,
                "latency_ms_p50_at_most": percentile_bound(b.histogram, 0.5),
                "latency_ms_p95_at_most": percentile_bound(b.histogram, 0.95),
                "latency_ms_max": round(b.latency_ms_max, 1),
            }
        )
    return {
        "since": since.isoformat(),
        "bucket_bounds_ms": list(BOUNDS_MS),
        "routes": routes,
    }
