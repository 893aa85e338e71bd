"""Batches sequenced elsewhere, walked in seq order with the venue's own: ``DeferredBatches``
(the base of ``Venue``, on top of the event projection).

With several gateway workers, the engine sequences other workers' commands between this
one's; their batches come back on the bus (``defer_frame``) and are queued until the venue's
own events that follow them are walked, so a fill of one of our orders by another worker
finds the order's record. A submission whose outcome was unknown (``OutcomeUnknown``: the
engine or the journal stalled) keeps what the venue knew of its commands (``unresolved``)
until their batch arrives.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter

import numpy as np

from derivex.core import codec
from derivex.core.records import CommandKind
from derivex.exchange import Exchange
from derivex.gateway.catalog import Catalog
from derivex.gateway.labels import SharedLabels
from derivex.gateway.linked_records import frame_pending
from derivex.gateway.order_records import (
    ORDER_TYPE_NAMES,
    TIF_NAMES_BY_CODE,
    Deferred,
    OutcomeUnknown,
    Pending,
    Update,
)
from derivex.gateway.projection import _MASS_QUOTE, _PLACE_ORDER, _PLACE_TRIGGER, Projection

_PLACE_LINKED = int(CommandKind.PLACE_LINKED)
#: commands whose record's label word is the order's label key (a PLACE_LINKED's legs carry
#: theirs: ``frame_pending``)
_LABELLED = (_PLACE_ORDER, _MASS_QUOTE, _PLACE_TRIGGER)


class DeferredBatches(Projection):
    """The event projection, walking batches sequenced elsewhere in seq order with this
    venue's own (see the module docstring)."""

    def __init__(
        self,
        exchange: Exchange,
        catalog: Catalog,
        *,
        history: int = 10_000,
        closed_orders: int = 200_000,
        labels: SharedLabels | None = None,
    ) -> None:
        # batches sequenced elsewhere, in seq order, that the exchange met while it waited
        # for ours: walked before our commands that come after them (a fill of one of our
        # orders by another worker must find the order's record), the rest after ours
        self.deferred: deque[Deferred] = deque()
        # submission position -> what the venue knew of a command whose outcome was
        # unknown (its batch is walked with it when it arrives: the label stays)
        self.unresolved: dict[int, Pending] = {}
        super().__init__(
            exchange, catalog, history=history, closed_orders=closed_orders, labels=labels
        )

    def apply(self, events: np.ndarray, now_ms: int | None = None) -> Update:
        """Walk one command's (or one batch's) events: update records and history, then
        notify the listeners. ``now_ms``: the command's sequencer time (default: the
        engine's clock). Cost: O(events); fields are decoded from the records' 64-bit
        words (one ``tolist`` call, no per-field numpy access)."""
        if not len(events):
            if self.deferred:
                self.walk_deferred()
            return Update()
        rows = codec.event_rows(events)
        if self.deferred:  # others' batches sequenced before this one first
            self.walk_deferred(rows[0][0])
        update = self._walk(rows, self._pending, self.now_ms() if now_ms is None else now_ms)
        if self.deferred:
            self.walk_deferred()
        return update

    def defer_frame(
        self,
        commands: np.ndarray,
        events: np.ndarray,
        ts_ns: int,
        first_position: int | None = None,
    ) -> None:
        """Queue a batch sequenced elsewhere (another worker's; or, with
        ``first_position``, this submitter's commands from that position on whose outcome
        was unknown) to be walked in seq order with the venue's own commands: before a
        later own command's events, or by ``walk_deferred``. Cost O(1) (a batch arriving
        out of order, which only a late batch of ours can, sorts the queue)."""
        entry = Deferred(int(commands["seq"][0]), commands, events, ts_ns, first_position)
        queue = self.deferred
        queue.append(entry)
        if len(queue) > 1 and queue[-2].first_seq > entry.first_seq:
            ordered = sorted(queue, key=lambda d: d.first_seq)
            queue.clear()  # in place: a walk in progress holds this deque
            queue.extend(ordered)

    def walk_deferred(self, before_seq: int | None = None, budget_s: float | None = None) -> int:
        """Walk the queued batches (those sequenced before ``before_seq``; None: all),
        oldest first; with ``budget_s``, stop after the batch that used it up (the rest
        stay queued, in order). Returns how many. Cost: ``apply_frame``'s per batch."""
        queue, count = self.deferred, 0
        deadline = perf_counter() + budget_s if budget_s is not None else 0.0
        while queue and (before_seq is None or queue[0].first_seq < before_seq):
            entry = queue.popleft()
            self.apply_frame(entry.commands, entry.events, entry.ts_ns, entry.first_position)
            count += 1
            if budget_s is not None and perf_counter() >= deadline:
                break
        return count

    def apply_frame(
        self,
        commands: np.ndarray,
        events: np.ndarray,
        ts_ns: int | None = None,
        first_position: int | None = None,
    ) -> None:
        """Walk a batch sequenced by someone else (another gateway worker): command by
        command, each order's type, time in force and flags read from its command record
        (the label from its key in the record, with ``labels``; for a batch of this
        submitter's own whose outcome was unknown, ``first_position`` finds what the
        venue kept of them). ``ts_ns``: the batch's sequencer time (default: the
        engine's clock). Cost: O(commands + events)."""
        unresolved = self.unresolved if first_position is not None else None
        # market inputs sequenced elsewhere (worker 0's index feed, an operator's override)
        # reach this process's watchers too: the operator page's index sources, the feed
        for watcher in getattr(self, "input_watchers", ()):
            watcher(commands)
        if not len(events):
            if unresolved:
                for k in range(len(commands)):
                    unresolved.pop(first_position + k, None)  # type: ignore[operator]
            return
        rows = codec.event_rows(events)
        seqs = commands["seq"].tolist()
        kinds, tifs = commands["order_type"].tolist(), commands["tif"].tolist()
        flags = commands["flags"].tolist()
        labels = self.labels
        # the label word of orders only (other commands' records alias other fields there)
        keys = commands["label"].tolist() if labels is not None else None
        commands_of = commands["kind"].tolist()
        now = self.now_ms() if ts_ns is None else ts_ns // 1_000_000
        start, total = 0, len(rows)
        for k, seq in enumerate(seqs):
            end = start
            while end < total and rows[end][0] == seq:
                end += 1
            pending = None
            if unresolved:
                pending = unresolved.pop(first_position + k, None)  # type: ignore[operator]
            if end > start:
                if pending is None and commands_of[k] == _PLACE_LINKED:
                    pending = frame_pending(
                        commands, k, labels.name if labels is not None else None
                    )
                if pending is None:
                    label = ""
                    if keys is not None and keys[k] and (commands_of[k] in _LABELLED):
                        label = labels.name(keys[k])  # type: ignore[union-attr]
                    pending = Pending(
                        ORDER_TYPE_NAMES.get(kinds[k], "limit"),
                        TIF_NAMES_BY_CODE.get(tifs[k], "good_til_cancelled"),
                        flags[k],
                        label,
                    )
                self._walk(rows[start:end], pending, now)
            start = end

    def _unresolved(self, unknown: OutcomeUnknown, pendings: list[Pending]) -> None:
        """Remember what the venue knew of commands whose outcome is unknown, until their
        batch arrives (``defer_frame`` with its position); walk what already did."""
        for k in range(min(unknown.count, len(pendings))):
            self.unresolved[unknown.first_position + k] = pendings[k]
        self.walk_deferred()
