"""Hand-checked worked examples for the pure-Python reference model (tests/reference).

Every number asserted here was computed by hand from docs/core-semantics.md; the comment
next to each assertion shows the arithmetic.
"""

from __future__ import annotations

import pytest

from derivex.core.config import EngineConfig
from derivex.core.records import CommandKind as K
from derivex.core.records import OrderFlag, OrderType, SelfTradePrevention, TimeInForce
from tests.reference.builders import Stream, cmd, option, perpetual, place, quote_leg
from tests.reference.model import AMBIGUITIES, ReferenceEngine

BUY, SELL = 0, 1
PO, RPO, RO = OrderFlag.POST_ONLY, OrderFlag.REJECT_POST_ONLY, OrderFlag.REDUCE_ONLY
A, B, C, D = 3, 4, 5, 6
# also run as plain Python by the no-JIT pass of scripts/test.sh (about a minute for all
# of tests/core): the kernels' Python semantics must match the compiled ones
pytestmark = pytest.mark.nojit

FUNDS = 1_000_000


def oid(slot: int, gen: int = 1) -> int:
    return (gen << 32) | slot


def setup(config: EngineConfig | None = None, instruments=None, stp=(0, 0, 0, 0)):
    eng = ReferenceEngine(config or EngineConfig(risk_checks=False))
    s = Stream(eng, ts_ns=1_000)
    for mode in stp:
        s.run(cmd(K.CREATE_ACCOUNT, stp=mode))
    for acct in (A, B, C, D):
        s.run(cmd(K.DEPOSIT, account=acct, amount_units=FUNDS))
    for inst in instruments or (perpetual(),):
        s.run(inst)
    return eng, s


def only(events, kind):
    return [e for e in events if e["kind"] == kind]


def balance(eng, acct):
    return eng.accounts[acct].balance


def test_ambiguities_are_written_down():
    assert len(AMBIGUITIES) >= 10


def test_setup_events_and_ids():
    eng = ReferenceEngine(EngineConfig(risk_checks=False))
    s = Stream(eng, ts_ns=5)
    ev = s.run(
        cmd(K.CREATE_ACCOUNT, stp=1),
        cmd(K.DEPOSIT, account=3, amount_units=7),
        cmd(K.WITHDRAW, account=3, amount_units=2),
        perpetual(),
        cmd(K.NOOP),
    )
    assert [(e["kind"], e.get("account"), e.get("status")) for e in ev[:2]] == [
        ("ACCEPTED", 3, 0),
        ("ACCOUNT_CREATED", 3, 1),
    ]
    assert ev[3] == {
        "seq": 2,
        "command": K.DEPOSIT,
        "kind": "BALANCE_CHANGED",
        "account": 3,
        "cash_units": 7,
        "balance_units": 7,
    }
    assert ev[5]["cash_units"] == -2 and ev[5]["balance_units"] == 5
    assert [e["kind"] for e in ev[6:]] == ["ACCEPTED", "INSTRUMENT_STATUS_CHANGED", "ACCEPTED"]
    assert ev[7]["status"] == 1 and ev[6]["instrument"] == 0
    canon = eng.canonical()
    # system accounts 0,1,2 with gas 0; account 3 full gas, gas clock = command time 5
    assert [a[:6] for a in canon["accounts"]] == [
        (0, 0, 0, 0, 0, 0),
        (1, 0, 0, 0, 0, 0),
        (2, 0, 0, 0, 0, 0),
        (3, 5, 1, 0, 1_000_000, 5),
    ]
    # max_price = min(2**40, 2**62 // (2**31 - 1)) = 2**31 + 2**31 // (2**31 - 1) = 2**31 + 1
    assert canon["instruments"][0][12] == (1 << 31) + 1
    assert canon["next_order_ids"] == [oid(0), oid(1), oid(2)]
    assert canon["total_deposits"] == 7 and canon["total_withdrawals"] == 2


def test_price_time_priority_and_trade_at_resting_price():
    eng, s = setup()
    s.run(place(A, 0, SELL, 101, 10), place(B, 0, SELL, 100, 10), place(C, 0, SELL, 100, 5))
    ev = s.run(place(D, 0, BUY, 105, 20, label=77))
    assert ev[0]["kind"] == "ACCEPTED" and ev[0]["order_id"] == oid(3)
    assert ev[0]["price_ticks"] == 105 and ev[0]["qty_lots"] == 20 and ev[0]["label"] == 77
    fills = only(ev, "FILLED")
    # B (first at 100) 10, C 5, then A 5 at 101: all at the resting price
    assert [
        (f["account"], f["liquidity"], f["price_ticks"], f["qty_lots"], f["remaining_lots"])
        for f in fills
    ] == [
        (B, 1, 100, 10, 0),
        (D, 2, 100, 10, 10),
        (C, 1, 100, 5, 0),
        (D, 2, 100, 5, 5),
        (A, 1, 101, 5, 5),
        (D, 2, 101, 5, 0),
    ]
    kinds = [e["kind"] for e in ev]
    assert kinds == ["ACCEPTED"] + ["FILLED", "FILLED", "POSITION_CHANGED", "POSITION_CHANGED"] * 3
    pos = only(ev, "POSITION_CHANGED")
    # D's basis: 10*100 + 5*100 + 5*101 = 2005; A short 5 at 101: -505
    assert (pos[-1]["account"], pos[-1]["position_lots"], pos[-1]["basis_units"]) == (D, 20, 2005)
    assert (pos[-2]["account"], pos[-2]["position_lots"], pos[-2]["basis_units"]) == (A, -5, -505)
    canon = eng.canonical()
    assert canon["books"][0] == {"bids": [], "asks": [(101, [(oid(0), A, 5, 0, 0)])]}
    # slots freed in order B(1), C(2), taker(3): LIFO gives 3, 2, 1 with generation 2
    assert canon["next_order_ids"] == [oid(3, 2), oid(2, 2), oid(1, 2)]
    eng.check_invariants()


def test_partial_fill_rests_remainder():
    eng, s = setup()
    s.run(place(A, 0, SELL, 100, 4), place(B, 0, SELL, 100, 6))
    ev = s.run(place(C, 0, BUY, 100, 15))
    # fills 4 + 6 = 10, the remaining 5 rests as a bid at 100 (no EXPIRED)
    assert [e["kind"] for e in ev].count("FILLED") == 4
    assert only(ev, "FILLED")[-1]["remaining_lots"] == 5
    assert eng.canonical()["books"][0] == {"bids": [(100, [(oid(2), C, 5, 0, 0)])], "asks": []}
    # partial maker fill: D buys 3 of a resting sell 10
    s.run(place(A, 0, SELL, 110, 10))
    ev = s.run(place(D, 0, BUY, 110, 3, tif=TimeInForce.IOC))
    assert only(ev, "FILLED")[0]["remaining_lots"] == 7
    eng.check_invariants()


def test_fees_with_maker_rebate_and_rounding():
    # cv = 1000, maker -100 ppm (rebate), taker 250 ppm
    eng, s = setup(instruments=[perpetual(cv=1000, maker=-100, taker=250)])
    s.run(place(A, 0, SELL, 333, 3))
    ev = s.run(place(B, 0, BUY, 333, 3))
    # value = 333 * 1000 * 3 = 999000
    # maker: 999000 * 100 / 1e6 = 99.9 -> rebate rounded toward zero: -99
    # taker: 999000 * 250 / 1e6 = 249.75 -> charge rounded up: 250
    maker_fill, taker_fill = only(ev, "FILLED")
    assert maker_fill["fee_units"] == -99 and taker_fill["fee_units"] == 250
    maker_pos, taker_pos = only(ev, "POSITION_CHANGED")
    assert maker_pos["balance_units"] == FUNDS + 99 and maker_pos["cash_units"] == 0
    assert taker_pos["balance_units"] == FUNDS - 250
    assert (maker_pos["position_lots"], maker_pos["basis_units"]) == (-3, -999000)
    assert (taker_pos["position_lots"], taker_pos["basis_units"]) == (3, 999000)
    assert balance(eng, 0) == 250 - 99 == 151  # fee pool
    eng.check_invariants()


def test_fee_helper_rounding():
    assert ReferenceEngine.fee(1, 1) == 1  # 1e-6 rounded up
    assert ReferenceEngine.fee(1, -1) == 0  # rebate toward zero
    assert ReferenceEngine.fee(2_000_000, 3) == 6
    assert ReferenceEngine.fee(2_500_001, -2) == -5  # 5.000002 -> -5


def test_perpetual_pnl_reduce_close_flip_with_rounding():
    eng, s = setup()
    s.run(place(B, 0, SELL, 10, 2), place(B, 0, SELL, 11, 1))
    s.run(place(A, 0, BUY, 11, 3))
    # A: long 3, basis 2*10 + 11 = 31; B: short 3, basis -31
    assert eng.positions[(A, 0)].basis == 31 and eng.positions[(B, 0)].basis == -31
    # long reduce 1 @ 12: e = ceil(31 * 1 / 3) = ceil(10.33) = 11; realised = 12 - 11 = 1
    s.run(place(C, 0, BUY, 12, 1))
    ev = s.run(place(A, 0, SELL, 12, 1, tif=TimeInForce.IOC))
    a_pos = next(p for p in only(ev, "POSITION_CHANGED") if p["account"] == A)
    assert (
        a_pos["cash_units"],
        a_pos["position_lots"],
        a_pos["basis_units"],
        a_pos["balance_units"],
    ) == (1, 2, 20, FUNDS + 1)
    # short reduce 1 @ 12: e = floor(31 * 1 / 3) = 10; realised = 10 - 12 = -2
    s.run(place(D, 0, SELL, 12, 1))
    ev = s.run(place(B, 0, BUY, 12, 1, tif=TimeInForce.IOC))
    b_pos = next(p for p in only(ev, "POSITION_CHANGED") if p["account"] == B)
    assert (
        b_pos["cash_units"],
        b_pos["position_lots"],
        b_pos["basis_units"],
        b_pos["balance_units"],
    ) == (-2, -2, -21, FUNDS - 2)
    # A flips: long 2 (basis 20) sells 5 @ 9: full close e = 20, realised = 18 - 20 = -2,
    # then short 3 with basis -3 * 9 = -27
    s.run(place(C, 0, BUY, 9, 5))
    ev = s.run(place(A, 0, SELL, 9, 5))
    a_pos = next(p for p in only(ev, "POSITION_CHANGED") if p["account"] == A)
    assert (
        a_pos["cash_units"],
        a_pos["position_lots"],
        a_pos["basis_units"],
        a_pos["balance_units"],
    ) == (-2, -3, -27, FUNDS - 1)
    # B short 2 (basis -21) closes 2 @ 9 as a taker: e = 21, realised = 21 - 18 = 3
    s.run(place(D, 0, SELL, 9, 2))
    ev = s.run(place(B, 0, BUY, 9, 2))
    b_pos = next(p for p in only(ev, "POSITION_CHANGED") if p["account"] == B)
    assert (b_pos["cash_units"], b_pos["position_lots"], b_pos["basis_units"]) == (3, 0, 0)
    # over B's life: sold 20 + 11 = 31, bought 12 + 18 = 30 -> +1 = -2 + 3
    assert balance(eng, B) == FUNDS + 1
    # clearing holds minus everything realised: -(1 - 2 - 2 + 3) = 0
    assert balance(eng, 2) == 0
    # C and D opened/added only: C long 1@12 + 5@9 = 6 lots basis 57;
    assert eng.positions[(C, 0)].qty == 6 and eng.positions[(C, 0)].basis == 57
    eng.check_invariants()


def test_option_premium_moves_buyer_to_seller():
    eng, s = setup(instruments=[perpetual(), option(strike=100)])
    s.run(place(A, 1, SELL, 50, 2))
    ev = s.run(place(B, 1, BUY, 50, 2))
    maker, taker = only(ev, "POSITION_CHANGED")
    # premium = 50 * 1 * 2 = 100: buyer -100, seller +100; positions keep the basis
    assert (maker["cash_units"], maker["balance_units"], maker["basis_units"]) == (
        100,
        FUNDS + 100,
        -100,
    )
    assert (taker["cash_units"], taker["balance_units"], taker["basis_units"]) == (
        -100,
        FUNDS - 100,
        100,
    )
    # B sells 1 of 2 @ 70 to C: premium +70 to B, basis 100 - ceil(100/2) = 50, nothing realised
    s.run(place(C, 1, BUY, 70, 1))
    ev = s.run(place(B, 1, SELL, 70, 1))
    b = next(p for p in only(ev, "POSITION_CHANGED") if p["account"] == B)
    assert (b["cash_units"], b["position_lots"], b["basis_units"], b["balance_units"]) == (
        70,
        1,
        50,
        FUNDS - 30,
    )
    assert balance(eng, 2) == 0  # no clearing for options
    eng.check_invariants()


def test_post_only_reprice_and_reject():
    eng, s = setup(instruments=[perpetual(tick=5)])
    s.run(place(A, 0, SELL, 100, 5))
    ev = s.run(place(B, 0, BUY, 110, 5, flags=PO))
    # crosses best ask 100: repriced one tick inside: 100 - 5 = 95
    assert ev[0]["kind"] == "ACCEPTED" and ev[0]["price_ticks"] == 95
    ev = s.run(place(B, 0, BUY, 100, 5, flags=PO | RPO))
    assert ev[0]["reason"] == "POST_ONLY_WOULD_TAKE"
    ev = s.run(place(C, 0, SELL, 90, 1, flags=PO))  # best bid 95 -> 95 + 5 = 100
    assert ev[0]["price_ticks"] == 100
    # repriced to <= 0: the only ask at 5, a post-only buy at 10 would become 0
    _eng2, s2 = setup(instruments=[perpetual(tick=5)])
    s2.run(place(A, 0, SELL, 5, 1))
    ev = s2.run(place(B, 0, BUY, 10, 1, flags=PO))
    assert ev[0]["reason"] == "POST_ONLY_WOULD_TAKE"
    eng.check_invariants()


def test_reduce_only_clamp_reject_and_resting_cancel():
    eng, s = setup()
    ev = s.run(place(A, 0, SELL, 100, 1, flags=RO))
    assert ev[0]["reason"] == "REDUCE_ONLY_WOULD_INCREASE"  # A is flat
    s.run(place(B, 0, SELL, 100, 3))
    s.run(place(A, 0, BUY, 100, 3))  # A long 3
    ev = s.run(place(A, 0, SELL, 110, 5, flags=RO))
    assert ev[0]["qty_lots"] == 3  # clamped to the reducing capacity max(0, pos) = 3
    ro_id = ev[0]["order_id"]
    ev = s.run(place(A, 0, BUY, 90, 1, flags=RO))
    assert ev[0]["reason"] == "REDUCE_ONLY_WOULD_INCREASE"  # buy capacity max(0, -3) = 0
    # A sells 1 elsewhere: capacity 2 while the RO order still has 3
    s.run(place(D, 0, BUY, 105, 1))
    s.run(place(A, 0, SELL, 105, 1))
    ev = s.run(place(C, 0, BUY, 110, 3))
    # RO fills its capacity 2 (remaining 1), then the rest is cancelled right after the fill
    assert [e["kind"] for e in ev] == [
        "ACCEPTED",
        "FILLED",
        "FILLED",
        "POSITION_CHANGED",
        "POSITION_CHANGED",
        "CANCELLED",
    ]
    assert ev[1]["qty_lots"] == 2 and ev[1]["remaining_lots"] == 1
    assert ev[5]["reason"] == "CANCEL_REDUCE_ONLY" and ev[5]["qty_lots"] == 1
    assert ev[5]["order_id"] == ro_id
    # C's remaining 1 rests at 110
    assert eng.canonical()["books"][0]["bids"][0] == (110, [(ev[0]["order_id"], C, 1, 0, 0)])
    # zero capacity when reached: A is flat, a resting RO sell is cancelled whole
    s.run(place(D, 0, SELL, 120, 1))
    s.run(place(A, 0, BUY, 120, 1))  # A long 1
    ro = s.run(place(A, 0, SELL, 130, 1, flags=RO))[0]["order_id"]
    s.run(place(B, 0, BUY, 125, 1))
    s.run(place(A, 0, SELL, 125, 1))  # A flat again
    ev = s.run(place(C, 0, BUY, 130, 1, tif=TimeInForce.IOC))
    assert ev[1]["kind"] == "CANCELLED" and ev[1]["reason"] == "CANCEL_REDUCE_ONLY"
    assert ev[1]["order_id"] == ro and ev[2]["reason"] == "CANCEL_IOC_REMAINDER"
    eng.check_invariants()


def test_fok_fill_and_no_fill():
    eng, s = setup()
    s.run(place(A, 0, SELL, 100, 3), place(B, 0, SELL, 101, 2))
    ev = s.run(place(C, 0, BUY, 101, 6, tif=TimeInForce.FOK))
    assert ev == [{**ev[0], "kind": "REJECTED", "reason": "FOK_NOT_FILLED"}]  # only 5
    ev = s.run(place(C, 0, BUY, 101, 5, tif=TimeInForce.FOK))
    assert [e["kind"] for e in ev] == ["ACCEPTED"] + [
        "FILLED",
        "FILLED",
        "POSITION_CHANGED",
        "POSITION_CHANGED",
    ] * 2
    # FOK market: nothing left on the book
    ev = s.run(place(C, 0, BUY, 0, 1, order_type=OrderType.MARKET, tif=TimeInForce.FOK))
    assert ev[0]["reason"] == "FOK_NOT_FILLED"
    eng.check_invariants()


def test_ioc_remainder_and_market_no_liquidity():
    eng, s = setup()
    s.run(place(A, 0, SELL, 100, 5))
    ev = s.run(place(B, 0, BUY, 101, 8, tif=TimeInForce.IOC, label=9))
    assert ev[-1] == {
        "seq": ev[0]["seq"],
        "command": K.PLACE_ORDER,
        "kind": "EXPIRED",
        "reason": "CANCEL_IOC_REMAINDER",
        "account": B,
        "instrument": 0,
        "side": BUY,
        "order_id": ev[0]["order_id"],
        "price_ticks": 101,
        "qty_lots": 3,
        "label": 9,
    }
    ev = s.run(place(B, 0, SELL, 55, 4, order_type=OrderType.MARKET))
    # market: price 0 in ACCEPTED and EXPIRED, time in force IOC, nothing to hit
    assert ev[0]["price_ticks"] == 0
    assert ev[1]["reason"] == "NO_LIQUIDITY" and ev[1]["qty_lots"] == 4
    assert ev[1]["price_ticks"] == 0
    assert eng.canonical()["books"][0] == {"bids": [], "asks": []}


def test_stp_cancel_resting_and_reject_incoming():
    eng, s = setup()
    a_sell = s.run(place(A, 0, SELL, 100, 5))[0]["order_id"]
    s.run(place(B, 0, SELL, 100, 5))
    ev = s.run(place(A, 0, BUY, 100, 7))
    assert ev[1]["kind"] == "CANCELLED" and ev[1]["reason"] == "CANCEL_SELF_TRADE"
    assert ev[1]["order_id"] == a_sell and ev[1]["qty_lots"] == 5
    assert only(ev, "FILLED")[1]["remaining_lots"] == 2  # filled 5 with B, 2 rest
    assert eng.canonical()["books"][0]["bids"][0][1][0][2] == 2
    # reject mode
    eng, s = setup(stp=(1, 0, 0, 0))
    s.run(place(A, 0, SELL, 100, 5), place(B, 0, SELL, 100, 5))
    before = eng.canonical()
    ev = s.run(place(A, 0, BUY, 100, 7))
    assert ev[0]["reason"] == "SELF_TRADE_REJECTED"
    after = eng.canonical()
    assert after["books"] == before["books"]
    assert after["accounts"][A][4] == before["accounts"][A][4] - 10  # only gas_base charged
    # own order behind the quantity: B first, A second -> a buy of 5 never reaches A
    eng, s = setup(stp=(1, 0, 0, 0))
    s.run(place(B, 0, SELL, 100, 5), place(A, 0, SELL, 100, 5))
    ev = s.run(place(A, 0, BUY, 100, 5))
    assert ev[0]["kind"] == "ACCEPTED" and len(only(ev, "FILLED")) == 2
    ev = s.run(cmd(K.SET_ACCOUNT, account=A, stp=0))
    assert ev[0]["kind"] == "ACCEPTED" and ev[0]["status"] == 0
    eng.check_invariants()


def test_amend_keep_and_lose_priority():
    eng, s = setup()
    a_id = s.run(place(A, 0, SELL, 100, 5, label=1))[0]["order_id"]
    s.run(place(B, 0, SELL, 100, 5))
    ev = s.run(cmd(K.AMEND_ORDER, account=A, order_id=a_id, price_ticks=100, qty_lots=3))
    assert [e["kind"] for e in ev] == ["ACCEPTED", "AMENDED"]
    assert ev[1]["a"] == 1 and ev[1]["qty_lots"] == 3 and ev[1]["label"] == 1
    ev = s.run(place(C, 0, BUY, 100, 3))
    assert only(ev, "FILLED")[0]["account"] == A  # kept priority
    # lose priority: B's order (first now) grows 5 -> 6 and goes behind A's new order
    b_id = eng.canonical()["books"][0]["asks"][0][1][0][0]
    a2 = s.run(place(A, 0, SELL, 100, 2))[0]["order_id"]
    ev = s.run(cmd(K.AMEND_ORDER, account=B, order_id=b_id, price_ticks=100, qty_lots=6))
    assert ev[1]["a"] == 0
    assert [o[0] for o in eng.canonical()["books"][0]["asks"][0][1]] == [a2, b_id]
    # amend to a crossing price: trades as a taker with the same id
    s.run(place(D, 0, BUY, 95, 4))
    ev = s.run(cmd(K.AMEND_ORDER, account=B, order_id=b_id, price_ticks=95, qty_lots=6))
    f = only(ev, "FILLED")
    assert (f[1]["order_id"], f[1]["liquidity"], f[1]["remaining_lots"]) == (b_id, 2, 2)
    assert eng.canonical()["books"][0]["asks"][0] == (95, [(b_id, B, 2, 0, 0)])
    # unknown / not owner
    assert (
        s.run(cmd(K.AMEND_ORDER, account=A, order_id=b_id, price_ticks=95, qty_lots=1))[0]["reason"]
        == "NOT_ORDER_OWNER"
    )
    assert (
        s.run(cmd(K.AMEND_ORDER, account=A, order_id=12345, price_ticks=95, qty_lots=1))[0][
            "reason"
        ]
        == "UNKNOWN_ORDER"
    )
    eng.check_invariants()


def test_cancel_and_cancel_all_order():
    eng, s = setup(instruments=[perpetual(), perpetual()])
    x = s.run(place(A, 1, BUY, 10, 1))[0]["order_id"]
    y = s.run(place(A, 0, BUY, 10, 1))[0]["order_id"]
    z = s.run(place(A, 0, SELL, 20, 1))[0]["order_id"]
    w = s.run(place(A, 1, SELL, 20, 1))[0]["order_id"]
    ev = s.run(cmd(K.CANCEL_ORDER, account=A, order_id=y))
    assert [e["kind"] for e in ev] == ["ACCEPTED", "CANCELLED"]
    assert ev[0]["order_id"] == y and ev[0]["qty_lots"] == 1 and ev[0]["price_ticks"] == 10
    assert ev[1]["reason"] == "CANCEL_BY_USER"
    assert s.run(cmd(K.CANCEL_ORDER, account=A, order_id=y))[0]["reason"] == "UNKNOWN_ORDER"
    y2 = s.run(place(A, 0, BUY, 11, 1))[0]["order_id"]
    assert y2 == oid(y & 0xFFFFFFFF, 2)  # slot reused with generation 2
    ev = s.run(cmd(K.CANCEL_ALL, account=A))
    assert ev[0]["qty_lots"] == 4
    # instrument 0 first (z then y2, in placement order), then instrument 1 (x, w)
    assert [e["order_id"] for e in ev[1:]] == [z, y2, x, w]
    assert all(e["reason"] == "CANCEL_ALL" for e in ev[1:])
    s.run(place(A, 1, BUY, 10, 1))
    ev = s.run(cmd(K.CANCEL_ALL_INSTRUMENT, account=A, instrument=0))
    assert ev == [
        {
            "seq": ev[0]["seq"],
            "command": K.CANCEL_ALL_INSTRUMENT,
            "kind": "ACCEPTED",
            "leg": 0,
            "account": A,
            "instrument": 0,
            "side": 0,
            "order_id": 0,
            "price_ticks": 0,
            "qty_lots": 0,
            "label": 0,
            "status": 0,
        }
    ]
    eng.check_invariants()


def test_mass_quote_replace_and_side_rejection():
    eng, s = setup(instruments=[perpetual(), perpetual()])
    ev = s.run(
        cmd(K.MASS_QUOTE, account=A, count=2, label=5),
        quote_leg(0, 99, 5, 101, 5),
        quote_leg(1, 10, 1, 0, 0),
    )
    assert [(e["kind"], e["leg"], e.get("side"), e.get("order_id")) for e in ev] == [
        ("ACCEPTED", 0, 0, 0),
        ("ACCEPTED", 1, BUY, oid(0)),
        ("ACCEPTED", 1, SELL, oid(1)),
        ("ACCEPTED", 2, BUY, oid(2)),
    ]
    assert ev[0]["qty_lots"] == 2 and all(e["label"] == 5 for e in ev)
    book = eng.canonical()["books"][0]
    assert book["bids"] == [(99, [(oid(0), A, 5, 9, 5)])]  # flags QUOTE|POST_ONLY = 9
    s.run(place(B, 0, SELL, 100, 1))
    ev = s.run(cmd(K.MASS_QUOTE, account=A, count=1, label=6), quote_leg(0, 100, 2, 102, 2))
    # old bid and ask cancelled (leg 1), new bid 100 would take B's ask -> REJECTED
    assert [(e["kind"], e.get("reason"), e["leg"], e.get("side")) for e in ev] == [
        ("ACCEPTED", None, 0, 0),
        ("CANCELLED", "CANCEL_QUOTE_REPLACED", 1, BUY),
        ("CANCELLED", "CANCEL_QUOTE_REPLACED", 1, SELL),
        ("REJECTED", "POST_ONLY_WOULD_TAKE", 1, BUY),
        ("ACCEPTED", None, 1, SELL),
    ]
    assert ev[1]["label"] == 5 and ev[3]["label"] == 6 and ev[3]["price_ticks"] == 100
    # freed slots 0 then 1 (LIFO: 1 on top); the new ask takes slot 1, generation 2
    assert ev[4]["order_id"] == oid(1, 2)
    # whole-command rejections
    ev = s.run(
        cmd(K.MASS_QUOTE, account=A, count=2), quote_leg(1, 10, 1, 9, 1), quote_leg(0, 1, 1, 2, 1)
    )
    assert (ev[0]["reason"], ev[0]["leg"]) == ("CROSSED_QUOTE", 1) and len(ev) == 1
    ev = s.run(
        cmd(K.MASS_QUOTE, account=A, count=2), quote_leg(1, 1, 1, 2, 1), quote_leg(1, 1, 1, 2, 1)
    )
    assert (ev[0]["reason"], ev[0]["leg"]) == ("DUPLICATE_QUOTE_INSTRUMENT", 2)
    ev = s.run(cmd(K.MASS_QUOTE, account=A, count=2), quote_leg(1, 1, 1, 2, 1))
    assert (ev[0]["reason"], ev[0]["leg"]) == ("BAD_MASS_QUOTE", 0)
    ev = s.run(quote_leg(1, 1, 1, 2, 1))
    assert ev[0]["reason"] == "ORPHAN_QUOTE_LEG" and ev[0]["instrument"] == 1
    eng.check_invariants()


def test_gas_exhaustion_and_refill_by_time():
    cfg = EngineConfig(risk_checks=False, gas_max=30, gas_base=10, gas_refill_per_ms=5)
    eng, s = setup(cfg)
    t0 = s.ts
    for _ in range(3):
        assert s.run(place(A, 0, BUY, 10, 1))[0]["kind"] == "ACCEPTED"
    assert s.run(place(A, 0, BUY, 10, 1))[0]["reason"] == "GAS_EXHAUSTED"
    # TIME moves the clock; A's next command refills 1 whole ms (5 gas): still < 10
    s.run(cmd(K.TIME), ts_ns=t0 + 1_500_000)
    assert s.run(place(A, 0, BUY, 10, 1))[0]["reason"] == "GAS_EXHAUSTED"
    acct = eng.canonical()["accounts"][A]
    assert acct[4:6] == (5, t0 + 1_000_000)  # the half millisecond carries over
    # 0.5 ms later the carried fraction completes a second whole ms: 10 gas
    ev = s.run(place(A, 0, BUY, 10, 1), ts_ns=t0 + 2_000_000)
    assert ev[0]["kind"] == "ACCEPTED"
    assert eng.canonical()["accounts"][A][4:6] == (0, t0 + 2_000_000)


def test_gas_stops_matching():
    cfg = EngineConfig(
        risk_checks=False,
        gas_max=100,
        gas_base=10,
        gas_per_level=20,
        gas_per_fill=30,
        gas_refill_per_ms=1,
    )
    eng, s = setup(cfg)
    s.run(place(B, 0, SELL, 100, 1), place(B, 0, SELL, 101, 1), place(B, 0, SELL, 102, 1))
    ev = s.run(place(A, 0, BUY, 102, 3))
    # 100 - 10 base = 90; level 20 -> 70; fill 30 -> 40; level 20 -> 20; fill needs 30: stop
    assert [e["kind"] for e in ev] == [
        "ACCEPTED",
        "FILLED",
        "FILLED",
        "POSITION_CHANGED",
        "POSITION_CHANGED",
        "EXPIRED",
    ]
    assert ev[-1]["reason"] == "CANCEL_GAS" and ev[-1]["qty_lots"] == 2
    assert eng.canonical()["accounts"][A][4] == 20
    # a FOK whose full execution would exceed the budget is rejected, base charged only
    s.run(cmd(K.TIME), ts_ns=s.ts + 10**9)  # refill to the cap at A's next command
    ev = s.run(place(A, 0, BUY, 102, 2, tif=TimeInForce.FOK))
    assert ev[0]["reason"] == "GAS_EXHAUSTED"
    assert eng.canonical()["accounts"][A][4] == 90


def test_capacity_limits_tiny_config():
    cfg = EngineConfig(
        risk_checks=False,
        max_open_orders_per_account=2,
        max_orders_per_book=3,
        max_orders=4,
        max_levels_per_side=2,
        max_levels=3,
        max_positions=2,
        initial_orders=1,
        initial_levels=1,
        initial_positions=1,
        initial_levels_per_side=1,
    )
    eng, s = setup(cfg, instruments=[perpetual(), perpetual()])
    s.run(place(A, 0, BUY, 10, 1), place(A, 0, BUY, 11, 1))
    assert s.run(place(A, 0, BUY, 10, 1))[0]["reason"] == "ACCOUNT_ORDER_LIMIT"
    assert s.run(place(A, 0, SELL, 20, 1, tif=TimeInForce.IOC))[0]["kind"] == "ACCEPTED"
    assert s.run(place(B, 0, BUY, 12, 1))[0]["reason"] == "BOOK_LEVEL_LIMIT"  # 2 bid levels
    s.run(place(B, 0, BUY, 10, 1))  # existing level: fine; book has 3 orders
    assert s.run(place(C, 0, SELL, 20, 1))[0]["reason"] == "BOOK_ORDER_LIMIT"
    # positions: (A,0), (B,0) live = 2 = max -> C has no slot
    assert s.run(place(C, 1, SELL, 20, 1))[0]["reason"] == "POSITION_POOL_FULL"
    s.run(cmd(K.CANCEL_ALL, account=A))  # A's slot is released (flat, no orders)
    assert s.run(place(C, 1, SELL, 20, 1))[0]["kind"] == "ACCEPTED"  # live levels 1 -> 2
    assert s.run(place(D, 1, BUY, 10, 1))[0]["reason"] == "POSITION_POOL_FULL"
    assert s.run(place(B, 0, BUY, 11, 1))[0]["kind"] == "ACCEPTED"  # live levels 3 = max
    assert s.run(place(C, 1, BUY, 9, 1))[0]["reason"] == "LEVEL_POOL_FULL"
    assert s.run(place(C, 1, SELL, 20, 1))[0]["kind"] == "ACCEPTED"  # 4 live orders = max
    # D: no orders, book 1 has 2 orders; the order pool is checked before the position pool
    assert s.run(place(D, 1, BUY, 20, 1))[0]["reason"] == "ORDER_POOL_FULL"
    # an IOC needs an order slot too (A7)
    assert s.run(place(B, 0, SELL, 30, 1, tif=TimeInForce.IOC))[0]["reason"] == "ORDER_POOL_FULL"
    eng.check_invariants()


def test_deposit_withdraw_rules():
    cfg = EngineConfig(risk_checks=False, max_balance_units=1_000_100)
    eng, s = setup(cfg)
    assert (
        s.run(cmd(K.WITHDRAW, account=A, amount_units=FUNDS + 1))[0]["reason"]
        == "INSUFFICIENT_FUNDS"
    )
    assert s.run(cmd(K.DEPOSIT, account=A, amount_units=101))[0]["reason"] == "BALANCE_LIMIT"
    assert s.run(cmd(K.DEPOSIT, account=A, amount_units=100))[0]["kind"] == "ACCEPTED"
    assert s.run(cmd(K.WITHDRAW, account=A, amount_units=0))[0]["reason"] == "AMOUNT_NOT_POSITIVE"
    assert s.run(cmd(K.DEPOSIT, account=99, amount_units=1))[0]["reason"] == "UNKNOWN_ACCOUNT"
    # system accounts accept deposits (insurance fund) and withdraw like anyone
    assert s.run(cmd(K.DEPOSIT, account=1, amount_units=50))[1]["balance_units"] == 50
    assert s.run(cmd(K.WITHDRAW, account=1, amount_units=51))[0]["reason"] == "INSUFFICIENT_FUNDS"
    canon = eng.canonical()
    assert canon["total_deposits"] == 4 * FUNDS + 150 and canon["total_withdrawals"] == 0
    eng.check_invariants()


def test_halted_and_closed_instrument():
    eng, s = setup()
    o1 = s.run(place(A, 0, BUY, 10, 1))[0]["order_id"]
    o2 = s.run(place(B, 0, BUY, 10, 2))[0]["order_id"]
    o3 = s.run(place(B, 0, BUY, 12, 1))[0]["order_id"]
    o4 = s.run(place(C, 0, SELL, 20, 3))[0]["order_id"]
    ev = s.run(cmd(K.HALT_INSTRUMENT, instrument=0))
    assert [(e["kind"], e.get("status")) for e in ev] == [
        ("ACCEPTED", 0),
        ("INSTRUMENT_STATUS_CHANGED", 2),
    ]
    assert s.run(place(A, 0, BUY, 10, 1))[0]["reason"] == "INSTRUMENT_HALTED"
    assert (
        s.run(cmd(K.AMEND_ORDER, account=A, order_id=o1, price_ticks=10, qty_lots=1))[0]["reason"]
        == "INSTRUMENT_HALTED"
    )
    assert s.run(cmd(K.HALT_INSTRUMENT, instrument=0))[0]["reason"] == "INSTRUMENT_NOT_ACTIVE"
    assert s.run(cmd(K.CANCEL_ORDER, account=A, order_id=o1))[1]["kind"] == "CANCELLED"
    assert s.run(cmd(K.RESUME_INSTRUMENT, instrument=0))[1]["status"] == 1
    assert s.run(cmd(K.RESUME_INSTRUMENT, instrument=0))[0]["reason"] == "INSTRUMENT_NOT_HALTED"
    ev = s.run(cmd(K.CLOSE_INSTRUMENT, instrument=0))
    # best bid (12) first, then 10, then asks from the best up
    assert [(e["kind"], e.get("order_id")) for e in ev] == [
        ("ACCEPTED", 0),
        ("CANCELLED", o3),
        ("CANCELLED", o2),
        ("CANCELLED", o4),
        ("INSTRUMENT_STATUS_CHANGED", None),
    ]
    assert ev[1]["reason"] == "CANCEL_INSTRUMENT_CLOSED" and ev[-1]["status"] == 3
    assert s.run(place(A, 0, BUY, 10, 1))[0]["reason"] == "INSTRUMENT_CLOSED"
    assert s.run(cmd(K.RESUME_INSTRUMENT, instrument=0))[0]["reason"] == "INSTRUMENT_NOT_HALTED"
    assert s.run(cmd(K.CLOSE_INSTRUMENT, instrument=0))[0]["reason"] == "INSTRUMENT_NOT_ACTIVE"
    assert s.run(cmd(K.CLOSE_INSTRUMENT, instrument=9))[0]["reason"] == "UNKNOWN_INSTRUMENT"
    eng.check_invariants()


def test_block_and_unblock_account():
    eng, s = setup(instruments=[perpetual(), perpetual()])
    x = s.run(place(A, 1, BUY, 10, 1))[0]["order_id"]
    y = s.run(place(A, 0, SELL, 20, 1))[0]["order_id"]
    z = s.run(place(A, 0, BUY, 11, 2))[0]["order_id"]
    kept = s.run(place(B, 0, BUY, 12, 1))[0]["order_id"]
    gas = eng.accounts[A].gas
    ev = s.run(cmd(K.BLOCK_ACCOUNT, account=A))
    # instrument 0 first (y then z, placement order), then instrument 1 (x); no gas charged
    assert [(e["kind"], e.get("order_id")) for e in ev] == [
        ("ACCEPTED", 0),
        ("CANCELLED", y),
        ("CANCELLED", z),
        ("CANCELLED", x),
    ]
    assert ev[0]["account"] == A and ev[0]["qty_lots"] == 3
    assert {e["reason"] for e in ev[1:]} == {"CANCEL_ACCOUNT_BLOCKED"}
    assert eng.accounts[A].gas == gas and eng.accounts[A].orders == []
    assert kept in eng.orders  # another account's order stays
    assert s.run(place(A, 0, BUY, 10, 1))[0]["reason"] == "ACCOUNT_BLOCKED"
    assert s.run(cmd(K.CANCEL_ALL, account=A))[0]["reason"] == "ACCOUNT_BLOCKED"
    assert s.run(cmd(K.SET_ACCOUNT, account=A, stp=1))[0]["reason"] == "ACCOUNT_BLOCKED"
    assert s.run(cmd(K.BLOCK_ACCOUNT, account=A))[0]["reason"] == "ACCOUNT_BLOCKED"
    assert s.run(cmd(K.DEPOSIT, account=A, amount_units=5))[0]["kind"] == "ACCEPTED"
    assert eng.canonical()["blocked_accounts"] == [A]
    assert s.run(cmd(K.UNBLOCK_ACCOUNT, account=B))[0]["reason"] == "ACCOUNT_NOT_BLOCKED"
    assert s.run(cmd(K.BLOCK_ACCOUNT, account=1))[0]["reason"] == "SYSTEM_ACCOUNT"
    assert s.run(cmd(K.BLOCK_ACCOUNT, account=99))[0]["reason"] == "UNKNOWN_ACCOUNT"
    assert [e["kind"] for e in s.run(cmd(K.UNBLOCK_ACCOUNT, account=A))] == ["ACCEPTED"]
    assert "blocked_accounts" not in eng.canonical()
    assert s.run(place(A, 0, BUY, 10, 1))[0]["kind"] == "ACCEPTED"
    eng.check_invariants()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"account": 99}, "UNKNOWN_ACCOUNT"),
        ({"account": 1}, "SYSTEM_ACCOUNT"),
        ({"instrument": 7}, "UNKNOWN_INSTRUMENT"),
        ({"side": 2}, "BAD_SIDE"),
        ({"order_type": 2}, "BAD_ORDER_TYPE"),
        ({"tif": 3}, "BAD_TIME_IN_FORCE"),
        ({"flags": 8}, "BAD_FLAGS"),
        ({"flags": 64}, "BAD_FLAGS"),
        ({"flags": 16, "label": 0}, "BAD_CLIENT_ORDER_ID"),
        ({"flags": 2}, "BAD_FLAGS"),
        ({"flags": 1, "tif": 1}, "BAD_FLAGS"),
        ({"flags": 1, "order_type": 1}, "BAD_FLAGS"),
        ({"qty_lots": 0}, "QTY_NOT_POSITIVE"),
        ({"qty_lots": -5}, "QTY_NOT_POSITIVE"),
        ({"qty_lots": (1 << 40) + 2}, "QTY_TOO_LARGE"),
        ({"qty_lots": 3}, "QTY_OFF_STEP"),
        ({"price_ticks": 0}, "PRICE_NOT_POSITIVE"),
        ({"price_ticks": 1 << 62}, "PRICE_TOO_LARGE"),
        ({"price_ticks": 105}, "PRICE_OFF_TICK"),
        ({"qty_lots": 1 << 31}, "POSITION_LIMIT"),
    ],
)
def test_bad_order_inputs(overrides, reason):
    eng, s = setup(instruments=[perpetual(tick=10, min_trade=2)])
    fields = {
        "account": A,
        "instrument": 0,
        "side": BUY,
        "price_ticks": 100,
        "qty_lots": 4,
        "label": 3,
    }
    fields.update(overrides)
    command = cmd(K.PLACE_ORDER, **fields)
    ev = s.run(command)
    assert len(ev) == 1 and ev[0]["kind"] == "REJECTED" and ev[0]["reason"] == reason
    # echoed as sent
    for name in ("account", "instrument", "side", "price_ticks", "qty_lots", "label"):
        assert ev[0][name] == int(command[name])
    eng.check_invariants()


def test_bad_admin_and_unknown_commands():
    eng, s = setup()
    assert s.run(cmd(K.CREATE_ACCOUNT, stp=2))[0]["reason"] == "BAD_STP_MODE"
    assert s.run(cmd(K.SET_ACCOUNT, account=A, stp=5))[0]["reason"] == "BAD_STP_MODE"
    assert s.run(cmd(K.SET_ACCOUNT, account=2, stp=1))[0]["reason"] == "SYSTEM_ACCOUNT"
    assert s.run(cmd(99, account=A, label=4))[0] == {
        "seq": s.seq,
        "command": 99,
        "kind": "REJECTED",
        "reason": "UNKNOWN_COMMAND",
        "leg": 0,
        "account": A,
        "instrument": 0,
        "side": 0,
        "order_id": 0,
        "price_ticks": 0,
        "qty_lots": 0,
        "label": 4,
    }
    assert s.run(perpetual(tick=0))[0]["reason"] == "BAD_INSTRUMENT_PARAMS"
    assert s.run(perpetual(maker=100_001))[0]["reason"] == "BAD_INSTRUMENT_PARAMS"
    assert s.run(perpetual(underlying=16))[0]["reason"] == "BAD_INSTRUMENT_PARAMS"
    assert s.run(option(strike=0))[0]["reason"] == "BAD_INSTRUMENT_PARAMS"
    assert s.run(option(option_type=0))[0]["reason"] == "BAD_INSTRUMENT_PARAMS"
    assert (
        s.run(
            cmd(
                K.ADD_INSTRUMENT,
                instrument_kind=1,
                underlying=1,
                tick_size_ticks=1,
                min_trade_lots=1,
                contract_value_units=1,
                strike_ticks=5,
            )
        )[0]["reason"]
        == "BAD_INSTRUMENT_PARAMS"
    )
    assert s.run(cmd(K.CANCEL_ORDER, account=0, order_id=1))[0]["reason"] == "SYSTEM_ACCOUNT"
    # clock never runs backwards
    s.run(cmd(K.TIME), ts_ns=10**12)
    s.run(cmd(K.NOOP), ts_ns=5)
    assert eng.canonical()["clock_ns"] == 10**12
    eng.check_invariants()


def test_pool_full_admin():
    eng = ReferenceEngine(
        EngineConfig(
            risk_checks=False,
            max_accounts=4,
            max_instruments=1,
            initial_accounts=4,
            initial_instruments=1,
        )
    )
    s = Stream(eng)
    assert s.run(cmd(K.CREATE_ACCOUNT))[0]["account"] == 3
    assert s.run(cmd(K.CREATE_ACCOUNT))[0]["reason"] == "ACCOUNT_POOL_FULL"
    assert s.run(perpetual())[0]["kind"] == "ACCEPTED"
    assert s.run(perpetual())[0]["reason"] == "INSTRUMENT_POOL_FULL"


def test_seeded_random_stream_keeps_invariants():
    import random

    rng = random.Random(7)
    eng, s = setup(instruments=[perpetual(maker=-50, taker=300), option(cv=3, maker=10)])
    for _ in range(600):
        acct = rng.choice([A, B, C, D])
        inst = rng.randrange(2)
        side = rng.randrange(2)
        r = rng.random()
        if r < 0.6:
            rec = place(
                acct,
                inst,
                side,
                rng.randint(90, 110),
                rng.randint(1, 6),
                tif=rng.choice([0, 0, 1, 2]),
                flags=rng.choice([0, 0, 1, 4, 3]),
            )
        elif r < 0.8 and eng.orders:
            target = rng.choice(sorted(eng.orders))
            rec = cmd(
                K.AMEND_ORDER,
                account=eng.orders[target].account,
                order_id=target,
                price_ticks=rng.randint(90, 110),
                qty_lots=rng.randint(1, 6),
            )
        elif r < 0.9 and eng.orders:
            target = rng.choice(sorted(eng.orders))
            rec = cmd(K.CANCEL_ORDER, account=eng.orders[target].account, order_id=target)
        else:
            rec = place(acct, inst, side, 0, rng.randint(1, 4), order_type=OrderType.MARKET)
        s.run(rec)
        eng.check_invariants()
    assert any(p.qty for p in eng.positions.values())


def test_stp_mode_constant_matches_records():
    assert SelfTradePrevention.REJECT_INCOMING == 1
