"""kill -9 of gateway workers under a crossing flow (issue 12, finding 10): nothing a worker
acknowledged is lost or misreported. ``derivex serve --workers 2`` runs a flow from
connections on both workers; a worker is killed (SIGKILL) mid-flow, restarted by the
supervisor, and the next round starts, for ``KILLS`` kills. After a clean stop, a replay of
the whole journal must hold every acknowledged order, with at least the filled amount and
the final state that its acknowledgement gave; the restarted workers end with the
engine's state hash; and every acknowledged order reads, on every worker (restarted ones
too: they replay the run into their venue), exactly as the journal replay has it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

from tests.adversarial.workers_served import (
    PERPETUAL,
    Ack,
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
KILLS = 3
ORDERS_PER_CONNECTION = 600


# a scenario read top to bottom: its steps are the branches
def test_kill_9_gateway_workers_loses_no_acknowledged_order(tmp_path: Path) -> None:  # noqa: C901
    data, log = tmp_path / "venue", tmp_path / "serve.log"
    accounts, config = prepare(data, 3)
    served = Served(data, log, WORKERS)
    spec = perpetual_spec(data)
    flow = Flow()
    killed: list[tuple[int, int]] = []

    async def round_(kill: int) -> None:
        per_account = [
            await connections_on_every_worker(served.ws_url, account, WORKERS)
            for account in accounts
        ]
        try:
            ticker = await per_account[0][0].call("public/ticker", {"instrument_name": PERPETUAL})
            mid = ticker["result"]["mark_price"]
            victim = kill % WORKERS
            generation = int(per_account[0][victim].worker.split(".")[1])
            pid = served.record("gateway worker serving", worker=victim, generation=generation)[
                "pid"
            ]
            before = len(flow.acks)

            async def killer() -> None:
                for _ in range(12_000):  # mid-flow (bounded: 2 minutes at most)
                    if len(flow.acks) >= before + ORDERS_PER_CONNECTION:
                        break
                    await asyncio.sleep(0.01)
                os.kill(pid, signal.SIGKILL)
                killed.append((victim, generation))

            await asyncio.gather(
                killer(),
                *[
                    crossing_flow(
                        client,
                        account.account,
                        spec,
                        mid,
                        ORDERS_PER_CONNECTION,
                        seed=100 * kill + 10 * account.account + w,
                        flow=flow,
                    )
                    for account, clients in zip(accounts, per_account, strict=True)
                    for w, client in enumerate(clients)
                ],
            )
        finally:
            for clients in per_account:
                for client in clients:
                    await client.close()
        # the supervisor restarts it; its successor catches up and serves
        await asyncio.to_thread(
            served.record, "gateway worker serving", 120.0, worker=victim, generation=generation + 1
        )

    async def read_back() -> list[tuple[Ack, str, str, float]]:
        """Every acknowledged order as its owner reads it on every worker (the restarted
        ones included), after a barrier command from each connection."""
        reads = []
        for account in accounts:
            clients = await connections_on_every_worker(served.ws_url, account, WORKERS)
            try:
                for client in clients:
                    await client.call(
                        "private/cancel_all_by_instrument",
                        {"instrument_name": "ETH_USDC-PERPETUAL"},
                    )
                mine = [ack for ack in flow.acks if ack.account == account.account]
                for client in clients:
                    replies = await asyncio.gather(
                        *[
                            client.call("private/get_order_state", {"order_id": ack.order_id})
                            for ack in mine
                        ]
                    )
                    for ack, reply in zip(mine, replies, strict=True):
                        assert "result" in reply, (client.worker, ack.order_id, reply)
                        order = reply["result"]
                        assert order["label"] == ack.label, (client.worker, order)
                        reads.append(
                            (ack, client.worker, order["order_state"], order["filled_amount"])
                        )
            finally:
                for client in clients:
                    await client.close()
        return reads

    try:
        for kill in range(KILLS):
            asyncio.run(round_(kill))
        reads = asyncio.run(read_back())
    finally:
        status, out = served.stop()
    assert status == 0, out
    assert len(killed) == KILLS
    summary = json.loads(re.search(r"derivex stopped: (\{.*\})", out).group(1))  # type: ignore[union-attr]
    assert summary["failure"] is None, summary
    finals = [w for w in summary["workers"] if w["state_hash"] is not None]
    assert finals and all(w["state_hash"] == summary["engine"]["state_hash"] for w in finals)

    truth = journal_truth(data, config)
    assert flow.disconnected > 0  # the kills did cut requests off
    assert not [e for e in flow.errors if e["code"] == 11094], flow.errors[:5]
    lost, worse = [], []
    for ack in flow.acks:
        found = truth.get(engine_order_id(ack.order_id))
        if found is None:
            lost.append(ack.order_id)
            continue
        state, lots = found
        if spec.amount(lots) < ack.filled or (ack.state != "open" and state != ack.state):
            worse.append((ack.order_id, ack.state, ack.filled, state, spec.amount(lots)))
    wrong = [
        (ack.order_id, worker, state, filled, truth[engine_order_id(ack.order_id)])
        for ack, worker, state, filled in reads
        if (state, filled)
        != (
            truth[engine_order_id(ack.order_id)][0],
            spec.amount(truth[engine_order_id(ack.order_id)][1]),
        )
    ]
    restarted = {worker for _, worker, _, _ in reads if not worker.endswith(".0")}
    print(
        f"{len(flow.acks)} acknowledged, {flow.disconnected} cut off by {KILLS} kills, "
        f"{len(lost)} lost, {len(worse)} misreported; {len(reads)} reads on workers "
        f"{sorted({w for _, w, _, _ in reads})}, {len(wrong)} wrong"
    )
    assert lost == [] and worse == [], (lost[:10], worse[:10])
    assert restarted  # read back on restarted workers too
    assert wrong == [], wrong[:10]
