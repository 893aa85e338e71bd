"""The unmodified synchronous ccxt ``deribit`` client against a real gateway: markets, market
data, order entry and its errors, queries, balances, positions, auth and isolation."""

from __future__ import annotations

import ccxt
import pytest

from tests.gateway.conftest import Server, symbol

PERP = "BTC/USDC:USDC"


def test_load_markets_lists_perpetuals_and_options(server: Server) -> None:
    client = server.sync()
    markets = client.markets
    assert markets[PERP]["swap"] and markets[PERP]["linear"] and markets[PERP]["settle"] == "USDC"
    assert markets["ETH/USDC:USDC"]["id"] == "ETH_USDC-PERPETUAL"
    assert markets[PERP]["precision"]["price"] == 0.5
    assert markets[PERP]["precision"]["amount"] == 0.0001
    options = [m for m in markets.values() if m["option"]]
    assert len(options) >= 40
    name = server.options[0]
    option = markets[symbol(client, name)]
    assert option["optionType"] in ("call", "put") and option["strike"] > 0
    assert option["expiry"] > client.milliseconds()
    assert option["symbol"].startswith("BTC/USDC:USDC-") and option["symbol"][-1] in "CP"
    assert {"BTC", "ETH", "USDC"} <= set(client.currencies)


def test_order_book_ticker_and_trades(server: Server) -> None:
    name = server.option()
    maker, taker = server.sync(server.key()), server.sync(server.key())
    market = symbol(maker, name)
    maker.create_order(market, "limit", "buy", 0.5, 1000)
    maker.create_order(market, "limit", "buy", 0.25, 995)
    maker.create_order(market, "limit", "sell", 0.3, 1100)
    book = taker.fetch_order_book(market)
    assert book["bids"] == [[1000.0, 0.5], [995.0, 0.25]]
    assert book["asks"] == [[1100.0, 0.3]]
    assert taker.fetch_order_book(market, limit=1)["bids"] == [[1000.0, 0.5]]
    fill = taker.create_order(market, "market", "sell", 0.2)
    assert fill["status"] == "closed" and fill["filled"] == 0.2 and fill["average"] == 1000.0
    ticker = taker.fetch_ticker(market)
    assert ticker["last"] == 1000.0 and ticker["bid"] == 1000.0 and ticker["ask"] == 1100.0
    assert ticker["bidVolume"] == pytest.approx(0.3) and ticker["high"] == 1000.0
    trades = taker.fetch_trades(market)
    assert [(t["price"], t["amount"], t["side"]) for t in trades] == [(1000.0, 0.2, "sell")]
    since = taker.fetch_trades(market, since=trades[0]["timestamp"])
    assert [t["id"] for t in since] == [trades[0]["id"]]
    assert taker.fetch_trades(market, since=trades[0]["timestamp"] + 1) == []


def test_limit_market_fills_and_my_trades(server: Server) -> None:
    name = server.option()
    maker, taker = server.sync(server.key()), server.sync(server.key())
    market = symbol(maker, name)
    resting = maker.create_order(market, "limit", "sell", 1.0, 2000)
    assert resting["status"] == "open" and resting["amount"] == 1.0 and resting["price"] == 2000
    taken = taker.create_order(market, "limit", "buy", 0.4, 2000)
    assert taken["status"] == "closed" and taken["filled"] == 0.4
    assert [t["takerOrMaker"] for t in taken["trades"]] == ["taker"]
    order = maker.fetch_order(resting["id"], market)
    assert order["filled"] == 0.4 and order["remaining"] == pytest.approx(0.6)
    mine = maker.fetch_my_trades(market)
    assert [(t["side"], t["amount"], t["takerOrMaker"], t["order"]) for t in mine] == [
        ("sell", 0.4, "maker", resting["id"])
    ]
    theirs = taker.fetch_my_trades(market, since=mine[0]["timestamp"])
    assert [(t["side"], t["takerOrMaker"]) for t in theirs] == [("buy", "taker")]
    assert taker.fetch_my_trades() != []  # by currency (BTC by default)


def test_post_only_crossing_is_invalid_order(server: Server) -> None:
    name = server.option()
    maker, other = server.sync(server.key()), server.sync(server.key())
    market = symbol(maker, name)
    maker.create_order(market, "limit", "sell", 0.1, 500)
    with pytest.raises(ccxt.InvalidOrder):
        other.create_order(market, "limit", "buy", 0.1, 500, params={"postOnly": True})
    passive = other.create_order(market, "limit", "buy", 0.1, 495, params={"postOnly": True})
    assert passive["status"] == "open" and passive["postOnly"] is True


def test_ioc_reduce_only_and_market_without_liquidity(server: Server) -> None:
    name = server.option()
    maker, taker = server.sync(server.key()), server.sync(server.key())
    market = symbol(maker, name)
    maker.create_order(market, "limit", "sell", 0.1, 300)
    ioc = taker.create_order(market, "limit", "buy", 0.3, 300, params={"timeInForce": "IOC"})
    assert ioc["status"] == "canceled" and ioc["filled"] == 0.1
    assert ioc["timeInForce"] == "IOC"
    assert taker.fetch_open_orders(market) == []
    # reduce-only: the taker is long 0.1; a reduce-only sell of 0.5 is clamped to 0.1
    reduce = taker.create_order(market, "limit", "sell", 0.5, 900, params={"reduceOnly": True})
    assert reduce["amount"] == 0.1 and reduce["info"]["reduce_only"] is True
    with pytest.raises(ccxt.ExchangeError):  # a reduce-only buy would increase the long
        taker.create_order(market, "limit", "buy", 0.1, 100, params={"reduceOnly": True})
    nothing = maker.create_order(market, "market", "sell", 0.1)
    assert nothing["status"] == "canceled" and nothing["filled"] == 0


def test_edit_cancel_and_cancel_all(server: Server) -> None:
    name = server.option()
    client = server.sync(server.key())
    market = symbol(client, name)
    order = client.create_order(market, "limit", "buy", 0.2, 100)
    edited = client.edit_order(order["id"], market, "limit", "buy", 0.3, 105)
    assert edited["id"] == order["id"] and edited["amount"] == 0.3 and edited["price"] == 105
    assert client.fetch_order_book(market)["bids"] == [[105.0, 0.3]]
    cancelled = client.cancel_order(order["id"], market)
    assert cancelled["status"] == "canceled"
    with pytest.raises(ccxt.InvalidOrder):  # 11044 not_open_order
        client.cancel_order(order["id"], market)
    with pytest.raises(ccxt.OrderNotFound):
        client.cancel_order("12345678901", market)
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order("not-an-id", market)
    for price in (110, 115, 120):
        client.create_order(market, "limit", "buy", 0.1, price)
    assert len(client.fetch_open_orders(market)) == 3
    client.cancel_all_orders(market)
    assert client.fetch_open_orders(market) == []
    client.create_order(market, "limit", "buy", 0.1, 110)
    client.create_order(PERP, "limit", "buy", 0.001, 1000)
    assert len(client.fetch_open_orders()) == 2  # by currency (BTC): perpetual and option
    client.cancel_all_orders()
    assert client.fetch_open_orders() == []
    assert client.fetch_order_book(market)["bids"] == []


def test_balance_and_positions(server: Server) -> None:
    maker, taker = server.sync(server.key()), server.sync(server.key())
    balance = taker.fetch_balance()
    assert balance["USDC"]["total"] == pytest.approx(10_000_000.0)
    maker.create_order("SOL/USDC:USDC", "limit", "sell", 2.0, 150)
    taker.create_order("SOL/USDC:USDC", "market", "buy", 1.5)
    positions = taker.fetch_positions()
    assert [(p["symbol"], p["side"], p["contracts"], p["entryPrice"]) for p in positions] == [
        ("SOL/USDC:USDC", "long", 1.5, 150.0)
    ]
    (short,) = maker.fetch_positions(["SOL/USDC:USDC"])
    assert short["side"] == "short" and short["contracts"] == -1.5
    after = taker.fetch_balance()["USDC"]["total"]
    assert after == pytest.approx(10_000_000.0 - 150 * 1.5 * 0.0005)  # taker fee 5 bp


def test_bad_signature_is_authentication_error(server: Server) -> None:
    key = server.key()
    client = server.sync()
    client.apiKey, client.secret = key.client_id, "not-the-secret"
    with pytest.raises(ccxt.AuthenticationError):
        client.fetch_balance()
    client.apiKey, client.secret = "unknown-id", key.client_secret
    with pytest.raises(ccxt.AuthenticationError):
        client.fetch_open_orders(PERP)


def test_keys_cannot_see_or_touch_each_other(server: Server) -> None:
    name = server.option()
    alice, bob = server.sync(server.key()), server.sync(server.key())
    market = symbol(alice, name)
    order = alice.create_order(market, "limit", "buy", 0.1, 50)
    with pytest.raises(ccxt.OrderNotFound):
        bob.fetch_order(order["id"], market)
    with pytest.raises(ccxt.OrderNotFound):
        bob.cancel_order(order["id"], market)
    with pytest.raises(ccxt.OrderNotFound):
        bob.edit_order(order["id"], market, "limit", "buy", 0.2, 55)
    assert bob.fetch_open_orders(market) == []
    bob.cancel_all_orders()
    bob.cancel_all_orders(market)
    assert [o["id"] for o in alice.fetch_open_orders(market)] == [order["id"]]
    assert alice.fetch_order(order["id"], market)["status"] == "open"


def test_read_only_key_cannot_trade(server: Server) -> None:
    reader = server.sync(server.key(scopes=("read",)))
    assert reader.fetch_balance()["USDC"]["total"] > 0
    with pytest.raises(ccxt.PermissionDenied):
        reader.create_order(PERP, "limit", "buy", 0.001, 1000)


def test_rate_limit_answers_ddos_protection(server: Server) -> None:
    from derivex.gateway.ratelimit import RateLimiter

    key = server.key()
    client = server.sync(key)
    limiter = server.gateway.limiter
    strict = RateLimiter(capacity=30, refill_per_s=0.001)
    server.thread.call(lambda: setattr(server.gateway.dispatcher, "limiter", strict))
    try:
        client.fetch_balance()  # 1 unit
        client.create_order(PERP, "limit", "buy", 0.001, 1000)  # gas_base (10) units
        client.create_order(PERP, "limit", "buy", 0.001, 1000)
        with pytest.raises(ccxt.DDoSProtection):
            client.create_order(PERP, "limit", "buy", 0.001, 1000)
    finally:
        server.thread.call(lambda: setattr(server.gateway.dispatcher, "limiter", limiter))
    client.cancel_all_orders()


def test_public_misc_endpoints(server: Server) -> None:
    client = server.sync()
    assert abs(client.fetch_time() - client.milliseconds()) < 60_000
    assert client.fetch_status()["status"] == "ok"
    assert client.fetch_funding_rate(PERP)["fundingRate"] == 0.0
    tickers = client.fetch_tickers(params={"code": "ETH"})
    assert "ETH/USDC:USDC" in tickers
    index = client.publicGetGetIndexPrice({"index_name": "btc_usdc"})
    assert "index_price" in index["result"]
