"""Worker mode answers as the single-process venue does (issue 12, finding 10).

One ``derivex serve --workers 2`` (no agents) over a venue prepared with funded accounts:

- the banner is printed once every worker serves (the port accepts);
- option IV and Greeks are the same, and set, on every worker;
- a bearer / refresh token issued by one worker works on the other; a used refresh token
  and a logged-out access token are refused by every worker;
- ``/metrics``, whichever worker answers, holds every worker's series labelled ``worker``;
- the engine or the journal writer stalled (SIGSTOP) after a submission: the order gets
  13888 ``outcome_unknown`` with its label; after SIGCONT the next request gets its own
  reply, and the stalled order is found by its label on every worker;
- a crossing flow from 6 connections (3 accounts, each on both workers): afterwards every
  acknowledged order's state and filled amount, read by its owner on either worker,
  equals the engine's (a replay of the journal after the stop).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from derivex.gateway.catalog import Catalog
from tests.adversarial.workers_served import (
    PERPETUAL,
    Account,
    Client,
    Flow,
    Served,
    connections_on_every_worker,
    crossing_flow,
    engine_order_id,
    journal_truth,
    perpetual_spec,
    prepare,
)

WORKERS = 2
ACCOUNTS = 3
ORDERS_PER_CONNECTION = int(os.environ.get("DERIVEX_WORKERS_TEST_ORDERS", "2000"))
SUBMIT_TIMEOUT_S = 3.0


class Venue:
    def __init__(self, root: Path) -> None:
        self.data, self.log = root / "venue", root / "serve.log"
        self.accounts, self.config = prepare(self.data, ACCOUNTS)
        self.served = Served(self.data, self.log, WORKERS, SUBMIT_TIMEOUT_S)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    made = Venue(tmp_path_factory.mktemp("workers"))
    try:
        yield made
    finally:
        made.served.stop()


async def _fresh_get(
    url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[str, int, Any]:
    """One GET on a new connection (the kernel picks the worker): (worker, status, body)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, params=params, headers=headers) as response,
    ):
        body = await response.read()
        worker = response.headers.get("X-Derivex-Worker", "?").split(".")[0]
        kind = response.headers.get("Content-Type", "")
        return worker, response.status, (await response.json() if "json" in kind else body.decode())


def test_banner_printed_once_every_worker_serves(venue: Venue) -> None:
    """``Served`` asked the port right after the banner (no retry); the log shows every
    worker serving before the supervisor's "runtime serving" (then the banner)."""
    lines = venue.log.read_text()[venue.served.offset :].splitlines()
    serving = [k for k, line in enumerate(lines) if '"gateway worker serving"' in line]
    announced = next(k for k, line in enumerate(lines) if '"runtime serving"' in line)
    assert len(serving) >= WORKERS and max(serving[:WORKERS]) < announced


def test_option_iv_and_greeks_equal_on_every_worker(venue: Venue) -> None:
    catalog = Catalog.load(venue.data / "instruments.json")
    option = next(spec.name for spec in catalog if spec.kind == "option")
    url = f"{venue.served.url}/api/v2/public/ticker"

    async def burst() -> list[tuple[str, Any]]:
        answers = await asyncio.gather(
            *[_fresh_get(url, {"instrument_name": option}) for _ in range(8)]
        )
        return [
            (worker, (body["result"]["mark_iv"], body["result"]["greeks"]))
            for worker, _, body in answers
        ]

    seen: list[Any] = []
    for _ in range(40):  # the pricing service reprices every 2 s: find a burst between
        answers = asyncio.run(burst())
        seen.append(answers)
        workers = {worker for worker, _ in answers}
        views = {repr(view) for _, view in answers}
        if workers == {"0", "1"} and len(views) == 1 and answers[0][1][0] > 0:
            greeks = answers[0][1][1]
            assert any(greeks[name] != 0 for name in ("delta", "gamma", "vega")), greeks
            return
        time.sleep(0.25)
    raise AssertionError(f"no burst with equal, non-zero views from both workers: {seen[-3:]}")


def test_token_issued_on_one_worker_works_on_every_worker(venue: Venue) -> None:
    account = venue.accounts[0]
    base = f"{venue.served.url}/api/v2"

    async def run() -> None:
        issuer, status, body = await _fresh_get(
            f"{base}/public/auth",
            {
                "grant_type": "client_credentials",
                "client_id": account.client_id,
                "client_secret": account.secret,
            },
        )
        assert status == 200, body
        tokens = body["result"]
        answered: set[str] = set()
        for _ in range(40):
            worker, status, body = await _fresh_get(
                f"{base}/private/get_account_summary",
                {"currency": "USDC"},
                {"Authorization": f"bearer {tokens['access_token']}"},
            )
            assert status == 200 and "result" in body, (worker, body)
            answered.add(worker)
            if answered == {"0", "1"}:
                break
        assert answered == {"0", "1"}, answered
        # the refresh token too, on whichever worker, once: spent for every worker
        worker, status, body = await _fresh_get(
            f"{base}/public/auth",
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert status == 200 and "access_token" in body["result"], (issuer, worker, body)
        fresh = body["result"]
        again = set()
        for _ in range(40):
            worker, status, body = await _fresh_get(
                f"{base}/public/auth",
                {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            )
            assert "error" in body and body["error"]["code"] == 13009, (worker, body)
            again.add(worker)
            if again == {"0", "1"}:
                break
        assert again == {"0", "1"}, again
        # logout on one worker ends the token on every worker
        bearer = {"Authorization": f"bearer {fresh['access_token']}"}
        worker, status, body = await _fresh_get(
            f"{base}/private/logout", {"access_token": fresh["access_token"]}, bearer
        )
        assert body.get("result") == "ok", (worker, body)
        refused = set()
        for _ in range(40):
            worker, status, body = await _fresh_get(
                f"{base}/private/get_account_summary", {"currency": "USDC"}, bearer
            )
            assert "error" in body and body["error"]["code"] == 13009, (worker, body)
            refused.add(worker)
            if refused == {"0", "1"}:
                break
        assert refused == {"0", "1"}, refused
        # a forged token (mac of another key) is refused everywhere
        forged = tokens["access_token"][:-4] + (
            "0000" if not tokens["access_token"].endswith("0000") else "1111"
        )
        for _ in range(6):
            worker, status, body = await _fresh_get(
                f"{base}/private/get_account_summary",
                {"currency": "USDC"},
                {"Authorization": f"bearer {forged}"},
            )
            assert "error" in body and body["error"]["code"] == 13009, (worker, body)

    asyncio.run(run())


def test_metrics_cover_every_worker(venue: Venue) -> None:
    base = venue.served.url

    async def run() -> None:
        for _ in range(10):  # requests on both workers
            await _fresh_get(f"{base}/api/v2/public/test")
        deadline = time.monotonic() + 30
        covered: set[str] = set()
        while time.monotonic() < deadline:
            worker, status, text = await _fresh_get(f"{base}/metrics")
            assert status == 200
            lines = [
                line
                for line in text.splitlines()
                if line.startswith("derivex_gateway_requests_total{")
            ]
            labelled = {
                part.split('"')[1]
                for line in lines
                for part in line.split(",")
                if part.startswith("worker=")
            }
            assert all("worker=" in line for line in lines), lines
            if labelled == {"0", "1"}:
                covered.add(worker)  # this worker's scrape had both workers' series
                if covered == {"0", "1"}:
                    return
            await asyncio.sleep(0.2)
        raise AssertionError(f"scrapes covering both workers came only from {covered}")

    asyncio.run(run())


@pytest.mark.parametrize("stalled_role", ["engine", "journal"])
def test_stall_gives_outcome_unknown_and_no_mismatched_replies(
    venue: Venue, stalled_role: str
) -> None:
    """The engine (nothing sequenced) or the journal writer (sequenced, not durable)
    stopped while an order is submitted."""
    spec = perpetual_spec(venue.data)
    account = venue.accounts[0]
    stalled_pid = venue.served.pids[stalled_role]
    tag = stalled_role

    async def run() -> None:
        clients = await connections_on_every_worker(venue.served.ws_url, account, WORKERS)
        try:
            book = await clients[0].call("public/ticker", {"instrument_name": PERPETUAL})
            price = round(
                book["result"]["mark_price"] * 0.99 / float(spec.tick_size_ticks * spec.price_unit)
            ) * float(spec.tick_size_ticks * spec.price_unit)
            order = {
                "instrument_name": PERPETUAL,
                "amount": spec.amount(spec.min_trade_lots),
                "type": "limit",
                "price": price,
            }
            os.kill(stalled_pid, signal.SIGSTOP)
            try:
                stalled = await clients[0].call(
                    "private/buy",
                    {**order, "label": f"stalled-{tag}"},
                    timeout=SUBMIT_TIMEOUT_S * 10,
                )
            finally:
                os.kill(stalled_pid, signal.SIGCONT)
            assert stalled["error"]["code"] == 13888, stalled
            assert stalled["error"]["data"] == {
                "reason": "outcome_unknown",
                "label": f"stalled-{tag}",
            }, stalled
            # the late batch of the stalled submit answers nobody: each reply is its own
            for k in range(5):
                after = await clients[0].call("private/buy", {**order, "label": f"after{k}-{tag}"})
                assert after["result"]["order"]["label"] == f"after{k}-{tag}", after
            # barrier: a command from each worker (applied after everything before it)
            for client in clients:
                await client.call(
                    "private/cancel_all_by_instrument", {"instrument_name": "ETH_USDC-PERPETUAL"}
                )
            for client in clients:
                reply = await client.call(
                    "private/get_open_orders_by_instrument", {"instrument_name": PERPETUAL}
                )
                labels = [o["label"] for o in reply["result"]]
                assert labels.count(f"stalled-{tag}") == 1, (client.worker, labels)
                assert all(labels.count(f"after{k}-{tag}") == 1 for k in range(5)), labels
            await clients[0].call("private/cancel_all", {})
        finally:
            for client in clients:
                await client.close()

    asyncio.run(run())


def test_reply_waits_for_the_disk_while_the_worker_goes_on(venue: Venue) -> None:
    """A worker's replies wait for the disk (the gateway's ``DurabilityGate``, not a
    blocking wait in ``submit``): with the journal writer stopped, an order is sequenced
    and applied but its reply is held; after SIGCONT (before ``submit_timeout_s``) it goes
    out with its result, not as outcome unknown."""
    spec = perpetual_spec(venue.data)
    account = venue.accounts[1]
    journal_pid = venue.served.pids["journal"]

    async def run() -> None:
        clients = await connections_on_every_worker(venue.served.ws_url, account, WORKERS)
        try:
            ticker = await clients[0].call("public/ticker", {"instrument_name": PERPETUAL})
            unit = float(spec.tick_size_ticks * spec.price_unit)
            price = round(ticker["result"]["mark_price"] * 0.98 / unit) * unit
            order = {
                "instrument_name": PERPETUAL,
                "amount": spec.amount(spec.min_trade_lots),
                "type": "limit",
                "price": price,
                "label": "held-for-disk",
            }
            os.kill(journal_pid, signal.SIGSTOP)
            try:
                pending = asyncio.ensure_future(clients[0].call("private/buy", order))
                done, _ = await asyncio.wait({pending}, timeout=SUBMIT_TIMEOUT_S / 3)
                assert not done, "a reply left before its order was durable"
                sequenced = time.monotonic()
            finally:
                os.kill(journal_pid, signal.SIGCONT)
            reply = await pending
            assert time.monotonic() - sequenced < SUBMIT_TIMEOUT_S, "answered by the timeout"
            assert reply["result"]["order"]["label"] == "held-for-disk", reply
            await clients[0].call("private/cancel_all", {})
        finally:
            for client in clients:
                await client.close()

    asyncio.run(run())


def test_crossing_flow_every_order_reads_as_the_engine_has_it(venue: Venue) -> None:
    spec = perpetual_spec(venue.data)
    flow = Flow()

    async def run() -> list[tuple[Any, str, str, float]]:
        per_account: list[tuple[Account, list[Client]]] = []
        for account in venue.accounts:
            clients = await connections_on_every_worker(venue.served.ws_url, account, WORKERS)
            per_account.append((account, clients))
        try:
            ticker = await per_account[0][1][0].call(
                "public/ticker", {"instrument_name": PERPETUAL}
            )
            mid = ticker["result"]["mark_price"]
            started = time.monotonic()
            await asyncio.gather(
                *[
                    crossing_flow(
                        client,
                        account.account,
                        spec,
                        mid,
                        ORDERS_PER_CONNECTION,
                        seed=10 * account.account + w,
                        flow=flow,
                    )
                    for account, clients in per_account
                    for w, client in enumerate(clients)
                ]
            )
            flow.seconds = time.monotonic() - started
            # barrier: one command from every connection, after every flow has ended
            for _, clients in per_account:
                for client in clients:
                    await client.call(
                        "private/cancel_all_by_instrument",
                        {"instrument_name": "ETH_USDC-PERPETUAL"},
                    )
            reads = []
            for account, clients in per_account:
                mine = [ack for ack in flow.acks if ack.account == account.account]
                seen: list[list[Any]] = []
                for client in clients:  # the owner, on every worker
                    replies = await asyncio.gather(
                        *[
                            client.call("private/get_order_state", {"order_id": ack.order_id})
                            for ack in mine
                        ]
                    )
                    seen.append([reply["result"] for reply in replies])
                    for ack, reply in zip(mine, replies, strict=True):
                        order = reply["result"]
                        assert order["label"] == ack.label, (client.worker, order, ack.label)
                        reads.append(
                            (ack, client.worker, order["order_state"], order["filled_amount"])
                        )
                # every field alike on every worker (prices, times, fees, flags...)
                differ = [(a, b) for a, b in zip(seen[0], seen[1], strict=True) if a != b]
                assert differ == [], differ[:5]
            # trades as each worker shows them to the owner (marks excluded: a worker
            # reads them when it walks the batch, the one process when it made it)
            for _, clients in per_account:
                shown = []
                for client in clients:
                    reply = await client.call(
                        "private/get_user_trades_by_instrument",
                        {"instrument_name": PERPETUAL, "count": 1000, "sorting": "desc"},
                    )
                    shown.append(
                        [
                            (
                                t["trade_id"],
                                t["trade_seq"],
                                t["order_id"],
                                t["price"],
                                t["amount"],
                                t["direction"],
                                t["liquidity"],
                                t["fee"],
                                t["timestamp"],
                                t["tick_direction"],
                            )
                            for t in reply["result"]["trades"]
                        ]
                    )
                assert shown[0] and all(other == shown[0] for other in shown[1:])
            return reads
        finally:
            for _, clients in per_account:
                for client in clients:
                    await client.close()

    reads = asyncio.run(run())
    status, out = venue.served.stop()
    assert status == 0, out
    truth = journal_truth(venue.data, venue.config)
    acks = flow.acks
    assert len(acks) > ORDERS_PER_CONNECTION, (len(acks), flow.errors[:5])
    assert not [e for e in flow.errors if e["code"] == 11094], flow.errors[:5]
    wrong = []
    for ack, worker, state, filled in reads:
        expected_state, lots = truth[engine_order_id(ack.order_id)]
        if (state, filled) != (expected_state, spec.amount(lots)):
            wrong.append((ack.order_id, worker, state, filled, expected_state, spec.amount(lots)))
    crossed_later = sum(
        1 for ack in acks if ack.state == "open" and truth[engine_order_id(ack.order_id)][1] > 0
    )
    codes = Counter(error["code"] for error in flow.errors)
    print(
        f"{len(acks)} orders acknowledged (errors {dict(codes)}) in {flow.seconds:.1f} s, "
        f"{crossed_later} acknowledged open and filled later, {len(reads)} reads, "
        f"{len(wrong)} wrong"
    )
    assert crossed_later > 0  # the flow did fill resting orders after their ack
    assert wrong == [], f"{len(wrong)} of {len(reads)} reads differ: {wrong[:10]}"
