"""Subscriptions: Deribit channels, fed by the venue's updates.

Public: ``book.<instrument>.<interval>`` (a snapshot, then changes with ``change_id`` /
``prev_change_id``), ``trades.<instrument>.<interval>``, ``ticker.<instrument>.<interval>``.
Private (the connection's own account only): ``user.orders.<filter>.<interval>``,
``user.trades.<filter>.<interval>``, ``user.portfolio.<currency>``; a filter is an
instrument name or ``<kind>.<currency>`` (``any.any``). Intervals: ``raw`` (needs an
authenticated connection, published after every command) and ``100ms``/``agg2`` (published
by ``flush``, which the server calls every 100 ms).

A book feed diffs the full aggregated book against what it last published, so a change
message always brings a subscriber from the previous state to the current one; a new
subscriber gets the feed's last published state as its snapshot, never a re-snapshot
later. Invalid, unknown or unauthorised channels of these kinds are left out of the
subscribe result without an error (an error frame would kill a ccxt receive loop); the
other kinds are in ``feeds``, and a kind served nowhere is an error naming the channel
(``feeds.served``).

Each notification is serialised once per channel and handed to every subscriber's
``send`` (non-blocking; the connection queues it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from derivex.gateway import shapes
from derivex.gateway.catalog import COLLATERAL, InstrumentSpec
from derivex.gateway.feeds import Feeds
from derivex.gateway.history import history_of
from derivex.gateway.venue import Update, Venue

INTERVALS = ("raw", "100ms", "agg2")
FULL_DEPTH = 10_000


class Subscriber(Protocol):
    session: Any

    def send(self, text: bytes) -> None: ...


def frame(channel: str, data: Any) -> bytes:
    return orjson.dumps(
        {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
    )


@dataclass(eq=False)
class BookFeed:
    spec: InstrumentSpec
    channel: str
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    change_id: int = 0
    timestamp: int = 0
    subscribers: set[Any] = field(default_factory=set)


@dataclass(eq=False)
class Channel:
    """A public trades/ticker channel or a private one; ``instruments`` None means all."""

    kind: str  # trades | ticker | orders | utrades | portfolio
    channel: str
    raw: bool
    instruments: set[int] | None
    account: int = -1
    subscribers: set[Any] = field(default_factory=set)
    pending: list[Any] = field(default_factory=list)  # buffered data of a 100 ms channel


class Hub:
    """Channels and their subscribers; ``on_update`` is a venue listener."""

    def __init__(self, venue: Venue, on_publish: Callable[[int], None] | None = None) -> None:
        self.venue = venue
        self.books: dict[str, BookFeed] = {}
        self.channels: dict[str, Channel] = {}
        self.user: dict[int, dict[str, Channel]] = {}  # account -> private channels
        self.by_connection: dict[Any, set[str]] = {}
        self._dirty_books: set[int] = set()
        self._dirty_tickers: set[int] = set()
        self._dirty_accounts: set[int] = set()
        self._on_publish = on_publish or (lambda count: None)
        # the other channel kinds (``feeds``): names ``_add`` does not take go there
        self.feeds = Feeds(venue, self._send)
        # sampled at each publication (funding and mark history: ``history``)
        self.history = history_of(venue)
        venue.listeners.append(self.on_update)
        venue.mergeable[self.on_update] = self.quiet

    # ---- subscribe ----

    def subscribe(self, conn: Subscriber, names: list[str], private: bool) -> list[str]:
        accepted = []
        for name in names:
            if name in self.by_connection.get(conn, ()):
                accepted.append(name)
                continue
            if self._add(conn, name) or self.feeds.add(conn, name):
                self.by_connection.setdefault(conn, set()).add(name)
                accepted.append(name)
        return accepted

    def _private_key(self, conn: Subscriber) -> Any:
        key = conn.session.key
        return key if key is not None and key.allows("read") else None

    def _add(self, conn: Subscriber, name: str) -> bool:
        parts = name.split(".")
        head = parts[0]
        if head == "user":
            return self._add_user(conn, name, parts)
        if head not in ("book", "trades", "ticker") or len(parts) not in (3, 4):
            return False
        interval = parts[-1]
        if interval not in INTERVALS or (interval == "raw" and conn.session.key is None):
            return False
        # a book or ticker channel names one instrument (three parts): only then is spec set
        spec: InstrumentSpec | None = None
        if head == "trades" and len(parts) == 4:
            instruments = self._filter(parts[1], parts[2])
            if instruments is None:
                return False
        elif len(parts) == 3:
            spec = self.venue.catalog.by_name.get(parts[1])
            if spec is None:
                return False
            instruments = {spec.instrument}
        else:
            return False
        if head == "book" and spec is not None:
            self._add_book(conn, name, spec)
            return True
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(head, name, interval == "raw", instruments)
        channel.subscribers.add(conn)
        if head == "ticker" and spec is not None:
            conn.send(frame(name, shapes.ticker(self.venue, spec)))
        return True

    def _filter(self, kind: str, currency: str) -> set[int] | None:
        if kind not in ("any", "future", "option"):
            return None
        specs = self.venue.catalog.matching(currency, kind)
        if not specs and currency not in ("any", *self.venue.catalog.currencies()):
            return None
        return {spec.instrument for spec in specs}

    def _add_user(self, conn: Subscriber, name: str, parts: list[str]) -> bool:
        key = self._private_key(conn)
        if key is None or len(parts) < 3:
            return False
        kind = parts[1]
        if kind == "portfolio":
            if len(parts) != 3 or parts[2].upper() != COLLATERAL:
                return False
            channel = Channel("portfolio", name, False, None, key.account)
            channel.subscribers.add(conn)
            self.user.setdefault(key.account, {})[f"{id(conn)}:{name}"] = channel
            conn.send(frame(name, shapes.account_summary(self.venue, key.account)))
            return True
        if kind not in ("orders", "trades") or len(parts) not in (4, 5):
            return False
        interval = parts[-1]
        if interval not in INTERVALS:
            return False
        if len(parts) == 4:
            spec = self.venue.catalog.by_name.get(parts[2])
            if spec is None:
                return False
            instruments: set[int] | None = {spec.instrument}
        else:
            instruments = self._filter(parts[2], parts[3])
            if instruments is None:
                return False
        channel = Channel(
            "orders" if kind == "orders" else "utrades",
            name,
            interval == "raw",
            instruments,
            key.account,
        )
        channel.subscribers.add(conn)
        self.user.setdefault(key.account, {})[f"{id(conn)}:{name}"] = channel
        return True

    def _add_book(self, conn: Subscriber, name: str, spec: InstrumentSpec) -> None:
        feed = self.books.get(name)
        if feed is None:
            feed = self.books[name] = BookFeed(spec, name)
            self._read_book(feed)
        feed.subscribers.add(conn)
        conn.send(
            frame(
                name,
                {
                    "type": "snapshot",
                    "instrument_name": spec.name,
                    "timestamp": feed.timestamp,
                    "change_id": feed.change_id,
                    "bids": [
                        ["new", spec.price(p), spec.amount(q)]
                        for p, q in sorted(feed.bids.items(), reverse=True)
                    ],
                    "asks": [
                        ["new", spec.price(p), spec.amount(q)] for p, q in sorted(feed.asks.items())
                    ],
                },
            )
        )

    def _read_book(self, feed: BookFeed) -> tuple[dict[int, int], dict[int, int]]:
        depth = self.venue.exchange.depth(feed.spec.instrument, FULL_DEPTH)
        old = feed.bids, feed.asks
        feed.bids = {p: q for p, q, _ in depth.bids}
        feed.asks = {p: q for p, q, _ in depth.asks}
        feed.change_id = self.venue.change_ids.get(feed.spec.instrument, 0)
        feed.timestamp = self.venue.now_ms()
        return old

    # ---- unsubscribe ----

    def unsubscribe(self, conn: Subscriber, names: list[str]) -> list[str]:
        owned = self.by_connection.get(conn, set())
        removed = [name for name in names if name in owned]
        for name in removed:
            owned.discard(name)
            self._remove(conn, name)
        return removed

    def drop(self, conn: Subscriber) -> None:
        for name in self.by_connection.pop(conn, set()):
            self._remove(conn, name)

    def _remove(self, conn: Subscriber, name: str) -> None:
        feed = self.books.get(name)
        if feed is not None:
            feed.subscribers.discard(conn)
            if not feed.subscribers:
                del self.books[name]
            return
        channel = self.channels.get(name)
        if channel is not None:
            channel.subscribers.discard(conn)
            if not channel.subscribers:
                del self.channels[name]
            return
        for account, channels in list(self.user.items()):
            channels.pop(f"{id(conn)}:{name}", None)
            if not channels:
                del self.user[account]
        self.feeds.remove(conn, name)

    def quiet(self) -> bool:
        """No subscription at all: ``on_update`` then only unions the touched sets, so it
        may be told of many commands at once (``Venue.mergeable``)."""
        return not (self.books or self.channels or self.user) and self.feeds.quiet()

    def subscription_count(self) -> int:
        return sum(len(names) for names in self.by_connection.values())

    # ---- publish ----

    def on_update(self, update: Update) -> None:
        """Mark what the 100 ms publication must look at and publish the raw channels.
        Without any subscription this is three set updates (it runs once per order)."""
        books = update.books
        if books:
            self._dirty_books |= books
            self._dirty_tickers |= books
        if update.marks:
            self._dirty_tickers |= update.marks
        self._dirty_accounts |= update.accounts
        if self.quiet():
            return
        self.feeds.on_update(update)
        venue = self.venue
        if update.books:
            for feed in self.books.values():
                if feed.channel.endswith(".raw") and feed.spec.instrument in update.books:
                    self._publish_book(feed)
        if update.trades:
            for channel in self.channels.values():
                if channel.kind != "trades":
                    continue
                data = [
                    shapes.public_trade(t, venue.catalog.by_id[t.instrument])
                    for t in update.trades
                    if channel.instruments is None or t.instrument in channel.instruments
                ]
                if data:
                    self._emit(channel, data, extend=True)
        for channel in self.channels.values():
            if (
                channel.kind == "ticker"
                and channel.raw
                and channel.instruments
                and (channel.instruments & (update.books | update.marks))
            ):
                self._send(
                    channel.subscribers,
                    channel.channel,
                    shapes.ticker(venue, venue.catalog.by_id[next(iter(channel.instruments))]),
                )
        if not self.user:
            return
        for record in update.orders.values():
            for channel in self.user.get(record.account, {}).values():
                if channel.kind == "orders" and (
                    channel.instruments is None or record.instrument in channel.instruments
                ):
                    self._emit(channel, shapes.order(record, venue.catalog), extend=False)
        for trade in update.trades:
            for account in {trade.maker_account, trade.taker_account}:
                for channel in self.user.get(account, {}).values():
                    if channel.kind == "utrades" and (
                        channel.instruments is None or trade.instrument in channel.instruments
                    ):
                        self._emit(channel, [shapes.user_trade(trade, account, venue)], extend=True)

    def _emit(self, channel: Channel, data: Any, extend: bool) -> None:
        if channel.raw:
            self._send(channel.subscribers, channel.channel, data)
        elif extend:
            channel.pending.extend(data)
        else:
            channel.pending.append(data)

    def _send(self, subscribers: set[Any], channel: str, data: Any) -> None:
        text = frame(channel, data)
        for conn in subscribers:
            conn.send(text)
        self._on_publish(len(subscribers))

    def _publish_book(self, feed: BookFeed) -> None:
        previous = feed.change_id
        old_bids, old_asks = self._read_book(feed)
        spec = feed.spec
        bids = _diff(old_bids, feed.bids, spec, reverse=True)
        asks = _diff(old_asks, feed.asks, spec, reverse=False)
        if not bids and not asks:
            feed.change_id = previous  # nothing visible changed: subscribers stay at previous
            return
        self._send(
            feed.subscribers,
            feed.channel,
            {
                "type": "change",
                "instrument_name": spec.name,
                "timestamp": feed.timestamp,
                "prev_change_id": previous,
                "change_id": feed.change_id,
                "bids": bids,
                "asks": asks,
            },
        )

    def flush(self) -> None:
        """Publish the 100 ms channels: book changes, tickers, buffered trades and orders,
        portfolios of the accounts that changed."""
        books, tickers, accounts = self._dirty_books, self._dirty_tickers, self._dirty_accounts
        self._dirty_books, self._dirty_tickers, self._dirty_accounts = set(), set(), set()
        venue = self.venue
        self.history.sample(tickers)
        for feed in self.books.values():
            if not feed.channel.endswith(".raw") and feed.spec.instrument in books:
                self._publish_book(feed)
        for channel in self.channels.values():
            if channel.raw:
                continue
            if channel.kind == "ticker" and channel.instruments and channel.instruments & tickers:
                spec = venue.catalog.by_id[next(iter(channel.instruments))]
                self._send(channel.subscribers, channel.channel, shapes.ticker(venue, spec))
            elif channel.pending:
                self._send(channel.subscribers, channel.channel, channel.pending)
                channel.pending = []
        for account, channels in self.user.items():
            for channel in channels.values():
                if channel.kind == "portfolio":
                    if account in accounts:
                        self._send(
                            channel.subscribers,
                            channel.channel,
                            shapes.account_summary(venue, account),
                        )
                elif not channel.raw and channel.pending:
                    self._send(channel.subscribers, channel.channel, channel.pending)
                    channel.pending = []
        self.feeds.flush()


def _diff(
    old: dict[int, int], new: dict[int, int], spec: InstrumentSpec, reverse: bool
) -> list[list[Any]]:
    changes = []
    for price in sorted(old.keys() | new.keys(), reverse=reverse):
        before, after = old.get(price), new.get(price)
        if before == after:
            continue
        if after is None:
            changes.append(["delete", spec.price(price), 0.0])
        else:
            changes.append(
                ["new" if before is None else "change", spec.price(price), spec.amount(after)]
            )
    return changes
