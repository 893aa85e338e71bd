"""Per-key rate limits in the engine's gas units.

Each API key has a token bucket of ``capacity`` units refilled at ``refill_per_s``. A request
that reaches the matching engine costs the engine's ``gas_base``; any other request costs
one unit. By default the bucket mirrors an account's gas budget (``gas_max``, refilled at
``gas_refill_per_ms``), so the gateway turns a flood away (error 10028) before it reaches
the sequencer, and the engine's own ``GAS_EXHAUSTED`` answers the same code.

>>> clock = [0.0]
>>> limiter = RateLimiter(capacity=20, refill_per_s=10, clock=lambda: clock[0])
>>> [limiter.allow("k", 10) for _ in range(3)]
[True, True, False]
>>> clock[0] = 1.0; limiter.allow("k", 10)
True
"""

from __future__ import annotations

import time
from collections.abc import Callable

from derivex.core.config import EngineConfig


class RateLimiter:
    def __init__(
        self, capacity: float, refill_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(capacity)
        self.refill_per_s = float(refill_per_s)
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}

    @classmethod
    def from_engine(cls, config: EngineConfig, scale: float = 1.0) -> RateLimiter:
        """The engine's per-account gas budget, ``scale`` times (``scale`` < 1: stricter)."""
        return cls(config.gas_max * scale, config.gas_refill_per_ms * 1000 * scale)

    def allow(self, key: str, cost: float) -> bool:
        """Take ``cost`` units from ``key``'s bucket if it has them. O(1)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.capacity, now]
        tokens = bucket[0] + (now - bucket[1]) * self.refill_per_s
        if tokens > self.capacity:  # (not ``min``: a builtin call per request)
            tokens = self.capacity
        bucket[1] = now
        if tokens < cost:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - cost
        return True

    def prune(self) -> None:
        """Forget the buckets that have refilled to ``capacity`` (they would start full
        anyway): bounds the memory of a limiter keyed by something unbounded, such as
        client addresses. O(buckets)."""
        now = self._clock()
        full = [
            key
            for key, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self.refill_per_s >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
