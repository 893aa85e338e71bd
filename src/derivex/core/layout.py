"""Column groups of the pools: one ``IntEnum`` per pool and integer width.

Each pool is one 2-D array per integer width, shaped ``(capacity, fields)``: the fields of
one slot share a cache line (a 56-byte order is one line). Books are walked entity by
entity (an order, its level, its position, its account), so this beats one array per field:
measured on the single-book flow, see bench/results/matching.json and the notes. Kernels
index ``pool[slot, Group.FIELD]``, e.g. ``st.ord_i8[slot, Order8.QTY_LOTS]``.

The group's suffix is the width of the array it indexes (``Order8`` indexes ``ord_i8``,
``Order4`` indexes ``ord_i4``); ``tests/core/test_layout_widths.py`` rejects a group used on
an array of the other width. numba folds an ``IntEnum`` member into a constant, so a kernel
compiles to the same machine code as with plain integers (checked by comparing the
assembly of kernels before and after the change).

The layout is private to ``core/``: shells read state through the core's query module
(``core/query.py``) and records through its codec (``core/codec.py``);
``tests/test_layout_private.py`` forbids importing this module outside ``core/``.
"""

from __future__ import annotations

from enum import IntEnum


class Counter(IntEnum):
    """The engine's counters (``st.counters``, int64 vector)."""

    CLOCK_NS = 0
    TOTAL_DEPOSITS = 1
    TOTAL_WITHDRAWALS = 2
    ORDER_HWM = 3
    ORDER_FREE_TOP = 4  # number of free order slots (an intrusive LIFO list)
    ORDERS_LIVE = 5
    LEVEL_HWM = 6
    LEVEL_FREE_TOP = 7
    LEVELS_LIVE = 8
    POSITION_HWM = 9
    POSITION_FREE_TOP = 10
    POSITIONS_LIVE = 11
    ACCOUNT_HWM = 12
    INSTRUMENT_HWM = 13
    FILLS = 14
    COMMANDS = 15
    SCAN_TOUCHED = 16
    ORDER_FREE_HEAD = 17  # first free order slot; free slots chain through Order4.NEXT
    RISK_DIRTY = 18  # instruments with a pending mark / risk array (applied at the next flush)
    TIME_PHASE = 19  # progress of a TIME command that ran out of event room (0: none)
    TIME_CURSOR = 20  # instrument / account the interrupted phase resumes at
    BAD_DEBT = 21  # losses no account, fund or ADL covered (socialised), collateral units


class Account8(IntEnum):
    """Accounts, int64 columns (``st.acc_i8``)."""

    BALANCE = 0
    GAS = 1
    GAS_TS = 2


class Account4(IntEnum):
    """Accounts, int32 columns (``st.acc_i4``)."""

    STATUS = 0  # 0 unused, ACCOUNT_ACTIVE, ACCOUNT_BLOCKED
    STP = 1
    OPEN_ORDERS = 2
    POSITION_HEAD = 3  # first position slot of the account's list; -1 if none
    LAST_POSITION = 4  # position slot used last: a one-entry cache in front of the index
    MARGIN_MODE = 5  # MarginMode
    STATE = 6  # AccountState


class Risk8(IntEnum):
    """Account risk sums (``st.acc_risk``, int64), kept incrementally over the account's
    positions."""

    VALUE = 0  # mark value of the positions: sum q*mark*cv (minus the entry value, perpetuals)
    BID_CASH = 1  # equity change if every resting bid filled: sum (open_buy*mark - buy_value)*cv
    ASK_CASH = 2  # same for the asks: sum (sell_value - open_sell*mark)*cv
    STD_IM = 3  # standard margin: sum over positions of max(IM(q + open_buy), IM(q - open_sell))
    STD_MM = 4  # standard margin: sum of MM(q)
    ADDON_POS = 5  # portfolio margin short-option add-on of the positions
    ADDON_BID = 6  # ... with every resting bid filled
    ADDON_ASK = 7  # ... with every resting ask filled


class ScenarioBlock(IntEnum):
    """Blocks of ``st.acc_scen`` (int64[accounts, 3 * S]): scenario P&L vectors of the
    positions, of the resting bids as if filled and of the resting asks as if filled
    (portfolio-margin accounts only). Block ``b`` spans columns ``b * S`` to ``b * S + S``."""

    POS = 0
    BID = 1
    ASK = 2


class Ins8(IntEnum):
    """Instruments, int64 columns (``st.ins_i8``)."""

    STRIKE = 0
    EXPIRY = 1
    TICK = 2
    MIN_LOTS = 3
    CONTRACT_VALUE = 4
    MAKER_FEE = 5
    TAKER_FEE = 6
    MAX_PRICE = 7
    MARK = 8  # mark price applied to the accounts (0: none yet)
    MARK_NEXT = 9  # pending mark (applied at the next flush)
    INDEX = 10  # index of the underlying applied to the accounts' option margins
    INDEX_NEXT = 11
    BASIS_EMA = 12  # perpetuals: smoothed, clamped basis (mark - index), ticks
    MARK_IV = 13  # options: implied volatility of the mark, ppm
    DELTA = 14  # Greeks of one lot, 1e-9 (RISK_GREEKS)
    GAMMA = 15
    VEGA = 16
    THETA = 17
    RHO = 18
    FUNDING_TS = 19  # sequencer time funding was last accrued / the interval started (0: never)
    FUNDING_RATE = 20  # last funding rate per period, 1e-9
    PREMIUM_ACC = 21  # interval mode: sum of premium (1e-9) x ms over the interval
    PREMIUM_MS = 22
    SETTLEMENT = 23  # options: the settlement price once settled
    FUNDING_CAP = 24  # perpetuals: this instrument's funding rate cap (0: the config's)
    PRICE_BAND = 25  # price band around the mark, ppm (0: the config's market_band_ppm)


class Ins4(IntEnum):
    """Instruments, int32 columns (``st.ins_i4``)."""

    KIND = 0
    OPTION_TYPE = 1
    UNDERLYING = 2
    STATUS = 3
    RESTING = 4
    DIRTY = 5  # a pending mark / risk array / index awaits the flush


class Und8(IntEnum):
    """Underlyings, int64 columns (``st.und_i8``; row = Underlying code). The index history
    ``st.und_hist`` is int64[underlyings * index_history, 2]: (sequencer ts, index)."""

    INDEX = 0  # last valid index, ticks (0: never)
    INDEX_TS = 1  # sequencer time of the last INDEX command
    STATUS = 2  # IndexStatus
    SOURCES = 3  # sources used in the last valid index
    HIST_HEAD = 4  # next row of the history ring
    HIST_LEN = 5


class Pos8(IntEnum):
    """Positions, int64 columns (``st.pos_i8``)."""

    QTY = 0
    BASIS = 1
    OPEN_BUY = 2
    OPEN_SELL = 3
    QUOTE_BID = 4  # order id of the account's mass-quote bid on this instrument, 0 if none
    QUOTE_ASK = 5
    BUY_VALUE = 6  # sum of price * qty over the resting bids (ticks x lots)
    SELL_VALUE = 7


class Pos4(IntEnum):
    """Positions, int32 columns (``st.pos_i4``)."""

    ACCOUNT = 0
    INSTRUMENT = 1
    ORDERS = 2  # resting orders
    ORDER_HEAD = 3
    ORDER_TAIL = 4
    NEXT = 5  # next position of the same account (unordered, doubly linked)
    LIVE = 6
    PREV = 7  # previous position of the same account


class Order8(IntEnum):
    """Orders, int64 columns (``st.ord_i8``)."""

    PRICE_TICKS = 0
    QTY_LOTS = 1  # remaining
    GENERATION = 2


class Order4(IntEnum):
    """Orders, int32 columns (``st.ord_i4``). An order slot is live iff its ``POSITION`` is
    not ``NIL``."""

    POSITION = 0
    PREV = 1  # FIFO within the price level
    NEXT = 2
    POSITION_PREV = 3  # list of the position's resting orders
    POSITION_NEXT = 4
    META = 5  # side | flags << 1


class Link4(IntEnum):
    """Main account / subaccount links, int32 columns (``st.sub_i4``, core/subaccounts.py).
    An account's row is zero until it is linked: no system account can be a main account, so
    ``PARENT`` 0 means none."""

    PARENT = 0  # the main account of a subaccount (0: not a subaccount)
    CHILDREN = 1  # the number of subaccounts of a main account


class Level8(IntEnum):
    """Price levels, int64 columns (``st.lvl_i8``)."""

    PRICE_TICKS = 0
    QTY_LOTS = 1


class Level4(IntEnum):
    """Price levels, int32 columns (``st.lvl_i4``)."""

    COUNT = 0
    HEAD = 1
    TAIL = 2


COUNTER_COUNT = len(Counter)
ACCOUNT_I8_FIELDS = len(Account8)
ACCOUNT_I4_FIELDS = len(Account4)
RISK_FIELDS = len(Risk8)
INSTRUMENT_I8_FIELDS = len(Ins8)
INSTRUMENT_I4_FIELDS = len(Ins4)
UNDERLYING_FIELDS = len(Und8)
POSITION_I8_FIELDS = len(Pos8)
POSITION_I4_FIELDS = len(Pos4)
ORDER_I8_FIELDS = len(Order8)
ORDER_I4_FIELDS = len(Order4)
LEVEL_I8_FIELDS = len(Level8)
LEVEL_I4_FIELDS = len(Level4)
LINK_I4_FIELDS = len(Link4)

NIL = -1

# values of Account4.STATUS of an existing account (0: the slot is unused)
ACCOUNT_ACTIVE = 1
ACCOUNT_BLOCKED = 2  # BLOCK_ACCOUNT: trading commands are refused until UNBLOCK_ACCOUNT

# kernel status (plain ints: they travel in the kernels' return tuples next to other ints)
STATUS_DONE = 0
STATUS_GROW = 1  # a pool must grow before the command at the returned index
STATUS_EVENTS = 2  # the event buffer must grow before the command at the returned index
