"""Money movements of a fill: positions, entry values, realised P&L, premium and fees.

The rounding rules are those of ``docs/core-semantics.md``: the user's realised P&L and
rebates are rounded down, charges up, and the rounding remainder of a partial close stays in
the position's entry value, so it is realised exactly when the position closes. O(1).
"""

from __future__ import annotations

from derivex.core.config import P_GAS_MAX, P_GAS_REFILL_PER_MS
from derivex.core.fixed import fee_for, mul_div_ceil, mul_div_floor
from derivex.core.jit import kernel
from derivex.core.layout import Account8, Ins4, Pos4, Pos8
from derivex.core.records import InstrumentKind, SystemAccount


@kernel
def apply_position(st, position, dq, per_lot_value):
    """Change a position by ``dq`` lots traded at ``per_lot_value`` units per lot; returns
    the realised P&L of the closed part (0 when opening)."""
    pos = st.pos_i8[position, Pos8.QTY]
    basis = st.pos_i8[position, Pos8.BASIS]
    if pos == 0 or (pos > 0) == (dq > 0):
        st.pos_i8[position, Pos8.QTY] = pos + dq
        st.pos_i8[position, Pos8.BASIS] = basis + per_lot_value * dq
        return 0
    size = abs(pos)
    trade = abs(dq)
    closing = trade if trade < size else size
    if closing == size:
        entry = abs(basis)
    elif pos > 0:
        entry = mul_div_ceil(basis, closing, size)
    else:
        entry = mul_div_floor(-basis, closing, size)
    exit_value = per_lot_value * closing
    if pos > 0:
        realised = exit_value - entry
        basis -= entry
        pos -= closing
    else:
        realised = entry - exit_value
        basis += entry
        pos += closing
    rest = trade - closing
    if rest > 0:
        sign = 1 if dq > 0 else -1
        pos = sign * rest
        basis = sign * per_lot_value * rest
    st.pos_i8[position, Pos8.QTY] = pos
    st.pos_i8[position, Pos8.BASIS] = basis
    return realised


@kernel
def settle_fill_side(st, instrument, position, side, qty, per_lot_value, fee_rate):
    """Book one side of a fill. Returns (cash, fee): the balance change before fees
    (realised P&L for perpetuals, premium for options) and the fee charged."""
    dq = qty if side == 0 else -qty
    realised = apply_position(st, position, dq, per_lot_value)
    account = st.pos_i4[position, Pos4.ACCOUNT]
    value = per_lot_value * qty
    if st.ins_i4[instrument, Ins4.KIND] == InstrumentKind.PERPETUAL:
        cash = realised
        st.acc_i8[SystemAccount.PNL_CLEARING, Account8.BALANCE] -= realised
    else:
        cash = -value if side == 0 else value
    fee = fee_for(value, fee_rate)
    st.acc_i8[account, Account8.BALANCE] += cash - fee
    st.acc_i8[SystemAccount.FEE_POOL, Account8.BALANCE] += fee
    return cash, fee


@kernel
def gas_refill(st, account, now_ns):
    """Lazy refill: ``gas_refill_per_ms`` per whole millisecond since the last refill."""
    gas_max = st.params[P_GAS_MAX]
    rate = st.params[P_GAS_REFILL_PER_MS]
    last = st.acc_i8[account, Account8.GAS_TS]
    if now_ns <= last:
        return
    budget = st.acc_i8[account, Account8.GAS]
    if budget >= gas_max:
        st.acc_i8[account, Account8.GAS_TS] = now_ns
        return
    if now_ns - last < 1_000_000:
        return  # not a whole millisecond yet: no division on the common path
    millis = (now_ns - last) // 1_000_000
    missing = gas_max - budget
    if rate == 0:
        st.acc_i8[account, Account8.GAS_TS] = last + millis * 1_000_000
        return
    if millis >= (missing + rate - 1) // rate:
        st.acc_i8[account, Account8.GAS] = gas_max
        st.acc_i8[account, Account8.GAS_TS] = now_ns
    else:
        st.acc_i8[account, Account8.GAS] = budget + millis * rate
        st.acc_i8[account, Account8.GAS_TS] = last + millis * 1_000_000
