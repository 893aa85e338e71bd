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
