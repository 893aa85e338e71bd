"""The built-in market-data sink: counts what goes by, checks the stream is gap-free, and
measures command latency when the front end stamps ``label`` with ``monotonic_ns``.

A real publisher (public trades, book deltas over a socket, a NATS subject) is a class
with the same two methods, named by ``RuntimeConfig.market_data``.
"""

from __future__ import annotations

import time

import numpy as np

from derivex.core.records import EventKind

__all__ = ["EventStats"]


class EventStats:
    """``on_start(seq)`` once, ``on_frame`` per bus frame; ``report()`` at the end of the
    stream.

    With ``latency=True`` every command of a worker yields a sample ``monotonic_ns()`` at
    receipt of its frame ``- label`` (same clock in every process on Linux); up to
    ``max_samples`` are kept. ``first_ns``/``last_ns`` bracket the frames of worker
    traffic (the throughput window).
    """

    def __init__(self, latency: bool = False, max_samples: int = 2_000_000) -> None:
        self.latency = latency
        self.samples = np.zeros(max_samples if latency else 0, dtype=np.int64)
        self.n_samples = 0
        self.frames = self.commands = self.events = self.fills = 0
        self.gaps = 0
        self.last_seq = 0
        self.first_ns = self.last_ns = 0
        self.per_worker: dict[int, int] = {}

    def on_start(self, seq: int) -> None:
        """The stream continues after ``seq`` (a run resumed from a journal)."""
        self.last_seq = seq

    def on_frame(self, header, commands: np.ndarray, events: np.ndarray) -> None:
        now = time.monotonic_ns()
        first = int(header["first_seq"])
        self.gaps += first != self.last_seq + 1
        self.last_seq = first + len(commands) - 1
        self.frames += 1
        self.commands += len(commands)
        self.events += len(events)
        worker = int(header["worker"])
        self.per_worker[worker] = self.per_worker.get(worker, 0) + len(commands)
        kinds = events["kind"]
        self.fills += int(np.count_nonzero(kinds == EventKind.FILLED))
        if worker < 0:
            return  # the runtime's own setup commands: not part of the traffic measured
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        if self.latency:
            # the labels as the worker submitted them (events may echo another order's)
            labels = commands["label"].astype(np.int64)
            room = len(self.samples) - self.n_samples
            take = labels[:room]
            self.samples[self.n_samples : self.n_samples + len(take)] = now - take
            self.n_samples += len(take)

    def report(self) -> dict:
        out = {
            "frames": self.frames,
            "commands": self.commands,
            "fills": self.fills,
            "gaps": self.gaps,
            "last_seq": self.last_seq,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "per_worker": {str(k): v for k, v in sorted(self.per_worker.items())},
        }
        if self.latency:
            samples = self.samples[: self.n_samples]
            out["latency_samples"] = self.n_samples
            if self.n_samples:
                p50, p99, p999 = np.percentile(samples, [50, 99, 99.9])
                out["latency_ns"] = {
                    "p50": float(p50),
                    "p99": float(p99),
                    "p99.9": float(p999),
                    "max": float(samples.max()),
                }
        return out
