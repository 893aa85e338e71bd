"""The channels beyond ``channels.Hub``'s own (book / trades / ticker / user orders,
trades, portfolio), fed by the same venue updates. ``Hub`` hands every channel name it
does not serve to ``Feeds.add`` and calls ``on_update`` / ``flush`` / ``remove`` alike.

Public:

- ``deribit_price_index.{index}`` (``btc_usdc``): ``{index_name, price, timestamp}``, sent
  on subscribe and whenever the index moves (checked every 100 ms flush);
- ``markprice.options.{index}``: the marks and IVs of the index's options, a list of
  ``{instrument_name, mark_price, iv, timestamp}``, on subscribe and when a mark moves;
- ``incremental_ticker.{instrument}``: a ``snapshot`` (the ticker) then ``change``
  messages holding only the fields that changed;
- ``quote.{instrument}``: best bid and ask (ccxt ``watch_bids_asks``), on subscribe and
  after every command that changes either;
- ``book.{instrument}.{group}.{depth}.{interval}``: the whole book, ``depth`` (1, 10, 20)
  levels grouped by ``group`` (``none`` or a price step), on subscribe and when it changes;
- ``chart.trades.{instrument}.{resolution}``: the current candle (ccxt ``watch_ohlcv``),
  after the trades that change it;
- ``platform_state``: ``{locked: false}`` on subscribe (this venue is never locked as a
  whole; instruments halt on their own: ``instrument.state``);
- ``instrument.state.{kind}.{currency}``: ``{instrument_name, state, timestamp}`` when an
  instrument's state changes (``open``, ``halted``, ``closed``, ``settled``).

Private (``user_changes``): ``user.changes.{kind}.{currency}.{interval}`` and
``user.changes.{instrument}.{interval}``.

``served`` tells whether a channel name is of a kind the venue serves at all: the
subscribe methods answer an error naming any other (an unknown instrument or currency in
a served kind is left out of the result silently, as before: ccxt's ``watch_balance``
asks for currencies a venue may not have).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from derivex.core import query
from derivex.core.records import InstrumentStatus
from derivex.gateway import shapes
from derivex.gateway.candles import RESOLUTIONS_MS, bucket_start
from derivex.gateway.catalog import COLLATERAL, InstrumentSpec
from derivex.gateway.mmp_api import MmpTriggers
from derivex.gateway.user_changes import UserChanges
from derivex.gateway.venue import Update, Venue

__all__ = ["Feeds", "served"]

#: first parts of the channels this venue serves (``user.*``: second parts below)
SERVED_HEADS = frozenset(
    {
        "book",
        "trades",
        "ticker",
        "user",
        "deribit_price_index",
        "markprice",
        "incremental_ticker",
        "quote",
        "chart",
        "platform_state",
        "instrument",
    }
)
SERVED_USER = frozenset({"orders", "trades", "portfolio", "changes", "mmp_trigger"})
BOOK_DEPTHS = ("1", "10", "20")
GROUPED_INTERVALS = ("100ms", "agg2")
STATES = {
    int(InstrumentStatus.ACTIVE): "open",
    int(InstrumentStatus.HALTED): "halted",
    int(InstrumentStatus.CLOSED): "closed",
    int(InstrumentStatus.SETTLED): "settled",
}


def served(name: str) -> bool:
    """Whether ``name`` is of a channel kind this venue serves (not whether its
    instrument or currency exists)."""
    parts = name.split(".")
    if parts[0] not in SERVED_HEADS:
        return False
    if parts[0] == "user":
        return len(parts) > 1 and parts[1] in SERVED_USER
    if parts[0] == "chart":
        return len(parts) > 1 and parts[1] == "trades"
    if parts[0] == "instrument":
        return len(parts) > 1 and parts[1] == "state"
    return True


@dataclass(eq=False)
class Feed:
    """One channel: its kind, what it covers, its subscribers and the last data sent
    (what the next change is compared with)."""

    kind: str
    channel: str
    spec: InstrumentSpec | None = None
    specs: list[InstrumentSpec] = field(default_factory=list)
    base: str = ""
    group: int = 0  # grouped book: price step in ticks (0: none)
    depth: int = 0
    width_ms: int = 0  # chart: candle width
    subscribers: set[Any] = field(default_factory=set)
    last: Any = None


class Feeds:
    """The channels of the module docstring, for one ``Hub``."""

    def __init__(self, venue: Venue, send: Any) -> None:
        self.venue = venue
        self._send = send  # ``Hub._send(subscribers, channel, data)``
        self.feeds: dict[str, Feed] = {}
        self.user = UserChanges(venue, send)
        self.mmp = MmpTriggers(venue, send)
        self._books: set[int] = set()
        self._marks: set[int] = set()

    def quiet(self) -> bool:
        return not self.feeds and self.user.quiet() and self.mmp.quiet()

    # ---- subscribe ----

    def add(self, conn: Any, name: str) -> bool:
        """Subscribe ``conn`` to ``name`` if it is one of these channels and valid;
        sends the channel's first message to ``conn``."""
        if name.startswith("user.changes."):
            return self.user.add(conn, name)
        if name.startswith("user.mmp_trigger."):
            return self.mmp.add(conn, name)
        feed = self.feeds.get(name)
        if feed is None:
            feed = self._feed(name, conn)
            if feed is None:
                return False
            self.feeds[name] = feed
            feed.last = self._data(feed)
        feed.subscribers.add(conn)
        first = self._first(feed)
        if first is not None:
            self._send({conn}, name, first)
        return True

    def _feed(self, name: str, conn: Any) -> Feed | None:
        parts = name.split(".")
        head, catalog = parts[0], self.venue.catalog
        if head == "deribit_price_index" and len(parts) == 2:
            base = _index_base(parts[1], catalog)
            return Feed("index", name, base=base) if base else None
        if head == "markprice" and len(parts) == 3 and parts[1] == "options":
            base = _index_base(parts[2], catalog)
            specs = [s for s in catalog.matching(base, "option")] if base else []
            return Feed("markprice", name, specs=specs, base=base) if specs else None
        if head in ("incremental_ticker", "quote") and len(parts) == 2:
            spec = catalog.by_name.get(parts[1])
            return Feed(head, name, spec=spec) if spec is not None else None
        if head == "book" and len(parts) == 5:
            return _grouped_book(name, parts, catalog)
        if head == "chart" and len(parts) == 4 and parts[1] == "trades":
            spec, width = catalog.by_name.get(parts[2]), RESOLUTIONS_MS.get(parts[3])
            if spec is None or width is None:
                return None
            return Feed("chart", name, spec=spec, width_ms=width)
        if head == "platform_state" and len(parts) == 1:
            return Feed("platform", name)
        if head == "instrument" and len(parts) == 4 and parts[1] == "state":
            kind, currency = parts[2], parts[3]
            if kind not in ("any", "future", "option"):
                return None
            if currency not in ("any", *catalog.currencies()):
                return None
            return Feed("state", name, specs=catalog.matching(currency, kind))
        return None

    def remove(self, conn: Any, name: str) -> None:
        if name.startswith("user.changes."):
            self.user.remove(conn, name)
            return
        if name.startswith("user.mmp_trigger."):
            self.mmp.remove(conn, name)
            return
        feed = self.feeds.get(name)
        if feed is not None:
            feed.subscribers.discard(conn)
            if not feed.subscribers:
                del self.feeds[name]

    # ---- publish ----

    def on_update(self, update: Update) -> None:
        """Note what changed; publish the per-command channels (``quote``, private raw)."""
        self._books |= update.books
        self._marks |= update.marks
        if update.mmp_triggers:
            self.mmp.on_update(update)
        if not self.feeds and self.user.quiet():
            return
        for feed in self.feeds.values():
            if feed.kind == "quote" and feed.spec.instrument in update.books:  # type: ignore[union-attr]
                self._publish(feed)
            elif feed.kind == "chart" and update.trades:
                self._chart_trades(feed, update)
        self.user.on_update(update)

    def flush(self) -> None:
        """The 100 ms publication: every feed whose data changed."""
        books, self._books = self._books, set()
        marks, self._marks = self._marks, set()
        for feed in self.feeds.values():
            kind = feed.kind
            if kind in ("quote", "platform"):
                continue
            if kind == "chart":
                if feed.last is not None and feed.last.get("dirty"):
                    feed.last["dirty"] = False
                    self._send(feed.subscribers, feed.channel, _candle(feed.last))
                continue
            if kind in ("incremental_ticker", "book") and not (
                feed.spec.instrument in books or feed.spec.instrument in marks  # type: ignore[union-attr]
            ):
                continue
            if kind == "markprice" and not any(s.instrument in marks for s in feed.specs):
                continue
            self._publish(feed)
        self.user.flush()

    def _publish(self, feed: Feed) -> None:
        data = self._data(feed)
        if data is None or _same(data, feed.last):
            return
        previous, feed.last = feed.last, data
        if feed.kind == "incremental_ticker":
            change = {k: v for k, v in data.items() if previous is None or previous.get(k) != v}
            change.update(type="change", instrument_name=data["instrument_name"])
            change["timestamp"] = data["timestamp"]
            self._send(feed.subscribers, feed.channel, change)
        elif feed.kind == "state":
            for name, state in data.items():
                if previous is None or previous.get(name) != state:
                    self._send(
                        feed.subscribers,
                        feed.channel,
                        {"instrument_name": name, "state": state, "timestamp": self.venue.now_ms()},
                    )
        else:
            self._send(feed.subscribers, feed.channel, data)

    def _first(self, feed: Feed) -> Any:
        """The message a new subscriber gets at once (None: nothing yet)."""
        if feed.kind == "incremental_ticker":
            return {**feed.last, "type": "snapshot"}
        if feed.kind == "state":
            return None  # changes only
        if feed.kind == "chart":
            return _candle(feed.last) if feed.last is not None else None
        return feed.last

    def _data(self, feed: Feed) -> Any:
        """The feed's current data (for ``state``: instrument name -> state)."""
        venue, kind = self.venue, feed.kind
        now = venue.now_ms()
        if kind == "index":
            first = venue.catalog.matching(feed.base)[0]
            price = first.price(venue.index_ticks(feed.base))
            return {"index_name": f"{feed.base.lower()}_usdc", "price": price, "timestamp": now}
        if kind == "markprice":
            return [
                {
                    "instrument_name": s.name,
                    "mark_price": s.price(venue.mark_ticks(s.instrument)),
                    "iv": venue.mark_iv(s.instrument),
                    "timestamp": now,
                }
                for s in feed.specs
            ]
        spec = feed.spec
        if kind == "incremental_ticker":
            assert spec is not None
            return shapes.ticker(venue, spec)
        if kind == "quote":
            assert spec is not None
            depth = venue.exchange.depth(spec.instrument, 1)
            bid, ask = depth.bids[:1], depth.asks[:1]
            return {
                "instrument_name": spec.name,
                "timestamp": now,
                "best_bid_price": spec.price(bid[0][0]) if bid else 0.0,
                "best_bid_amount": spec.amount(bid[0][1]) if bid else 0.0,
                "best_ask_price": spec.price(ask[0][0]) if ask else 0.0,
                "best_ask_amount": spec.amount(ask[0][1]) if ask else 0.0,
            }
        if kind == "book":
            return self._grouped(feed, now)
        if kind == "chart":
            return self._last_candle(feed)
        if kind == "platform":
            return {"locked": False}
        ids = [s.instrument for s in feed.specs]
        statuses = query.instrument_columns(venue.exchange.engine.state, ids)["status"].tolist()
        return {
            s.name: STATES.get(int(v), "closed") for s, v in zip(feed.specs, statuses, strict=True)
        }

    def _grouped(self, feed: Feed, now: int) -> dict[str, Any]:
        spec = feed.spec
        assert spec is not None
        depth = self.venue.exchange.depth(spec.instrument, 10_000 if feed.group else feed.depth)
        sides = []
        for levels, down in ((depth.bids, True), (depth.asks, False)):
            grouped: dict[int, int] = {}
            for price, qty, _ in levels:
                if feed.group:
                    price = (
                        price - price % feed.group if down else -(-price // feed.group) * feed.group
                    )
                grouped[price] = grouped.get(price, 0) + qty
            ordered = sorted(grouped.items(), reverse=down)[: feed.depth]
            sides.append([[spec.price(p), spec.amount(q)] for p, q in ordered])
        return {
            "instrument_name": spec.name,
            "timestamp": now,
            "change_id": self.venue.change_ids.get(spec.instrument, 0),
            "bids": sides[0],
            "asks": sides[1],
        }

    def _last_candle(self, feed: Feed) -> dict[str, Any] | None:
        """The candle of the latest kept trade's bucket (None: no trade kept)."""
        spec = feed.spec
        assert spec is not None
        trades = self.venue.public_trades.get(spec.instrument, ())
        if not trades:
            return None
        start = bucket_start(trades[-1].timestamp_ms, feed.width_ms)
        recent = []
        for trade in reversed(trades):  # O(trades of the bucket)
            if trade.timestamp_ms < start:
                break
            recent.append(trade)
        candle: dict[str, Any] | None = None
        for trade in reversed(recent):
            candle = _add_trade(candle, start, spec, trade)
        return candle

    def _chart_trades(self, feed: Feed, update: Update) -> None:
        spec = feed.spec
        assert spec is not None
        for trade in update.trades:
            if trade.instrument != spec.instrument:
                continue
            start = bucket_start(trade.timestamp_ms, feed.width_ms)
            last = feed.last
            if last is not None and start < last["tick"]:
                continue  # (a late trade of an older candle: that candle was published)
            feed.last = _add_trade(
                last if last and last["tick"] == start else None, start, spec, trade
            )
            feed.last["dirty"] = True


def _add_trade(
    candle: dict[str, Any] | None, start: int, spec: InstrumentSpec, trade: Any
) -> dict[str, Any]:
    """``candle`` (None: a new one starting at ``start``) with ``trade`` added; prices in
    ticks and the volume in lots (exact sums), converted by ``_candle``."""
    price, lots = trade.price_ticks, trade.qty_lots
    if candle is None:
        return {
            "tick": start,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "lots": lots,
            "value": price * lots,
            "spec": spec,
            "dirty": False,
        }
    candle["high"] = max(candle["high"], price)
    candle["low"] = min(candle["low"], price)
    candle["close"] = price
    candle["lots"] += lots
    candle["value"] += price * lots
    return candle


def _candle(candle: dict[str, Any]) -> dict[str, Any]:
    """Deribit's candle (``chart.trades``) of a candle kept by ``_add_trade``."""
    spec = candle["spec"]
    volume = spec.amount(candle["lots"])
    return {
        "tick": candle["tick"],
        "open": spec.price(candle["open"]),
        "high": spec.price(candle["high"]),
        "low": spec.price(candle["low"]),
        "close": spec.price(candle["close"]),
        "volume": volume,
        "cost": spec.price(candle["value"]) * spec.amount(1),
    }


def _same(a: Any, b: Any) -> bool:
    """Equal apart from the timestamp (a message per change, not per clock tick)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: v for k, v in a.items() if k != "timestamp"} == {
            k: v for k, v in b.items() if k != "timestamp"
        }
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _index_base(index: str, catalog: Any) -> str:
    """The base of an index name (``btc_usdc`` -> ``BTC``; "" if the venue has none)."""
    base, _, quote = index.partition("_")
    base = base.upper()
    if quote.upper() != COLLATERAL or base not in catalog.currencies() or base == COLLATERAL:
        return ""
    return base


def _grouped_book(name: str, parts: list[str], catalog: Any) -> Feed | None:
    spec = catalog.by_name.get(parts[1])
    group, depth, interval = parts[2], parts[3], parts[4]
    if spec is None or depth not in BOOK_DEPTHS or interval not in GROUPED_INTERVALS:
        return None
    step = 0
    if group != "none":
        try:
            step = spec.to_ticks(group)
        except Exception:  # not a price of this instrument's grammar or tick
            return None
        if step <= 0:
            return None
    return Feed("book", name, spec=spec, group=step, depth=int(depth))
