"""``History``: what the history methods (``history_api``) read, bounded in memory.

- funding: per perpetual, one entry per hour (the funding rate per period and the index
  at the last sample of that hour), sampled at every 100 ms publication
  (``Hub.flush`` calls ``sample``); the latest ``FUNDING_HOURS`` hours;
- marks: per instrument, ``(ms, mark_ticks)`` at each change seen by ``sample``, the
  latest ``MARKS_KEPT``;
- deliveries: ``(ms, instrument, price_ticks)`` of each instrument settled at expiry (its
  first SETTLED event), the latest ``DELIVERIES_KEPT``;
- per account, its cash movements (the engine's BALANCE_CHANGED, FUNDING_PAID and SETTLED
  events, told by the venue's event walk: ``Venue.cash_watchers``): deposits and
  withdrawals, transfers (``other``: the other account; ``subaccount_api``), funding
  (one entry per instrument and hour, summed) and deliveries, the
  latest ``LOG_KEPT``. Trades are not copied: the transaction log reads the venue's own
  per-account trade history.

Every sample and event costs O(1) (the funding sample O(perpetuals)). On restart
``history_replay.venue_from_journal`` rebuilds it (with the venue's orders and trades) by
walking the whole journal through a scratch engine; the index history the volatility is
computed from is engine state, and survives anyway.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any

from derivex.core import query
from derivex.core.records import EventKind

__all__ = ["History", "history_of"]

HOUR_MS = 3_600_000
FUNDING_HOURS = 24 * 31
MARKS_KEPT = 2_000
DELIVERIES_KEPT = 1_000
LOG_KEPT = 2_000
_BALANCE, _FUNDING = int(EventKind.BALANCE_CHANGED), int(EventKind.FUNDING_PAID)


class History:
    """See the module docstring. One per venue (``history_of``)."""

    def __init__(self, venue: Any) -> None:
        self.venue = venue
        self.funding: dict[int, deque[dict[str, int]]] = {}
        self.marks: dict[int, deque[tuple[int, int]]] = {}
        self.deliveries: deque[tuple[int, int, int]] = deque(maxlen=DELIVERIES_KEPT)
        self.logs: dict[int, deque[dict[str, Any]]] = {}
        self._delivered: set[int] = set()  # instruments with a delivery recorded
        self._perpetuals = [s for s in venue.catalog if s.kind == "perpetual"]
        venue.cash_watchers.append(self.on_cash)

    # ---- input ----

    def on_cash(
        self,
        kind: int,
        seq: int,
        instrument: int,
        account: int,
        now_ms: int,
        price: int,
        qty: int,
        cash: int,
        balance: int,
    ) -> None:
        """One cash event of the venue's walk (``Venue.cash_watchers``)."""
        log = self.logs.get(account)
        if log is None:
            log = self.logs[account] = deque(maxlen=LOG_KEPT)
        if kind == _BALANCE:
            entry = {
                "type": "deposit" if cash >= 0 else "withdrawal",
                "seq": seq,
                "timestamp": now_ms,
                "instrument": -1,
                "cash": cash,
                "balance": balance,
            }
            if price:  # a TRANSFER's side: ``price`` is the other account (``counterpart``)
                entry["type"], entry["other"] = "transfer", price
            log.append(entry)
            return
        if kind == _FUNDING:
            hour = now_ms - now_ms % HOUR_MS
            spec = self.venue.catalog.by_id.get(instrument)
            if spec is not None:  # (a replayed journal has no live samples: its events do)
                self._note_funding(instrument, hour, price, self.venue.index_ticks(spec.base))
            last = log[-1] if log else None
            if (
                last is not None
                and last["type"] == "settlement"
                and last["instrument"] == instrument
                and last["hour"] == hour
            ):
                # continuous funding pays at every time step: one entry per hour
                last["cash"] += cash
                last["balance"], last["position"], last["rate"] = balance, qty, price
                last["timestamp"], last["seq"] = now_ms, seq
                return
            log.append(
                {
                    "type": "settlement",
                    "seq": seq,
                    "timestamp": now_ms,
                    "hour": hour,
                    "instrument": instrument,
                    "cash": cash,
                    "balance": balance,
                    "position": qty,
                    "rate": price,
                }
            )
            return
        log.append(
            {
                "type": "delivery",
                "seq": seq,
                "timestamp": now_ms,
                "instrument": instrument,
                "cash": cash,
                "balance": balance,
                "position": qty,
                "price": price,
            }
        )
        if instrument not in self._delivered:
            self._delivered.add(instrument)
            self.deliveries.append((now_ms, instrument, price))

    def sample(self, changed: set[int]) -> None:
        """The 100 ms sample: this hour's funding entry of every perpetual, and the marks
        of the instruments in ``changed`` (books or marks touched since the last)."""
        venue = self.venue
        now = venue.now_ms()
        if now <= 0:
            return
        hour = now - now % HOUR_MS
        state = venue.exchange.engine.state
        for spec in self._perpetuals:
            index = venue.index_ticks(spec.base)
            if index <= 0:
                continue
            self._note_funding(
                spec.instrument, hour, query.funding_rate_ppb(state, spec.instrument), index
            )
        for instrument in changed:
            mark = venue.mark_ticks(instrument)
            if mark <= 0:
                continue
            marks = self.marks.get(instrument)
            if marks is None:
                marks = self.marks[instrument] = deque(maxlen=MARKS_KEPT)
            if not marks or marks[-1][1] != mark:
                marks.append((now, mark))

    def _note_funding(self, instrument: int, hour: int, rate: int, index: int) -> None:
        """The funding entry of ``hour`` (ms) is now ``rate`` (1e-9 per period) and
        ``index`` (ticks)."""
        entries = self.funding.get(instrument)
        if entries is None:
            entries = self.funding[instrument] = deque(maxlen=FUNDING_HOURS)
        if entries and entries[-1]["hour"] == hour:
            entries[-1]["rate"], entries[-1]["index"] = rate, index
        elif not entries or entries[-1]["hour"] < hour:
            previous = entries[-1]["index"] if entries else index
            entries.append({"hour": hour, "rate": rate, "index": index, "prev": previous})

    # ---- queries ----

    def log_of(self, account: int) -> list[dict[str, Any]]:
        return list(self.logs.get(account, ()))


# the history of each venue (a gateway process serves one venue)
_HISTORIES: weakref.WeakKeyDictionary[Any, History] = weakref.WeakKeyDictionary()


def history_of(venue: Any) -> History:
    """The venue's history, started on the first call (``Hub`` makes it at once)."""
    history = _HISTORIES.get(venue)
    if history is None:
        history = _HISTORIES[venue] = History(venue)
    return history
