"""``user.changes.{kind}.{currency}.{interval}`` and ``user.changes.{instrument}.{interval}``:
an account's order, trade and position changes, one message per instrument touched:
``{instrument_name, orders, trades, positions}`` (Deribit's shape). ``raw`` channels
(authenticated) publish after every command, ``100ms`` / ``agg2`` ones gather a flush
interval's changes (each order once, in its latest state). Only the connection's own
account is ever sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from derivex.gateway import shapes
from derivex.gateway.venue import Update, Venue

__all__ = ["UserChanges"]

INTERVALS = ("raw", "100ms", "agg2")


@dataclass(eq=False)
class Changes:
    channel: str
    account: int
    raw: bool
    instruments: set[int] | None  # None: all
    subscribers: set[Any] = field(default_factory=set)
    # instrument -> (order id -> order record, trades) gathered for the next flush
    pending: dict[int, tuple[dict[int, Any], list[Any]]] = field(default_factory=dict)


class UserChanges:
    """The ``user.changes`` channels of one hub (see the module docstring)."""

    def __init__(self, venue: Venue, send: Any) -> None:
        self.venue = venue
        self._send = send
        self.channels: dict[tuple[int, str], Changes] = {}  # (account, name)

    def quiet(self) -> bool:
        return not self.channels

    def add(self, conn: Any, name: str) -> bool:
        key = conn.session.key
        if key is None or not key.allows("read"):
            return False
        parts = name.split(".")
        if len(parts) not in (4, 5) or parts[-1] not in INTERVALS:
            return False
        catalog = self.venue.catalog
        instruments: set[int] | None
        if len(parts) == 4:
            spec = catalog.by_name.get(parts[2])
            if spec is None:
                return False
            instruments = {spec.instrument}
        else:
            kind, currency = parts[2], parts[3]
            if kind not in ("any", "future", "option"):
                return False
            if currency not in ("any", *catalog.currencies()):
                return False
            instruments = (
                None
                if kind == currency == "any"
                else {s.instrument for s in catalog.matching(currency, kind)}
            )
        channel = self.channels.get((key.account, name))
        if channel is None:
            channel = Changes(name, key.account, parts[-1] == "raw", instruments)
            self.channels[(key.account, name)] = channel
        channel.subscribers.add(conn)
        return True

    def remove(self, conn: Any, name: str) -> None:
        for account_name, channel in list(self.channels.items()):
            if account_name[1] == name and conn in channel.subscribers:
                channel.subscribers.discard(conn)
                if not channel.subscribers:
                    del self.channels[account_name]

    def on_update(self, update: Update) -> None:
        """Gather (or, raw, send) the changes of the subscribed accounts. Cost: O(orders +
        trades of the update) per subscribed channel of their accounts."""
        if not self.channels or not (update.orders or update.trades):
            return
        for channel in self.channels.values():
            touched: dict[int, tuple[dict[int, Any], list[Any]]] = {}
            for record in update.orders.values():
                if record.account == channel.account and _covers(channel, record.instrument):
                    touched.setdefault(record.instrument, ({}, []))[0][record.order_id] = record
            for trade in update.trades:
                if channel.account in (trade.maker_account, trade.taker_account) and _covers(
                    channel, trade.instrument
                ):
                    touched.setdefault(trade.instrument, ({}, []))[1].append(trade)
            if not touched:
                continue
            if channel.raw:
                self._publish(channel, touched)
                continue
            for instrument, (orders, trades) in touched.items():
                held = channel.pending.setdefault(instrument, ({}, []))
                held[0].update(orders)
                held[1].extend(trades)

    def flush(self) -> None:
        for channel in self.channels.values():
            if channel.pending:
                pending, channel.pending = channel.pending, {}
                self._publish(channel, pending)

    def _publish(self, channel: Changes, touched: dict[int, tuple[dict[int, Any], list[Any]]]):
        venue, account = self.venue, channel.account
        held = {p.instrument: p for p in venue.exchange.positions(account)}
        for instrument in sorted(touched):
            orders, trades = touched[instrument]
            spec = venue.catalog.by_id[instrument]
            position = held.get(instrument)
            qty, basis = (position.qty_lots, position.basis_units) if position else (0, 0)
            self._send(
                channel.subscribers,
                channel.channel,
                {
                    "instrument_name": spec.name,
                    "orders": [shapes.order(r, venue.catalog) for r in orders.values()],
                    "trades": [shapes.user_trade(t, account, venue) for t in trades],
                    "positions": [shapes.position(venue, spec, qty, basis)],
                },
            )


def _covers(channel: Changes, instrument: int) -> bool:
    return channel.instruments is None or instrument in channel.instruments
