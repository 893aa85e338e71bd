"""Rebuild what the API shows of the past after a restart: ``venue_from_journal`` walks the
whole journal through a scratch engine into a new ``Venue``, so its public and private
trades (candles), closed orders and ``history.History`` (funding, marks, deliveries, cash
movements) are those of the run before, bounded as they are live; then the venue is
handed the recovered exchange. The scratch engine's final state must equal the recovered
one (state hash), else nothing is used. ``serve.open_venue`` (one process) and every
first-generation gateway worker (``--workers N``) use it.

Cost: one more replay of the journal (engine time plus O(events) of Python per batch);
skipped, with a log record, when the journal holds more than ``max_commands`` commands
or does not start at seq 1 (then the history starts empty, as on a new venue).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core import query
from derivex.core.engine import Engine
from derivex.core.records import EventKind
from derivex.gateway.catalog import Catalog
from derivex.gateway.history import history_of
from derivex.gateway.telemetry import logger
from derivex.gateway.venue import Venue

__all__ = ["venue_from_journal"]

MAX_COMMANDS = 20_000_000
_MARK = int(EventKind.MARK_CHANGED)


def venue_from_journal(
    exchange: Any,
    catalog: Catalog,
    journal: Path,
    *,
    max_commands: int = MAX_COMMANDS,
    **venue_options: Any,
) -> Venue | None:
    """A ``Venue`` over ``exchange`` (just recovered from ``journal``) whose projections
    and history walked every journaled batch; None when the journal cannot give them
    (see the module docstring)."""
    from derivex.journal import JournalReader
    from derivex.runtime.replica import ReplicaExchange

    log = logger()
    target = query.commands_processed(exchange.engine.state)
    if target == 0:
        return None
    if target > max_commands:
        log.info("history not replayed: journal too long", commands=target, limit=max_commands)
        return None
    started = time.monotonic()
    engine = Engine(exchange.engine.config)
    venue = Venue(ReplicaExchange(engine), catalog, **venue_options)
    history = history_of(venue)
    seq = 0
    for batch in JournalReader(journal):
        if seq == 0 and batch.first_seq != 1:
            log.info("history not replayed: the journal does not start at 1")
            return None
        events = engine.process_into(batch.commands)
        marks = set(np.unique(events["instrument"][events["kind"] == _MARK]).tolist())
        venue.apply_frame(batch.commands, events.copy(), int(batch.commands["ts_ns"][0]))
        history.sample(marks)
        seq = batch.last_seq
        if seq >= target:
            break
    if seq != target or engine.state_hash() != exchange.engine.state_hash():
        log.warning("history not replayed: states differ", seq=seq, recovered_seq=target)
        return None
    venue.exchange = exchange
    log.info(
        "history replayed from the journal",
        seq=seq,
        seconds=round(time.monotonic() - started, 3),
        trades=sum(len(t) for t in venue.public_trades.values()),
    )
    return venue
