"""The state transition function: a batch of command records in, event records out.

``process_batch`` is the one compiled call per batch. Before each command it makes sure the
pools and the event buffer have room for that command's worst case; if not, it returns to
the Python wrapper, which grows them and calls again from the same command. Growth never
changes an outcome: limits are enforced against the configured maxima only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from derivex.core.admin import (
    accept,
    cancel_all,
    create_account,
    move_money,
)
from derivex.core.arena import check_layout, pack, unpack
from derivex.core.canonical import canonical, state_hash
from derivex.core.client_ids import target_slot
from derivex.core.config import (
    P_GAS_MAX,
    P_GAS_PER_FILL,
    P_MAX_ACCOUNTS,
    P_MAX_INSTRUMENTS,
    P_MAX_LEVELS,
    P_MAX_LEVELS_PER_SIDE,
    P_MAX_ORDERS,
    P_MAX_POSITIONS,
    P_MAX_QUOTE_LEGS,
    EngineConfig,
)
from derivex.core.escrow import call_transfer_command
from derivex.core.growth import allocate, grow
from derivex.core.jit import inline_kernel, kernel
from derivex.core.layout import (
    NIL,
    STATUS_DONE,
    STATUS_EVENTS,
    STATUS_GROW,
    Account4,
    Counter,
    Ins4,
    Order4,
    Pos4,
)
from derivex.core.lifecycle import call_time_command
from derivex.core.link_index import rebuild_link_index
from derivex.core.market_data import flush
from derivex.core.mmp_stage import mmp_stage
from derivex.core.order_checks import reject
from derivex.core.order_links import MAX_LINK_LEGS, linked_trigger_room
from derivex.core.orders import amend_order, cancel_order, place_order
from derivex.core.pools import free_capacity
from derivex.core.quotes import mass_quote, mass_quote_span
from derivex.core.rare_commands import call_rare_command, is_rare
from derivex.core.records import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    Reason,
)
from derivex.core.state import State
from derivex.core.subaccounts import call_create_subaccount, call_transfer
from derivex.core.trigger_book import is_trigger_id
from derivex.core.trigger_stage import (
    trigger_command_end,
    trigger_command_start,
    trigger_stage,
)
from derivex.core.triggers import trigger_room

#: events per chunk of ``Engine.stream`` (64-byte records: 4 MiB, about the L2/L3 boundary)
DEFAULT_CHUNK = 1 << 16
#: ``Engine.process`` streams batches of more commands than this
STREAM_ABOVE = 1 << 14


@kernel
def _row_short(st, instrument, side):
    row = instrument * 2 + side
    return (
        st.ladder_len[row] + 1 > st.ladder_price.shape[1]
        and st.ladder_price.shape[1] < st.params[P_MAX_LEVELS_PER_SIDE]
    )


@kernel
def _touch_bound(st, resting):
    """Most resting orders one incoming order can reach: all of them, or what the largest
    gas budget pays for."""
    per_fill = st.params[P_GAS_PER_FILL]
    if per_fill > 0:
        bound = st.params[P_GAS_MAX] // per_fill + 1
        if bound < resting:
            return bound
    return resting


@kernel
def headroom(st, cmds, i):
    """``(units, events)``: units > 0 if some pool must grow by that many slots first;
    events = worst-case number of events of this command."""
    c = cmds[i]
    kind = c["kind"]
    orders = 0
    levels = 0
    positions = 0
    accounts = 0
    instruments = 0
    events = 3
    short_row = False
    instrument = np.int64(c["instrument"])
    valid_instrument = instrument < st.counters[Counter.INSTRUMENT_HWM]
    if kind == CommandKind.PLACE_ORDER:
        orders = 1
        levels = 1
        positions = 1
        if valid_instrument:
            events = 8 + 5 * _touch_bound(st, np.int64(st.ins_i4[instrument, Ins4.RESTING]))
            if c["side"] <= 1:
                short_row = _row_short(st, instrument, np.int64(c["side"]))
    elif kind == CommandKind.AMEND_ORDER:
        levels = 1
        slot = target_slot(st, c)
        if slot != NIL:
            book = np.int64(st.pos_i4[st.ord_i4[slot, Order4.POSITION], Pos4.INSTRUMENT])
            events = 8 + 5 * _touch_bound(st, np.int64(st.ins_i4[book, Ins4.RESTING]))
            short_row = _row_short(st, book, np.int64(st.ord_i4[slot, Order4.META] & 1))
    elif kind == CommandKind.MASS_QUOTE:
        count = mass_quote_span(cmds, i, st.params[P_MAX_QUOTE_LEGS]) - 1
        orders = 2 * count
        levels = 2 * count
        positions = count
        events = 2 + 4 * count
        for j in range(count):
            leg_instrument = np.int64(cmds[i + 1 + j]["instrument"])
            if leg_instrument < st.counters[Counter.INSTRUMENT_HWM]:
                short_row = (
                    short_row
                    or _row_short(st, leg_instrument, 0)
                    or _row_short(st, leg_instrument, 1)
                )
    elif kind == CommandKind.PLACE_LINKED:
        orders = 1
        levels = 1
        positions = 1
        events = 6 * MAX_LINK_LEGS + 2
        if i + 1 < cmds.shape[0]:
            leg_instrument = np.int64(cmds[i + 1]["instrument"])
            if leg_instrument < st.counters[Counter.INSTRUMENT_HWM]:
                resting = np.int64(st.ins_i4[leg_instrument, Ins4.RESTING])
                events += 8 + 5 * _touch_bound(st, resting)
                if cmds[i + 1]["side"] <= 1:
                    short_row = _row_short(st, leg_instrument, np.int64(cmds[i + 1]["side"]))
    elif (
        kind == CommandKind.CANCEL_ALL
        or kind == CommandKind.CANCEL_ALL_INSTRUMENT
        or kind == CommandKind.BLOCK_ACCOUNT
    ):
        account = np.int64(c["account"])
        if account < st.counters[Counter.ACCOUNT_HWM]:
            events = 2 + np.int64(st.acc_i4[account, Account4.OPEN_ORDERS])
    elif kind == CommandKind.CLOSE_INSTRUMENT:
        if valid_instrument:
            events = 3 + np.int64(st.ins_i4[instrument, Ins4.RESTING])
    elif kind == CommandKind.CREATE_ACCOUNT:
        accounts = 1
    elif kind == CommandKind.CREATE_SUBACCOUNT or kind == CommandKind.TRANSFER:
        accounts = 1 if kind == CommandKind.CREATE_SUBACCOUNT else 0
        events = 4  # core/subaccounts.py
    elif kind == CommandKind.SET_INDEX:
        events = 3 + st.counters[Counter.INSTRUMENT_HWM]
    elif kind == CommandKind.ADVANCE_TIME:
        orders = 1  # a liquidation order
        positions = st.counters[Counter.INSTRUMENT_HWM]  # the insurance fund takes positions over
    elif kind == CommandKind.ADD_INSTRUMENT:
        instruments = 1
    c_ = st.counters
    need = trigger_room(st) if kind == CommandKind.PLACE_TRIGGER else 0
    if kind == CommandKind.PLACE_LINKED:
        need = linked_trigger_room(st)
    capacity = st.ord_label.shape[0]
    if (
        free_capacity(capacity, c_[Counter.ORDER_HWM], c_[Counter.ORDER_FREE_TOP]) < orders
        and capacity < st.params[P_MAX_ORDERS]
    ):
        need = max(need, orders)
    capacity = st.lvl_free.shape[0]
    if (
        free_capacity(capacity, c_[Counter.LEVEL_HWM], c_[Counter.LEVEL_FREE_TOP]) < levels
        and capacity < st.params[P_MAX_LEVELS]
    ):
        need = max(need, levels)
    capacity = st.pos_free.shape[0]
    if (
        free_capacity(capacity, c_[Counter.POSITION_HWM], c_[Counter.POSITION_FREE_TOP]) < positions
        and capacity < st.params[P_MAX_POSITIONS]
    ):
        need = max(need, positions)
    capacity = st.acc_i8.shape[0]
    if c_[Counter.ACCOUNT_HWM] + accounts > capacity and capacity < st.params[P_MAX_ACCOUNTS]:
        need = max(need, accounts)
    capacity = st.ins_i8.shape[0]
    if (
        c_[Counter.INSTRUMENT_HWM] + instruments > capacity
        and capacity < st.params[P_MAX_INSTRUMENTS]
    ):
        need = max(need, instruments)
    if short_row:
        need = max(need, 1)
    return need, events


@kernel
def process_batch(arena, layout, cmds, start, ev, n):
    """Apply ``cmds[start:]`` to the state in ``arena``, writing events from ``ev[n]`` on.

    Returns ``(next_command, n_events, status, need)``: status DONE, or GROW (grow the pools
    by ``need`` slots) / EVENTS (room for ``need`` more events) before ``next_command``."""
    return process_state(unpack(arena, layout), cmds, start, ev, n, arena, layout)


# inlined into process_batch at numba IR level (its only caller): as a kernel of its own it
# was a second library holding the whole engine, optimised and turned into machine code
# once for itself and once more inside process_batch (18% of a cold compile, measured)
@inline_kernel
def process_state(st, cmds, start, ev, n, arena, layout):
    """``process_batch`` on an unpacked State (``st``: the views of ``arena`` by ``layout``;
    the rare stages and commands are calls by C symbol that take those two instead, and
    rebuild the views they use: core/batch_symbol.py)."""
    i = start
    total = cmds.shape[0]
    while True:
        # the trigger stage of the previous command (core/triggers.py); resumable
        n, status, need = trigger_stage(st, ev, n, arena, layout)
        if status != STATUS_DONE:
            return i, n, status, need
        # market-maker protection: cancels of the groups the command froze (core/mmp.py)
        n, status, need = mmp_stage(st, ev, n, arena, layout)
        if status != STATUS_DONE:
            return i, n, status, need
        if i >= total:
            break
        need, events = headroom(st, cmds, i)
        if need > 0:
            return i, n, STATUS_GROW, need
        if n + events > ev.shape[0]:
            return i, n, STATUS_EVENTS, events
        c = cmds[i]
        kind = c["kind"]
        if c["ts_ns"] > st.counters[Counter.CLOCK_NS]:
            st.counters[Counter.CLOCK_NS] = c["ts_ns"]
        trigger_command_start(st, n, kind)
        if (
            st.counters[Counter.RISK_DIRTY] > 0
            and kind != CommandKind.SET_INDEX
            and kind != CommandKind.SET_RISK_ARRAY
        ):
            flush(st)  # staged market data applies before the next other command
        consumed = 1
        if kind == CommandKind.PLACE_ORDER:
            n = place_order(st, ev, n, cmds, i)
        elif kind == CommandKind.CANCEL_ORDER and not is_trigger_id(c["order_id"]):
            n = cancel_order(st, ev, n, cmds, i)
        elif kind == CommandKind.AMEND_ORDER:
            n = amend_order(st, ev, n, cmds, i)
        elif kind == CommandKind.MASS_QUOTE:
            n, consumed = mass_quote(st, ev, n, cmds, i)
        elif kind == CommandKind.CANCEL_ALL:
            n = cancel_all(st, ev, n, cmds, i, False)
        elif kind == CommandKind.CANCEL_ALL_INSTRUMENT:
            n = cancel_all(st, ev, n, cmds, i, True)
        elif kind == CommandKind.DEPOSIT:
            n = move_money(st, ev, n, cmds, i, True)
        elif kind == CommandKind.WITHDRAW:
            n = move_money(st, ev, n, cmds, i, False)
        elif kind == CommandKind.CREATE_ACCOUNT:
            n = create_account(st, ev, n, cmds, i)
        elif kind == CommandKind.NOOP:
            n = accept(ev, n, c["seq"], np.int64(kind), 0, 0)
        elif kind == CommandKind.CANCEL_ORDER or is_rare(kind):
            # trigger and linked orders, administration, MMP config, market data: a call
            # of their own (core/rare_commands.py), as the rare stages and commands below
            n, consumed = call_rare_command(arena, layout, ev, n, cmds, i)
        elif kind == CommandKind.TRANSFER:
            n = call_transfer(arena, layout, ev, n, cmds, i)
        elif kind == CommandKind.CREATE_SUBACCOUNT:
            n = call_create_subaccount(arena, layout, ev, n, cmds, i)
        elif kind == CommandKind.ADVANCE_TIME:
            n, status, need = call_time_command(arena, layout, ev, n, cmds, i)
            if status != STATUS_DONE:
                return i, n, status, need  # resumes in the same command once there is room
        elif (
            kind == CommandKind.TRANSFER_OUT
            or kind == CommandKind.TRANSFER_IN
            or kind == CommandKind.TRANSFER_REFUND
        ):
            n = call_transfer_command(arena, layout, ev, n, cmds, i)  # core/escrow.py
        elif kind == CommandKind.QUOTE_LEG:
            n = reject(st, ev, n, cmds, i, Reason.ORPHAN_QUOTE_LEG, 0)
        elif (
            kind == CommandKind.INDEX_SOURCE
            or kind == CommandKind.RISK_GREEKS
            or kind == CommandKind.RISK_VALUES
            or kind == CommandKind.LINKED_ORDER
            or kind == CommandKind.LINKED_TRIGGER
        ):
            n = reject(st, ev, n, cmds, i, Reason.ORPHAN_LEG, 0)
        else:
            n = reject(st, ev, n, cmds, i, Reason.UNKNOWN_COMMAND, 0)
        trigger_command_end(st, c["seq"], n)
        st.counters[Counter.COMMANDS] += consumed
        i += consumed
    return i, n, STATUS_DONE, 0


class Engine:
    """The pure engine: state plus the batch call. No clock, no I/O.

    >>> from derivex.core.records import command_array, CommandKind
    >>> engine = Engine(EngineConfig())
    >>> cmds = command_array(1); cmds["kind"] = CommandKind.CREATE_ACCOUNT; cmds["seq"] = 1
    >>> int(engine.process(cmds)["account"][0])
    3
    """

    def __init__(self, config: EngineConfig | None = None, state: State | None = None) -> None:
        self.config = config or EngineConfig()
        self._adopt(state if state is not None else allocate(self.config))
        self._events = np.zeros(4096, dtype=EVENT_DTYPE)

    @classmethod
    def from_arena(
        cls, config: EngineConfig, arena: np.ndarray, layout: np.ndarray, state: State
    ) -> Engine:
        """An engine running directly on an already packed arena (e.g. a memory-mapped
        snapshot): nothing is copied. ``state`` must be the views of ``arena`` per
        ``layout`` (as ``state.pack`` returns them). Raises ValueError for a layout that
        does not fit the arena (``arena.check_layout``: the kernels trust it)."""
        check_layout(arena, layout)
        engine = cls.__new__(cls)
        engine.config = config
        engine.arena, engine.layout, engine.state = arena, layout, state
        rebuild_link_index(state.trg_i8)  # derived data: never trusted from the file
        engine._events = np.zeros(4096, dtype=EVENT_DTYPE)
        return engine

    def _adopt(self, state: State) -> None:
        """Make ``state`` the engine's state, packed into a fresh arena, with its link
        index rebuilt from its trigger rows (a loaded or grown state's is stale)."""
        self.arena, self.layout, self.state = pack(state)
        rebuild_link_index(self.state.trg_i8)

    def process_into(self, commands: np.ndarray) -> np.ndarray:
        """Process a batch; return a *view* of the internal event buffer (valid until the
        next call). Cost: one compiled call, plus one per pool growth."""
        if commands.dtype is not COMMAND_DTYPE and commands.dtype != COMMAND_DTYPE:
            raise TypeError(f"commands must have dtype COMMAND_DTYPE, got {commands.dtype}")
        if not commands.flags.c_contiguous:  # (the kernels take C-contiguous batches)
            commands = np.ascontiguousarray(commands)
        events = self._events
        start, n = 0, 0
        while True:
            start, n, status, need = process_batch(
                self.arena, self.layout, commands, start, events, n
            )
            if status == STATUS_DONE:
                break
            if status == STATUS_GROW:
                self._adopt(grow(self.state, int(need)))
            else:
                bigger = np.zeros(max(2 * events.shape[0], n + int(need)), dtype=EVENT_DTYPE)
                bigger[:n] = events[:n]
                events = self._events = bigger
        return events[:n]

    def process(self, commands: np.ndarray) -> np.ndarray:
        """Process a batch and return its events (a new array). A large batch is streamed
        (``stream``) in chunks that are copied once into the result, so memory stays at
        the result plus one chunk. Cost: one compiled call per chunk, O(events) copying."""
        if len(commands) <= STREAM_ABOVE:
            # copied as bytes: ndarray.copy() walks the aliased fields one by one (~4 us
            # for three events against ~1 us this way)
            return self.process_into(commands).view(np.uint8).copy().view(EVENT_DTYPE)
        parts = [chunk.view(np.uint8).copy() for chunk in self.stream(commands)]
        return np.concatenate(parts).view(EVENT_DTYPE) if parts else np.zeros(0, EVENT_DTYPE)

    def stream(self, commands: np.ndarray, chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
        """Process a batch of any size, yielding its events in order as views of one
        reusable buffer of ``chunk`` events: each view is valid until the next one is asked
        for (copy what you keep). The events, their order and the final state are those of
        ``process`` on the same batch; only the cut between chunks differs (a chunk ends
        before a command whose worst case does not fit, or inside a TIME command that ran
        out of room). The buffer grows only for a single command whose worst case exceeds
        ``chunk``. Memory: state + commands + one chunk. Cost: one compiled call per chunk
        (per pool growth too). Raises TypeError for records that are not COMMAND_DTYPE.

        >>> from derivex.core.records import command_array, CommandKind
        >>> engine = Engine(EngineConfig())
        >>> cmds = command_array(3); cmds["kind"] = CommandKind.CREATE_ACCOUNT
        >>> cmds["seq"] = [1, 2, 3]
        >>> [len(view) for view in engine.stream(cmds, chunk=5)]  # 2 events per account
        [4, 2]
        """
        if commands.dtype is not COMMAND_DTYPE and commands.dtype != COMMAND_DTYPE:
            raise TypeError(f"commands must have dtype COMMAND_DTYPE, got {commands.dtype}")
        if not commands.flags.c_contiguous:  # (the kernels take C-contiguous batches)
            commands = np.ascontiguousarray(commands)
        events = self._chunk_buffer(max(int(chunk), 1))
        start, n = 0, 0
        while True:
            start, n, status, need = process_batch(
                self.arena, self.layout, commands, start, events, n
            )
            if status == STATUS_DONE:
                if n:
                    yield events[:n]
                return
            if status == STATUS_GROW:
                self._adopt(grow(self.state, int(need)))
            elif n:  # the chunk is full: hand it over, then reuse it from the start
                yield events[:n]
                n = 0
            else:  # one command needs more room than a whole chunk
                events = self._chunk_buffer(max(2 * events.shape[0], int(need)))

    def run(
        self,
        commands: np.ndarray,
        on_events: Callable[[np.ndarray], object],
        chunk: int = DEFAULT_CHUNK,
    ) -> int:
        """``stream`` with a callback: ``on_events(view)`` gets every chunk of events (a
        view of the reusable buffer, valid during the call). Returns the number of events.
        Cost and errors as ``stream``, plus the callback's."""
        produced = 0
        for view in self.stream(commands, chunk):
            produced += len(view)
            on_events(view)
        return produced

    def _chunk_buffer(self, size: int) -> np.ndarray:
        """The reusable streaming buffer of at least ``size`` events (kept between calls:
        its pages are already faulted in)."""
        buffer = getattr(self, "_stream_events", None)
        if buffer is None or buffer.shape[0] < size or buffer.shape[0] > 4 * size:
            buffer = self._stream_events = np.zeros(size, dtype=EVENT_DTYPE)
        return buffer

    def canonical(self) -> dict[str, Any]:
        return canonical(self.state)

    def state_hash(self) -> str:
        return state_hash(self.state)

    def check_invariants(self) -> None:
        from derivex.core.invariants import check_invariants

        check_invariants(self.state)
