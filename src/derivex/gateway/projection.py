"""The event projection: the gateway's order records, trade history, marks and index
prices, kept up to date by walking the engine's events (``Projection``; ``deferred.py``
adds batches sequenced elsewhere on top of it, ``venue.py`` the submission paths).

Each command's event rows are walked once (``codec.event_rows``: one ``tolist``, fields
decoded from the rows' 64-bit words where ``codec.field_bits`` says they are): an ACCEPTED
order creates its ``OrderRecord``, fills add to it and make ``Trade``s (maker then taker),
cancels and expiries close it, MARK / INDEX events keep the last prices; the listeners get
an ``Update``.

Order records outlive the engine's orders (``order_records.OrderRecords``): filled and
cancelled orders stay queryable for the last ``closed_orders`` of them. On a restart the
open orders are rebuilt from the engine state; closed orders and trade history start empty
(they are shell state, not journaled).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from derivex.core import codec, query
from derivex.core.records import (
    EVENT_DTYPE,
    SYSTEM_ACCOUNTS,
    CommandKind,
    EventKind,
    OrderFlag,
    Underlying,
)
from derivex.exchange import Exchange
from derivex.gateway import linked_records, trigger_orders
from derivex.gateway.catalog import Catalog
from derivex.gateway.labels import SharedLabels
from derivex.gateway.option_views import option_view
from derivex.gateway.order_records import (
    OrderRecord,
    OrderRecords,
    Pending,
    Trade,
    Update,
    cancel_reason,
)

# plain ints for the event walk (an enum member lookup per comparison costs ~50 ns each)
_FILLED, _ACCEPTED = int(EventKind.FILLED), int(EventKind.ACCEPTED)
_AMENDED = int(EventKind.AMENDED)
_CANCELLED, _EXPIRED = int(EventKind.CANCELLED), int(EventKind.EXPIRED)
_POSITION, _BALANCE = int(EventKind.POSITION), int(EventKind.BALANCE)
_MARK, _INDEX = int(EventKind.MARK), int(EventKind.INDEX)
_LIQUIDATION = int(EventKind.LIQUIDATION)
_FUNDING, _SETTLED = int(EventKind.FUNDING_PAID), int(EventKind.SETTLED)
_PLACE_ORDER, _MASS_QUOTE = int(CommandKind.PLACE_ORDER), int(CommandKind.MASS_QUOTE)
_MMP_TRIGGERED = int(EventKind.MMP_TRIGGERED)
_PLACE_TRIGGER, _TRIGGER_EVENTS = int(CommandKind.PLACE_TRIGGER), int(EventKind.TRIGGER_PLACED)
# (the trigger and linked-order events, 30-39; transfers and MMP have codes of their own)
_LAST_TRIGGER_EVENT = int(EventKind.TRIGGER_AMENDED)
_LINK_EVENTS, _LAST_LINK_EVENT = int(EventKind.ORDER_LINKED), int(EventKind.LINK_REDUCED)
_UNDERLYING = {member.name: int(member) for member in Underlying}


def _bits(name: str, word: int) -> tuple[int, int]:
    """``(shift, mask)`` of an event field in row word ``word`` (the walk unpacks rows
    positionally: seq, header word, ids, order id, price, qty, a, b)."""
    at, shift, mask = codec.field_bits(EVENT_DTYPE, name)
    if at != word:
        raise AssertionError(f"event field {name} moved to word {at}: update the walk")
    return shift, mask


_KIND_SHIFT, _KIND_MASK = _bits("kind", 1)
_COMMAND_SHIFT, _COMMAND_MASK = _bits("command", 1)
_SIDE_SHIFT, _SIDE_MASK = _bits("side", 1)
_REASON_SHIFT, _REASON_MASK = _bits("reason", 1)
_ACCOUNT_SHIFT, _ACCOUNT_MASK = _bits("account", 2)
_INSTRUMENT_SHIFT, _INSTRUMENT_MASK = _bits("instrument", 2)
for _name, _word in (
    ("seq", 0),
    ("order_id", 3),
    ("price_ticks", 4),
    ("qty_lots", 5),
    ("fee_units", 6),
    ("remaining_lots", 7),
):
    _bits(_name, _word)
# the commonest fields are read unshifted: the walk relies on these sitting at bit 0
assert _KIND_SHIFT == 0 and _ACCOUNT_SHIFT == 0


class Projection(OrderRecords):
    """Order records, trades, marks and index prices of one ``Exchange``'s events (see the
    module docstring). One thread drives it."""

    def __init__(
        self,
        exchange: Exchange,
        catalog: Catalog,
        *,
        history: int = 10_000,
        closed_orders: int = 200_000,
        labels: SharedLabels | None = None,
    ) -> None:
        self.exchange = exchange
        self.catalog = catalog
        #: told of every command's ``Update`` as its events are walked
        self.listeners: list[Callable[[Update], None]] = []
        #: listener -> whether it may, for now, be told of a ``place_many`` batch once, its
        #: orders' updates merged (a listener not in here always gets one per order)
        self.mergeable: dict[Callable[[Update], None], Callable[[], bool]] = {}
        #: told of every LIQUIDATION event as it is walked: (seq, instrument, account,
        #: stage, price_ticks, qty_lots, amount_units) (the operator dashboard's counts)
        self.liquidation_watchers: list[Callable[[int, int, int, int, int, int, int], None]] = []
        #: told of every FUNDING_PAID, SETTLED and BALANCE_CHANGED event: (kind, seq,
        #: instrument, account, now_ms, price_ticks, qty_lots, cash_units, balance_units)
        #: (the history: ``gateway.history``)
        self.cash_watchers: list[Callable[..., None]] = []
        super().__init__(closed_orders)
        self._history = history
        self.public_trades: dict[int, deque[Trade]] = {}
        self.user_trades: dict[int, deque[Trade]] = {}
        self.change_ids: dict[int, int] = {spec.instrument: 1 for spec in catalog}
        self.marks: dict[int, int] = {}
        self.indices: dict[int, int] = {}
        self.option_greeks: dict[int, dict[str, float]] = {}  # from the pricing service
        self.option_iv: dict[int, float] = {}
        self._trade_seq: dict[int, int] = {}
        self._last_price: dict[int, int] = {}
        self._pending = Pending()
        self._pendings: dict[tuple[str, str, int, str], Pending] = {}
        #: with several gateway workers: labels travel as keys in the commands (``labels``)
        self.labels = labels
        self.rebuild_open_orders()

    # ---- clock and prices ----

    def now_ms(self) -> int:
        """The engine's clock (sequencer time of the last command), milliseconds."""
        return query.clock_ns(self.exchange.engine.state) // 1_000_000

    def mark_ticks(self, instrument: int) -> int:
        value = self.exchange.mark(instrument)
        return value if value else self.marks.get(instrument, 0)

    def index_ticks(self, base: str) -> int:
        code = _UNDERLYING[base]
        # the engine's index (``Exchange.index`` reads the same word, and builds a record)
        price = query.index_ticks(self.exchange.engine.state, code)
        return price if price else self.indices.get(code, 0)

    def last_price_ticks(self, instrument: int) -> int:
        return self._last_price.get(instrument, 0)

    def set_option_view(self, instrument: int, iv: float, greeks: dict[str, float]) -> None:
        """What the pricing service computed for an option (implied volatility in
        percent, Greeks per unit of the base), shown until the engine has the option's
        sequenced risk array (then ``mark_iv`` and ``greeks`` read the engine state)."""
        self.option_iv[instrument] = iv
        self.option_greeks[instrument] = greeks

    def mark_iv(self, instrument: int) -> float:
        """Implied volatility of the option's mark, percent: the engine's (from the last
        sequenced RISK_ARRAY: the same on every gateway worker after the same batches),
        else the pricing service's view."""
        view = self._engine_view(instrument)
        return view[0] if view is not None else self.option_iv.get(instrument, 0.0)

    def greeks(self, instrument: int) -> dict[str, float]:
        """Greeks per unit of the base, as ``mark_iv`` chooses its source."""
        view = self._engine_view(instrument)
        if view is not None:
            return view[1]
        return self.option_greeks.get(
            instrument, {"delta": 0.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0, "rho": 0.0}
        )

    def _engine_view(self, instrument: int) -> tuple[float, dict[str, float]] | None:
        spec = self.catalog.by_id.get(instrument)
        marks = query.option_marks(self.exchange.engine.state, instrument) if spec else None
        if spec is None or marks is None:
            return None
        return option_view(spec, marks[0], marks[1])

    def merges_batches(self) -> bool:
        """Whether every listener may, now, take a batch's updates merged: what
        ``place_many`` decides when it is called (no listener is then told anything
        before the batch's last result is taken)."""
        mergeable = self.mergeable
        try:
            for listener in self.listeners:
                allowed = mergeable.get(listener)
                if allowed is None or not allowed():
                    return False
        except TypeError:  # an unhashable callable: not registered, so not mergeable
            return False
        return True

    # ---- events ----

    def trades_of(self, account: int) -> list[Trade]:
        return list(self.user_trades.get(account, ()))

    def _walk(
        self,
        rows: list[list[int]],
        pending: Pending,
        now: int,
        prices: dict[int, tuple[int, int]] | None = None,
        into: Update | None = None,
    ) -> Update:
        """Apply one command's (or batch's) event rows and tell the listeners; returns
        the ``Update``. ``prices``: a cache of the trades' (mark, index) per instrument,
        for walks during which neither can change (None: read for every trade).
        ``into``: add to this (merged) update instead, and tell nobody."""
        update = Update() if into is None else into
        # the books this command touched (a change id each)
        books = update.books if into is None else set()
        if not rows:
            return update
        maker: tuple[int, int, int] | None = None
        fill_index = 0
        head = rows[0][1]
        update.first_kind = head & _KIND_MASK
        update.first_reason = (head >> _REASON_SHIFT) & _REASON_MASK
        update.first_order, update.first_qty = rows[0][3], rows[0][5]
        update.last_placed = None
        orders, changed, accounts = self.orders, update.orders, update.accounts
        # the field masks as locals (a global look-up per event costs more)
        kind_mask, account_mask = _KIND_MASK, _ACCOUNT_MASK
        side_shift, side_mask = _SIDE_SHIFT, _SIDE_MASK
        for seq, word, ids, order_id, price, qty, fee, remaining in rows:
            kind = word & kind_mask
            account = ids & account_mask
            if kind in (_POSITION, _BALANCE):  # the commonest after fills
                accounts.add(account)
                if kind == _BALANCE:
                    for watcher in self.cash_watchers:
                        watcher(kind, seq, 0, account, now, price, qty, fee, remaining)
                continue
            instrument = (ids >> _INSTRUMENT_SHIFT) & _INSTRUMENT_MASK
            if kind == _FILLED:
                record = orders.get(order_id)
                if record is not None:
                    record.filled_lots += qty
                    record.traded_value += price * qty
                    record.fee_units += fee
                    record.updated_ms = now
                    if remaining == 0:
                        self.close(record, "filled", "")
                    changed[order_id] = record
                accounts.add(account)
                if maker is None:
                    maker = (account, order_id, fee)
                else:
                    fill_index += 1
                    update.trades.append(
                        self._trade(
                            seq,
                            fill_index,
                            instrument,
                            now,
                            price,
                            qty,
                            (word >> side_shift) & side_mask,
                            maker,
                            account,
                            order_id,
                            fee,
                            prices,
                        )
                    )
                    maker = None
                books.add(instrument)
            elif kind == _ACCEPTED:
                command = (word >> _COMMAND_SHIFT) & _COMMAND_MASK
                if command == _PLACE_TRIGGER:  # a trigger order, or the order one placed
                    if not order_id >> 62:
                        record = trigger_orders.spawned(self, fee, order_id, price, qty, now)
                        if record is not None:
                            update.orders[order_id] = record
                        books.add(instrument)
                        update.accounts.add(account)
                elif command == _PLACE_ORDER or (command == _MASS_QUOTE and order_id):
                    record = OrderRecord(
                        order_id,
                        account,
                        instrument,
                        (word >> side_shift) & side_mask,
                        pending.order_type,
                        pending.time_in_force,
                        pending.post_only,
                        pending.reject_post_only,
                        pending.reduce_only,
                        command == _MASS_QUOTE,
                        pending.label,
                        price,
                        qty,
                        0,
                        0,
                        0,
                        "open",
                        "",
                        now,
                        now,
                    )
                    if pending.mmp or command == _MASS_QUOTE:
                        record.mmp = True
                    self.orders[order_id] = record
                    update.orders[order_id] = record
                    update.last_placed = record
                    books.add(instrument)
                    update.accounts.add(account)
            elif kind in (_CANCELLED, _EXPIRED):
                record = self.orders.get(order_id)
                if record is not None:
                    record.updated_ms = now
                    reason = (word >> _REASON_SHIFT) & _REASON_MASK
                    self.close(record, "cancelled", cancel_reason(reason))
                    update.orders[order_id] = record
                books.add(instrument)
                update.accounts.add(account)
            elif kind == _AMENDED:
                record = self.orders.get(order_id)
                if record is not None:
                    record.price_ticks = price
                    record.amount_lots = record.filled_lots + qty
                    record.updated_ms = now
                    record.replaced = True
                    update.orders[order_id] = record
                books.add(instrument)
                update.accounts.add(account)
            elif kind == _MARK:
                self.marks[instrument] = price
                update.marks.add(instrument)
            elif kind == _INDEX:
                self.indices[instrument] = price
            elif kind == _MMP_TRIGGERED:  # core/mmp.py: a ``user.mmp_trigger`` notification
                update.mmp_triggers.append((account, instrument, order_id, fee))
            elif _LINK_EVENTS <= kind <= _LAST_LINK_EVENT:  # linked orders (33-35)
                linked_records.on_event(
                    self, update, kind, account, order_id, price, qty, fee, remaining, now
                )
            elif _TRIGGER_EVENTS <= kind <= _LAST_TRIGGER_EVENT:
                trigger_orders.on_event(
                    self, update, kind, word, account, instrument, order_id, price, qty, fee,
                    pending, now,
                )  # fmt: skip
            elif kind == _LIQUIDATION:
                for watcher in self.liquidation_watchers:  # stage in ``a``, money in ``b``
                    watcher(seq, instrument, account, fee, price, qty, remaining)
            elif kind in (_FUNDING, _SETTLED):
                for watcher in self.cash_watchers:
                    watcher(kind, seq, instrument, account, now, price, qty, fee, remaining)
        for instrument in books:
            self.change_ids[instrument] = self.change_ids.get(instrument, 0) + 1
        if into is None:
            for listener in self.listeners:
                listener(update)
        elif books:
            into.books |= books
        return update

    def _trade(
        self,
        seq: int,
        index: int,
        instrument: int,
        now: int,
        price: int,
        qty: int,
        side: int,
        maker: tuple[int, int, int],
        taker_account: int,
        taker_order: int,
        taker_fee: int,
        prices: dict[int, tuple[int, int]] | None,
    ) -> Trade:
        """Record the trade of a maker fill (``maker``: account, order, fee) and the taker
        fill after it: sequence, tick direction, the public and both accounts' histories."""
        trade_seq = self._trade_seq.get(instrument, 0) + 1
        self._trade_seq[instrument] = trade_seq
        last = self._last_price.get(instrument, price)
        tick_direction = 0 if price > last else 2 if price < last else 1
        self._last_price[instrument] = price
        marks = prices.get(instrument) if prices is not None else None
        if marks is None:
            spec = self.catalog.by_id.get(instrument)
            marks = (
                self.mark_ticks(instrument),
                self.index_ticks(spec.base) if spec is not None else 0,
            )
            if prices is not None:
                prices[instrument] = marks
        maker_account = maker[0]
        trade = Trade(
            f"{seq}-{index}",
            trade_seq,
            instrument,
            now,
            price,
            qty,
            side,
            tick_direction,
            maker_account,
            maker[1],
            maker[2],
            taker_account,
            taker_order,
            taker_fee,
            marks[0],
            marks[1],
        )
        size = self._history
        history = self.public_trades.get(instrument)
        if history is None:
            history = self.public_trades[instrument] = deque(maxlen=size)
        history.append(trade)
        users = self.user_trades
        history = users.get(maker_account)
        if history is None:
            history = users[maker_account] = deque(maxlen=size)
        history.append(trade)
        if taker_account != maker_account:
            history = users.get(taker_account)
            if history is None:
                history = users[taker_account] = deque(maxlen=size)
            history.append(trade)
        return trade

    def rebuild_open_orders(self) -> None:
        """Records for the orders resting in the engine (after a recovery)."""
        now = self.now_ms()
        for account in range(SYSTEM_ACCOUNTS, query.account_count(self.exchange.engine.state)):
            for info in self.exchange.open_orders(account):
                if info.order_id in self.orders:
                    continue
                self.orders[info.order_id] = OrderRecord(
                    info.order_id,
                    account,
                    info.instrument,
                    int(info.side),
                    post_only=bool(info.flags & OrderFlag.POST_ONLY),
                    reduce_only=bool(info.flags & OrderFlag.REDUCE_ONLY),
                    quote=bool(info.flags & OrderFlag.QUOTE),
                    mmp=bool(info.flags & (OrderFlag.QUOTE | OrderFlag.MMP)),
                    label=self.labels.name(info.label) if self.labels is not None else "",
                    price_ticks=info.price_ticks,
                    amount_lots=info.remaining_lots,
                    created_ms=now,
                    updated_ms=now,
                )
        trigger_orders.rebuild(self, self.exchange.engine.state, self.labels, now)
