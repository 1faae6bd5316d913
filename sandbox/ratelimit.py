"""Enforced fixed-window rate limits, as the stand-ins apply them."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sandbox.config import Limit


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # unix seconds when the current window ends
    retry_after: int  # whole seconds to wait when not allowed


class FixedWindowLimiter:
    """Counts requests per key in windows aligned to the epoch; thread-safe."""

    def __init__(self, limit: Limit, clock=time.time) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window index, count)

    def hit(self, key: str = "") -> Decision:
        now = self._clock()
        width = self.limit.window_seconds
        index = int(now // width)
        reset_at = (index + 1) * width
        with self._lock:
            current, count = self._windows.get(key, (index, 0))
            if current != index:
                count = 0
            allowed = count < self.limit.requests
            if allowed:
                count += 1
            self._windows[key] = (index, count)
        return Decision(
            allowed=allowed,
            limit=self.limit.requests,
            remaining=max(self.limit.requests - count, 0),
            reset_at=reset_at,
            retry_after=max(1, math.ceil(reset_at - now)),
        )
