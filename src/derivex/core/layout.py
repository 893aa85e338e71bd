"""Field indices of the pools.

Each pool is one 2-D array per integer width, shaped ``(capacity, fields)``: the fields of
one slot share a cache line (a 56-byte order is one line). Books are walked entity by
entity (an order, its level, its position, its account), so this beats one array per field:
measured on the single-book flow, see bench/results/matching.json and the notes. Kernels
index ``pool[slot, FIELD]``.
"""

# counters (int64 vector)
C_CLOCK_NS = 0
C_TOTAL_DEPOSITS = 1
C_TOTAL_WITHDRAWALS = 2
C_ORDER_HWM = 3
C_ORDER_FREE_TOP = 4  # number of free order slots (an intrusive LIFO list)
C_ORDERS_LIVE = 5
C_LEVEL_HWM = 6
C_LEVEL_FREE_TOP = 7
C_LEVELS_LIVE = 8
C_POSITION_HWM = 9
C_POSITION_FREE_TOP = 10
C_POSITIONS_LIVE = 11
C_ACCOUNT_HWM = 12
C_INSTRUMENT_HWM = 13
C_FILLS = 14
C_COMMANDS = 15
C_SCAN_TOUCHED = 16
C_ORDER_FREE_HEAD = 17  # first free order slot; free slots chain through O_NEXT
C_RISK_DIRTY = 18  # instruments with a pending mark / risk array (applied at the next flush)
C_TIME_PHASE = 19  # progress of a TIME command that ran out of event room (0: none)
C_TIME_CURSOR = 20  # instrument / account the interrupted phase resumes at
C_BAD_DEBT = 21  # losses no account, fund or ADL covered (socialised), collateral units
COUNTER_COUNT = 22

# accounts: int64 rows
A_BALANCE = 0
A_GAS = 1
A_GAS_TS = 2
ACCOUNT_I8_FIELDS = 3
# accounts: int32 rows
A_STATUS = 0  # 0 unused, 1 active
A_STP = 1
A_OPEN_ORDERS = 2
A_POSITION_HEAD = 3  # first position slot of the account's list; -1 if none
A_LAST_POSITION = 4  # position slot used last: a one-entry cache in front of the index
A_MARGIN_MODE = 5  # MarginMode
A_STATE = 6  # AccountState
ACCOUNT_I4_FIELDS = 7

# account risk sums (acc_risk int64 rows), kept incrementally over the account's positions
R_VALUE = 0  # mark value of the positions: sum q*mark*cv (minus the entry value, perpetuals)
R_BID_CASH = 1  # equity change if every resting bid filled: sum (open_buy*mark - buy_value)*cv
R_ASK_CASH = 2  # same for the asks: sum (sell_value - open_sell*mark)*cv
R_STD_IM = 3  # standard margin: sum over positions of max(IM(q + open_buy), IM(q - open_sell))
R_STD_MM = 4  # standard margin: sum of MM(q)
R_ADDON_POS = 5  # portfolio margin short-option add-on of the positions
R_ADDON_BID = 6  # ... with every resting bid filled
R_ADDON_ASK = 7  # ... with every resting ask filled
RISK_FIELDS = 8
# acc_scen int64[accounts, 3 * S]: scenario P&L vectors of the positions, of the resting
# bids as if filled and of the resting asks as if filled (portfolio-margin accounts only)
V_POS = 0
V_BID = 1
V_ASK = 2

# instruments: int64 rows
I_STRIKE = 0
I_EXPIRY = 1
I_TICK = 2
I_MIN_LOTS = 3
I_CONTRACT_VALUE = 4
I_MAKER_FEE = 5
I_TAKER_FEE = 6
I_MAX_PRICE = 7
I_MARK = 8  # mark price applied to the accounts (0: none yet)
I_MARK_NEXT = 9  # pending mark (applied at the next flush)
I_INDEX = 10  # index of the underlying applied to the accounts' option margins
I_INDEX_NEXT = 11
I_BASIS_EMA = 12  # perpetuals: smoothed, clamped basis (mark - index), ticks
I_MARK_IV = 13  # options: implied volatility of the mark, ppm
I_DELTA = 14  # Greeks of one lot, 1e-9 (RISK_GREEKS)
I_GAMMA = 15
I_VEGA = 16
I_THETA = 17
I_RHO = 18
I_FUNDING_TS = 19  # sequencer time funding was last accrued / the interval started (0: never)
I_FUNDING_RATE = 20  # last funding rate per period, 1e-9
I_PREMIUM_ACC = 21  # interval mode: sum of premium (1e-9) x ms over the interval
I_PREMIUM_MS = 22
I_SETTLEMENT = 23  # options: the settlement price once settled
I_FUNDING_CAP = 24  # perpetuals: this instrument's funding rate cap (0: the config's)
I_PRICE_BAND = 25  # price band around the mark, ppm (0: the config's market_band_ppm)
INSTRUMENT_I8_FIELDS = 26
# instruments: int32 rows
I_KIND = 0
I_OPTION_TYPE = 1
I_UNDERLYING = 2
I_STATUS = 3
I_RESTING = 4
I_DIRTY = 5  # a pending mark / risk array / index awaits the flush
INSTRUMENT_I4_FIELDS = 6

# underlyings: und_i8 int64 rows (row = Underlying code)
U_INDEX = 0  # last valid index, ticks (0: never)
U_INDEX_TS = 1  # sequencer time of the last INDEX command
U_STATUS = 2  # IndexStatus
U_SOURCES = 3  # sources used in the last valid index
U_HIST_HEAD = 4  # next row of the history ring
U_HIST_LEN = 5
UNDERLYING_FIELDS = 6
# und_hist int64[underlyings * index_history, 2]: (sequencer ts, index) per valid update

# positions: int64 rows
S_QTY = 0
S_BASIS = 1
S_OPEN_BUY = 2
S_OPEN_SELL = 3
S_QUOTE_BID = 4  # order id of the account's mass-quote bid on this instrument, 0 if none
S_QUOTE_ASK = 5
S_BUY_VALUE = 6  # sum of price * qty over the resting bids (ticks x lots)
S_SELL_VALUE = 7
POSITION_I8_FIELDS = 8
# positions: int32 rows
S_ACCOUNT = 0
S_INSTRUMENT = 1
S_ORDERS = 2  # resting orders
S_ORDER_HEAD = 3
S_ORDER_TAIL = 4
S_NEXT = 5  # next position of the same account (unordered, doubly linked)
S_LIVE = 6
S_PREV = 7  # previous position of the same account
POSITION_I4_FIELDS = 8

# orders: int64 rows
O_PRICE = 0
O_QTY = 1  # remaining
O_GENERATION = 2
ORDER_I8_FIELDS = 3
# orders: int32 rows
O_POSITION = 0
O_PREV = 1  # FIFO within the price level
O_NEXT = 2
O_POSITION_PREV = 3  # list of the position's resting orders
O_POSITION_NEXT = 4
O_META = 5  # side | flags << 1
ORDER_I4_FIELDS = 6
# an order slot is live iff its O_POSITION is not NIL

# price levels: int64 rows
L_PRICE = 0
L_QTY = 1
LEVEL_I8_FIELDS = 2
# price levels: int32 rows
L_COUNT = 0
L_HEAD = 1
L_TAIL = 2
LEVEL_I4_FIELDS = 3

NIL = -1

# kernel status
STATUS_DONE = 0
STATUS_GROW = 1  # a pool must grow before the command at the returned index
STATUS_EVENTS = 2  # the event buffer must grow before the command at the returned index
