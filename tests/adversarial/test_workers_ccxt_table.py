"""Every ccxt ``deribit`` method of the coverage table (``tests/gateway/test_ccxt_coverage``:
``COVERED``, ``CALLED`` and ``PRO_COVERED``) against one ``derivex serve --workers 2``:
ccxt async for the ``COVERED`` methods, the sync client for the ``CALLED`` table (as its
single-process test), ccxt.pro for every watch method. Each client holds one connection
(the kernel places it on a worker: ``X-Derivex-Worker`` of every answer is recorded), a
write goes through one worker and what it changed is read through the other until it
matches the single-process semantics (order states, balances, positions, trades,
transfers), and both workers answer public reads alike. ``test_ccxt_coverage`` fails when
a table entry is not called here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support
import ccxt.pro
import pytest

from derivex.gateway import KeyStore
from derivex.gateway.catalog import Catalog
from derivex.gateway.errors import FORBIDDEN
from tests.adversarial.workers_served import (
    Account,
    Served,
    ccxt_config,
    connections_on_every_worker,
    prepare,
)
from tests.gateway.test_ccxt_coverage import CALLED, answers_as_listed

WORKERS = 2
PERPETUAL = "BTC_USDC-PERPETUAL"
WAIT_S = 15.0  # bound on every wait for the other worker to show a write
pytestmark = pytest.mark.integration


class Venue:
    def __init__(self, root: Path) -> None:
        self.data = root / "venue"
        self.accounts, _ = prepare(self.data, 5)
        admin = KeyStore(self.data).create(self.accounts[4].account, ("admin",), name="operator")
        self.admin = Account(self.accounts[4].account, admin.client_id, admin.client_secret)
        self.served = Served(self.data, root / "serve.log", WORKERS)
        catalog = Catalog.load(self.data / "instruments.json")
        self.options = iter([spec.name for spec in catalog if spec.kind == "option"])

    def config(self, account: Account | None = None, **extra: Any) -> dict[str, Any]:
        return ccxt_config(self.served, account, **extra)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("workers_ccxt_table"))
    try:
        yield made
    finally:
        made.served.stop()


def worker_of(client: Any) -> str:
    """The worker that gave ``client`` its last answer."""
    headers = {k.lower(): v for k, v in (client.last_response_headers or {}).items()}
    return str(headers.get("x-derivex-worker", "?")).split(".")[0]


async def on_worker(venue: Venue, worker: int, account: Account | None = None) -> Any:
    """A ccxt async client whose one connection (a session of one, kept alive) reached
    ``worker``; its markets loaded."""
    for _ in range(60):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        client = ccxt.async_support.deribit(venue.config(account, session=session))
        await client.fetch_time()
        if worker_of(client) == str(worker):
            await client.load_markets()
            assert worker_of(client) == str(worker)  # still the same connection
            return client
        await client.close()
        await session.close()
    raise AssertionError(f"no connection reached worker {worker}")


async def close(*clients: Any) -> None:
    for client in clients:
        await client.close()
        if client.session is not None:
            await client.session.close()


async def until(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> Any:
    """``read`` until ``done`` holds (the other worker walks the write's frame first)."""

    async def loop() -> Any:
        while True:
            value = await read()
            if done(value):
                return value
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(loop(), WAIT_S)


def cash(balance: dict[str, Any]) -> float:
    """The USDC cash balance in a ccxt ``fetch_balance`` answer (its ``info``: one
    account summary or several)."""
    info = balance["info"]
    summaries = info.get("summaries", [info])
    return float(next(s["balance"] for s in summaries if s["currency"] == "USDC"))


async def prices(client: Any, market: str, count: int) -> list[float]:
    """``count`` prices a tick apart from the option's mark up (inside the price band)."""
    mark = float((await client.fetch_ticker(market))["info"]["mark_price"])
    tick = float(client.markets[market]["precision"]["price"])
    first = max(round(mark / tick), 1)
    return [round((first + k) * tick, 10) for k in range(count)]


def test_rest_methods_async_across_workers(venue: Venue) -> None:
    maker_account, taker_account, main_account = venue.accounts[:3]
    name = next(venue.options)

    async def run() -> None:
        pubs = [await on_worker(venue, w) for w in range(WORKERS)]
        maker, maker_reader = [await on_worker(venue, w, maker_account) for w in (0, 1)]
        taker, taker_reader = [await on_worker(venue, w, taker_account) for w in (1, 0)]
        main, main_reader = [await on_worker(venue, w, main_account) for w in (0, 1)]
        clients = [*pubs, maker, maker_reader, taker, taker_reader, main, main_reader]
        try:
            option = maker.markets_by_id[name][0]["symbol"]
            perp = maker.markets_by_id[PERPETUAL][0]["symbol"]
            # public reads: both workers alike
            for pub in pubs:
                assert (await pub.fetch_status())["status"] == "ok"
                assert await pub.fetch_time() > 0
                assert {m["id"] for m in await pub.fetch_markets()} == set(maker.markets_by_id)
                assert "USDC" in await pub.fetch_currencies()
                assert option in await pub.fetch_tickers([option])
                assert (await pub.fetch_funding_rate(perp))["symbol"] == perp
                assert option in await pub.fetch_option_chain("BTC")
                assert (await pub.fetch_open_interest(perp))["symbol"] == perp
                assert await pub.fetch_liquidations(perp) == []
                assert isinstance(await pub.fetch_funding_rate_history(perp), list)
                assert isinstance(await pub.fetch_volatility_history("BTC"), list)
            a, b, c, d = await prices(maker, option, 4)
            # a resting sell through worker 0, seen by the maker's reader and the public
            # on both workers
            sell = await maker.create_order(option, "limit", "sell", 1, a)
            assert (sell["status"], sell["remaining"]) == ("open", 1)
            ids = await until(lambda: maker_reader.fetch_open_orders(option), lambda o: len(o) == 1)
            assert ids[0]["id"] == sell["id"]
            for pub in pubs:
                book = await until(lambda p=pub: p.fetch_order_book(option), lambda b: b["asks"])
                assert book["asks"] == [[a, 1.0]]
                assert (await pub.fetch_l2_order_book(option))["asks"] == [[a, 1.0]]
            # the taker buys through worker 1: filled at once
            buy = await taker.create_order(option, "limit", "buy", 0.4, a)
            assert (buy["status"], buy["filled"]) == ("closed", 0.4)
            mine = await until(lambda: taker_reader.fetch_my_trades(option), lambda t: t)
            assert [(t["price"], t["amount"], t["side"]) for t in mine] == [(a, 0.4, "buy")]
            order = await until(
                lambda: maker_reader.fetch_order(sell["id"], option), lambda o: o["filled"]
            )
            assert (order["status"], order["filled"], order["remaining"]) == ("open", 0.4, 0.6)
            fills = await maker_reader.fetch_order_trades(sell["id"], option)
            assert [(t["price"], t["amount"], t["side"]) for t in fills] == [(a, 0.4, "sell")]
            answers = []
            for pub in pubs:
                trades = await until(lambda p=pub: p.fetch_trades(option), lambda t: t)
                assert [(t["price"], t["amount"]) for t in trades] == [(a, 0.4)]
                assert (await pub.fetch_ticker(option))["last"] == a
                candles = await pub.fetch_ohlcv(option, "1m")
                assert candles[-1][1:6] == [a, a, a, a, 0.4]
                assert (await pub.fetch_greeks(option))["symbol"] == option
                assert (await pub.fetch_option(option))["symbol"] == option
                answers.append(repr((trades, candles)))
            assert answers[0] == answers[1]
            long = await until(
                lambda: taker_reader.fetch_positions([option]), lambda p: p and p[0]["contracts"]
            )
            assert (long[0]["side"], long[0]["contracts"]) == ("long", 0.4)
            short = await maker_reader.fetch_position(option)
            # (Deribit's ``size`` is signed, and ccxt passes it on as ``contracts``)
            assert (short["side"], short["contracts"]) == ("short", -0.4)
            # balances: the writer's and the reader's worker agree once both walked the trade
            for writer, reader in ((maker, maker_reader), (taker, taker_reader)):
                # the cash balance (equity follows the mark, which the index feed moves)
                mine = cash(await writer.fetch_balance())
                assert mine != 100_000_000  # the premium and the fee moved it
                assert (await writer.fetch_balance())["USDC"]["total"] > 0
                await until(reader.fetch_balance, lambda b, m=mine: cash(b) == m)
            assert (await maker_reader.fetch_trading_fees())[option]["symbol"] == option
            assert await maker_reader.fetch_my_liquidations(perp) == []
            # edit through worker 0, read and cancel through worker 1
            edited = await maker.edit_order(sell["id"], option, "limit", "sell", 0.6, b)
            assert edited["price"] == b
            await until(
                lambda: maker_reader.fetch_open_orders(option), lambda o: o[0]["price"] == b
            )
            await maker_reader.cancel_order(sell["id"], option)
            gone = await until(
                lambda: maker.fetch_order(sell["id"], option), lambda o: o["status"] != "open"
            )
            assert gone["status"] == "canceled"
            for price in (c, d):
                await maker.create_order(option, "limit", "sell", 0.1, price)
            await until(lambda: maker_reader.fetch_open_orders(option), lambda o: len(o) == 2)
            await maker_reader.cancel_all_orders()
            await until(lambda: maker.fetch_open_orders(option), lambda o: o == [])
            closed = await maker.fetch_closed_orders(option)
            assert sell["id"] in {o["id"] for o in closed}
            # a stop with ccxt's ``stopPrice`` is refused and places nothing (single process:
            # test_input_params)
            with pytest.raises(ccxt.BadRequest, match="-32602"):
                await taker.create_stop_market_order(option, "buy", 0.1, d)
            assert await taker_reader.fetch_open_orders(option) == []
            assert len(await taker_reader.fetch_my_trades(option)) == 1
            # subaccounts: a transfer through worker 0, read through worker 1
            own = str(main_account.account)
            sub = str((await main.private_get_create_subaccount())["result"]["id"])
            sent = await main.transfer("USDC", 12.5, own, sub)
            assert (sent["amount"], sent["status"]) == (12.5, "ok")
            moves = await until(lambda: main_reader.fetch_transfers("USDC"), lambda t: t)
            assert [(t["id"], t["amount"]) for t in moves] == [(sent["id"], 12.5)]
            accounts = await until(lambda: main_reader.fetch_accounts(), lambda x: len(x) == 2)
            assert [(x["id"], x["type"]) for x in accounts] == [
                (own, "main"),
                (sub, "subaccount"),
            ]
            # every client kept its worker (each answer above came from the one named)
            assert [worker_of(c) for c in clients] == ["0", "1", "0", "1", "1", "0", "0", "1"]
        finally:
            await close(*clients)

    asyncio.run(asyncio.wait_for(run(), 120))


def test_the_called_table_on_both_workers(venue: Venue) -> None:
    """The ``CALLED`` table (sync, as its single-process test) with the same outcomes; the
    entries alternate between clients on worker 0 and worker 1, and a placed order is read
    back through a client on the other worker."""
    account = venue.accounts[3]
    clients: dict[str, ccxt.deribit] = {}
    for _ in range(60):
        client = ccxt.deribit(venue.config(account))
        client.fetch_time()
        worker = worker_of(client)
        if worker not in clients:
            client.load_markets()
            clients[worker] = client
        if len(clients) == WORKERS:
            break
    assert sorted(clients) == ["0", "1"]
    perp = clients["0"].markets_by_id[PERPETUAL][0]["symbol"]
    seen = set()
    for k, method in enumerate(sorted(CALLED)):
        call, expected = CALLED[method]
        client, other = clients[str(k % 2)], clients[str(1 - k % 2)]
        option = client.markets_by_id[next(venue.options)][0]["symbol"]
        answers_as_listed(method, expected, call, client, option, perp)
        seen.add(worker_of(client))
        mine = client.fetch_open_orders(option)
        # the other worker shows the same open orders of this option once it walked them
        for _ in range(300):
            if [o["id"] for o in other.fetch_open_orders(option)] == [o["id"] for o in mine]:
                break
        else:
            raise AssertionError(f"{method}: worker {1 - k % 2} never showed {mine}")
        client.cancel_all_orders()
    assert seen == {"0", "1"}


def test_pro_watch_methods_across_workers(venue: Venue) -> None:
    """Every ccxt.pro watch method, its WebSocket on one worker, the writes through REST
    connections on the other."""
    maker_account, taker_account = venue.accounts[3:5]
    names = [next(venue.options), next(venue.options)]

    async def pro_on(worker: int, account: Account | None = None) -> Any:
        for _ in range(60):
            pro = ccxt.pro.deribit(venue.config(account))
            await pro.load_markets()
            await pro.watch_ticker(pro.markets_by_id[PERPETUAL][0]["symbol"])
            connection = next(iter(pro.clients.values())).connection
            if connection._response.headers.get("X-Derivex-Worker", "?")[0] == str(worker):
                return pro
            await pro.close()
        raise AssertionError(f"no WebSocket reached worker {worker}")

    async def run() -> None:
        public, watcher = await pro_on(0), await pro_on(0, taker_account)
        maker = await on_worker(venue, 1, maker_account)
        taker = await on_worker(venue, 1, taker_account)
        try:
            first, second = [maker.markets_by_id[n][0]["symbol"] for n in names]
            (a,), (z,) = await prices(maker, first, 1), await prices(maker, second, 1)
            for market, price in ((first, a), (second, z)):
                await maker.create_order(market, "limit", "sell", 0.5, price)
            ticker = await until(lambda: public.watch_ticker(first), lambda t: t["ask"] == a)
            assert ticker["askVolume"] == 0.5
            tickers: dict[str, Any] = {}

            def both(update: dict[str, Any]) -> bool:
                tickers.update(update)
                return [tickers.get(m, {}).get("ask") for m in (first, second)] == [a, z]

            await until(lambda: public.watch_tickers([first, second]), both)
            quotes = await until(
                lambda: public.watch_bids_asks([second]),
                lambda q: q.get(second, {}).get("ask") == z,
            )
            assert quotes[second]["askVolume"] == 0.5
            # its own client: a book watched twice by one client gets no second snapshot
            book = await until(lambda: watcher.watch_order_book(first), lambda b: b["asks"])
            assert book["asks"][0][:2] == [a, 0.5]
            # both snapshots arrive at once and a watch for several symbols hands the second
            # to no call (ccxt): the client's books hold both once it has read them
            await asyncio.wait_for(public.watch_order_book_for_symbols([first, second]), WAIT_S)

            def both_books(_: Any) -> bool:
                books = public.orderbooks
                tops = {
                    m: books[m]["asks"][0][0]
                    for m in (first, second)
                    if books.get(m, {}).get("asks")
                }
                return tops == {first: a, second: z}

            await until(lambda: asyncio.sleep(0), both_books)
            watches = [
                public.watch_trades(first),
                public.watch_trades_for_symbols([first, second]),
                public.watch_ohlcv(first, "1m"),
                watcher.watch_my_trades(first),
                watcher.watch_orders(first),
                watcher.watch_balance(),
            ]
            tasks = [asyncio.ensure_future(w) for w in watches]
            await asyncio.sleep(0.5)  # the subscriptions reach worker 0
            await taker.create_order(first, "limit", "buy", 0.1, a)
            trades, several, candles, mine, orders, balance = await asyncio.wait_for(
                asyncio.gather(*tasks), WAIT_S
            )
            assert [(t["price"], t["amount"]) for t in trades] == [(a, 0.1)]
            assert [(t["symbol"], t["price"]) for t in several] == [(first, a)]
            assert candles[-1][4] == a
            assert [(t["price"], t["amount"], t["side"]) for t in mine] == [(a, 0.1, "buy")]
            assert [(o["status"], o["filled"]) for o in orders] == [("closed", 0.1)]
            assert balance["info"]["currency"] == "USDC" and balance["info"]["equity"] > 0
            # the stream's latest portfolio (ccxt keeps it) equals what REST on worker 1 reads
            await until(
                taker.fetch_balance,
                lambda rest: cash(rest) == float(watcher.balance["info"]["balance"]),
            )
            candles_task = asyncio.ensure_future(
                until(
                    lambda: public.watch_ohlcv_for_symbols([[first, "1m"], [second, "1m"]]),
                    lambda c: second in c and c[second]["1m"][-1][5] >= 0.2,
                )
            )
            await asyncio.sleep(0.5)
            await taker.create_order(second, "limit", "buy", 0.2, z)
            several_candles = await candles_task
            assert several_candles[second]["1m"][-1][1:6] == [z, z, z, z, 0.2]
        finally:
            await maker.cancel_all_orders()
            await close(maker, taker)
            for pro in (public, watcher):
                await pro.close()

    asyncio.run(asyncio.wait_for(run(), 120))


def test_a_trading_key_reaches_no_admin_control_on_either_worker(venue: Venue) -> None:
    """A real trading key gets 13021 for every admin control on both workers (its own
    account as the target too), and nothing took effect: the operator reads no halted
    instrument and no blocked account on either worker, and the trader still trades."""
    from tests.gateway.test_admin_control import CONTROLS

    trader = venue.accounts[2]
    own = (
        ("private/admin_block_account", {"account": trader.account}),
        ("private/admin_unblock_account", {"account": trader.account}),
    )

    async def run() -> None:
        url = venue.served.ws_url
        traders = await connections_on_every_worker(url, trader, WORKERS)
        admins = await connections_on_every_worker(url, venue.admin, WORKERS)
        try:
            for client in traders:
                for name, params in (*CONTROLS, *own):
                    reply = await client.call(name, dict(params))
                    assert reply.get("error", {}).get("code") == FORBIDDEN == 13021, (name, reply)
            for admin in admins:
                reply = await admin.call("private/admin_get_controls")
                controls = reply["result"]
                assert not controls["instruments"] and not controls["blocked_accounts"], reply
            for client in traders:
                placed = await client.call(
                    "private/buy",
                    {"instrument_name": PERPETUAL, "amount": 0.01, "type": "market"},
                )
                # accepted (nothing rests to fill it): neither halted nor blocked
                assert placed["result"]["order"]["order_state"] in ("cancelled", "filled"), placed
        finally:
            for client in (*traders, *admins):
                await client.close()

    asyncio.run(asyncio.wait_for(run(), 60))
