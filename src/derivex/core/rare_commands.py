"""The batch kernel's rare commands, in one call of their own by a C symbol: trigger and
linked orders, the venue's administration, MMP configuration and market data.

``process_batch`` handles the commands of the order flow inline (place, cancel, amend, mass
quote, cancel-all, deposits and withdrawals, new accounts) and calls ``rare_command`` for
the kinds ``is_rare`` names through ``call_rare_command`` (``core/batch_symbol.py``). Its
library then neither contains these commands (each compile of the engine optimised and
compiled them again inside it) nor grows the batch loop's code with them. The events and the
state changes are those of the same command kernels, called with the same arguments.

Cost: one call (the arena, its layout, the buffers: tens of machine words) and the State
views the commands use rebuilt from the layout, per rare command.
"""

from __future__ import annotations

import numpy as np

from derivex.core.admin import (
    add_instrument,
    block_account,
    set_account,
    set_instrument,
    set_instrument_status,
)
from derivex.core.arena import unpack
from derivex.core.batch_symbol import COMMAND_SIGNATURE, register
from derivex.core.config import MAX_INDEX_SOURCES, MAX_SCENARIOS
from derivex.core.jit import cold_kernel, inline_kernel, kernel
from derivex.core.market_data import index_command, leg_span, risk_array_command
from derivex.core.mmp_stage import reset_mmp, set_mmp_config
from derivex.core.order_checks import reject
from derivex.core.order_links import place_linked
from derivex.core.records import CommandKind, Reason
from derivex.core.triggers import amend_trigger, cancel_trigger, place_trigger


@kernel
def is_rare(kind):
    """Whether the batch kernel hands commands of ``kind`` to ``rare_command`` (a
    CANCEL_ORDER only when it names a trigger order: the caller checks that)."""
    return (
        kind == CommandKind.PLACE_TRIGGER
        or kind == CommandKind.PLACE_LINKED
        or kind == CommandKind.AMEND_TRIGGER
        or kind == CommandKind.SET_ACCOUNT
        or kind == CommandKind.ADD_INSTRUMENT
        or kind == CommandKind.SET_INSTRUMENT
        or kind == CommandKind.BLOCK_ACCOUNT
        or kind == CommandKind.UNBLOCK_ACCOUNT
        or kind == CommandKind.HALT_INSTRUMENT
        or kind == CommandKind.RESUME_INSTRUMENT
        or kind == CommandKind.CLOSE_INSTRUMENT
        or kind == CommandKind.SET_MMP_CONFIG
        or kind == CommandKind.RESET_MMP
        or kind == CommandKind.SET_INDEX
        or kind == CommandKind.SET_RISK_ARRAY
    )


# inlined at numba IR level into its symbol kernel below, its only caller: as a kernel of
# its own it was compiled twice, on its own and again inside that kernel's library
@inline_kernel
def rare_command(st, ev, n, cmds, i):  # noqa: C901  (one branch per command kind)
    """Apply the rare command at ``cmds[i]`` (``is_rare``, or a CANCEL_ORDER of a trigger
    order); returns ``(n, records consumed)``."""
    c = cmds[i]
    kind = c["kind"]
    consumed = 1
    if kind == CommandKind.CANCEL_ORDER:
        n = cancel_trigger(st, ev, n, cmds, i)
    elif kind == CommandKind.PLACE_TRIGGER:
        n = place_trigger(st, ev, n, cmds, i)
    elif kind == CommandKind.PLACE_LINKED:
        n, consumed = place_linked(st, ev, n, cmds, i)
    elif kind == CommandKind.AMEND_TRIGGER:
        n = amend_trigger(st, ev, n, cmds, i)
    elif kind == CommandKind.SET_ACCOUNT:
        n = set_account(st, ev, n, cmds, i)
    elif kind == CommandKind.ADD_INSTRUMENT:
        n = add_instrument(st, ev, n, cmds, i)
    elif kind == CommandKind.SET_INSTRUMENT:
        n = set_instrument(st, ev, n, cmds, i)
    elif kind == CommandKind.BLOCK_ACCOUNT:
        n = block_account(st, ev, n, cmds, i, True)
    elif kind == CommandKind.UNBLOCK_ACCOUNT:
        n = block_account(st, ev, n, cmds, i, False)
    elif (
        kind == CommandKind.HALT_INSTRUMENT
        or kind == CommandKind.RESUME_INSTRUMENT
        or kind == CommandKind.CLOSE_INSTRUMENT
    ):
        n = set_instrument_status(st, ev, n, cmds, i, np.int64(kind))
    elif kind == CommandKind.SET_MMP_CONFIG:
        n = set_mmp_config(st, ev, n, cmds, i)
    elif kind == CommandKind.RESET_MMP:
        n = reset_mmp(st, ev, n, cmds, i)
    elif kind == CommandKind.SET_INDEX:
        consumed, complete = leg_span(
            cmds, i, CommandKind.INDEX_SOURCE, CommandKind.INDEX_SOURCE, MAX_INDEX_SOURCES
        )
        n, reason = index_command(st, ev, n, cmds, i, consumed, complete)
        if reason != Reason.OK:
            n = reject(st, ev, n, cmds, i, reason, 0)
    elif kind == CommandKind.SET_RISK_ARRAY:
        consumed, complete = leg_span(
            cmds,
            i,
            CommandKind.RISK_GREEKS,
            CommandKind.RISK_VALUES,
            1 + (MAX_SCENARIOS + 4) // 5,
        )
        n, reason = risk_array_command(st, ev, n, cmds, i, consumed, complete)
        if reason != Reason.OK:
            n = reject(st, ev, n, cmds, i, reason, 0)
    return n, consumed


@cold_kernel
def _rare_command_symbol(arena, layout, ev, n, cmds, i):
    """``rare_command`` on the State over ``arena`` (the caller's: no growth inside a
    batch, so the same memory the caller's views use)."""
    return rare_command(unpack(arena, layout), ev, n, cmds, i)


call_rare_command = register(
    "derivex_rare_command",
    _rare_command_symbol,
    COMMAND_SIGNATURE,
    __file__,
)
