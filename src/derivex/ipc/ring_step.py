"""The arithmetic both rings (SPSC and broadcast) share, on their process-local words:
where a claim or a peek starts and how far it may go without wrapping, how much is free or
readable, and the publish / release step (move one's own counter, then make it visible
with a release store). Parametrised by word indices, not by functions: numba does not cache
a kernel that receives a function which reaches ``wait.wait_step``.
"""

from __future__ import annotations

from numba import njit

from .atomics import load_acquire, store_release


@njit(cache=True, nogil=True)
def contiguous(local, head, cap, want):
    """``(slot, want)``: where a claim at ``local[head]`` starts, and ``want`` cut at the
    buffer's end (claims and peeks never wrap)."""
    position = local[head]
    slot = position & (local[cap] - 1)
    return slot, min(want, local[cap] - slot)


@njit(cache=True, nogil=True)
def free_slots(local, head, cached_tail, cap):
    """Free slots as the producer's cached view of the slowest reader sees them."""
    return local[cap] - (local[head] - local[cached_tail])


@njit(cache=True, nogil=True)
def readable(ctrl, local, position, cached_head, cap, head_word, want):
    """``(slot, n)``: up to ``want`` contiguous records readable at ``local[position]``;
    the shared head (``ctrl[head_word]``) is acquire-loaded only when the cached one says
    there are fewer than ``want``."""
    start = local[position]
    slot, want = contiguous(local, position, cap, want)
    available = local[cached_head] - start
    if available < want:
        local[cached_head] = load_acquire(ctrl, head_word)
        available = local[cached_head] - start
    return slot, max(0, min(want, available))


@njit(cache=True, nogil=True)
def advance(ctrl, local, mine, word, n):
    """Publish (producer) or release (consumer) ``n`` records: ``local[mine] += n``, then a
    release store of it to ``ctrl[word]`` (the slots written / read before it are ordered
    before the other side sees the new counter)."""
    local[mine] += n
    store_release(ctrl, word, local[mine])
