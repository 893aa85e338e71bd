"""Account, money and instrument commands, and the bulk cancels (cancel-all, close).

Costs: O(1) except cancel-all (O(orders cancelled + account positions)) and close
(O(resting orders of the book)).
"""

from __future__ import annotations

import numpy as np

from derivex.core import consts as K
from derivex.core import layout as L
from derivex.core.config import (
    P_GAS_MAX,
    P_MAX_ACCOUNTS,
    P_MAX_BALANCE_UNITS,
    P_MAX_INSTRUMENTS,
    P_MAX_POSITION_LOTS,
    P_MAX_PRICE_TICKS,
    P_MAX_UNDERLYINGS,
)
from derivex.core.emit import emit
from derivex.core.fixed import VALUE_LIMIT
from derivex.core.jit import kernel
from derivex.core.matching import cancel_resting
from derivex.core.orders import admit_trader, check_trader, reject
from derivex.core.pools import position_release_if_idle
from derivex.core.risk import exposed_to_stale_index, margins, risk_on

MAX_FEE_PPM = 100_000


@kernel
def accept(ev, n, seq, command, account, instrument):
    return emit(ev, n, seq, K.E_ACCEPTED, command, 0, 0, 0, 0, account, instrument, 0, 0, 0, 0)


@kernel
def create_account(st, ev, n, cmds, i):
    c = cmds[i]
    stp = np.int64(c["stp"])
    if stp > 1:
        return reject(st, ev, n, cmds, i, K.R_BAD_STP_MODE, 0)
    mode = np.int64(c["margin_mode"])
    if mode > 1:
        return reject(st, ev, n, cmds, i, K.R_BAD_MARGIN_MODE, 0)
    account = st.counters[L.C_ACCOUNT_HWM]
    if account >= st.params[P_MAX_ACCOUNTS]:
        return reject(st, ev, n, cmds, i, K.R_ACCOUNT_POOL_FULL, 0)
    st.counters[L.C_ACCOUNT_HWM] = account + 1
    st.acc_i8[account, L.A_BALANCE] = 0
    st.acc_i8[account, L.A_GAS] = st.params[P_GAS_MAX]
    st.acc_i8[account, L.A_GAS_TS] = st.counters[L.C_CLOCK_NS]
    st.acc_i4[account, L.A_STATUS] = 1
    st.acc_i4[account, L.A_STP] = stp
    st.acc_i4[account, L.A_OPEN_ORDERS] = 0
    st.acc_i4[account, L.A_POSITION_HEAD] = L.NIL
    st.acc_i4[account, L.A_LAST_POSITION] = L.NIL
    st.acc_i4[account, L.A_MARGIN_MODE] = mode
    n = accept(ev, n, c["seq"], K.K_CREATE_ACCOUNT, account, 0)
    return emit(
        ev,
        n,
        c["seq"],
        K.E_ACCOUNT_CREATED,
        K.K_CREATE_ACCOUNT,
        0,
        0,
        0,
        0,
        account,
        0,
        0,
        0,
        0,
        stp,
    )


@kernel
def set_account(st, ev, n, cmds, i):
    c = cmds[i]
    account = np.int64(c["account"])
    reason = check_trader(st, account)
    if reason != K.R_OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    stp = np.int64(c["stp"])
    if stp > 1:
        return reject(st, ev, n, cmds, i, K.R_BAD_STP_MODE, 0)
    mode = np.int64(c["margin_mode"])
    if mode > 1:
        return reject(st, ev, n, cmds, i, K.R_BAD_MARGIN_MODE, 0)
    if mode != st.acc_i4[account, L.A_MARGIN_MODE] and (
        st.acc_i4[account, L.A_POSITION_HEAD] != L.NIL
    ):
        return reject(st, ev, n, cmds, i, K.R_MARGIN_MODE_OPEN, 0)
    st.acc_i4[account, L.A_STP] = stp
    st.acc_i4[account, L.A_MARGIN_MODE] = mode
    return emit(
        ev, n, c["seq"], K.E_ACCEPTED, K.K_SET_ACCOUNT, 0, 0, 0, 0, account, 0, 0, 0, 0, stp
    )


@kernel
def move_money(st, ev, n, cmds, i, deposit):
    c = cmds[i]
    account = np.int64(c["account"])
    if account >= st.counters[L.C_ACCOUNT_HWM]:
        return reject(st, ev, n, cmds, i, K.R_UNKNOWN_ACCOUNT, 0)
    if account == K.PNL_CLEARING:
        return reject(st, ev, n, cmds, i, K.R_SYSTEM_ACCOUNT, 0)
    amount = c["amount_units"]
    if amount <= 0:
        return reject(st, ev, n, cmds, i, K.R_AMOUNT_NOT_POSITIVE, 0)
    balance = st.acc_i8[account, L.A_BALANCE]
    if deposit:
        if amount > st.params[P_MAX_BALANCE_UNITS] - balance or (
            amount > VALUE_LIMIT - st.counters[L.C_TOTAL_DEPOSITS]
        ):
            return reject(st, ev, n, cmds, i, K.R_BALANCE_LIMIT, 0)
        st.counters[L.C_TOTAL_DEPOSITS] += amount
        delta = amount
        command = K.K_DEPOSIT
    else:
        if amount > balance:
            return reject(st, ev, n, cmds, i, K.R_INSUFFICIENT_FUNDS, 0)
        if st.acc_i4[account, L.A_STATE] == K.ACCOUNT_IN_LIQUIDATION:
            return reject(st, ev, n, cmds, i, K.R_ACCOUNT_IN_LIQUIDATION, 0)
        if risk_on(st) and st.acc_i4[account, L.A_POSITION_HEAD] != L.NIL:
            if exposed_to_stale_index(st, account):
                return reject(st, ev, n, cmds, i, K.R_INDEX_STALE, 0)
            equity, im, _ = margins(st, account)
            if equity - amount < im:
                return reject(st, ev, n, cmds, i, K.R_INSUFFICIENT_MARGIN, 0)
        st.counters[L.C_TOTAL_WITHDRAWALS] += amount
        delta = -amount
        command = K.K_WITHDRAW
    st.acc_i8[account, L.A_BALANCE] = balance + delta
    n = accept(ev, n, c["seq"], command, account, 0)
    n = emit(ev, n, c["seq"], K.E_BALANCE, command, 0, 0, 0, 0, account, 0, 0, 0, 0, delta)
    ev[n - 1]["b"] = balance + delta
    if deposit and st.acc_i4[account, L.A_STATE] == K.ACCOUNT_BANKRUPT:
        st.acc_i4[account, L.A_STATE] = K.ACCOUNT_NORMAL  # a fresh deposit reopens it
        n = emit(
            ev,
            n,
            c["seq"],
            K.E_ACCOUNT_STATE,
            command,
            0,
            0,
            0,
            0,
            account,
            0,
            0,
            0,
            0,
            K.ACCOUNT_NORMAL,
        )
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
    if kind == K.PERPETUAL:
        ok = option_type == 0 and strike == 0 and expiry == 0
    elif kind == K.OPTION:
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
        ok = max_price >= tick and (kind != K.OPTION or strike <= max_price)
    if not ok:
        return reject(st, ev, n, cmds, i, K.R_BAD_INSTRUMENT_PARAMS, 0)
    instrument = st.counters[L.C_INSTRUMENT_HWM]
    if instrument >= st.params[P_MAX_INSTRUMENTS]:
        return reject(st, ev, n, cmds, i, K.R_INSTRUMENT_POOL_FULL, 0)
    st.counters[L.C_INSTRUMENT_HWM] = instrument + 1
    st.ins_i8[instrument, L.I_STRIKE] = strike
    st.ins_i8[instrument, L.I_EXPIRY] = expiry
    st.ins_i8[instrument, L.I_TICK] = tick
    st.ins_i8[instrument, L.I_MIN_LOTS] = min_lots
    st.ins_i8[instrument, L.I_CONTRACT_VALUE] = contract_value
    st.ins_i8[instrument, L.I_MAKER_FEE] = maker
    st.ins_i8[instrument, L.I_TAKER_FEE] = taker
    st.ins_i8[instrument, L.I_MAX_PRICE] = max_price
    st.ins_i4[instrument, L.I_KIND] = kind
    st.ins_i4[instrument, L.I_OPTION_TYPE] = option_type
    st.ins_i4[instrument, L.I_UNDERLYING] = underlying
    st.ins_i4[instrument, L.I_STATUS] = K.ACTIVE
    st.ins_i4[instrument, L.I_RESTING] = 0
    n = accept(ev, n, c["seq"], K.K_ADD_INSTRUMENT, 0, instrument)
    return emit(
        ev,
        n,
        c["seq"],
        K.E_INSTRUMENT_STATUS,
        K.K_ADD_INSTRUMENT,
        0,
        0,
        0,
        0,
        0,
        instrument,
        0,
        0,
        0,
        K.ACTIVE,
    )


@kernel
def cancel_account_orders(st, ev, n, seq, command, account, only, reason):
    """Cancel every order of ``account`` (only on instrument ``only`` if >= 0), instrument
    ascending, each position's orders in their list order; idle positions are released.
    O(positions x instruments with orders): the account's list is unordered."""
    last = np.int64(-1)
    while True:
        chosen = L.NIL
        chosen_instrument = np.int64(0)
        position = st.acc_i4[account, L.A_POSITION_HEAD]
        while position != L.NIL:
            candidate = np.int64(st.pos_i4[position, L.S_INSTRUMENT])
            if (
                st.pos_i4[position, L.S_ORDERS] > 0
                and candidate > last
                and (only < 0 or candidate == only)
                and (chosen == L.NIL or candidate < chosen_instrument)
            ):
                chosen = position
                chosen_instrument = candidate
            position = st.pos_i4[position, L.S_NEXT]
        if chosen == L.NIL:
            return n
        slot = st.pos_i4[chosen, L.S_ORDER_HEAD]
        while slot != L.NIL:
            following = st.ord_i4[slot, L.O_POSITION_NEXT]
            n, _ = cancel_resting(
                st,
                ev,
                n,
                seq,
                command,
                slot,
                chosen_instrument,
                st.ord_i4[slot, L.O_META] & 1,
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
    if reason != K.R_OK:
        return reject(st, ev, n, cmds, i, reason, 0)
    instrument = np.int64(c["instrument"]) if by_instrument else np.int64(0)
    if by_instrument and instrument >= st.counters[L.C_INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, K.R_UNKNOWN_INSTRUMENT, 0)
    command = K.K_CANCEL_ALL_INSTRUMENT if by_instrument else K.K_CANCEL_ALL
    count = 0
    position = st.acc_i4[account, L.A_POSITION_HEAD]
    while position != L.NIL:
        if (not by_instrument) or st.pos_i4[position, L.S_INSTRUMENT] == instrument:
            count += st.pos_i4[position, L.S_ORDERS]
        position = st.pos_i4[position, L.S_NEXT]
    n = emit(
        ev, n, c["seq"], K.E_ACCEPTED, command, 0, 0, 0, 0, account, instrument, 0, 0, count, 0
    )
    return cancel_account_orders(
        st,
        ev,
        n,
        c["seq"],
        command,
        account,
        instrument if by_instrument else np.int64(-1),
        K.R_CANCEL_ALL,
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
    if instrument >= st.counters[L.C_INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, K.R_UNKNOWN_INSTRUMENT, 0)
    which = np.int64(c["flags"])
    if which == 0:
        which = K.SET_FUNDING_CAP
    cap = c["funding_cap_ppb"]
    band = c["price_band_ppm"]
    if which & ~(K.SET_FUNDING_CAP | K.SET_PRICE_BAND):
        return reject(st, ev, n, cmds, i, K.R_BAD_INSTRUMENT_PARAMS, 0)
    if (which & K.SET_FUNDING_CAP) and (
        st.ins_i4[instrument, L.I_KIND] != K.PERPETUAL or cap < 0 or cap > 100_000_000
    ):
        return reject(st, ev, n, cmds, i, K.R_BAD_INSTRUMENT_PARAMS, 0)
    if (which & K.SET_PRICE_BAND) and (band < 0 or band > 1_000_000):
        return reject(st, ev, n, cmds, i, K.R_BAD_INSTRUMENT_PARAMS, 0)
    if which & K.SET_FUNDING_CAP:
        st.ins_i8[instrument, L.I_FUNDING_CAP] = cap
    if which & K.SET_PRICE_BAND:
        st.ins_i8[instrument, L.I_PRICE_BAND] = band
    return emit(
        ev,
        n,
        c["seq"],
        K.E_ACCEPTED,
        K.K_SET_INSTRUMENT,
        0,
        0,
        0,
        0,
        0,
        instrument,
        0,
        st.ins_i8[instrument, L.I_FUNDING_CAP],
        st.ins_i8[instrument, L.I_PRICE_BAND],
        0,
    )


@kernel
def set_instrument_status(st, ev, n, cmds, i, command):
    c = cmds[i]
    instrument = np.int64(c["instrument"])
    if instrument >= st.counters[L.C_INSTRUMENT_HWM]:
        return reject(st, ev, n, cmds, i, K.R_UNKNOWN_INSTRUMENT, 0)
    status = st.ins_i4[instrument, L.I_STATUS]
    if command == K.K_HALT:
        if status != K.ACTIVE:
            return reject(st, ev, n, cmds, i, K.R_INSTRUMENT_NOT_ACTIVE, 0)
        new_status = K.HALTED
    elif command == K.K_RESUME:
        if status != K.HALTED:
            return reject(st, ev, n, cmds, i, K.R_INSTRUMENT_NOT_HALTED, 0)
        new_status = K.ACTIVE
    else:
        if status != K.ACTIVE and status != K.HALTED:
            return reject(st, ev, n, cmds, i, K.R_INSTRUMENT_NOT_ACTIVE, 0)
        new_status = K.CLOSED
    n = accept(ev, n, c["seq"], command, 0, instrument)
    if command == K.K_CLOSE:
        for side in range(2):
            row = instrument * 2 + side
            while st.ladder_len[row] > 0:
                level = st.ladder_level[row, st.ladder_len[row] - 1]
                slot = st.lvl_i4[level, L.L_HEAD]
                n, position = cancel_resting(
                    st,
                    ev,
                    n,
                    c["seq"],
                    command,
                    slot,
                    instrument,
                    side,
                    K.R_CANCEL_INSTRUMENT_CLOSED,
                    0,
                )
                position_release_if_idle(st, position)
    st.ins_i4[instrument, L.I_STATUS] = new_status
    return emit(
        ev,
        n,
        c["seq"],
        K.E_INSTRUMENT_STATUS,
        command,
        0,
        0,
        0,
        0,
        0,
        instrument,
        0,
        0,
        0,
        new_status,
    )
