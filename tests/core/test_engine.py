"""Worked examples through ``Exchange`` (compiled kernel; also run with the JIT disabled).

Every number below was computed by hand in the comment next to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from derivex.core.records import EventKind, Reason

pytestmark = pytest.mark.nojit


def kinds(result):
    return [EventKind(int(k)).name for k in result.events["kind"]]


def test_price_time_priority_and_resting_price(venue):
    ex, perp, _, (a, b, c) = venue
    first = ex.place(a, perp, "sell", 5, 10_000_000)
    second = ex.place(b, perp, "sell", 5, 10_000_000)
    better = ex.place(b, perp, "sell", 2, 9_999_950)
    taker = ex.place(c, perp, "buy", 8, 10_000_050)
    # best price first (9_999_950 x 2), then FIFO at 10_000_000: first order 5, second 1
    assert [(f.price_ticks, f.qty_lots) for f in taker.fills] == [
        (9_999_950, 2),
        (10_000_000, 5),
        (10_000_000, 1),
    ]
    assert taker.status == "filled"
    assert ex.order(first.order_id) is None
    assert ex.order(second.order_id).remaining_lots == 4
    assert ex.order(better.order_id) is None
    assert ex.depth(perp).asks == [(10_000_000, 4, 1)]
    ex.check_invariants()


def test_fees_rebate_and_rounding(venue):
    ex, perp, _, (a, b, _) = venue
    ex.place(a, perp, "sell", 3, 10_000_050)
    taker = ex.place(b, perp, "buy", 3, 10_000_050)
    # value = 10_000_050 * 3 = 30_000_150 units; taker 500 ppm = 15_000.075 -> charged 15_001
    # (rounded up); maker -100 ppm = -3_000.015 -> rebate 3_000 (rounded toward zero)
    assert taker.fills[0].fee_units == 15_001
    maker_fill = taker.events[
        (taker.events["kind"] == EventKind.FILLED) & (taker.events["account"] == a)
    ]
    assert int(maker_fill["fee_units"][0]) == -3_000
    assert ex.balance(0) == 15_001 - 3_000  # fee pool
    assert ex.balance(a) == 10**12 + 3_000
    assert ex.balance(b) == 10**12 - 15_001
    ex.check_invariants()


def test_perpetual_pnl_partial_close_rounds_against_user(venue):
    ex, perp, _, (a, b, c) = venue
    # b buys 3 at 100 (price 10_000_000 ticks); entry value 30_000_000
    ex.place(a, perp, "sell", 3, 10_000_000)
    ex.place(b, perp, "buy", 3, 10_000_000)
    # b's basis 30_000_000 over 3 lots; closing 1 at 10_000_050:
    # entry = ceil(30_000_000 * 1 / 3) = 10_000_000 exactly, realised = 10_000_050 - 10_000_000
    ex.place(c, perp, "buy", 1, 10_000_050)
    result = ex.place(b, perp, "sell", 1, 10_000_050)
    position_event = result.events[
        (result.events["kind"] == EventKind.POSITION) & (result.events["account"] == b)
    ][0]
    assert int(position_event["cash_units"]) == 50
    assert int(position_event["position_lots"]) == 2
    assert int(position_event["basis_units"]) == 20_000_000
    ex.check_invariants()


def test_perpetual_pnl_inexact_split(venue):
    ex, perp, _, (a, b, c) = venue
    # b long 3 entered at 10_000_000 and 10_000_050 x 2: basis 30_000_100
    ex.place(a, perp, "sell", 1, 10_000_000)
    ex.place(b, perp, "buy", 1, 10_000_000)
    ex.place(a, perp, "sell", 2, 10_000_050)
    ex.place(b, perp, "buy", 2, 10_000_050)
    # close 1 at 10_000_100: entry = ceil(30_000_100 / 3) = 10_000_034 (exact 10_000_033.33)
    ex.place(c, perp, "buy", 1, 10_000_100)
    result = ex.place(b, perp, "sell", 1, 10_000_100)
    event = result.events[
        (result.events["kind"] == EventKind.POSITION) & (result.events["account"] == b)
    ][0]
    assert int(event["cash_units"]) == 10_000_100 - 10_000_034  # 66, not 66.67: user rounded down
    assert int(event["basis_units"]) == 30_000_100 - 10_000_034  # remainder stays in the basis
    # closing the remaining 2 at 10_000_100 realises exactly: 20_000_200 - 20_000_066 = 134
    ex.place(c, perp, "buy", 2, 10_000_100)
    result = ex.place(b, perp, "sell", 2, 10_000_100)
    event = result.events[
        (result.events["kind"] == EventKind.POSITION) & (result.events["account"] == b)
    ][0]
    assert int(event["cash_units"]) == 134
    # over the position's life: 66 + 134 = 200 = 3 x 10_000_100 - 30_000_100 exactly
    assert int(event["position_lots"]) == 0 and int(event["basis_units"]) == 0
    ex.check_invariants()


def test_short_flip_and_clearing_account(venue):
    ex, perp, _, (a, b, c) = venue
    ex.place(a, perp, "buy", 2, 10_000_000)
    ex.place(b, perp, "sell", 2, 10_000_000)  # b short 2, basis -20_000_000
    ex.place(c, perp, "sell", 5, 9_999_000)
    result = ex.place(b, perp, "buy", 5, 9_999_000)  # close 2 (+2_000 profit), open long 3
    event = result.events[
        (result.events["kind"] == EventKind.POSITION) & (result.events["account"] == b)
    ][0]
    assert int(event["cash_units"]) == 2 * (10_000_000 - 9_999_000)
    assert int(event["position_lots"]) == 3
    assert int(event["basis_units"]) == 3 * 9_999_000
    assert ex.balance(2) == -2_000  # clearing account holds the counterpart
    ex.check_invariants()


def test_option_premium_moves_buyer_to_seller(venue):
    ex, _, call, (a, b, _) = venue
    ex.place(a, call, "sell", 20, 450_000)
    result = ex.place(b, call, "buy", 20, 450_000)
    value = 20 * 450_000
    buyer_fee = -(-value * 300 // 1_000_000)  # ceil(2_700) = 2_700
    seller_fee = -(-value * 200 // 1_000_000)  # 1_800
    assert result.fills[0].fee_units == buyer_fee
    assert ex.balance(b) == 10**12 - value - buyer_fee
    assert ex.balance(a) == 10**12 + value - seller_fee
    assert ex.balance(2) == 0  # options realise nothing through clearing
    ex.check_invariants()


def test_post_only_reprices_or_rejects(venue):
    ex, perp, _, (a, b, _) = venue
    ex.place(a, perp, "sell", 1, 10_000_000)
    repriced = ex.place(b, perp, "buy", 1, 10_000_100, post_only=True)
    assert repriced.status == "resting" and repriced.price_ticks == 10_000_000 - 50
    rejected = ex.place(b, perp, "buy", 1, 10_000_100, post_only=True, reject_post_only=True)
    assert not rejected.accepted and rejected.reason == Reason.POST_ONLY_WOULD_TAKE
    ex.check_invariants()


def test_reduce_only(venue):
    ex, perp, _, (a, b, _) = venue
    assert (
        ex.place(b, perp, "sell", 1, 10_000_000, reduce_only=True).reason
        == Reason.REDUCE_ONLY_WOULD_INCREASE
    )
    ex.place(a, perp, "sell", 3, 10_000_000)
    ex.place(b, perp, "buy", 3, 10_000_000)
    clamped = ex.place(b, perp, "sell", 10, 10_000_050, reduce_only=True)
    assert clamped.accepted and clamped.remaining_lots == 3  # clamped to the long 3
    ex.check_invariants()


def test_resting_reduce_only_is_clamped_at_fill(venue):
    ex, perp, _, (a, b, c) = venue
    ex.place(a, perp, "sell", 3, 10_000_000)
    ex.place(b, perp, "buy", 3, 10_000_000)  # b long 3
    ro = ex.place(b, perp, "sell", 3, 10_000_100, reduce_only=True)
    ex.place(b, perp, "sell", 2, 10_000_050)  # ordinary sell, ahead in price
    result = ex.place(c, perp, "buy", 5, 10_000_100)
    # c takes 2 from the ordinary order (b long 1 left), then 1 of the reduce-only order,
    # whose remaining 2 are cancelled; c's last 2 rest.
    assert [(f.price_ticks, f.qty_lots) for f in result.fills] == [(10_000_050, 2), (10_000_100, 1)]
    cancelled = result.events[result.events["kind"] == EventKind.CANCELLED]
    assert int(cancelled["order_id"][0]) == ro.order_id
    assert int(cancelled["reason"][0]) == Reason.CANCEL_REDUCE_ONLY
    assert [p.qty_lots for p in ex.positions(b)] == []  # flat
    ex.check_invariants()


def test_fok_and_ioc(venue):
    ex, perp, _, (a, b, _) = venue
    ex.place(a, perp, "sell", 2, 10_000_000)
    fok = ex.place(b, perp, "buy", 3, 10_000_000, time_in_force="fok")
    assert not fok.accepted and fok.reason == Reason.FOK_NOT_FILLED
    assert ex.depth(perp).asks == [(10_000_000, 2, 1)]
    ioc = ex.place(b, perp, "buy", 3, 10_000_000, time_in_force="ioc")
    assert ioc.status == "expired" and ioc.filled_lots == 2
    expired = ioc.events[ioc.events["kind"] == EventKind.EXPIRED][0]
    assert int(expired["qty_lots"]) == 1 and int(expired["reason"]) == Reason.CANCEL_IOC_REMAINDER
    market = ex.place(b, perp, "buy", 1, order_type="market")
    assert int(market.events["reason"][-1]) == Reason.NO_LIQUIDITY
    ex.check_invariants()


def test_self_trade_prevention_modes(venue):
    ex, perp, _, (a, b, _) = venue
    own = ex.place(a, perp, "sell", 2, 10_000_000)
    ex.place(b, perp, "sell", 2, 10_000_000)
    result = ex.place(a, perp, "buy", 3, 10_000_000)  # cancel resting (default)
    cancelled = result.events[result.events["kind"] == EventKind.CANCELLED]
    assert int(cancelled["order_id"][0]) == own.order_id
    assert int(cancelled["reason"][0]) == Reason.CANCEL_SELF_TRADE
    assert result.filled_lots == 2  # then trades with b
    ex.set_self_trade_prevention(b, "reject_incoming")
    ex.place(b, perp, "sell", 1, 10_000_050)
    rejected = ex.place(b, perp, "buy", 2, 10_000_050)
    assert rejected.reason == Reason.SELF_TRADE_REJECTED
    ex.check_invariants()


def test_amend_priority(venue):
    ex, perp, _, (a, b, c) = venue
    first = ex.place(a, perp, "sell", 5, 10_000_000)
    ex.place(b, perp, "sell", 5, 10_000_000)
    kept = ex.amend(a, first.order_id, 10_000_000, 3)  # qty down: keeps priority
    assert int(kept.events["a"][1]) == 1
    taker = ex.place(c, perp, "buy", 1, 10_000_000)
    assert taker.events["account"][taker.events["kind"] == EventKind.FILLED][0] == a
    ex.amend(a, first.order_id, 10_000_000, 4)  # qty up: loses priority
    taker = ex.place(c, perp, "buy", 1, 10_000_000)
    assert taker.events["account"][taker.events["kind"] == EventKind.FILLED][0] == b
    assert ex.amend(b, first.order_id, 10_000_000, 1).reason == Reason.NOT_ORDER_OWNER
    assert ex.amend(a, 12345, 10_000_000, 1).reason == Reason.UNKNOWN_ORDER
    ex.check_invariants()


def test_cancel_all_order_and_counts(venue):
    ex, perp, call, (a, _, _) = venue
    ids = [
        ex.place(a, call, "buy", 10, 1000).order_id,
        ex.place(a, perp, "buy", 1, 1000).order_id,
        ex.place(a, perp, "sell", 1, 20_000_000).order_id,
    ]
    result = ex.cancel_all(a)
    cancelled = result.events[result.events["kind"] == EventKind.CANCELLED]
    # instrument ascending (perp is 0, call is 1), placement order within an instrument
    assert list(cancelled["order_id"]) == [ids[1], ids[2], ids[0]]
    assert int(result.events["qty_lots"][0]) == 3
    assert ex.open_orders(a) == []
    ex.check_invariants()


def test_mass_quote_replaces_and_rejects_crossing_side(venue):
    from derivex.exchange import Quote

    ex, perp, call, (a, b, _) = venue
    first = ex.mass_quote(
        a, [Quote(perp, 9_999_000, 5, 10_001_000, 5), Quote(call, 400_000, 10, 420_000, 10)]
    )
    assert first.accepted and len(ex.open_orders(a)) == 4
    ex.place(b, perp, "sell", 1, 10_000_000)
    second = ex.mass_quote(a, [Quote(perp, 10_000_000, 5, 10_002_000, 5)])
    kinds_ = [EventKind(int(k)) for k in second.events["kind"]]
    assert kinds_.count(EventKind.CANCELLED) == 2  # both old perp quotes replaced
    rejected = second.events[second.events["kind"] == EventKind.REJECTED]
    assert int(rejected["reason"][0]) == Reason.POST_ONLY_WOULD_TAKE  # bid at b's ask
    assert len(ex.open_orders(a)) == 3  # call quotes untouched + new perp ask
    bad = ex.mass_quote(a, [Quote(perp, 10_002_000, 5, 10_001_000, 5)])
    assert bad.reason == Reason.CROSSED_QUOTE
    ex.check_invariants()


def test_gas_budget_and_refill():
    from derivex.core.config import EngineConfig
    from derivex.exchange import Exchange
    from tests.conftest import ManualClock

    clock = ManualClock()
    ex = Exchange(
        EngineConfig(risk_checks=False, gas_max=30, gas_base=10, gas_refill_per_ms=5), clock=clock
    )
    perp = ex.add_perpetual("BTC")
    a, b = ex.create_account(), ex.create_account()
    for _ in range(3):
        assert ex.place(a, perp, "buy", 1, 100).accepted
    assert ex.place(a, perp, "buy", 1, 100).reason == Reason.GAS_EXHAUSTED
    assert ex.place(b, perp, "buy", 1, 100).accepted  # other accounts unaffected
    clock.advance(2)  # 2 ms x 5 = 10 gas
    assert ex.place(a, perp, "buy", 1, 100).accepted
    assert ex.place(a, perp, "buy", 1, 100).reason == Reason.GAS_EXHAUSTED


def test_capacity_limits_reject_cleanly():
    from derivex.core.config import EngineConfig
    from derivex.exchange import Exchange

    ex = Exchange(
        EngineConfig(
            risk_checks=False,
            max_open_orders_per_account=2,
            max_orders_per_book=3,
            max_orders=4,
            initial_orders=1,
        ),
        clock=lambda: 1,
    )
    perp = ex.add_perpetual("BTC")
    a, b, c = (ex.create_account() for _ in range(3))
    assert ex.place(a, perp, "buy", 1, 100).accepted
    assert ex.place(a, perp, "buy", 1, 101).accepted
    assert ex.place(a, perp, "buy", 1, 102).reason == Reason.ACCOUNT_ORDER_LIMIT
    assert ex.place(b, perp, "buy", 1, 102).accepted
    assert ex.place(c, perp, "buy", 1, 103).reason == Reason.BOOK_ORDER_LIMIT
    ex.check_invariants()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"qty_lots": 0}, Reason.QTY_NOT_POSITIVE),
        ({"qty_lots": -5}, Reason.QTY_NOT_POSITIVE),
        ({"qty_lots": 2**62}, Reason.QTY_TOO_LARGE),
        ({"price_ticks": 10_000_001}, Reason.PRICE_OFF_TICK),
        ({"price_ticks": 0}, Reason.PRICE_NOT_POSITIVE),
        ({"price_ticks": 2**62}, Reason.PRICE_TOO_LARGE),
        ({"instrument": 99}, Reason.UNKNOWN_INSTRUMENT),
        ({"account": 99}, Reason.UNKNOWN_ACCOUNT),
        ({"account": 0}, Reason.SYSTEM_ACCOUNT),
        ({"side": 7}, Reason.BAD_SIDE),
        ({"tif": 9}, Reason.BAD_TIME_IN_FORCE),
        ({"flags": 8}, Reason.BAD_FLAGS),
    ],
)
def test_bad_input_rejected_without_change(venue, fields, reason):
    from derivex.core.records import CommandKind, command_array

    ex, perp, _, (a, _, _) = venue
    ex.place(a, perp, "sell", 1, 10_000_000)
    before = ex.engine.canonical()
    record = command_array(1)
    record["kind"] = CommandKind.PLACE_ORDER
    record["account"] = a
    record["instrument"] = perp
    record["price_ticks"] = 10_000_000
    record["qty_lots"] = 1
    for name, value in fields.items():
        record[name] = value
    events = ex.submit(record)
    assert [EventKind(int(k)) for k in events["kind"]] == [EventKind.REJECTED]
    assert int(events["reason"][0]) == reason
    after = ex.engine.canonical()
    gas_charged = reason not in (Reason.UNKNOWN_ACCOUNT, Reason.SYSTEM_ACCOUNT)
    # only the base gas charge of the rejecting account may differ
    gas_before = before["accounts"][a][4]
    gas_after = after["accounts"][a][4]
    before_accounts = [row[:4] for row in before.pop("accounts")]
    after_accounts = [row[:4] for row in after.pop("accounts")]
    assert before_accounts == after_accounts
    before.pop("clock_ns"), after.pop("clock_ns")
    assert before == after
    assert gas_charged == (gas_after == gas_before - ex.engine.config.gas_base)


def test_halted_and_closed_instrument(venue):
    ex, perp, _, (a, _, _) = venue
    resting = ex.place(a, perp, "buy", 1, 1000)
    ex.halt(perp)
    assert ex.place(a, perp, "buy", 1, 1000).reason == Reason.INSTRUMENT_HALTED
    assert ex.cancel(a, resting.order_id).accepted  # cancels allowed while halted
    ex.resume(perp)
    ex.place(a, perp, "buy", 1, 1000)
    closing = ex.close(perp)
    assert [EventKind(int(k)) for k in closing.events["kind"]] == [
        EventKind.ACCEPTED,
        EventKind.CANCELLED,
        EventKind.INSTRUMENT_STATUS,
    ]
    assert ex.place(a, perp, "buy", 1, 1000).reason == Reason.INSTRUMENT_CLOSED
    ex.check_invariants()


def test_withdraw_and_deposit_rules(venue):
    ex, _, _, (a, _, _) = venue
    assert ex.withdraw(a, 10**12 + 1).reason == Reason.INSUFFICIENT_FUNDS
    assert ex.withdraw(a, 10**12).accepted
    assert ex.deposit(a, 0).reason == Reason.AMOUNT_NOT_POSITIVE
    assert ex.deposit(a, 2**61).reason == Reason.BALANCE_LIMIT
    assert ex.deposit(2, 5).reason == Reason.SYSTEM_ACCOUNT  # the clearing account
    assert ex.deposit(1, 5).accepted  # the insurance fund is funded by deposit
    ex.check_invariants()


def test_every_command_starts_with_one_result_event(venue):
    ex, perp, _, (a, b, _) = venue
    ex.place(a, perp, "sell", 4, 10_000_000)
    result = ex.place(b, perp, "buy", 2, 10_000_000)
    assert kinds(result) == ["ACCEPTED", "FILLED", "FILLED", "POSITION_CHANGED", "POSITION_CHANGED"]
    assert np.all(result.events["seq"] == result.events["seq"][0])
