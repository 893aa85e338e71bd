"""The SPSC ring's own kernels (see :mod:`.ring`): its control words, its claim (wait for
the consumer's tail) and its publish / peek / release through the arithmetic both rings share
(:mod:`.ring_loops`), whose copy and wait loops drive them."""

from __future__ import annotations

from numba import njit

from .atomics import load_acquire
from .ring_step import advance, contiguous, free_slots, readable
from .segment import LINE_WORDS
from .wait import wait_step

# shared control words
S_HEAD = 0
S_TAIL = LINE_WORDS
S_DONE = 2 * LINE_WORDS
SPSC_CTRL_LINES = 3
# process-local words
L_HEAD, L_CTAIL, L_TAIL, L_CHEAD, L_CAP, L_SIZE = range(6)


@njit(cache=True, nogil=True)
def spsc_try_claim(ctrl, local, want):
    head, cap = local[L_HEAD], local[L_CAP]
    slot, want = contiguous(head, cap, want)
    free = free_slots(head, local[L_CTAIL], cap)
    if free < want:
        local[L_CTAIL] = load_acquire(ctrl, S_TAIL)
        free = free_slots(head, local[L_CTAIL], cap)
    return slot, max(0, min(want, free))


@njit(cache=True, nogil=True)
def spsc_claim(ctrl, local, want, wparams, deadline_ns):
    slot, n = spsc_try_claim(ctrl, local, want)
    i = 0
    while n == 0 and want > 0:
        if not wait_step(wparams, i, deadline_ns):
            break
        i += 1
        slot, n = spsc_try_claim(ctrl, local, want)
    return slot, n


@njit(cache=True, nogil=True, inline="always")
def spsc_publish(ctrl, local, n):
    advance(ctrl, local, L_HEAD, S_HEAD, n)


@njit(cache=True, nogil=True, inline="always")
def spsc_try_peek(ctrl, local, want):
    return readable(ctrl, local, L_TAIL, L_CHEAD, L_CAP, S_HEAD, want)


@njit(cache=True, nogil=True, inline="always")
def spsc_release(ctrl, local, n):
    advance(ctrl, local, L_TAIL, S_TAIL, n)
    return n
