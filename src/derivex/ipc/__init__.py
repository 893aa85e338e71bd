"""Shared-memory record rings for inter-process communication.

* :class:`SpscRing` -- single producer / single consumer ring of fixed-size
  records (any numpy dtype without Python objects) in a named POSIX
  shared-memory segment.  Zero-copy batches via ``claim``/``publish`` and
  ``peek``/``release``; copying ``push``/``pop``; njit kernels
  (``spsc_*``) for compiled producer/consumer loops.
* :class:`BroadcastRing` / :class:`BroadcastConsumer` -- one producer, many
  consumers with independent cursors; slow consumers either block the
  producer (``policy="block"``) or get dropped (``policy="drop"``, the
  consumer then sees :class:`ConsumerDropped`).
* :mod:`.atomics` -- acquire/release atomics as numba intrinsics.
* :mod:`.wait` -- spin / spin-then-yield (default) / back-off wait strategies.
* :class:`BookWriter` / :class:`BookReader` -- shared book snapshots (top-N levels,
  mark and index per instrument) under per-instrument seqlocks (:mod:`.book`).

Segments are named: ``create(name, dtype, capacity)`` and ``attach(name)``
validate a header (magic, version, record size, capacity, dtype hash), record
the creator pid (:func:`is_stale`, :func:`remove_stale`), and are removed with
``unlink()`` or by leaving the creator's ``with`` block.  Linux only.
"""

from __future__ import annotations

from .book import BookReader, BookSnapshot, BookWriter
from .broadcast import BroadcastConsumer, BroadcastRing, ConsumerDropped
from .ring import SpscRing
from .segment import IpcError, LayoutError, RingTimeout, is_stale, remove_stale, unlink_name
from .wait import BACKOFF, DEFAULT_WAIT, SPIN, SPIN_YIELD, WaitStrategy

__all__ = [
    "BACKOFF",
    "DEFAULT_WAIT",
    "SPIN",
    "SPIN_YIELD",
    "BookReader",
    "BookSnapshot",
    "BookWriter",
    "BroadcastConsumer",
    "BroadcastRing",
    "ConsumerDropped",
    "IpcError",
    "LayoutError",
    "RingTimeout",
    "SpscRing",
    "WaitStrategy",
    "attach",
    "create",
    "is_stale",
    "remove_stale",
    "unlink",
]


def create(name: str, dtype, capacity: int, **kwargs) -> SpscRing:
    """Create an SPSC ring segment (see :meth:`SpscRing.create`)."""
    return SpscRing.create(name, dtype, capacity, **kwargs)


def attach(name: str, dtype=None, **kwargs) -> SpscRing:
    """Attach to an SPSC ring segment, validating its layout (see :meth:`SpscRing.attach`)."""
    return SpscRing.attach(name, dtype, **kwargs)


def unlink(name: str) -> bool:
    """Remove segment ``name``; returns False if it did not exist."""
    return unlink_name(name)
