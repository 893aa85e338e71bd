"""Writing event records: one writer per event shape.

Each writer fills every field of ``ev[n]`` once (all 64 bytes, so a reused buffer never
leaks an old value; fields a shape does not use are 0), names its arguments in units, and
writes the unit-named alias of a kind-specific field where ``EVENT_DTYPE`` has one
(``fee_units``, ``cash_units``, ``status``, ...). It returns ``n + 1``. The batch loop
guarantees room before each command, so writers never check bounds. O(1), no allocation.

The fields are written inline, not through a shared helper: every helper is compiled once
per combination of argument types its callers pass, which multiplied the compile count.
The ``label`` of an order's event is set afterwards with ``set_label`` (0 until then).
"""

from __future__ import annotations

from derivex.core.jit import kernel
from derivex.core.records import CommandKind, EventKind, Liquidity


@kernel
def accepted(ev, n, seq, command, account, instrument, price_ticks, qty_lots, status):
    """ACCEPTED for a command that is not about one order: ``qty_lots`` is a count where the
    command has one (orders cancelled, legs, index sources), ``status`` a setting it
    applied (the STP mode of SET_ACCOUNT)."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.ACCEPTED
    e["command"] = command
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = 0
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
    e["seq"] = seq
    e["kind"] = EventKind.ACCEPTED
    e["command"] = command
    e["side"] = side
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = leg
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
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
    e["seq"] = seq
    e["kind"] = EventKind.REJECTED
    e["command"] = command
    e["side"] = side
    e["liquidity"] = Liquidity.NONE
    e["reason"] = reason
    e["leg"] = leg
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
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
    e["seq"] = seq
    e["kind"] = EventKind.CANCELLED
    e["command"] = command
    e["side"] = side
    e["liquidity"] = Liquidity.NONE
    e["reason"] = reason
    e["leg"] = leg
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
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
    e["seq"] = seq
    e["kind"] = EventKind.EXPIRED
    e["command"] = command
    e["side"] = side
    e["liquidity"] = Liquidity.NONE
    e["reason"] = reason
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
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
    e["seq"] = seq
    e["kind"] = EventKind.AMENDED
    e["command"] = CommandKind.AMEND_ORDER
    e["side"] = side
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
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
    e["seq"] = seq
    e["kind"] = EventKind.FILLED
    e["command"] = command
    e["side"] = side
    e["liquidity"] = liquidity
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
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
    """POSITION_CHANGED: one side's position and balance after a fill."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.POSITION_CHANGED
    e["command"] = command
    e["side"] = side
    e["liquidity"] = liquidity
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = order_id
    e["basis_units"] = basis_units
    e["position_lots"] = position_lots
    e["cash_units"] = cash_units
    e["balance_units"] = balance_units
    return n + 1


@kernel
def balance_changed(ev, n, seq, command, account, cash_units, balance_units):
    """BALANCE_CHANGED: a deposit (``cash_units`` > 0) or a withdrawal (< 0)."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.BALANCE_CHANGED
    e["command"] = command
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = 0
    e["order_id"] = 0
    e["price_ticks"] = 0
    e["qty_lots"] = 0
    e["cash_units"] = cash_units
    e["balance_units"] = balance_units
    return n + 1


@kernel
def account_status_event(ev, n, seq, kind, command, account, status):
    """An account-wide event with one value in ``status`` and nothing else: ACCOUNT_CREATED,
    ACCOUNT_STATE_CHANGED, SUBACCOUNT_LINKED."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = kind
    e["command"] = command
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = 0
    e["order_id"] = 0
    e["price_ticks"] = 0
    e["qty_lots"] = 0
    e["status"] = status
    e["b"] = 0
    return n + 1


@kernel
def account_created(ev, n, seq, account, stp):
    """ACCOUNT_CREATED, with the account's self-trade prevention mode as ``status``."""
    return account_status_event(
        ev, n, seq, EventKind.ACCOUNT_CREATED, CommandKind.CREATE_ACCOUNT, account, stp
    )


@kernel
def account_state_changed(ev, n, seq, command, account, state):
    """ACCOUNT_STATE_CHANGED: the account's new ``AccountState`` as ``status``."""
    return account_status_event(
        ev, n, seq, EventKind.ACCOUNT_STATE_CHANGED, command, account, state
    )


@kernel
def instrument_status_changed(ev, n, seq, command, instrument, price_ticks, status):
    """INSTRUMENT_STATUS_CHANGED: added, halted, resumed, closed or (with its settlement
    price) settled."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.INSTRUMENT_STATUS_CHANGED
    e["command"] = command
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = 0
    e["instrument"] = instrument
    e["order_id"] = 0
    e["price_ticks"] = price_ticks
    e["qty_lots"] = 0
    e["status"] = status
    e["b"] = 0
    return n + 1


@kernel
def index_changed(ev, n, seq, reason, underlying, index_ticks, sources, status):
    """INDEX_CHANGED of ``underlying``: the index, the sources used and its ``IndexStatus``
    (a stale index repeats the last valid one with reason INDEX_STALE)."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.INDEX_CHANGED
    e["command"] = CommandKind.SET_INDEX
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = reason
    e["leg"] = 0
    e["account"] = 0
    e["instrument"] = underlying
    e["order_id"] = 0
    e["price_ticks"] = index_ticks
    e["qty_lots"] = sources
    e["status"] = status
    e["b"] = 0
    return n + 1


@kernel
def mark_changed(ev, n, seq, command, instrument, mark_ticks, detail):
    """MARK_CHANGED: the instrument's new mark; field ``a`` is the mark's implied volatility
    (ppm) for an option, the smoothed basis (ticks) for a perpetual."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.MARK_CHANGED
    e["command"] = command
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = 0
    e["instrument"] = instrument
    e["order_id"] = 0
    e["price_ticks"] = mark_ticks
    e["qty_lots"] = 0
    e["a"] = detail
    e["b"] = 0
    return n + 1


@kernel
def liquidation_stage(ev, n, seq, account, instrument, stage, price_ticks, qty_lots, money_units):
    """LIQUIDATION_PROGRESSED: one stage of a liquidation (a TIME event) as ``status``; field
    ``b`` is the money the stage moved (see ``LiquidationStage`` for each stage's fields)."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.LIQUIDATION_PROGRESSED
    e["command"] = CommandKind.ADVANCE_TIME
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = 0
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["status"] = stage
    e["b"] = money_units
    return n + 1


@kernel
def funding_paid(ev, n, seq, account, instrument, rate, qty_lots, cash_units, balance_units):
    """FUNDING_PAID (a TIME event) by (``cash_units`` < 0) or to one position of ``qty_lots``;
    ``price_ticks`` carries the rate (1e-9 per period)."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.FUNDING_PAID
    e["command"] = CommandKind.ADVANCE_TIME
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = 0
    e["price_ticks"] = rate
    e["qty_lots"] = qty_lots
    e["cash_units"] = cash_units
    e["balance_units"] = balance_units
    return n + 1


@kernel
def settled(ev, n, seq, account, instrument, price_ticks, qty_lots, cash_units, balance_units):
    """SETTLED (a TIME event): cash settlement of one option position at ``price_ticks``."""
    e = ev[n]
    e["seq"] = seq
    e["kind"] = EventKind.SETTLED
    e["command"] = CommandKind.ADVANCE_TIME
    e["side"] = 0
    e["liquidity"] = Liquidity.NONE
    e["reason"] = 0
    e["leg"] = 0
    e["account"] = account
    e["instrument"] = instrument
    e["order_id"] = 0
    e["price_ticks"] = price_ticks
    e["qty_lots"] = qty_lots
    e["cash_units"] = cash_units
    e["balance_units"] = balance_units
    return n + 1


@kernel
def set_label(ev, n, label):
    """Set the ``label`` (uint64) of the event just written (index ``n - 1``)."""
    ev[n - 1]["label"] = label
