"""Account, money and instrument commands, the bulk cancels (cancel-all, close) and the
kill switch (block / unblock an account).

Costs: O(1) except cancel-all and block (O(orders cancelled + account positions)) and close
(O(resting orders of the book)).
"""

from __future__ import annotations

import numpy as np

from derivex.core.config import (
    P_GAS_MAX,
    P_MAX_ACCOUNTS,
    P_MAX_BALANCE_UNITS,
    P_MAX_INSTRUMENTS,
    P_MAX_POSITION_LOTS,
    P_MAX_PRICE_TICKS,
    P_MAX_UNDERLYINGS,
)
from derivex.core.emit import (
    accepted,
    account_created,
    account_state_changed,
    balance_changed,
    instrument_status_changed,
)
from derivex.core.fixed import VALUE_LIMIT
from derivex.core.jit import kernel
from derivex.core.layout import (
    ACCOUNT_ACTIVE,
    ACCOUNT_BLOCKED,
    NIL,
    Account4,
    Account8,
    Counter,
    Ins4,
    Ins8,
    Level4,
    Order4,
    Pos4,
)
from derivex.core.matching import cancel_resting
from derivex.core.order_checks import admit_trader, check_trader, reject
from derivex.core.pools import position_release_if_idle
from derivex.core.records import (
    SYSTEM_ACCOUNTS,
    AccountState,
    CommandKind,
    InstrumentKind,
    InstrumentSetting,
    InstrumentStatus,
    Reason,
    SystemAccount,
)
from derivex.core.risk import exposed_to_stale_index, margins, risk_on
from derivex.core.stp import stp_valid

MAX_FEE_PPM = 100_000


@kernel
def accept(ev, n, seq, command, account, instrument):
    return accepted(ev, n, seq, command, account, instrument, 0, 0, 0)


@kernel
def create_account(st, ev, n, cmds, i):
    c = cmds[i]
    stp = np.int64(c["stp"])
    if not stp_valid(stp):
        return reject(st, ev, n, cmds, i, Reason.BAD_STP_MODE, 0)
    mode = np.int64(c["margin_mode"])
    if mode > 1:
        return reject(st, ev, n, cmds, i, Reason.BAD_MARGIN_MODE, 0)
    account = st.counters[Counter.ACCOUNT_HWM]
    if account >= st.params[P_MAX_ACCOUNTS]:
        return reject(st, ev, n, cmds, i, Reason.ACCOUNT_POOL_FULL, 0)
    st.counters[Counter.ACCOUNT_HWM] = account + 1
    st.acc_i8[account, Account8.BALANCE] = 0
    st.acc_i8[account, Account8.GAS] = st.params[P_GAS_MAX]
    st.acc_i8[account, Account8.GAS_TS] = st.counters[Counter.CLOCK_NS]
    st.acc_i4[account, Account4.STATUS] = ACCOUNT_ACTIVE
    st.acc_i4[account, Account4.STP] = stp
    st.acc_i4[account, Account4.OPEN_ORDERS] = 0
    st.acc_i4[account, Account4.POSITION_HEAD] = NIL
    st.acc_i4[account, Account4.LAST_POSITION] = NIL
    st.acc_i4[account, Account4.MARGIN_MODE] = mode
    n = accept(ev, n, c["seq"], CommandKind.CREATE_ACCOUNT, account, 0)
    return account_created(ev, n, c["seq"], account, stp)


@kernel
def set_account(st, ev, n, cmds, i):
    c = cmds[i]
    account = np.int64(c["account"])
    reason = check_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    stp = np.int64(c["stp"])
    if not stp_valid(stp):
        return reject(st, ev, n, cmds, i, Reason.BAD_STP_MODE, 0)
    mode = np.int64(c["margin_mode"])
    if mode > 1:
        return reject(st, ev, n, cmds, i, Reason.BAD_MARGIN_MODE, 0)
    if mode != st.acc_i4[account, Account4.MARGIN_MODE] and (
        st.acc_i4[account, Account4.POSITION_HEAD] != NIL
    ):
        return reject(st, ev, n, cmds, i, Reason.MARGIN_MODE_OPEN, 0)
    st.acc_i4[account, Account4.STP] = stp
    st.acc_i4[account, Account4.MARGIN_MODE] = mode
    return accepted(ev, n, c["seq"], CommandKind.SET_ACCOUNT, account, 0, 0, 0, stp)


@kernel
def move_money(st, ev, n, cmds, i, deposit):
    c = cmds[i]
    account = np.int64(c["account"])
    if account >= st.counters[Counter.ACCOUNT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_ACCOUNT, 0)
    if account == SystemAccount.PNL_CLEARING:
        return reject(st, ev, n, cmds, i, Reason.SYSTEM_ACCOUNT, 0)
    amount = c["amount_units"]
    if amount <= 0:
        return reject(st, ev, n, cmds, i, Reason.AMOUNT_NOT_POSITIVE, 0)
    balance = st.acc_i8[account, Account8.BALANCE]
    if deposit:
        if amount > st.params[P_MAX_BALANCE_UNITS] - balance or (
            amount > VALUE_LIMIT - st.counters[Counter.TOTAL_DEPOSITS]
        ):
            return reject(st, ev, n, cmds, i, Reason.BALANCE_LIMIT, 0)
        st.counters[Counter.TOTAL_DEPOSITS] += amount
        delta = amount
        command = CommandKind.DEPOSIT
    else:
        if amount > balance:
            return reject(st, ev, n, cmds, i, Reason.INSUFFICIENT_FUNDS, 0)
        if st.acc_i4[account, Account4.STATE] == AccountState.IN_LIQUIDATION:
            return reject(st, ev, n, cmds, i, Reason.ACCOUNT_IN_LIQUIDATION, 0)
        if risk_on(st) and st.acc_i4[account, Account4.POSITION_HEAD] != NIL:
            if exposed_to_stale_index(st, account):
                return reject(st, ev, n, cmds, i, Reason.INDEX_STALE, 0)
            equity, im, _ = margins(st, account)
            if equity - amount < im:
                return reject(st, ev, n, cmds, i, Reason.INSUFFICIENT_MARGIN, 0)
        st.counters[Counter.TOTAL_WITHDRAWALS] += amount
        delta = -amount
        command = CommandKind.WITHDRAW
    st.acc_i8[account, Account8.BALANCE] = balance + delta
    n = accept(ev, n, c["seq"], command, account, 0)
    n = balance_changed(ev, n, c["seq"], command, account, delta, balance + delta)
    if deposit and st.acc_i4[account, Account4.STATE] == AccountState.BANKRUPT:
        st.acc_i4[account, Account4.STATE] = AccountState.NORMAL  # a fresh deposit reopens it
        n = account_state_changed(ev, n, c["seq"], command, account, AccountState.NORMAL)
    return n


@kernel
def add_instrument(st, ev, n, cmds, i):
    c = cmds[i]
    kind = np.int64(c["instrument_kind"])
    option_type = np.int64(c["option_type"])
    strike = c["strike_ticks"]
    expiry = c["expiry_ts_ns"]
    tick = np.int64(c["tick_size_ticks"])
    min_lots = np.int64(c["min_trade_lots"])
    contract_value = np.int64(c["contract_value_units"])
    maker = np.int64(c["maker_fee_ppm"])
    taker = np.int64(c["taker_fee_ppm"])
    underlying = np.int64(c["underlying"])
    ok = True
    if kind == InstrumentKind.PERPETUAL:
        ok = option_type == 0 and strike == 0 and expiry == 0
    elif kind == InstrumentKind.OPTION:
        ok = (option_type == 1 or option_type == 2) and strike > 0 and expiry > 0
    else:
        ok = False
    ok = ok and tick >= 1 and min_lots >= 1 and contract_value >= 1
    ok = ok and -MAX_FEE_PPM <= maker <= MAX_FEE_PPM and -MAX_FEE_PPM <= taker <= MAX_FEE_PPM
    ok = ok and 1 <= underlying < st.params[P_MAX_UNDERLYINGS]
    max_price = st.params[P_MAX_PRICE_TICKS]
    if ok:
        bound = VALUE_LIMIT // (st.params[P_MAX_POSITION_LOTS] * contract_value)
        if bound < max_price:
            max_price = bound
        ok = max_price >= tick and (kind != InstrumentKind.OPTION or strike <= max_price)
    if not ok:
        return reject(st, ev, n, cmds, i, Reason.BAD_INSTRUMENT_PARAMS, 0)
    instrument = st.counters[Counter.INSTRUMENT_HWM]
    if instrument >= st.params[P_MAX_INSTRUMENTS]:
        return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_POOL_FULL, 0)
    st.counters[Counter.INSTRUMENT_HWM] = instrument + 1
    st.ins_i8[instrument, Ins8.STRIKE] = strike
    st.ins_i8[instrument, Ins8.EXPIRY] = expiry
    st.ins_i8[instrument, Ins8.TICK] = tick
    st.ins_i8[instrument, Ins8.MIN_LOTS] = min_lots
    st.ins_i8[instrument, Ins8.CONTRACT_VALUE] = contract_value
    st.ins_i8[instrument, Ins8.MAKER_FEE] = maker
    st.ins_i8[instrument, Ins8.TAKER_FEE] = taker
    st.ins_i8[instrument, Ins8.MAX_PRICE] = max_price
    st.ins_i4[instrument, Ins4.KIND] = kind
    st.ins_i4[instrument, Ins4.OPTION_TYPE] = option_type
    st.ins_i4[instrument, Ins4.UNDERLYING] = underlying
    st.ins_i4[instrument, Ins4.STATUS] = InstrumentStatus.ACTIVE
    st.ins_i4[instrument, Ins4.RESTING] = 0
    n = accept(ev, n, c["seq"], CommandKind.ADD_INSTRUMENT, 0, instrument)
    return instrument_status_changed(
        ev, n, c["seq"], CommandKind.ADD_INSTRUMENT, instrument, 0, InstrumentStatus.ACTIVE
    )


@kernel
def cancel_account_orders(st, ev, n, seq, command, account, only, reason):
    """Cancel every order of ``account`` (only on instrument ``only`` if >= 0), instrument
    ascending, each position's orders in their list order; idle positions are released.
    O(positions x instruments with orders): the account's list is unordered."""
    last = np.int64(-1)
    while True:
        chosen = NIL
        chosen_instrument = np.int64(0)
        position = st.acc_i4[account, Account4.POSITION_HEAD]
        while position != NIL:
            candidate = np.int64(st.pos_i4[position, Pos4.INSTRUMENT])
            if (
                st.pos_i4[position, Pos4.ORDERS] > 0
                and candidate > last
                and (only < 0 or candidate == only)
                and (chosen == NIL or candidate < chosen_instrument)
            ):
                chosen = position
                chosen_instrument = candidate
            position = st.pos_i4[position, Pos4.NEXT]
        if chosen == NIL:
            return n
        slot = st.pos_i4[chosen, Pos4.ORDER_HEAD]
        while slot != NIL:
            following = st.ord_i4[slot, Order4.POSITION_NEXT]
            n, _ = cancel_resting(
                st,
                ev,
                n,
                seq,
                command,
                slot,
                chosen_instrument,
                st.ord_i4[slot, Order4.META] & 1,
                reason,
                0,
            )
            slot = following
        position_release_if_idle(st, chosen)
        last = chosen_instrument


@kernel
def cancel_all(st, ev, n, cmds, i, by_instrument):
    c = cmds[i]
    account = np.int64(c["account"])
    reason = admit_trader(st, account)
    if reason != Reason.OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    instrument = np.int64(c["instrument"]) if by_instrument else np.int64(0)
    if by_instrument and instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_INSTRUMENT, 0)
    command = CommandKind.CANCEL_ALL_INSTRUMENT if by_instrument else CommandKind.CANCEL_ALL
    count = 0
    position = st.acc_i4[account, Account4.POSITION_HEAD]
    while position != NIL:
        if (not by_instrument) or st.pos_i4[position, Pos4.INSTRUMENT] == instrument:
            count += st.pos_i4[position, Pos4.ORDERS]
        position = st.pos_i4[position, Pos4.NEXT]
    n = accepted(ev, n, c["seq"], command, account, instrument, 0, count, 0)
    return cancel_account_orders(
        st,
        ev,
        n,
        c["seq"],
        command,
        account,
        instrument if by_instrument else np.int64(-1),
        Reason.CANCEL_ALL,
    )


@kernel
def block_account(st, ev, n, cmds, i, block):
    """BLOCK_ACCOUNT (``block``) / UNBLOCK_ACCOUNT: the operator's kill switch. Blocking
    cancels every resting order of the account at once (CANCEL_ACCOUNT_BLOCKED, in
    cancel-all's order; the ACCEPTED event's qty_lots is their number) and makes every
    trading command of the account REJECTED with ACCOUNT_BLOCKED until it is unblocked.
    Money movements, funding, settlement and liquidation go on as for any account. No gas is
    charged (an admin command). Rejects: UNKNOWN_ACCOUNT, SYSTEM_ACCOUNT, ACCOUNT_BLOCKED
    (already blocked), ACCOUNT_NOT_BLOCKED (unblocking an account that is not blocked).
    Cost: O(orders cancelled + account positions)."""
    c = cmds[i]
    account = np.int64(c["account"])
    if account >= st.counters[Counter.ACCOUNT_HWM] or st.acc_i4[account, Account4.STATUS] == 0:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_ACCOUNT, 0)
    if account < SYSTEM_ACCOUNTS:
        return reject(st, ev, n, cmds, i, Reason.SYSTEM_ACCOUNT, 0)
    blocked = st.acc_i4[account, Account4.STATUS] == ACCOUNT_BLOCKED
    if block and blocked:
        return reject(st, ev, n, cmds, i, Reason.ACCOUNT_BLOCKED, 0)
    if not block and not blocked:
        return reject(st, ev, n, cmds, i, Reason.ACCOUNT_NOT_BLOCKED, 0)
    if not block:
        st.acc_i4[account, Account4.STATUS] = ACCOUNT_ACTIVE
        return accepted(ev, n, c["seq"], CommandKind.UNBLOCK_ACCOUNT, account, 0, 0, 0, 0)
    st.acc_i4[account, Account4.STATUS] = ACCOUNT_BLOCKED
    n = accepted(
        ev,
        n,
        c["seq"],
        CommandKind.BLOCK_ACCOUNT,
        account,
        0,
        0,
        st.acc_i4[account, Account4.OPEN_ORDERS],
        0,
    )
    return cancel_account_orders(
        st,
        ev,
        n,
        c["seq"],
        CommandKind.BLOCK_ACCOUNT,
        account,
        np.int64(-1),
        Reason.CANCEL_ACCOUNT_BLOCKED,
    )


@kernel
def set_instrument(st, ev, n, cmds, i):
    """SET_INSTRUMENT: the settings named by ``flags`` (InstrumentSetting bits; 0 = the
    funding cap, as before the bits existed): a perpetual's funding cap (0 restores the
    configured cap) and the price band in ppm (0 restores ``market_band_ppm``). Either all
    named settings are valid and set, or BAD_INSTRUMENT_PARAMS changes nothing. The ACCEPTED
    event carries the funding cap in price_ticks and the band in qty_lots, as now set."""
    c = cmds[i]
    instrument = np.int64(c["instrument"])
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_INSTRUMENT, 0)
    which = np.int64(c["flags"])
    if which == 0:
        which = InstrumentSetting.FUNDING_CAP
    cap = c["funding_cap_ppb"]
    band = c["price_band_ppm"]
    if which & ~(InstrumentSetting.FUNDING_CAP | InstrumentSetting.PRICE_BAND):
        return reject(st, ev, n, cmds, i, Reason.BAD_INSTRUMENT_PARAMS, 0)
    if (which & InstrumentSetting.FUNDING_CAP) and (
        st.ins_i4[instrument, Ins4.KIND] != InstrumentKind.PERPETUAL or cap < 0 or cap > 100_000_000
    ):
        return reject(st, ev, n, cmds, i, Reason.BAD_INSTRUMENT_PARAMS, 0)
    if (which & InstrumentSetting.PRICE_BAND) and (band < 0 or band > 1_000_000):
        return reject(st, ev, n, cmds, i, Reason.BAD_INSTRUMENT_PARAMS, 0)
    if which & InstrumentSetting.FUNDING_CAP:
        st.ins_i8[instrument, Ins8.FUNDING_CAP] = cap
    if which & InstrumentSetting.PRICE_BAND:
        st.ins_i8[instrument, Ins8.PRICE_BAND] = band
    return accepted(
        ev,
        n,
        c["seq"],
        CommandKind.SET_INSTRUMENT,
        0,
        instrument,
        st.ins_i8[instrument, Ins8.FUNDING_CAP],
        st.ins_i8[instrument, Ins8.PRICE_BAND],
        0,
    )


@kernel
def set_instrument_status(st, ev, n, cmds, i, command):
    c = cmds[i]
    instrument = np.int64(c["instrument"])
    if instrument >= st.counters[Counter.INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, Reason.UNKNOWN_INSTRUMENT, 0)
    status = st.ins_i4[instrument, Ins4.STATUS]
    if command == CommandKind.HALT_INSTRUMENT:
        if status != InstrumentStatus.ACTIVE:
            return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_NOT_ACTIVE, 0)
        new_status = InstrumentStatus.HALTED
    elif command == CommandKind.RESUME_INSTRUMENT:
        if status != InstrumentStatus.HALTED:
            return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_NOT_HALTED, 0)
        new_status = InstrumentStatus.ACTIVE
    else:
        if status != InstrumentStatus.ACTIVE and status != InstrumentStatus.HALTED:
            return reject(st, ev, n, cmds, i, Reason.INSTRUMENT_NOT_ACTIVE, 0)
        new_status = InstrumentStatus.CLOSED
    n = accept(ev, n, c["seq"], command, 0, instrument)
    if command == CommandKind.CLOSE_INSTRUMENT:
        for side in range(2):
            row = instrument * 2 + side
            while st.ladder_len[row] > 0:
                level = st.ladder_level[row, st.ladder_len[row] - 1]
                slot = st.lvl_i4[level, Level4.HEAD]
                n, position = cancel_resting(
                    st,
                    ev,
                    n,
                    c["seq"],
                    command,
                    slot,
                    instrument,
                    side,
                    Reason.CANCEL_INSTRUMENT_CLOSED,
                    0,
                )
                position_release_if_idle(st, position)
    st.ins_i4[instrument, Ins4.STATUS] = new_status
    return instrument_status_changed(ev, n, c["seq"], command, instrument, 0, new_status)
