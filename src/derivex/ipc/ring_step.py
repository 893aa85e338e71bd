"""The arithmetic both rings (SPSC and broadcast) share, on their process-local words:
where a claim or a peek starts and how far it may go without wrapping, how much is free or
readable, and the publish / release step (move one's own counter, then make it visible
with a release store). Parametrised by word indices, not by functions: numba does not cache
a kernel that receives a function which reaches ``wait.wait_step``.
"""

from __future__ import annotations

from numba import njit

from .atomics import load_acquire, store_release


@njit(cache=True, nogil=True, inline="always")
def contiguous(position, cap, want):
    """``(slot, want)``: where a claim or a peek at ``position`` starts, and ``want`` cut at
    the buffer's end (claims and peeks never wrap)."""
    slot = position & (cap - 1)
    return slot, min(want, cap - slot)


@njit(cache=True, nogil=True, inline="always")
def free_slots(head, tail, cap):
    """Free slots for a producer at ``head`` whose slowest reader is at ``tail``."""
    return cap - (head - tail)


@njit(cache=True, nogil=True, inline="always")
def readable(ctrl, local, position, cached_head, cap, head_word, want):
    """``(slot, n)``: up to ``want`` contiguous records readable at ``local[position]``;
    the shared head (``ctrl[head_word]``) is acquire-loaded only when the cached one says
    there are fewer than ``want``."""
    start = local[position]
    slot, want = contiguous(start, local[cap], want)
    available = local[cached_head] - start
    if available < want:
        local[cached_head] = load_acquire(ctrl, head_word)
        available = local[cached_head] - start
    return slot, max(0, min(want, available))


@njit(cache=True, nogil=True, inline="always")
def advance(ctrl, local, mine, word, n):
    """Publish (producer) or release (consumer) ``n`` records: ``local[mine] += n``, then a
    release store of it to ``ctrl[word]`` (the slots written / read before it are ordered
    before the other side sees the new counter)."""
    local[mine] += n
    store_release(ctrl, word, local[mine])
