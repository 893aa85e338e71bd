"""Moving money and positions between accounts, for the TIME driver's phases (expiry,
funding, liquidation): balance moves, position transfers at a price, and the lookups they
share. O(1) each, except ``holders`` (O(positions)).
"""

from __future__ import annotations

from derivex.core.accounting import settle_fill_side
from derivex.core.emit import account_state_changed
from derivex.core.jit import kernel
from derivex.core.layout import Account4, Account8, Counter, Ins8, Pos4, Pos8
from derivex.core.pools import hash_find, position_get_or_create, position_release_if_idle
from derivex.core.records import CommandKind, Side, SystemAccount
from derivex.core.risk import risk_in, risk_out

PPM = 1_000_000
FUND = SystemAccount.INSURANCE_FUND  # the member itself (not a copy of its value)
PPB = 1_000_000_000
NS_PER_MS = 1_000_000


@kernel
def set_account_state(st, ev, n, seq, account, state):
    st.acc_i4[account, Account4.STATE] = state
    return account_state_changed(ev, n, seq, CommandKind.ADVANCE_TIME, account, state)


@kernel
def position_of(st, account, instrument):
    return hash_find(st.hash_key, st.hash_val, account, instrument)


@kernel
def holders(st, instrument):
    """Number of accounts with a non-zero position in ``instrument``."""
    count = 0
    for position in range(st.counters[Counter.POSITION_HWM]):
        if (
            st.pos_i4[position, Pos4.LIVE] == 1
            and st.pos_i4[position, Pos4.INSTRUMENT] == instrument
            and st.pos_i8[position, Pos8.QTY] != 0
        ):
            count += 1
    return count


@kernel
def move_balance(st, account, amount):
    st.acc_i8[account, Account8.BALANCE] += amount


@kernel
def transfer(st, instrument, seller_position, buyer_account, qty, price):
    """Move ``qty`` lots of ``instrument`` from the seller's position to ``buyer_account`` at
    ``price`` with no fee (a takeover or a deleveraging). Returns the buyer's position."""
    buyer = position_get_or_create(st, buyer_account, instrument)
    value = price * st.ins_i8[instrument, Ins8.CONTRACT_VALUE]
    risk_out(st, seller_position)
    settle_fill_side(st, instrument, seller_position, Side.SELL, qty, value, 0)
    risk_in(st, seller_position, -qty, 0, 0)
    risk_out(st, buyer)
    settle_fill_side(st, instrument, buyer, Side.BUY, qty, value, 0)
    risk_in(st, buyer, qty, 0, 0)
    return buyer


@kernel
def transfer_signed(st, instrument, from_position, to_account, qty, price):
    """Move a signed ``qty`` (the sign of the position it comes from) to ``to_account``
    (takeover, deleveraging). Either side left flat with no resting orders is released
    here, whichever account it belongs to: the receiver (the insurance fund included) can
    net to zero as well as the giver. Callers must re-find positions afterwards."""
    if qty > 0:
        to = transfer(st, instrument, from_position, to_account, qty, price)
    else:
        to = position_get_or_create(st, to_account, instrument)
        transfer(st, instrument, to, st.pos_i4[from_position, Pos4.ACCOUNT], -qty, price)
    position_release_if_idle(st, to)
    position_release_if_idle(st, from_position)


@kernel
def clamp(value, limit):
    if value > limit:
        return limit
    if value < -limit:
        return -limit
    return value
