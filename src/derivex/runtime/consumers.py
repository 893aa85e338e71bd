"""The two bus consumers: the journal writer (consumer 0) and market data (consumer 1).

Both read frames until the engine finishes the bus. The journal appends each frame's
commands as one journal batch (the engine's batch: a multi-record command is never split,
so a replay batch by batch reproduces the state exactly) and publishes ``durable_seq``,
which gates the responses workers hand to clients (with the default ``fsync="group"`` the
journal's flusher thread publishes it after each ``fdatasync``, which starts as soon as a
frame is written). Market data hands every frame to a
pluggable sink (:class:`derivex.runtime.market_data.EventStats` by default). On a resumed
journal both continue after ``START_SEQ``: the journal appends to the same files, and a
sink with an ``on_start(seq)`` method is told where the stream starts.
"""

from __future__ import annotations

import os
import time

from derivex.ipc import BroadcastConsumer, RingTimeout
from derivex.journal import Journal
from derivex.runtime.config import RuntimeConfig, load_callable
from derivex.runtime.control import (
    DURABLE_SEQ,
    JOURNAL_READY,
    MD_EVENTS,
    MD_READY,
    START_SEQ,
    Control,
    SegmentNames,
)
from derivex.runtime.doorbell import Doorbell, Doorbells
from derivex.runtime.frames import FRAME_DTYPE, FrameAssembler
from derivex.runtime.rings import Pauses, child_setup

__all__ = ["run_journal", "run_market_data"]

JOURNAL_CONSUMER, MARKET_DATA_CONSUMER = 0, 1
_POLL_S = 0.02  # idle wake-up: durable_seq of an interval-fsync journal moves meanwhile


def _frames(consumer: BroadcastConsumer, assembler: FrameAssembler, pause: Pauses, bell: Doorbell):
    """Yield ``None`` when idle for a poll interval, else complete frames; ends at EOF.

    Waits blocked on ``bell`` (the engine rings it after publishing frames), not in the
    ring's spin-then-``sched_yield`` wait: on a machine with fewer cores than busy
    processes, a consumer woken by every frame that spins and yields between frames
    holds a place on the run queue the engine and the gateway workers wait behind."""
    while True:
        try:
            got = consumer.pop_into(assembler.space(), timeout=0)  # (a few relaxed spins)
        except RingTimeout:
            if not bell.wait(_POLL_S):
                yield None
            continue
        if got == 0:
            return
        assembler.commit(got)
        for item in assembler.frames():
            pause()
            yield item


def run_journal(config: RuntimeConfig, names: SegmentNames, reports, parent_pid: int) -> None:
    child_setup(parent_pid)
    ctl = Control.attach(names.control)
    consumer = BroadcastConsumer.attach(names.bus, JOURNAL_CONSUMER, FRAME_DTYPE)
    journal = None
    last = ctl.get(START_SEQ)
    group = config.fsync == "group"
    # the workers' ``durable`` doorbells: rung each time DURABLE_SEQ moves (their gates
    # wait on them instead of polling)
    bells = Doorbells(config.name, config.workers)
    durable_rung = [Doorbell(path) for path in bells.durable]
    bell = Doorbell(bells.bus[JOURNAL_CONSUMER])

    def tell(seq: int) -> None:
        ctl.set(DURABLE_SEQ, seq)
        for waiter in durable_rung:
            waiter.ring()

    def published(seq: int) -> None:  # the flusher thread, after each group flush
        tell(seq)

    if config.journal_dir is not None:
        journal = Journal(
            config.journal_dir, fsync=config.fsync, on_durable=published if group else None
        )
        journal.attach(config.engine)
        if journal.last_seq != last:
            raise RuntimeError(f"journal ends at {journal.last_seq}, the run starts at {last}")
    durable = last
    ctl.set(DURABLE_SEQ, durable)
    ctl.set(JOURNAL_READY, os.getpid())
    pause = Pauses(config.pause_probability, config.max_pause_s, f"journal:{config.pause_seed}")
    frames = 0
    gaps = 0
    for item in _frames(consumer, FrameAssembler(), pause, bell):
        if item is not None:
            head, commands, _ = item
            first = int(head["first_seq"])
            gaps += first != last + 1
            if journal is not None:
                journal.append(commands)
            last = first + len(commands) - 1
            frames += 1
        # what the fsync policy acknowledges, as the embedded Exchange.submit does:
        # "group": the flusher publishes each flush it completes (``published``);
        # "batch": fsynced; "interval" and "none": written (in the page cache, so it
        # survives a crash of any process; "interval" syncs it within interval_ms)
        if group and journal is not None:
            continue
        seen = journal.durable_seq if journal is not None and config.fsync == "batch" else last
        if seen != durable:
            durable = seen
            tell(durable)
    if journal is not None:
        journal.close()
    tell(last)
    for waiter in durable_rung:
        waiter.close()
    bell.close()
    reports.put(
        {"role": "journal", "pid": os.getpid(), "last_seq": last, "frames": frames, "gaps": gaps}
    )
    consumer.close()
    ctl.close()


def run_market_data(config: RuntimeConfig, names: SegmentNames, reports, parent_pid: int) -> None:
    child_setup(parent_pid)
    ctl = Control.attach(names.control)
    consumer = BroadcastConsumer.attach(names.bus, MARKET_DATA_CONSUMER, FRAME_DTYPE)
    sink = load_callable(config.market_data)(**config.market_data_options)
    if hasattr(sink, "on_start"):
        sink.on_start(ctl.get(START_SEQ))
    ctl.set(MD_READY, os.getpid())
    pause = Pauses(config.pause_probability, config.max_pause_s, f"md:{config.pause_seed}")
    bell = Doorbell(Doorbells(config.name, config.workers).bus[MARKET_DATA_CONSUMER])
    events = 0
    started = time.monotonic()
    for item in _frames(consumer, FrameAssembler(), pause, bell):
        if item is None:
            continue
        head, commands, frame_events = item
        sink.on_frame(head, commands, frame_events)
        events += len(frame_events)
        ctl.set(MD_EVENTS, events)
    report = {
        "role": "market_data",
        "pid": os.getpid(),
        "events": events,
        "seconds": time.monotonic() - started,
        **sink.report(),
    }
    reports.put(report)
    bell.close()
    consumer.close()
    ctl.close()
