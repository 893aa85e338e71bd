"""Every ccxt ``deribit`` method whose ``has`` entry is true (and every ccxt.pro ``deribit``
``watch*`` method, ``PRO_COVERED``), and what the venue does with it:
covered by a named test (the test exists and its body calls the method), or called here
against the real server with the outcome written in the table: ``ok`` (it answers) or
refused with a clear error (a ccxt error whose text contains the given words; never a
timeout, never an internal error 11094). A ccxt version that adds a method fails
``test_the_table_lists_every_method`` until the table says what happens to it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ccxt
import ccxt.pro
import pytest

from tests.gateway.conftest import Server, symbol

ROOT = Path(__file__).resolve().parents[2]
#: ``has`` entries that are capabilities, not methods
FLAGS = {"CORS", "future", "option", "spot", "swap", "sandbox", "privateAPI", "publicAPI"}

#: method -> the test that calls it (``path::name``)
COVERED: dict[str, str] = {
    "cancelAllOrders": "tests/gateway/test_ccxt_sync.py::test_edit_cancel_and_cancel_all",
    "cancelOrder": "tests/gateway/test_ccxt_sync.py::test_edit_cancel_and_cancel_all",
    "createOrder": "tests/gateway/test_ccxt_sync.py::test_order_book_ticker_and_trades",
    "createStopMarketOrder": (
        "tests/adversarial/test_input_params.py::test_ccxt_stop_orders_raise_and_place_nothing"
    ),
    "editOrder": "tests/gateway/test_ccxt_sync.py::test_edit_cancel_and_cancel_all",
    "fetchAccounts": (
        "tests/gateway/test_subaccounts.py::test_ccxt_transfer_and_fetch_transfers_sync_and_async"
    ),
    "fetchBalance": "tests/gateway/test_ccxt_sync.py::test_balance_and_positions",
    "fetchClosedOrders": "tests/adversarial/test_input_params.py::test_ccxt_calls_keep_working",
    "fetchFundingRate": "tests/gateway/test_ccxt_sync.py::test_public_misc_endpoints",
    "fetchFundingRateHistory": (
        "tests/gateway/test_history.py::test_ccxt_funding_rate_and_volatility_history"
    ),
    "fetchMyTrades": "tests/gateway/test_ccxt_sync.py::test_limit_market_fills_and_my_trades",
    "fetchOHLCV": "tests/gateway/test_channels.py::test_pro_watch_bids_asks_and_watch_ohlcv",
    "fetchOpenOrders": (
        "tests/gateway/test_ccxt_sync.py::test_ioc_reduce_only_and_market_without_liquidity"
    ),
    "fetchOrder": "tests/gateway/test_ccxt_sync.py::test_limit_market_fills_and_my_trades",
    "fetchOrderBook": "tests/gateway/test_ccxt_sync.py::test_order_book_ticker_and_trades",
    "fetchPositions": "tests/gateway/test_ccxt_sync.py::test_balance_and_positions",
    "fetchStatus": "tests/gateway/test_ccxt_sync.py::test_public_misc_endpoints",
    "fetchTicker": "tests/gateway/test_ccxt_sync.py::test_order_book_ticker_and_trades",
    "fetchTickers": "tests/gateway/test_ccxt_sync.py::test_public_misc_endpoints",
    "fetchTime": "tests/gateway/test_ccxt_sync.py::test_public_misc_endpoints",
    "fetchTrades": "tests/gateway/test_ccxt_sync.py::test_order_book_ticker_and_trades",
    "fetchTradingFees": "tests/adversarial/test_input_params.py::test_ccxt_calls_keep_working",
    "fetchTransfers": (
        "tests/gateway/test_subaccounts.py::test_ccxt_transfer_and_fetch_transfers_sync_and_async"
    ),
    "fetchVolatilityHistory": (
        "tests/gateway/test_history.py::test_ccxt_funding_rate_and_volatility_history"
    ),
    "transfer": (
        "tests/gateway/test_subaccounts.py::test_ccxt_transfer_and_fetch_transfers_sync_and_async"
    ),
}

#: ccxt.pro ``deribit`` methods whose ``has`` is true and not its REST client's (the
#: ``watch*`` streams; no ``*Ws`` method is true in ccxt.pro's deribit) -> the test that
#: calls it over the real server
PRO_COVERED: dict[str, str] = {
    "watchBalance": "tests/gateway/test_ccxt_async.py::test_pro_trades_orders_ticker_and_balance",
    "watchBidsAsks": "tests/gateway/test_channels.py::test_pro_watch_bids_asks_and_watch_ohlcv",
    "watchMyTrades": (
        "tests/gateway/test_ccxt_pro.py::test_pro_streams_for_several_symbols_and_my_trades"
    ),
    "watchOHLCV": "tests/gateway/test_channels.py::test_pro_watch_bids_asks_and_watch_ohlcv",
    "watchOHLCVForSymbols": (
        "tests/gateway/test_ccxt_pro.py::test_pro_streams_for_several_symbols_and_my_trades"
    ),
    "watchOrderBook": (
        "tests/gateway/test_ccxt_async.py::test_pro_order_book_stays_identical_to_rest"
    ),
    "watchOrderBookForSymbols": (
        "tests/gateway/test_ccxt_pro.py::test_pro_streams_for_several_symbols_and_my_trades"
    ),
    "watchOrders": "tests/gateway/test_ccxt_async.py::test_pro_trades_orders_ticker_and_balance",
    "watchTicker": "tests/gateway/test_ccxt_async.py::test_pro_trades_orders_ticker_and_balance",
    "watchTickers": (
        "tests/gateway/test_ccxt_pro.py::test_pro_streams_for_several_symbols_and_my_trades"
    ),
    "watchTrades": "tests/gateway/test_ccxt_async.py::test_pro_trades_orders_ticker_and_balance",
    "watchTradesForSymbols": (
        "tests/gateway/test_ccxt_pro.py::test_pro_streams_for_several_symbols_and_my_trades"
    ),
}

Call = Callable[[Any, str, str], Any]  # (client, option symbol, perpetual symbol)
OK = "ok"

#: method -> (the call, ``ok`` or words of the error it is refused with)
CALLED: dict[str, tuple[Call, str]] = {
    "createLimitOrder": (lambda c, o, p: c.create_limit_order(o, "buy", 1, 5.0), OK),
    "createMarketOrder": (lambda c, o, p: c.create_market_order(o, "sell", 1), OK),
    # supported; refused here because the key holds no position to reduce
    "createReduceOnlyOrder": (
        lambda c, o, p: c.create_reduce_only_order(o, "limit", "sell", 1, 5.0),
        "reduce_only_would_increase",
    ),
    # ccxt sends ``stopPrice``, which the order methods do not take (Deribit's name is
    # ``trigger_price``: ``create_order`` with ``triggerPrice`` places a stop,
    # tests/gateway/test_ccxt_triggers.py)
    "createStopOrder": (
        lambda c, o, p: c.create_stop_order(p, "limit", "buy", 1, 1000.0, 1_000_000.0),
        "stopPrice",
    ),
    "createStopLimitOrder": (
        lambda c, o, p: c.create_stop_limit_order(p, "buy", 1, 1000.0, 1_000_000.0),
        "stopPrice",
    ),
    # supported; refused on an option of its own that never traded: nothing to trail yet
    "createTrailingAmountOrder": (
        lambda c, o, p: c.create_trailing_amount_order(o, "market", "sell", 1, None, 100.0),
        "no_trigger_price",
    ),
    "createDepositAddress": (lambda c, o, p: c.create_deposit_address("USDC"), "not found"),
    "fetchDepositAddress": (lambda c, o, p: c.fetch_deposit_address("USDC"), "not found"),
    "fetchDeposits": (lambda c, o, p: c.fetch_deposits("USDC"), "not found"),
    "fetchWithdrawals": (lambda c, o, p: c.fetch_withdrawals("USDC"), "not found"),
    "withdraw": (lambda c, o, p: c.withdraw("USDC", 1, "0xabc"), "not found"),
    "fetchDepositWithdrawFees": (lambda c, o, p: c.fetch_deposit_withdraw_fees(), OK),
    "fetchCurrencies": (lambda c, o, p: c.fetch_currencies(), OK),
    "fetchMarkets": (lambda c, o, p: c.fetch_markets(), OK),
    "fetchL2OrderBook": (lambda c, o, p: c.fetch_l2_order_book(o), OK),
    "fetchGreeks": (lambda c, o, p: c.fetch_greeks(o), OK),
    "fetchOption": (lambda c, o, p: c.fetch_option(o), OK),
    "fetchOptionChain": (lambda c, o, p: c.fetch_option_chain("BTC"), OK),
    "fetchOpenInterest": (lambda c, o, p: c.fetch_open_interest(p), OK),
    "fetchOrderTrades": (
        lambda c, o, p: c.fetch_order_trades(c.create_limit_order(o, "buy", 1, 5.0)["id"], o),
        OK,
    ),
    "fetchPosition": (lambda c, o, p: c.fetch_position(p), OK),
    "fetchLiquidations": (lambda c, o, p: c.fetch_liquidations(p), OK),
    "fetchMyLiquidations": (lambda c, o, p: c.fetch_my_liquidations(p), OK),
}


def answers_as_listed(method: str, expected: str, call: Callable[..., Any], *args: Any) -> None:
    """Run ``call(*args)`` (a ccxt call of ``method``): it answers if the table says ``OK``,
    else it is refused with an error naming ``expected``; never 11094, never silence."""
    try:
        call(*args)
    except ccxt.RequestTimeout as error:  # (a subclass of NetworkError)
        raise AssertionError(f"{method}: no answer ({error})") from None
    except ccxt.BaseError as error:
        text = str(error)
        assert "11094" not in text, text
        assert expected != OK, f"{method} refused: {text}"
        assert expected in text, f"{method}: {text}"
    else:
        assert expected == OK, f"{method} answered; the table says refused ({expected})"


def _methods() -> set[str]:
    has = ccxt.deribit().has
    return {name for name, value in has.items() if value is True} - FLAGS


def test_the_table_lists_every_method() -> None:
    listed = set(COVERED) | set(CALLED)
    assert not set(COVERED) & set(CALLED)
    assert _methods() == listed, (
        f"not in the table: {sorted(_methods() - listed)}; "
        f"no longer true in ccxt: {sorted(listed - _methods())}"
    )


def _pro_methods() -> set[str]:
    rest = _methods()
    has = ccxt.pro.deribit().has
    return {name for name, value in has.items() if value is True} - FLAGS - {"ws"} - rest


def test_the_pro_table_lists_every_pro_method() -> None:
    """Every ccxt.pro method beyond the REST ones is in ``PRO_COVERED`` (a ccxt that adds
    one fails here until the table names its test)."""
    listed = set(PRO_COVERED)
    assert _pro_methods() == listed, (
        f"not in the table: {sorted(_pro_methods() - listed)}; "
        f"no longer true in ccxt.pro: {sorted(listed - _pro_methods())}"
    )


def _snake(name: str) -> str:
    """ccxt's Python name of a method: ``watchOHLCVForSymbols`` -> ``watch_ohlcv_for_symbols``."""
    name = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", name)  # the end of an acronym
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@pytest.mark.parametrize("method", sorted(COVERED) + sorted(PRO_COVERED))
def test_the_named_test_calls_the_method(method: str) -> None:
    path, name = {**COVERED, **PRO_COVERED}[method].split("::")
    tree = ast.parse((ROOT / path).read_text())
    functions = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert name in functions, f"{path} has no test {name}"
    called = {
        node.func.attr
        for node in ast.walk(functions[name])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert _snake(method) in called, f"{name} does not call {_snake(method)}"


#: the worker-mode check of the whole table (``derivex serve --workers 2``): it calls every
#: ``COVERED`` and ``PRO_COVERED`` method by name and runs every ``CALLED`` entry in
#: ``WORKERS_CALLED_TEST``
WORKERS_MODULE = "tests/adversarial/test_workers_ccxt_table.py"
WORKERS_CALLED_TEST = "test_the_called_table_on_both_workers"


@pytest.mark.parametrize("method", sorted(COVERED) + sorted(PRO_COVERED) + sorted(CALLED))
def test_every_method_has_a_worker_mode_check(method: str) -> None:
    """A table entry without a worker-mode check fails here."""
    tree = ast.parse((ROOT / WORKERS_MODULE).read_text())
    if method in CALLED:  # the worker module loops over the whole ``CALLED`` table
        tests = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == WORKERS_CALLED_TEST
        ]
        assert tests, f"{WORKERS_MODULE} has no {WORKERS_CALLED_TEST}"
        loops = [node for node in ast.walk(tests[0]) if isinstance(node, ast.For)]
        assert any("CALLED" in ast.unparse(loop.iter) for loop in loops)
        return
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert _snake(method) in called, f"{WORKERS_MODULE} does not call {_snake(method)}"


@pytest.mark.parametrize("method", sorted(CALLED))
def test_the_method_answers_or_is_refused_clearly(server: Server, method: str) -> None:
    call, expected = CALLED[method]
    client = server.sync(server.key())
    option = symbol(client, server.option())
    perpetual = symbol(client, "BTC_USDC-PERPETUAL")
    try:
        answers_as_listed(method, expected, call, client, option, perpetual)
    finally:
        client.cancel_all_orders()
