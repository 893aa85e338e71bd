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
COUNTER_COUNT = 18

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
ACCOUNT_I4_FIELDS = 5

# instruments: int64 rows
I_STRIKE = 0
I_EXPIRY = 1
I_TICK = 2
I_MIN_LOTS = 3
I_CONTRACT_VALUE = 4
I_MAKER_FEE = 5
I_TAKER_FEE = 6
I_MAX_PRICE = 7
INSTRUMENT_I8_FIELDS = 8
# instruments: int32 rows
I_KIND = 0
I_OPTION_TYPE = 1
I_UNDERLYING = 2
I_STATUS = 3
I_RESTING = 4
INSTRUMENT_I4_FIELDS = 5

# positions: int64 rows
S_QTY = 0
S_BASIS = 1
S_OPEN_BUY = 2
S_OPEN_SELL = 3
S_QUOTE_BID = 4  # order id of the account's mass-quote bid on this instrument, 0 if none
S_QUOTE_ASK = 5
POSITION_I8_FIELDS = 6
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
