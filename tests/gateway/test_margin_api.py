"""``private/get_margins`` and ``private/simulate_portfolio`` on a real gateway around a venue
with the risk engine on (standard margin, the mark at the index, no fees): the simulated
portfolio's margins equal ``private/get_account_summary`` once the account really holds it,
an order's margin equals the rise of the account's initial margin once it rests, and
neither call changes the state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from websockets.sync.client import connect

from derivex.exchange import Exchange
from derivex.gateway.catalog import Catalog, InstrumentSpec
from derivex.gateway.errors import INVALID_INSTRUMENT, INVALID_PARAMS
from derivex.gateway.keys import KeyStore
from derivex.gateway.server import Gateway, GatewayThread
from derivex.gateway.venue import Venue
from tests.core.test_lifecycle import venue
from tests.gateway.test_dashboard_api import _Socket

PERP = "BTC_USDC-PERPETUAL"
MARK = 10_000_000  # ticks of 0.01: 100,000.00
FIGURES = ("equity", "initial_margin", "maintenance_margin", "available_funds")


@dataclass
class Risky:
    thread: GatewayThread
    exchange: Exchange
    keys: KeyStore
    perp: int
    dealer: int

    def call(self, function: Any) -> Any:
        return self.thread.call(function)

    def ws_url(self) -> str:
        return self.thread.url.replace("http://", "ws://") + "/ws/api/v2"


@pytest.fixture
def risky() -> Iterator[Risky]:
    exchange, _, perp, dealer = venue()
    spec = InstrumentSpec(perp, PERP, "perpetual", "BTC", Decimal("0.01"), Decimal("0.01"))
    keys = KeyStore(None)
    thread = GatewayThread(lambda: Gateway(Venue(exchange, Catalog([spec])), keys))
    thread.start()
    try:
        yield Risky(thread, exchange, keys, perp, dealer)
    finally:
        thread.stop()


@contextlib.contextmanager
def _trader(risky: Risky, funds: int = 50_000 * 10**6) -> Iterator[tuple[_Socket, int]]:
    account = risky.call(risky.exchange.create_account)
    risky.call(lambda: risky.exchange.deposit(account, funds))
    with connect(risky.ws_url(), open_timeout=10) as ws:
        socket = _Socket(ws)
        socket.login(risky.keys.create(account, ("read", "trade")))
        yield socket, account


def _take(risky: Risky, socket: _Socket, side: str, lots: int) -> None:
    """Trade ``lots`` at the mark against the dealer (no fee): the account holds them."""
    other = "sell" if side == "buy" else "buy"
    assert risky.call(lambda: risky.exchange.place(risky.dealer, risky.perp, other, lots, MARK))
    reply = socket.call(
        f"private/{side}",
        instrument_name=PERP,
        amount=lots / 100,
        price=MARK / 100,
        type="limit",
        time_in_force="immediate_or_cancel",
    )
    assert reply["result"]["order"]["filled_amount"] == lots / 100, reply


def _figures(reply: dict[str, Any]) -> dict[str, float]:
    return {name: reply["result"][name] for name in FIGURES}


def test_simulated_portfolio_equals_the_held_portfolio(risky: Risky) -> None:
    with _trader(risky) as (socket, _):
        before = risky.call(risky.exchange.state_hash)
        simulated = socket.call("private/simulate_portfolio", add_positions={PERP: 0.4})
        assert risky.call(risky.exchange.state_hash) == before  # nothing changed
        assert simulated["result"]["add_positions"] == {PERP: 0.4}
        assert simulated["result"]["initial_margin"] > 0
        _take(risky, socket, "buy", 40)
        held = socket.call("private/get_account_summary", currency="USDC")
        assert _figures(simulated) == _figures(held)
        # from a held position: reduce it (and a string amount with a sign)
        reduced = socket.call("private/simulate_portfolio", add_positions={PERP: "-0.15"})
        _take(risky, socket, "sell", 15)
        assert _figures(reduced) == _figures(
            socket.call("private/get_account_summary", currency="USDC")
        )
        # and through to the other side
        flipped = socket.call("private/simulate_portfolio", simulated_positions={PERP: -0.5})
        _take(risky, socket, "sell", 50)
        assert _figures(flipped) == _figures(
            socket.call("private/get_account_summary", currency="USDC")
        )


def test_order_margin_equals_the_rise_once_it_rests(risky: Risky) -> None:
    with _trader(risky) as (socket, _):
        _take(risky, socket, "buy", 10)
        price = (MARK - 5_000) / 100
        margins = socket.call("private/get_margins", instrument_name=PERP, amount=0.3, price=price)
        result = margins["result"]
        assert result["buy"] > 0 and result["min_price"] < price < result["max_price"]
        before = socket.call("private/get_account_summary", currency="USDC")["result"]
        assert result["initial_margin"] == before["initial_margin"]
        placed = socket.call("private/buy", instrument_name=PERP, amount=0.3, price=price)
        assert placed["result"]["order"]["order_state"] == "open"
        after = socket.call("private/get_account_summary", currency="USDC")["result"]
        assert after["initial_margin"] == pytest.approx(before["initial_margin"] + result["buy"])
        # a sell that only reduces the long adds nothing (the engine's rule: the larger side)
        reducing = socket.call(
            "private/get_margins", instrument_name=PERP, amount=0.05, price=(MARK + 5_000) / 100
        )
        assert reducing["result"]["sell"] <= 0


def test_simulated_portfolio_margin_equals_the_held_one() -> None:
    """Portfolio margin (scenario arrays from the pricing service): options of two expiries
    and the perpetual, simulated, then bought and sold at the mark."""
    from tests.core.test_risk import Venue as RiskVenue

    v = RiskVenue()
    specs = [InstrumentSpec(v.perp, PERP, "perpetual", "BTC", Decimal("0.01"), Decimal("0.01"))]
    names = {}
    for (days, strike, kind), instrument in v.options.items():
        names[days, strike, kind] = name = f"BTC_USDC-{days}D-{strike}-{kind[0].upper()}"
        specs.append(
            InstrumentSpec(
                instrument,
                name,
                "option",
                "BTC",
                Decimal("0.01"),
                Decimal("0.01"),
                strike=Decimal(strike),
                option_type=kind,
            )
        )
    keys = KeyStore(None)
    thread = GatewayThread(lambda: Gateway(Venue(v.ex, Catalog(specs)), keys))
    thread.start()
    try:
        account = thread.call(lambda: v.account(10**6 * 10**6))
        legs = [((30, 110_000, "call"), "sell", 10), ((7, 90_000, "put"), "buy", 20)]
        with connect(thread.url.replace("http://", "ws://") + "/ws/api/v2") as ws:
            socket = _Socket(ws)
            socket.login(keys.create(account, ("read", "trade")))
            added = {
                names[leg]: (lots if side == "buy" else -lots) / 100 for leg, side, lots in legs
            }
            added[PERP] = 0.05
            simulated = socket.call("private/simulate_portfolio", add_positions=added)
            for leg, side, lots in legs:
                thread.call(
                    lambda leg=leg, side=side, lots=lots: v.trade(
                        account, v.options[leg], side, lots
                    )
                )
            thread.call(lambda: v.trade(account, v.perp, "buy", 5))
            held = socket.call("private/get_account_summary", currency="USDC")
            assert thread.call(lambda: v.ex.account_summary(account).margin_mode) == "portfolio"
            assert _figures(simulated) == _figures(held)
            assert simulated["result"]["initial_margin"] > 0
    finally:
        thread.stop()


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("private/get_margins", {"instrument_name": "NOPE", "amount": 1, "price": 1}, 10020),
        ("private/get_margins", {"instrument_name": PERP, "amount": "x", "price": 1}, None),
        ("private/get_margins", {"instrument_name": PERP, "amount": 0, "price": 1}, None),
        ("private/get_margins", {"instrument_name": PERP, "amount": 1, "price": -1}, None),
        ("private/get_margins", {"instrument_name": PERP, "amount": 1e30, "price": 1}, None),
        ("private/simulate_portfolio", {"add_positions": [1, 2]}, INVALID_PARAMS),
        ("private/simulate_portfolio", {"add_positions": {"NOPE": 1}}, INVALID_INSTRUMENT),
        ("private/simulate_portfolio", {"add_positions": {PERP: {"a": 1}}}, INVALID_PARAMS),
        ("private/simulate_portfolio", {"add_positions": {PERP: 1e30}}, None),
        ("private/simulate_portfolio", {"add_positions": {PERP: 2**31 / 100}}, INVALID_PARAMS),
        ("private/simulate_portfolio", {"currency": "BTC"}, INVALID_PARAMS),
    ],
)
def test_bad_what_if_requests_get_clear_errors(
    risky: Risky, method: str, params: dict[str, Any], code: int | None
) -> None:
    with _trader(risky) as (socket, _):
        error = socket.call(method, **params)["error"]
        assert error["code"] != 11094, error  # never an internal error
        if code is not None:
            assert error["code"] == code, error
