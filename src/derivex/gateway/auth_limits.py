"""What makes credentials hard to abuse: single-use signatures and back-off on failures.

``SignatureCache``: a signed request or a ``client_signature`` grant is accepted once. Its
signature is remembered until its timestamp leaves the window (``ts + window``); after
that the timestamp check refuses it anyway, so memory holds at most the signatures of one
window, and never more than ``capacity`` (when full of live entries, new signatures are
refused rather than old ones forgotten: forgetting would re-open a replay).

``AuthBackoff``: failed authentication attempts are counted per *origin* (the TCP
connection a request came on) and per client id, whether or not that id exists (so the
back-off reveals nothing about which ids exist). After ``free_attempts`` failures an
origin or id is refused, even with the right secret, for ``base_s`` doubling with every
further failure up to ``max_s``; a success resets the counters of the id and origin it
came on, and counters idle for ``forget_s`` are dropped. At most ``max_entries`` counters
are kept (the least recently failed are dropped first).

>>> clock = [0.0]
>>> backoff = AuthBackoff(AuthLimits(free_attempts=2, base_s=1, max_s=4), lambda: clock[0])
>>> for _ in range(3):
...     backoff.failed(("id:x",))
>>> backoff.blocked_for(("id:x",)) > 0, backoff.blocked_for(("id:y",))
(True, 0.0)
>>> clock[0] = 10.0; backoff.blocked_for(("id:x",))
0.0
>>> cache = SignatureCache(window_ms=1000, capacity=2)
>>> cache.use(b"a", ts_ms=5000, now_ms=5000), cache.use(b"a", ts_ms=5000, now_ms=5001)
(True, False)
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


class CacheFull(Exception):
    """The signature cache holds ``capacity`` live signatures: retry later."""


class SignatureCache:
    """Signatures seen within the timestamp window. ``use`` costs O(log n) amortised."""

    def __init__(self, window_ms: int, capacity: int = 200_000) -> None:
        self.window_ms = window_ms
        self.capacity = capacity
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[int, bytes]] = []  # heap of (forget at ms, signature)

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, signature: bytes, ts_ms: int, now_ms: int) -> bool:
        """Record ``signature`` (of a request stamped ``ts_ms``, already checked to be in
        the window); False if it was seen before. Raises ``CacheFull``."""
        expiry = self._expiry
        while expiry and expiry[0][0] < now_ms:
            self._seen.discard(heapq.heappop(expiry)[1])
        if signature in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            raise CacheFull
        self._seen.add(signature)
        heapq.heappush(expiry, (ts_ms + self.window_ms, signature))
        return True


@dataclass(frozen=True)
class AuthLimits:
    """Back-off on failed authentication (see the module docstring); the defaults are
    what a public venue would use: 5 free failures, then 1 s doubling up to 60 s."""

    free_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 60.0
    forget_s: float = 600.0
    max_entries: int = 100_000

    @classmethod
    def parse(cls, text: str) -> AuthLimits:
        """``"FREE,BASE_S,MAX_S"`` (``derivex serve --auth-backoff``); ValueError if
        malformed.

        >>> AuthLimits.parse("3,0.5,30").free_attempts
        3
        """
        parts = text.split(",")
        try:
            if len(parts) != 3:
                raise ValueError
            limits = cls(int(parts[0]), float(parts[1]), float(parts[2]))
        except ValueError:
            raise ValueError(f"--auth-backoff wants FREE,BASE_S,MAX_S; got {text!r}") from None
        if limits.free_attempts < 0 or not 0 < limits.base_s <= limits.max_s:
            raise ValueError(
                f"--auth-backoff needs FREE >= 0 and 0 < BASE_S <= MAX_S; got {text!r}"
            )
        return limits


class AuthBackoff:
    """Failure counters by origin and client id (strings such as ``"origin:1.2.3.4:5"``,
    ``"id:abc"``). Every operation is O(names)."""

    def __init__(
        self, limits: AuthLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or AuthLimits()
        self._clock = clock
        # name -> [failures, blocked until, last failure]
        self._entries: OrderedDict[str, list[float]] = OrderedDict()

    def blocked_for(self, names: Iterable[str]) -> float:
        """Seconds until every one of ``names`` may try again (0.0: now)."""
        now = self._clock()
        wait = 0.0
        for name in names:
            entry = self._entries.get(name)
            if entry is None:
                continue
            if now - entry[2] > self.limits.forget_s:
                del self._entries[name]
                continue
            wait = max(wait, entry[1] - now)
        return wait

    def failed(self, names: Iterable[str]) -> None:
        """Count one failure against each of ``names`` (and back it off past the free
        attempts)."""
        limits, now = self.limits, self._clock()
        for name in names:
            entry = self._entries.pop(name, None)
            if entry is None or now - entry[2] > limits.forget_s:
                entry = [0, 0.0, now]
            entry[0] += 1
            entry[2] = now
            over = entry[0] - limits.free_attempts
            if over > 0:
                entry[1] = now + min(limits.max_s, limits.base_s * 2.0 ** min(over - 1, 64))
            self._entries[name] = entry  # most recent last: evicted last
        while len(self._entries) > limits.max_entries:
            self._entries.popitem(last=False)

    def succeeded(self, names: Iterable[str]) -> None:
        for name in names:
            self._entries.pop(name, None)
