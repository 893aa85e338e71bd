"""Read-only queries over the engine state: the one way shells read it.

The state's layout (``core/layout.py``: pool columns, counters, linked lists) is private to
``core/``; the embedded venue, the gateway, the journal's state root, the shared book
snapshots, replicas and simulations read through these functions instead, so a change of
layout touches ``core/`` only. Every function takes the engine's ``State`` (``engine.state``)
first and never mutates it. Results are plain ints, small frozen dataclasses or numpy
arrays (copies unless a docstring says *view*). Costs are per call.

The few njit helpers here (``book_rows``, ``level_totals``, ``instrument_underlying``,
``listed_instruments``) are
for shells' own kernels (the book snapshot writer, the state root's book walk); no engine
kernel imports this module, so editing it recompiles none of them.

>>> from derivex.core.engine import Engine
>>> st = Engine().state
>>> account_count(st), instrument_count(st), clock_ns(st)  # the three system accounts
(3, 0, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derivex.core.config import P_INDEX_HISTORY
from derivex.core.escrow import MAX_DOMAINS as MAX_DOMAINS
from derivex.core.escrow import WINDOW, Xfer, escrow_totals, transfer_rows
from derivex.core.jit import kernel
from derivex.core.layout import (
    ACCOUNT_BLOCKED,
    NIL,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Level4,
    Level8,
    Order4,
    Order8,
    Pos4,
    Pos8,
    Risk8,
    Und8,
)
from derivex.core.pools import order_slot_of
from derivex.core.records import IndexStatus, Side
from derivex.core.state import State
from derivex.core.subaccount_query import parent_of as parent_of
from derivex.core.subaccount_query import subaccount_digest as subaccount_digest

# subaccounts (core/subaccount_query.py), re-exported for the shells
from derivex.core.subaccount_query import subaccount_links as subaccount_links
from derivex.core.subaccount_query import subaccounts_of as subaccounts_of

# conditional orders (core/trigger_query.py), re-exported for the shells
from derivex.core.trigger_query import canonical_triggers as canonical_triggers
from derivex.core.trigger_query import last_prices as last_prices
from derivex.core.trigger_query import trigger_count as trigger_count
from derivex.core.trigger_query import trigger_orders as trigger_orders


@dataclass(frozen=True)
class Depth:
    """L2 book: ``(price_ticks, qty_lots, order_count)`` per level, best first."""

    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]


@dataclass(frozen=True)
class OrderInfo:
    order_id: int
    account: int
    instrument: int
    side: Side
    price_ticks: int
    remaining_lots: int
    flags: int
    label: int


@dataclass(frozen=True)
class IndexInfo:
    price_ticks: int  # last valid index (0: never)
    status: str  # none | valid | stale
    ts_ns: int  # sequencer time of the last INDEX command
    sources: int  # sources used in the last valid index


@dataclass(frozen=True)
class Position:
    account: int
    instrument: int
    qty_lots: int
    basis_units: int
    open_buy_lots: int
    open_sell_lots: int


# ---- counters (O(1) each) ----


def clock_ns(st: State) -> int:
    """Sequencer time of the last command processed (0 before any)."""
    return int(st.counters[Counter.CLOCK_NS])


def commands_processed(st: State) -> int:
    """Command records processed so far (the last seq of a venue sequenced from 1)."""
    return int(st.counters[Counter.COMMANDS])


def account_count(st: State) -> int:
    """Accounts created, system accounts included (ids ``0 .. count - 1``)."""
    return int(st.counters[Counter.ACCOUNT_HWM])


def instrument_count(st: State) -> int:
    """Instruments listed (ids ``0 .. count - 1``)."""
    return int(st.counters[Counter.INSTRUMENT_HWM])


def bad_debt_units(st: State) -> int:
    """Losses no account, fund or auto-deleveraging covered (socialised), collateral units."""
    return int(st.counters[Counter.BAD_DEBT])


# the counters the state root's globals leaf commits to, in this (frozen) order
_GLOBAL_COUNTERS = {
    "clock_ns": Counter.CLOCK_NS,
    "total_deposits_units": Counter.TOTAL_DEPOSITS,
    "total_withdrawals_units": Counter.TOTAL_WITHDRAWALS,
    "accounts": Counter.ACCOUNT_HWM,
    "instruments": Counter.INSTRUMENT_HWM,
    "orders_live": Counter.ORDERS_LIVE,
    "levels_live": Counter.LEVELS_LIVE,
    "positions_live": Counter.POSITIONS_LIVE,
    "fills": Counter.FILLS,
    "commands": Counter.COMMANDS,
}
GLOBAL_COUNTER_NAMES = tuple(_GLOBAL_COUNTERS)
_GLOBAL_COLUMNS = list(_GLOBAL_COUNTERS.values())


def global_counters(st: State) -> np.ndarray:
    """int64 copy of the counters named by ``GLOBAL_COUNTER_NAMES``, in that order."""
    return st.counters[_GLOBAL_COLUMNS]


# ---- accounts ----


def account_exists(st: State, account: int) -> bool:
    return 0 <= account < account_count(st)


def balance_units(st: State, account: int) -> int:
    """The account's balance. Raises KeyError if it does not exist. O(1)."""
    if not account_exists(st, account):
        raise KeyError(account)
    return int(st.acc_i8[account, Account8.BALANCE])


def balances(st: State) -> dict[int, int]:
    """Balance of every account, by id. O(accounts)."""
    return dict(enumerate(st.acc_i8[: account_count(st), Account8.BALANCE].tolist()))


def account_settings(st: State, account: int) -> tuple[int, int]:
    """``(self-trade prevention, margin mode)`` codes of an account; ``(0, 0)`` for an id
    outside the pool (the engine then rejects the command that uses it). O(1)."""
    if not 0 <= account < st.acc_i4.shape[0]:
        return 0, 0
    return int(st.acc_i4[account, Account4.STP]), int(st.acc_i4[account, Account4.MARGIN_MODE])


def account_blocked(st: State, account: int) -> bool:
    """Whether ``account`` exists and is blocked (BLOCK_ACCOUNT, the kill switch). O(1)."""
    if not 0 <= account < int(st.counters[Counter.ACCOUNT_HWM]):
        return False
    return int(st.acc_i4[account, Account4.STATUS]) == ACCOUNT_BLOCKED


def blocked_accounts(st: State) -> list[int]:
    """The blocked accounts, ascending. O(accounts), vectorised."""
    hwm = int(st.counters[Counter.ACCOUNT_HWM])
    return [int(a) for a in np.flatnonzero(st.acc_i4[:hwm, Account4.STATUS] == ACCOUNT_BLOCKED)]


def account_modes(st: State, account: int) -> tuple[int, int]:
    """``(MarginMode, AccountState)`` codes of an existing account. O(1)."""
    return int(st.acc_i4[account, Account4.MARGIN_MODE]), int(st.acc_i4[account, Account4.STATE])


def account_heads(st: State, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-account columns for ``ids`` (existing accounts): ``status``, ``stp``,
    ``balance_units``, ``open_orders``. O(len(ids))."""
    return {
        "status": st.acc_i4[ids, Account4.STATUS],
        "stp": st.acc_i4[ids, Account4.STP],
        "balance_units": st.acc_i8[ids, Account8.BALANCE],
        "open_orders": st.acc_i4[ids, Account4.OPEN_ORDERS],
    }


def standard_margin_sums(st: State, accounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(equity, maintenance margin)`` of ``accounts`` from the kept standard-margin sums
    (exact for standard-mode accounts; portfolio-mode ones need ``risk.margins``).
    O(len(accounts)), vectorised; both arrays are copies."""
    equity = st.acc_i8[accounts, Account8.BALANCE] + st.acc_risk[accounts, Risk8.VALUE]
    return equity, st.acc_risk[accounts, Risk8.STD_MM].copy()


# ---- positions ----


def position_slots(st: State, account: int) -> list[int]:
    """The account's position slots, by instrument ascending. O(positions log positions)."""
    slots = []
    slot = int(st.acc_i4[account, Account4.POSITION_HEAD])
    while slot != NIL:
        slots.append(slot)
        slot = int(st.pos_i4[slot, Pos4.NEXT])
    return sorted(slots, key=lambda s: int(st.pos_i4[s, Pos4.INSTRUMENT]))


def positions(st: State, account: int) -> list[Position]:
    """The account's non-zero positions, by instrument. O(positions of the account)."""
    result = []
    for p in position_slots(st, account):
        qty = int(st.pos_i8[p, Pos8.QTY])
        if qty != 0:
            result.append(
                Position(
                    account,
                    int(st.pos_i4[p, Pos4.INSTRUMENT]),
                    qty,
                    int(st.pos_i8[p, Pos8.BASIS]),
                    int(st.pos_i8[p, Pos8.OPEN_BUY]),
                    int(st.pos_i8[p, Pos8.OPEN_SELL]),
                )
            )
    return result


def position_greeks(st: State, account: int) -> tuple[int, int, int, int]:
    """Sum over the account's positions of qty x (delta, gamma, vega, theta) of one lot,
    1e-9 units. O(positions of the account)."""
    greeks = [0, 0, 0, 0]
    for slot in position_slots(st, account):
        qty = int(st.pos_i8[slot, Pos8.QTY])
        instrument = int(st.pos_i4[slot, Pos4.INSTRUMENT])
        for k, column in enumerate((Ins8.DELTA, Ins8.GAMMA, Ins8.VEGA, Ins8.THETA)):
            greeks[k] += qty * int(st.ins_i8[instrument, column])
    return greeks[0], greeks[1], greeks[2], greeks[3]


def live_positions(st: State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(slots, accounts, instruments)`` of every live position slot, slots ascending.
    O(position pool high-water mark), vectorised."""
    hwm = int(st.counters[Counter.POSITION_HWM])
    slots = np.flatnonzero(st.pos_i4[:hwm, Pos4.LIVE] == 1)
    return slots, st.pos_i4[slots, Pos4.ACCOUNT], st.pos_i4[slots, Pos4.INSTRUMENT]


def position_columns(st: State, slots: np.ndarray) -> dict[str, np.ndarray]:
    """Per-position columns for ``slots``: ``qty_lots``, ``basis_units``,
    ``open_buy_lots``, ``open_sell_lots``, ``orders`` (resting). O(len(slots))."""
    return {
        "qty_lots": st.pos_i8[slots, Pos8.QTY],
        "basis_units": st.pos_i8[slots, Pos8.BASIS],
        "open_buy_lots": st.pos_i8[slots, Pos8.OPEN_BUY],
        "open_sell_lots": st.pos_i8[slots, Pos8.OPEN_SELL],
        "orders": st.pos_i4[slots, Pos4.ORDERS],
    }


def open_interest_lots(st: State, instrument: int) -> int:
    """Sum of the long positions in ``instrument``. O(position pool high-water mark)."""
    count = int(st.counters[Counter.POSITION_HWM])
    qty = st.pos_i8[:count, Pos8.QTY]
    mask = (st.pos_i4[:count, Pos4.INSTRUMENT] == instrument) & (qty > 0)
    return int(qty[mask].sum())


# ---- orders ----


def order(st: State, order_id: int) -> OrderInfo | None:
    """The live order with this id, or None. O(1)."""
    slot = int(order_slot_of(st, np.int64(order_id))) if 0 < order_id < 2**63 else NIL
    if slot < 0:
        return None
    position = int(st.ord_i4[slot, Order4.POSITION])
    meta = int(st.ord_i4[slot, Order4.META])
    return OrderInfo(
        order_id,
        int(st.pos_i4[position, Pos4.ACCOUNT]),
        int(st.pos_i4[position, Pos4.INSTRUMENT]),
        Side(meta & 1),
        int(st.ord_i8[slot, Order8.PRICE_TICKS]),
        int(st.ord_i8[slot, Order8.QTY_LOTS]),
        (meta >> 1) & 0xFF,  # bits above the flags: a quote's MMP group (core/mmp.py)
        int(st.ord_label[slot]),
    )


def open_orders(st: State, account: int, instrument: int | None = None) -> list[OrderInfo]:
    """The account's resting orders (of ``instrument`` only, if given), by instrument, then
    oldest first. O(positions + orders of the account)."""
    result = []
    for position in position_slots(st, account):
        if instrument is not None and st.pos_i4[position, Pos4.INSTRUMENT] != instrument:
            continue
        slot = int(st.pos_i4[position, Pos4.ORDER_HEAD])
        while slot != NIL:
            info = order(st, (int(st.ord_i8[slot, Order8.GENERATION]) << 32) | slot)
            assert info is not None
            result.append(info)
            slot = int(st.ord_i4[slot, Order4.POSITION_NEXT])
    return result


# ---- books ----


def depth(st: State, instrument: int, levels: int = 10) -> Depth:
    """The best ``levels`` of each side, from the book ladder and the levels' own totals.
    Cost: O(levels returned), whatever the number of orders in the book."""
    sides = []
    for side in (Side.BUY, Side.SELL):
        row = instrument * 2 + side
        count = int(st.ladder_len[row])
        take = max(0, min(int(levels), count))
        slots = st.ladder_level[row, count - take : count][::-1]  # best level last
        sides.append(
            list(
                zip(
                    st.ladder_price[row, count - take : count][::-1].tolist(),
                    st.lvl_i8[slots, Level8.QTY_LOTS].tolist(),
                    st.lvl_i4[slots, Level4.COUNT].tolist(),
                    strict=True,
                )
            )
        )
    return Depth(sides[0], sides[1])


def best_price_ticks(st: State, instrument: int, side: int) -> int:
    """Best price of a side of the book (the highest bid, the lowest ask); 0 when the side
    is empty. O(1)."""
    row = instrument * 2 + side
    depth = int(st.ladder_len[row])
    return int(st.ladder_price[row, depth - 1]) if depth else 0


def resting_orders(st: State, instrument: int) -> int:
    """Orders resting in the instrument's book. O(1)."""
    return int(st.ins_i4[instrument, Ins4.RESTING])


@kernel
def listed_instruments(st):
    """Instruments listed (``instrument_count`` for shells' kernels). O(1)."""
    return st.counters[Counter.INSTRUMENT_HWM]


@kernel
def level_totals(lvl_i8, lvl_i4, level):
    """``(qty_lots, order count)`` of a price level slot (for shells' kernels that hold
    the level pools, e.g. the book snapshot writer). O(1)."""
    return lvl_i8[level, Level8.QTY_LOTS], lvl_i4[level, Level4.COUNT]


@kernel
def instrument_underlying(ins_i4, instrument):
    """The instrument's ``Underlying`` code, from the instrument pool's int32 rows. O(1)."""
    return np.int64(ins_i4[instrument, Ins4.UNDERLYING])


@kernel
def book_rows(st, instrument, out, counts):
    """Fill ``out`` (int64[n, 6]) with the book's orders, bids best level first then asks
    best level first, FIFO within a level: (side, price, order id, account, qty, flags).
    ``counts`` gets (bid orders, ask orders, bid levels, ask levels). Returns the number of
    rows, or -1 if ``out`` is too small. Cost: O(orders in the book), compiled."""
    n = 0
    for side in range(2):
        row = instrument * 2 + side
        levels = st.ladder_len[row]
        counts[2 + side] = levels
        for index in range(levels - 1, -1, -1):
            level = st.ladder_level[row, index]
            price = st.lvl_i8[level, Level8.PRICE_TICKS]
            slot = st.lvl_i4[level, Level4.HEAD]
            while slot != NIL:
                if n >= out.shape[0]:
                    return -1
                position = st.ord_i4[slot, Order4.POSITION]
                out[n, 0] = side
                out[n, 1] = price
                out[n, 2] = (st.ord_i8[slot, Order8.GENERATION] << 32) | np.int64(slot)
                out[n, 3] = st.pos_i4[position, Pos4.ACCOUNT]
                out[n, 4] = st.ord_i8[slot, Order8.QTY_LOTS]
                out[n, 5] = st.ord_i4[slot, Order4.META] >> 1
                n += 1
                slot = st.ord_i4[slot, Order4.NEXT]
        if side == 0:
            counts[0] = n
    counts[1] = n - counts[0]
    return n


# ---- instruments and market data ----

_INSTRUMENT_I4 = {
    "kind": Ins4.KIND,
    "option_type": Ins4.OPTION_TYPE,
    "underlying": Ins4.UNDERLYING,
    "status": Ins4.STATUS,
    "resting_orders": Ins4.RESTING,
}
_INSTRUMENT_I8 = {
    "strike_ticks": Ins8.STRIKE,
    "expiry_ts_ns": Ins8.EXPIRY,
    "tick_size_ticks": Ins8.TICK,
    "min_trade_lots": Ins8.MIN_LOTS,
    "contract_value_units": Ins8.CONTRACT_VALUE,
    "maker_fee_ppm": Ins8.MAKER_FEE,
    "taker_fee_ppm": Ins8.TAKER_FEE,
    "max_price_ticks": Ins8.MAX_PRICE,
}
#: the listing fields of an instrument, as ``instrument_columns`` names them
INSTRUMENT_FIELDS = tuple(_INSTRUMENT_I4) + tuple(_INSTRUMENT_I8)


def instrument_columns(st: State, ids: np.ndarray | list[int]) -> dict[str, np.ndarray]:
    """Listing fields (``INSTRUMENT_FIELDS``: kind, option type, underlying, status,
    resting orders; strike, expiry, tick, minimum lots, contract value, fees, max price) of
    the instruments ``ids``, one array each. O(len(ids))."""
    columns = {name: st.ins_i4[ids, column] for name, column in _INSTRUMENT_I4.items()}
    columns.update({name: st.ins_i8[ids, column] for name, column in _INSTRUMENT_I8.items()})
    return columns


def max_price_ticks(st: State, instrument: int) -> int:
    """The instrument's price cap (0: not listed). O(1)."""
    return int(st.ins_i8[instrument, Ins8.MAX_PRICE])


def mark_ticks(st: State, instrument: int) -> int:
    """The instrument's applied mark price (0 if none yet). O(1)."""
    return int(st.ins_i8[instrument, Ins8.MARK])


def funding_rate_ppb(st: State, instrument: int) -> int:
    """A perpetual's last funding rate per funding period, 1e-9. O(1)."""
    return int(st.ins_i8[instrument, Ins8.FUNDING_RATE])


def option_marks(st: State, instrument: int) -> tuple[int, list[int]] | None:
    """``(mark IV ppm, [delta, gamma, vega, theta, rho] of one lot, 1e-9)`` from the last
    sequenced risk array, or None for an instrument outside the pool or without one. O(1)."""
    if not 0 <= instrument < st.ins_i8.shape[0]:
        return None
    row = st.ins_i8[instrument]
    iv_ppm = int(row[Ins8.MARK_IV])
    if not iv_ppm:
        return None
    return iv_ppm, [int(row[k]) for k in (Ins8.DELTA, Ins8.GAMMA, Ins8.VEGA, Ins8.THETA, Ins8.RHO)]


def mark_source(st: State) -> tuple[np.ndarray, int]:
    """``(array, column)`` whose ``array[instrument, column]`` is the applied mark: a view
    for shells' kernels (the book snapshot writer). O(1)."""
    return st.ins_i8, Ins8.MARK


def index_source(st: State) -> tuple[np.ndarray, int]:
    """``(array, column)`` whose ``array[underlying, column]`` is the last valid index: a
    view for shells' kernels. O(1)."""
    return st.und_i8, Und8.INDEX


def index_ticks(st: State, underlying: int) -> int:
    """Last valid index of the ``Underlying`` code (0: never). O(1)."""
    return int(st.und_i8[underlying, Und8.INDEX])


def index(st: State, underlying: int) -> IndexInfo:
    """Index, status, time and sources of the ``Underlying`` code. O(1)."""
    row = st.und_i8[underlying]
    return IndexInfo(
        int(row[Und8.INDEX]),
        IndexStatus(int(row[Und8.STATUS])).name.lower(),
        int(row[Und8.INDEX_TS]),
        int(row[Und8.SOURCES]),
    )


def index_history(st: State, underlying: int) -> list[tuple[int, int]]:
    """``(ts_ns, index)`` of the kept valid index updates, oldest first. O(kept)."""
    history = int(st.params[P_INDEX_HISTORY])
    head = int(st.und_i8[underlying, Und8.HIST_HEAD])
    length = int(st.und_i8[underlying, Und8.HIST_LEN])
    rows = [underlying * history + (head - length + k) % history for k in range(length)]
    return [(int(st.und_hist[r, 0]), int(st.und_hist[r, 1])) for r in rows]


# ---- cross-domain transfers (core/escrow.py) ----


def transfers(st: State) -> dict[int, dict[str, int]]:
    """Per peer domain that this domain ever transferred with: the row of the transfer table
    by column name (``out_count``, ``out_units``, ``refund_units``, ``refund_mark``,
    ``refund_window``, ``in_mark``, ``in_window``, ``in_units``, ``refused_units``,
    ``refused_count``). O(domains)."""
    return {
        peer: {field.name.lower(): row[field] for field in Xfer}
        for peer, row in transfer_rows(st.xfr).items()
    }


def escrow(st: State) -> tuple[int, int]:
    """``(escrow_out, credited_in)``: units held in escrow for transfers sent and not
    refunded, and units credited from other domains. O(domains)."""
    return escrow_totals(st.xfr)


def transfer_processed(st: State, peer: int, number: int) -> bool:
    """Whether this domain processed transfer ``number`` from ``peer`` (credited or
    refused): the relay's question. O(1)."""
    mark = int(st.xfr[peer, Xfer.IN_MARK])
    offset = number - mark
    if offset <= 0:
        return True
    return offset <= WINDOW and (int(st.xfr[peer, Xfer.IN_WINDOW]) >> (offset - 1)) & 1 == 1


def refund_processed(st: State, peer: int, number: int) -> bool:
    """Whether this domain processed the refund of its transfer ``number`` to ``peer``."""
    mark = int(st.xfr[peer, Xfer.REFUND_MARK])
    offset = number - mark
    if offset <= 0:
        return True
    return offset <= WINDOW and (int(st.xfr[peer, Xfer.REFUND_WINDOW]) >> (offset - 1)) & 1 == 1
