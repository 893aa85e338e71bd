"""kill -9 of gateway workers under a crossing flow (issue 12, finding 10): nothing a worker
acknowledged is lost or misreported. ``derivex serve --workers 2`` runs a flow from
connections on both workers; a worker is killed (SIGKILL) mid-flow, restarted by the
supervisor, and the next round starts, for ``KILLS`` kills. After a clean stop, a replay of
the whole journal must hold every acknowledged order, with at least the filled amount and
the final state that its acknowledgement gave; the restarted workers end with the
engine's state hash."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

from tests.adversarial.workers_served import (
    PERPETUAL,
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


def test_kill_9_gateway_workers_loses_no_acknowledged_order(tmp_path: Path) -> None:
    data, log = tmp_path / "venue", tmp_path / "serve.log"
    accounts, config = prepare(data, 3)
    served = Served(data, log, WORKERS)
    spec = perpetual_spec(data)
    flow = Flow()
    killed: list[tuple[int, int]] = []

    async def round_(kill: int) -> None:
        per_account = [await connections_on_every_worker(served.ws_url, account, WORKERS)
                       for account in accounts]
        try:
            ticker = await per_account[0][0].call("public/ticker",
                                                  {"instrument_name": PERPETUAL})
            mid = ticker["result"]["mark_price"]
            victim = kill % WORKERS
            generation = int(per_account[0][victim].worker.split(".")[1])
            pid = served.record("gateway worker serving", worker=victim,
                                generation=generation)["pid"]
            before = len(flow.acks)

            async def killer() -> None:
                for _ in range(12_000):  # mid-flow (bounded: 2 minutes at most)
                    if len(flow.acks) >= before + ORDERS_PER_CONNECTION:
                        break
                    await asyncio.sleep(0.01)
                os.kill(pid, signal.SIGKILL)
                killed.append((victim, generation))

            await asyncio.gather(killer(), *[
                crossing_flow(client, account.account, spec, mid, ORDERS_PER_CONNECTION,
                              seed=100 * kill + 10 * account.account + w, flow=flow)
                for account, clients in zip(accounts, per_account, strict=True)
                for w, client in enumerate(clients)])
        finally:
            for clients in per_account:
                for client in clients:
                    await client.close()
        # the supervisor restarts it; its successor catches up and serves
        await asyncio.to_thread(served.record, "gateway worker serving", 120.0,
                                worker=victim, generation=generation + 1)

    try:
        for kill in range(KILLS):
            asyncio.run(round_(kill))
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
    print(f"{len(flow.acks)} acknowledged, {flow.disconnected} cut off by {KILLS} kills, "
          f"{len(lost)} lost, {len(worse)} misreported")
    assert lost == [] and worse == [], (lost[:10], worse[:10])
