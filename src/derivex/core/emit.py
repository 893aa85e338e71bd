"""Writing event records: one writer per event shape.

Each writer fills every field of ``ev[n]`` (all 64 bytes, so a reused buffer never leaks an
old value), names its arguments in units and writes the unit-named alias of a kind-specific
field where ``EVENT_DTYPE`` has one (``fee_units``, ``cash_units``, ``status``, ...). It
returns ``n + 1``. The batch loop guarantees room before each command, so writers never
check bounds. O(1), no allocation.

The ``label`` of an order's event is set afterwards with ``set_label`` (it is 0 until then).
"""

from __future__ import annotations

from derivex.core.jit import kernel
from derivex.core.records import CommandKind, EventKind, Liquidity


@kernel
def _header(e, seq, kind, command, side, liquidity, reason, leg, account, instrument, order_id):
    """The fields every event has (offsets 0..31)."""
    e["seq"] = seq
    e["kind"] = kind
    e["command"] = command
    e["side"] = side
    e["liquidity"] = liquidity
    e["reason"] = reason
    e["leg"] = leg
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id


@kernel
def accepted(ev, n, seq, command, account, instrument, price_ticks, qty_lots, status):
    """ACCEPTED for a command that is not about one order: ``qty_lots`` is a count where the
    command has one (orders cancelled, legs, index sources), ``status`` a setting it
    applied (the STP mode of SET_ACCOUNT)."""
    e = ev[n]
    _header(e, seq, EventKind.ACCEPTED, command, 0, Liquidity.NONE, 0, 0, account, instrument, 0)
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["status"] = status
    e["label"] = 0
    return n + 1


@kernel
def order_accepted(
    ev, n, seq, command, side, leg, account, instrument, order_id, price_ticks, qty_lots
):
    """ACCEPTED for an order (placed, cancelled, amended, or one mass-quote leg)."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.ACCEPTED,
        command,
        side,
        Liquidity.NONE,
        0,
        leg,
        account,
        instrument,
        order_id,
    )
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["a"] = 0
    e["label"] = 0
    return n + 1


@kernel
def rejected(
    ev, n, seq, command, side, reason, leg, account, instrument, order_id, price_ticks, qty_lots
):
    """REJECTED: the command (or one leg) changed nothing; it echoes the command's fields."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.REJECTED,
        command,
        side,
        Liquidity.NONE,
        reason,
        leg,
        account,
        instrument,
        order_id,
    )
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["a"] = 0
    e["label"] = 0
    return n + 1


@kernel
def cancelled(
    ev, n, seq, command, side, reason, leg, account, instrument, order_id, price_ticks, qty_lots
):
    """CANCELLED: a resting order left the book; ``qty_lots`` is the cancelled remainder."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.CANCELLED,
        command,
        side,
        Liquidity.NONE,
        reason,
        leg,
        account,
        instrument,
        order_id,
    )
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["a"] = 0
    e["label"] = 0
    return n + 1


@kernel
def expired(
    ev, n, seq, command, side, reason, account, instrument, order_id, price_ticks, qty_lots
):
    """EXPIRED: the unfilled remainder ``qty_lots`` of an order that does not rest."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.EXPIRED,
        command,
        side,
        Liquidity.NONE,
        reason,
        0,
        account,
        instrument,
        order_id,
    )
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["a"] = 0
    e["label"] = 0
    return n + 1


@kernel
def amended(ev, n, seq, side, account, instrument, order_id, price_ticks, qty_lots, kept_priority):
    """AMENDED: the order's new price and quantity; field ``a`` is 1 if it kept its place in
    the queue."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.AMENDED,
        CommandKind.AMEND_ORDER,
        side,
        Liquidity.NONE,
        0,
        0,
        account,
        instrument,
        order_id,
    )
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["a"] = kept_priority
    e["label"] = 0
    return n + 1


@kernel
def filled(
    ev,
    n,
    seq,
    command,
    side,
    liquidity,
    account,
    instrument,
    order_id,
    price_ticks,
    qty_lots,
    fee_units,
    remaining_lots,
):
    """FILLED: one side of a trade of ``qty_lots`` at ``price_ticks``; ``remaining_lots`` of
    the order are left after it."""
    e = ev[n]
    _header(e, seq, EventKind.FILLED, command, side, liquidity, 0, 0, account, instrument, order_id)
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["fee_units"] = fee_units
    e["remaining_lots"] = remaining_lots
    return n + 1


@kernel
def position_changed(
    ev,
    n,
    seq,
    command,
    side,
    liquidity,
    account,
    instrument,
    order_id,
    basis_units,
    position_lots,
    cash_units,
    balance_units,
):
    """POSITION: one side's position and balance after a fill."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.POSITION_CHANGED,
        command,
        side,
        liquidity,
        0,
        0,
        account,
        instrument,
        order_id,
    )
    e["basis_units"] = basis_units
    e["position_lots"] = position_lots
    e["cash_units"] = cash_units
    e["balance_units"] = balance_units
    return n + 1


@kernel
def balance_changed(ev, n, seq, command, account, cash_units, balance_units):
    """BALANCE: a deposit (``cash_units`` > 0) or a withdrawal (< 0)."""
    e = ev[n]
    _header(e, seq, EventKind.BALANCE_CHANGED, command, 0, Liquidity.NONE, 0, 0, account, 0, 0)
    e["price_ticks"] = 0
    e["qty_lots"] = 0
    e["cash_units"] = cash_units
    e["balance_units"] = balance_units
    return n + 1


@kernel
def account_created(ev, n, seq, account, stp):
    """ACCOUNT_CREATED, with the account's self-trade prevention mode as ``status``."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.ACCOUNT_CREATED,
        CommandKind.CREATE_ACCOUNT,
        0,
        Liquidity.NONE,
        0,
        0,
        account,
        0,
        0,
    )
    e["price_ticks"] = 0
    e["qty_lots"] = 0
    e["status"] = stp
    e["b"] = 0
    return n + 1


@kernel
def account_state_changed(ev, n, seq, command, account, state):
    """ACCOUNT_STATE: the account's new ``AccountState`` as ``status``."""
    e = ev[n]
    _header(
        e, seq, EventKind.ACCOUNT_STATE_CHANGED, command, 0, Liquidity.NONE, 0, 0, account, 0, 0
    )
    e["price_ticks"] = 0
    e["qty_lots"] = 0
    e["status"] = state
    e["b"] = 0
    return n + 1


@kernel
def instrument_status_changed(ev, n, seq, command, instrument, price_ticks, status):
    """INSTRUMENT_STATUS: added, halted, resumed, closed or (with its settlement price)
    settled."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.INSTRUMENT_STATUS_CHANGED,
        command,
        0,
        Liquidity.NONE,
        0,
        0,
        0,
        instrument,
        0,
    )
    e["price_ticks"] = price_ticks
    e["qty_lots"] = 0
    e["status"] = status
    e["b"] = 0
    return n + 1


@kernel
def index_changed(ev, n, seq, reason, underlying, index_ticks, sources, status):
    """INDEX of ``underlying``: the index, the sources used and its ``IndexStatus`` (a stale
    index repeats the last valid one with reason INDEX_STALE)."""
    e = ev[n]
    _header(
        e,
        seq,
        EventKind.INDEX_CHANGED,
        CommandKind.SET_INDEX,
        0,
        Liquidity.NONE,
        reason,
        0,
        0,
        underlying,
        0,
    )
    e["price_ticks"] = index_ticks
    e["qty_lots"] = sources
    e["status"] = status
    e["b"] = 0
    return n + 1


@kernel
def mark_changed(ev, n, seq, command, instrument, mark_ticks, detail):
    """MARK: the instrument's new mark; field ``a`` is the mark's implied volatility (ppm)
    for an option, the smoothed basis (ticks) for a perpetual."""
    e = ev[n]
    _header(e, seq, EventKind.MARK_CHANGED, command, 0, Liquidity.NONE, 0, 0, 0, instrument, 0)
    e["price_ticks"] = mark_ticks
    e["qty_lots"] = 0
    e["a"] = detail
    e["b"] = 0
    return n + 1


@kernel
def _time_event(ev, n, seq, kind, account, instrument, price_ticks, qty_lots, a, b):
    """An event of the TIME driver (funding, settlement, liquidation)."""
    e = ev[n]
    _header(e, seq, kind, CommandKind.ADVANCE_TIME, 0, Liquidity.NONE, 0, 0, account, instrument, 0)
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["a"] = a
    e["b"] = b
    return n + 1


@kernel
def liquidation_stage(ev, n, seq, account, instrument, stage, price_ticks, qty_lots, money_units):
    """LIQUIDATION: one stage of a liquidation as ``status``; field ``b`` is the money the
    stage moved (see ``LiquidationStage`` for each stage's fields)."""
    return _time_event(
        ev,
        n,
        seq,
        EventKind.LIQUIDATION_PROGRESSED,
        account,
        instrument,
        price_ticks,
        qty_lots,
        stage,
        money_units,
    )


@kernel
def funding_paid(ev, n, seq, account, instrument, rate, qty_lots, cash_units, balance_units):
    """FUNDING paid (``cash_units`` < 0) or received by one position of ``qty_lots``;
    ``price_ticks`` carries the rate (1e-9 per period)."""
    return _time_event(
        ev,
        n,
        seq,
        EventKind.FUNDING_PAID,
        account,
        instrument,
        rate,
        qty_lots,
        cash_units,
        balance_units,
    )


@kernel
def settled(ev, n, seq, account, instrument, price_ticks, qty_lots, cash_units, balance_units):
    """SETTLEMENT: cash settlement of one option position at ``price_ticks`` on expiry."""
    return _time_event(
        ev,
        n,
        seq,
        EventKind.SETTLED,
        account,
        instrument,
        price_ticks,
        qty_lots,
        cash_units,
        balance_units,
    )


@kernel
def set_label(ev, n, label):
    """Set the ``label`` (uint64) of the event just written (index ``n - 1``)."""
    ev[n - 1]["label"] = label
