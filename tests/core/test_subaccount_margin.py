"""Subaccounts under the default (risk-checked) configuration through the embedded
``Exchange``: each subaccount is margined on its own (a rich main account does not let
an empty subaccount open a position), a transfer that would leave the payer below its
initial margin is refused while a smaller one goes through, and money is conserved."""

from __future__ import annotations

from derivex.core.records import Reason
from derivex.exchange import Exchange

USDC = 1_000_000
START_NS = 1_798_761_600_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now_ns = START_NS

    def __call__(self) -> int:
        self.now_ns += 1_000_000
        return self.now_ns


def test_subaccounts_are_margined_on_their_own() -> None:
    clock = Clock()
    ex = Exchange(clock=clock)
    perp = ex.add_perpetual("BTC", tick_size_ticks=50)
    t = clock.now_ns
    assert ex.set_index("BTC", [(0, t, 10_000_000), (1, t, 10_000_000)]).accepted
    main, maker = ex.create_account(), ex.create_account()
    desk = ex.create_subaccount(main)
    for account in (main, maker):
        assert ex.deposit(account, 1_000_000 * USDC).accepted
    # the empty subaccount cannot trade on its main account's money
    refused = ex.place(desk, perp, "buy", 1_000, 10_000_000)
    assert refused.reason == Reason.INSUFFICIENT_MARGIN
    # funded by a transfer, it opens a position of its own
    assert ex.transfer(main, desk, 2_000 * USDC).accepted
    assert ex.place(maker, perp, "sell", 1_000, 10_000_000).accepted
    assert ex.place(desk, perp, "buy", 1_000, 10_000_000).accepted
    summary = ex.account_summary(desk)
    assert summary.initial_margin_units > 0
    assert ex.balance(main) == 998_000 * USDC
    # all of it back would leave the position without initial margin: refused
    everything = ex.balance(desk)
    refused_transfer = ex.transfer(desk, main, everything)
    assert refused_transfer.reason == Reason.INSUFFICIENT_MARGIN
    spare = summary.equity_units - summary.initial_margin_units
    assert spare > 0
    assert ex.transfer(desk, main, spare).accepted
    assert ex.transfer(desk, main, 1).reason == Reason.INSUFFICIENT_MARGIN
    total = sum(ex.balances().values())
    assert total == 2_000_000 * USDC  # conservation: deposits, nothing withdrawn
    ex.check_invariants()


def test_no_transfer_in_or_out_of_an_account_in_liquidation() -> None:
    """While the engine liquidates an account (several rounds here), a transfer from it is
    ACCOUNT_IN_LIQUIDATION and one to it RECIPIENT_IN_LIQUIDATION; both change nothing."""
    from dataclasses import replace

    from tests.core.test_lifecycle import BASE, index, leveraged_long, venue

    ex, clock, perp, dealer = venue(replace(BASE, liquidation_step_ppm=10_000))
    trader = leveraged_long(ex, perp, dealer)
    helper = ex.create_subaccount(dealer)
    assert ex.transfer(dealer, helper, 100 * USDC).accepted
    ex.place(dealer, perp, "buy", 100, 9_830_000)
    index(ex, clock, 9_840_000)
    assert ex.account_summary(trader).state == "in_liquidation"
    before = ex.balances()
    assert ex.transfer(trader, helper, 1).reason == Reason.ACCOUNT_IN_LIQUIDATION
    assert ex.transfer(helper, trader, 1).reason == Reason.RECIPIENT_IN_LIQUIDATION
    assert ex.balances() == before
    ex.check_invariants()
