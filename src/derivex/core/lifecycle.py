"""What a TIME command drives: option expiry and cash settlement, perpetual funding, and
liquidation (book, insurance fund, auto-deleveraging or socialised loss). ``docs/liquidation.md``
is the contract.

A TIME command runs four phases in order: expiry (instruments ascending), funding
(perpetuals ascending), liquidation (accounts ascending), and the insurance fund unwinding
what it took over (instruments ascending). Each step first makes sure the
event buffer has room for its worst case; if not, the command returns to the Python wrapper
with its phase and cursor saved in the counters, the buffer grows, and the same command
resumes where it stopped. The outcome never depends on the buffer size or on batching.

Costs: expiry O(resting + accounts) per expiring option; funding O(accounts) per perpetual;
liquidation O(accounts x S) to find the accounts below maintenance, plus the rounds.

This module is the driver; each phase lives in its own module: ``expiry``, ``funding``,
``liquidation`` (with ``deleveraging`` for auto-deleveraging and socialised loss), over the
balance and position moves of ``transfers``.
"""

from __future__ import annotations

from derivex.core.arena import unpack
from derivex.core.batch_symbol import COMMAND_SIGNATURE, register
from derivex.core.config import P_RISK_CHECKS
from derivex.core.emit import accepted
from derivex.core.expiry import expire
from derivex.core.funding import fund
from derivex.core.jit import cold_kernel, inline_kernel
from derivex.core.layout import STATUS_DONE, STATUS_EVENTS, Counter
from derivex.core.liquidation import liquidate, unwind_fund
from derivex.core.records import CommandKind

PHASE_EXPIRY = 1
PHASE_FUNDING = 2
PHASE_LIQUIDATION = 3
PHASE_UNWIND = 4


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def time_command(st, ev, n, cmds, i):
    """TIME: expiry, funding, liquidation, the fund's unwinding (resumable). Returns (n,
    status, events needed)."""
    c = cmds[i]
    seq = c["seq"]
    now = st.counters[Counter.CLOCK_NS]
    if st.counters[Counter.TIME_PHASE] == 0:
        n = accepted(ev, n, seq, CommandKind.ADVANCE_TIME, 0, 0, 0, 0, 0)
        st.counters[Counter.TIME_PHASE] = PHASE_EXPIRY
        st.counters[Counter.TIME_CURSOR] = 0
    if st.params[P_RISK_CHECKS] == 0:
        st.counters[Counter.TIME_PHASE] = 0
        return n, STATUS_DONE, 0
    while st.counters[Counter.TIME_PHASE] <= PHASE_UNWIND:
        phase = st.counters[Counter.TIME_PHASE]
        if phase == PHASE_EXPIRY:
            n, cursor, need = expire(st, ev, n, seq, now)
        elif phase == PHASE_FUNDING:
            n, cursor, need = fund(st, ev, n, seq, now)
        elif phase == PHASE_LIQUIDATION:
            n, cursor, need = liquidate(st, ev, n, seq)
        else:
            n, cursor, need = unwind_fund(st, ev, n, seq)
        if cursor >= 0:  # out of event room: resume this phase here
            st.counters[Counter.TIME_CURSOR] = cursor
            return n, STATUS_EVENTS, need
        st.counters[Counter.TIME_PHASE] = phase + 1
        st.counters[Counter.TIME_CURSOR] = 0
    st.counters[Counter.TIME_PHASE] = 0
    return n, STATUS_DONE, 0


@cold_kernel
def _time_command_symbol(arena, layout, ev, n, cmds, i):
    """``time_command`` on the State over ``arena`` (the caller's memory)."""
    return time_command(unpack(arena, layout), ev, n, cmds, i)


#: what the batch kernel calls: ``time_command`` (liquidation, funding, expiry: a large,
#: rare subtree) by its C symbol, so the batch kernel's library does not contain it
#: (core/batch_symbol.py)
call_time_command = register(
    "derivex_time_command",
    _time_command_symbol,
    COMMAND_SIGNATURE,
    __file__,
)
