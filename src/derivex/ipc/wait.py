"""Wait strategies for ring endpoints (usable from Python and from njit code).

A strategy is three phases driven by an iteration counter ``i``:

1. ``spins`` iterations of busy polling with a CPU relax hint (x86 ``pause``);
2. ``yields`` iterations calling ``sched_yield()``;
3. sleeping, starting at ``min_sleep_ns`` and doubling up to ``max_sleep_ns``.

Presets:

* :data:`SPIN` -- poll forever.  Lowest latency, but burns a whole core; only
  sensible with a dedicated core per spinning process.
* :data:`SPIN_YIELD` (**default**) -- 1000 relaxed spins (~8 us on the
  2-core reference VM, up to ~50 us on CPUs with a slow ``pause``), then 100
  ``sched_yield`` calls, then sleep back-off 10 us -> 1 ms.  Chosen for small machines (the
  reference box has 2 cores): a peer that answers within microseconds is
  caught while spinning, a peer that needs the CPU we are spinning on gets it
  through the yields, and an idle endpoint decays to <= 1000 wake-ups/s
  instead of burning a core.
* :data:`BACKOFF` -- no spinning, sleep 1 us -> 1 ms from the start.
  Cheapest on CPU, latency bounded by timer slack (~50-100 us on Linux).

In njit code call :func:`wait_step` in the polling loop::

    i = 0
    while load_acquire(ctrl, HEAD) == seen:
        if not wait_step(params, i, deadline_ns):
            break  # timed out
        i += 1

``params`` is :meth:`WaitStrategy.params` (an ``int64[4]`` array) and
``deadline_ns`` an absolute :func:`time.monotonic_ns` value (< 0: none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from .atomics import cpu_relax, monotonic_ns, sched_yield, sleep_ns

__all__ = [
    "BACKOFF",
    "DEFAULT_WAIT",
    "SPIN",
    "SPIN_YIELD",
    "WaitStrategy",
    "deadline_after",
    "wait_step",
]

# Deadline checks during the spin phase are amortised over this many spins.
_SPIN_CHECK_MASK = 63
# Python-level blocking calls re-enter the interpreter at least this often so
# that signals (Ctrl-C) are handled even with ``timeout=None``.
PY_SLICE_NS = 100_000_000


@dataclass(frozen=True)
class WaitStrategy:
    """Spin / yield / exponential-sleep wait policy (see module docstring)."""

    spins: int = 1000
    yields: int = 100
    min_sleep_ns: int = 10_000
    max_sleep_ns: int = 1_000_000

    def __post_init__(self) -> None:
        if self.spins < 0 or self.yields < 0:
            raise ValueError("spins and yields must be >= 0")
        if self.min_sleep_ns < 1 or self.max_sleep_ns < self.min_sleep_ns:
            raise ValueError("need 1 <= min_sleep_ns <= max_sleep_ns")
        if self.max_sleep_ns > 1_000_000_000:
            raise ValueError("max_sleep_ns must be <= 1 s")
        arr = np.array(
            [self.spins, self.yields, self.min_sleep_ns, self.max_sleep_ns], dtype=np.int64
        )
        arr.flags.writeable = False
        object.__setattr__(self, "_params", arr)

    def params(self) -> np.ndarray:
        """The ``int64[4]`` parameter array njit code passes to :func:`wait_step`."""
        return self._params  # type: ignore[attr-defined]


SPIN = WaitStrategy(spins=1 << 62, yields=0)
SPIN_YIELD = WaitStrategy()
BACKOFF = WaitStrategy(spins=0, yields=0, min_sleep_ns=1_000, max_sleep_ns=1_000_000)
DEFAULT_WAIT = SPIN_YIELD


def resolve(wait: WaitStrategy | str | None) -> WaitStrategy:
    """Accept a strategy, a preset name (``"spin"``, ``"spin_yield"``, ``"backoff"``) or None."""
    if wait is None:
        return DEFAULT_WAIT
    if isinstance(wait, WaitStrategy):
        return wait
    presets = {"spin": SPIN, "spin_yield": SPIN_YIELD, "backoff": BACKOFF}
    try:
        return presets[str(wait)]
    except KeyError:
        raise ValueError(f"unknown wait strategy {wait!r}; use one of {sorted(presets)}") from None


def deadline_after(timeout: float | None) -> int:
    """Absolute monotonic deadline in ns for ``timeout`` seconds (None -> -1)."""
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be >= 0")
    return time.monotonic_ns() + int(timeout * 1e9)


def slice_deadline(deadline_ns: int) -> int:
    """Deadline for one njit call: the real deadline capped at PY_SLICE_NS from now."""
    cap = time.monotonic_ns() + PY_SLICE_NS
    return cap if deadline_ns < 0 or deadline_ns > cap else deadline_ns


@njit(cache=True, nogil=True)
def wait_step(params, i, deadline_ns):
    """Perform wait iteration ``i``; return False once ``deadline_ns`` has passed."""
    spins = params[0]
    yields = params[1]
    if i < spins:
        cpu_relax()
        if (i & _SPIN_CHECK_MASK) != _SPIN_CHECK_MASK:
            return True
    elif i - spins < yields:
        sched_yield()
    else:
        k = i - spins - yields
        d = params[2]
        hi = params[3]
        while k > 0 and d < hi:
            d *= 2
            k -= 1
        sleep_ns(min(d, hi))
    return deadline_ns < 0 or monotonic_ns() < deadline_ns
