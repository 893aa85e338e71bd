"""The event projection: the gateway's order records, trade history, marks and index
prices, kept up to date by walking the engine's events (``Projection``, the base of
``Venue``).

Each command's event rows are walked once (``codec.event_rows``: one ``tolist``, fields
decoded from the rows' 64-bit words where ``codec.field_bits`` says they are): an ACCEPTED
order creates its ``OrderRecord``, fills add to it and make ``Trade``s (maker then taker),
cancels and expiries close it, MARK / INDEX events keep the last prices; the listeners get
an ``Update``. Batches sequenced elsewhere (other gateway workers) are queued and walked in
seq order with the venue's own (``defer_frame``).

Order records outlive the engine's orders: filled and cancelled orders stay queryable for
the last ``closed_orders`` of them. On a restart the open orders are rebuilt from the engine
state; closed orders and trade history start empty (they are shell state, not journaled).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

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
from derivex.gateway.catalog import Catalog
from derivex.gateway.labels import SharedLabels
from derivex.gateway.order_records import (
    ORDER_TYPE_NAMES,
    TIF_NAMES_BY_CODE,
    Deferred,
    OrderRecord,
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
_PLACE_ORDER, _MASS_QUOTE = int(CommandKind.PLACE_ORDER), int(CommandKind.MASS_QUOTE)
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


class Projection:
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
        self.orders: dict[int, OrderRecord] = {}  # open orders
        # closed orders, oldest first, and their ids in closing order (the eviction queue:
        # a plain dict and a deque cost less per order than an OrderedDict's node, and
        # resize with shorter stalls)
        self.closed: dict[int, OrderRecord] = {}
        self._closed_queue: deque[int] = deque()
        self._closed_limit = closed_orders
        self._history = history
        self.public_trades: dict[int, deque[Trade]] = {}
        self.user_trades: dict[int, deque[Trade]] = {}
        self.user_closed: dict[int, deque[int]] = {}
        self.change_ids: dict[int, int] = {spec.instrument: 1 for spec in catalog}
        self.marks: dict[int, int] = {}
        self.indices: dict[int, int] = {}
        self._trade_seq: dict[int, int] = {}
        self._last_price: dict[int, int] = {}
        self._pending = Pending()
        self._pendings: dict[tuple[str, str, int, str], Pending] = {}
        # batches sequenced elsewhere, in seq order, that the exchange met while it waited
        # for ours: walked before our commands that come after them (a fill of one of our
        # orders by another worker must find the order's record), the rest after ours
        self.deferred: deque[Deferred] = deque()
        # submission position -> what the venue knew of a command whose outcome was
        # unknown (its batch is walked with it when it arrives: the label stays)
        self.unresolved: dict[int, Pending] = {}
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

    # ---- events ----

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

    def walk_deferred(self, before_seq: int | None = None) -> int:
        """Walk the queued batches (those sequenced before ``before_seq``; None: all),
        oldest first. Returns how many. Cost: ``apply_frame``'s per batch."""
        queue, count = self.deferred, 0
        while queue and (before_seq is None or queue[0].first_seq < before_seq):
            entry = queue.popleft()
            self.apply_frame(entry.commands, entry.events, entry.ts_ns, entry.first_position)
            count += 1
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
        commands_of = commands["kind"].tolist() if labels is not None else None
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
                if pending is None:
                    label = ""
                    if (
                        keys is not None
                        and commands_of is not None
                        and keys[k]
                        and (commands_of[k] in (_PLACE_ORDER, _MASS_QUOTE))
                    ):
                        label = labels.name(keys[k])  # type: ignore[union-attr]
                    pending = Pending(
                        ORDER_TYPE_NAMES.get(kinds[k], "limit"),
                        TIF_NAMES_BY_CODE.get(tifs[k], "good_til_cancelled"),
                        flags[k],
                        label,
                    )
                self._walk(rows[start:end], pending, now)
            start = end

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
                        self._close(record, "filled", "")
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
                if command == _PLACE_ORDER or (command == _MASS_QUOTE and order_id):
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
                    self._close(record, "cancelled", cancel_reason(reason))
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

    def _close(self, record: OrderRecord, state: str, reason: str) -> None:
        record.state = state
        record.cancel_reason = reason
        order_id = record.order_id
        self.orders.pop(order_id, None)
        closed = self.closed
        count = len(closed)
        closed[order_id] = record
        if len(closed) != count:  # a new key (one hash probe, not two)
            self._closed_queue.append(order_id)
        history = self.user_closed.get(record.account)
        if history is None:
            history = self.user_closed[record.account] = deque(maxlen=1000)
        history.append(order_id)
        if len(closed) > self._closed_limit:
            del closed[self._closed_queue.popleft()]

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
                    label=self.labels.name(info.label) if self.labels is not None else "",
                    price_ticks=info.price_ticks,
                    amount_lots=info.remaining_lots,
                    created_ms=now,
                    updated_ms=now,
                )
