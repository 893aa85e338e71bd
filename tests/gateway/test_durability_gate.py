"""The gateway's durability gate pieces that worker mode adds: the split of held frames
when the journal stalls, and the watcher of a durable seq published by another process."""

from __future__ import annotations

import threading
import time

import orjson

from derivex.gateway.durability import SharedDurability, outcome_unknown_frames
from derivex.gateway.errors import OUTCOME_UNKNOWN


def test_a_stall_answers_results_13888_sends_errors_and_keeps_notifications() -> None:
    order = {"order_id": "7", "label": "mine", "order_state": "open"}
    frames = [
        orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"order": order}, "usIn": 5}),
        orjson.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {"data": 1}}),
        orjson.dumps({"jsonrpc": "2.0", "id": 2, "error": {"code": 10004, "message": "x"}}),
        orjson.dumps({"jsonrpc": "2.0", "id": 3, "result": order}),  # a cancel's reply
        orjson.dumps({"jsonrpc": "2.0", "id": 4, "result": []}),
    ]
    now, later = outcome_unknown_frames(frames)
    assert later == [frames[1]]
    sent = [orjson.loads(f) for f in now]
    assert [m["id"] for m in sent] == [1, 2, 3, 4]
    assert sent[1] == orjson.loads(frames[2])  # an error changed nothing: as it is
    for message in (sent[0], sent[2], sent[3]):
        assert "result" not in message
        assert message["error"]["code"] == OUTCOME_UNKNOWN
        assert message["error"]["data"]["reason"] == "outcome_unknown"
    assert sent[0]["error"]["data"]["label"] == "mine"
    assert sent[2]["error"]["data"]["label"] == "mine"
    assert "label" not in sent[3]["error"]["data"]
    assert sent[0]["usOut"] >= sent[0]["usIn"]


def test_shared_durability_reports_each_advance_once_it_is_kicked() -> None:
    durable, applied = [0], [0]
    seen: list[int] = []
    advanced = threading.Event()

    def on_durable(seq: int) -> None:
        seen.append(seq)
        advanced.set()

    watcher = SharedDurability(lambda: durable[0], lambda: applied[0], poll_s=0.0005)
    watcher.on_durable = on_durable
    try:
        time.sleep(0.05)
        assert seen == []  # asleep until kicked
        applied[0] = 10  # applied, not durable: the watcher polls once kicked
        watcher.kick()
        assert advanced.wait(2.0) and seen == [0]  # its first look
        advanced.clear()
        time.sleep(0.05)
        assert seen == [0]
        durable[0] = 4
        assert advanced.wait(2.0)
        advanced.clear()
        durable[0] = 10
        assert advanced.wait(2.0)
        assert seen == [0, 4, 10]
        advanced.clear()
        # everything durable: it sleeps until the next kick
        durable[0] = 12
        time.sleep(0.05)
        assert seen == [0, 4, 10]
        applied[0] = 12
        watcher.kick()
        assert advanced.wait(2.0) and seen[-1] == 12
    finally:
        watcher.stop()
