"""Conditional orders: PLACE_TRIGGER, cancelling trigger orders and the trigger stage after
each command. Mirrors core/triggers.py and core/trigger_book.py with plain lists, written
from docs/conditional-orders.md."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from derivex.core.records import (
    EVENT_DTYPE,
    TRIGGER_ID_TAG,
    CommandKind,
    EventKind,
    IndexStatus,
    InstrumentStatus,
    LiquidationStage,
    OrderType,
    Reason,
    TimeInForce,
    TriggerSource,
    TriggerType,
    command_array,
)
from tests.reference.entities import ALL_FLAGS, BUY, PO, QUOTE, RPO, SELL, Reject


@dataclass
class Trigger:
    slot: int
    placed: int
    account: int
    instrument: int
    side: int
    trigger_type: int
    source: int
    order_type: int
    tif: int
    flags: int
    qty: int
    price: int
    trigger: int
    offset: int
    reference: int
    label: int
    crossed: int = 0
    queued: bool = False
    # linked orders (tests/reference/links.py): 0 / False outside a group
    held: bool = False
    link: int = 0
    primary: int = 0
    partner: int = 0
    full: int = 0
    base: int = 0
    seen: int = 0

    @property
    def id(self) -> int:
        return TRIGGER_ID_TAG | (self.placed << 24) | self.slot

    @property
    def below(self) -> bool:
        if self.trigger_type == TriggerType.TAKE:
            return self.side == BUY
        return self.side == SELL

    @property
    def spec(self) -> int:
        return (
            self.trigger_type
            | self.source << 2
            | self.order_type << 4
            | self.tif << 5
            | self.flags << 8
        )

    @property
    def detail(self) -> int:
        return self.offset if self.trigger_type == TriggerType.TRAILING else self.price


class TriggersModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _init_triggers(self) -> None:
        self.trig: dict[int, Trigger] = {}  # slot -> live trigger
        self.trig_free: list[int] = []  # LIFO
        self.trig_hwm = 0
        self.trig_placed = 0
        self.trig_queue: list[int] = []  # slots, fire order
        self.last_price: dict[int, int] = {}
        self.trig_step_fired = 0

    def _trigger_count(self, account: int) -> int:
        return sum(1 for t in self.trig.values() if t.account == account)

    def _book(self, instrument: int, source: int) -> list[Trigger]:
        """Untriggered triggers of one book, in placement order."""
        rows = [
            t
            for t in self.trig.values()
            if not t.queued and not t.held and t.instrument == instrument and t.source == source
        ]
        return sorted(rows, key=lambda t: t.placed)

    def _source_price(self, inst_id: int, source: int) -> int:
        inst = self.instruments[inst_id]
        if source == TriggerSource.LAST:
            return self.last_price.get(inst_id, 0)
        if source == TriggerSource.MARK:
            return inst.mark
        row = self.underlyings.get(inst.underlying)
        return row[0] if row else 0

    # ------------------------------------------------------------------ commands

    def _place_trigger(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        t = self._validate_trigger(cmd, acct_id, acct)
        acct.gas -= self.cfg.gas_base
        self._store_trigger(t)

    def _validate_trigger(self, cmd, acct_id: int, acct) -> Trigger:
        """Every check of PLACE_TRIGGER after the base gas; the trigger order it would store
        (nothing changes)."""
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)
        side, otype, tif, flags = (int(cmd[f]) for f in ("side", "order_type", "tif", "flags"))
        ttype, source = int(cmd["trigger_type"]), int(cmd["trigger_source"])
        if side not in (BUY, SELL):
            raise Reject(Reason.BAD_SIDE)
        if otype not in (OrderType.LIMIT, OrderType.MARKET):
            raise Reject(Reason.BAD_ORDER_TYPE)
        if tif not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
            raise Reject(Reason.BAD_TIME_IN_FORCE)
        if (
            flags & ~ALL_FLAGS
            or flags & QUOTE
            or (flags & RPO and not flags & PO)
            or (flags & PO and (otype == OrderType.MARKET or tif != TimeInForce.GTC))
        ):
            raise Reject(Reason.BAD_FLAGS)
        if ttype not in (1, 2, 3) or source > 2 or (ttype == 3 and otype != OrderType.MARKET):
            raise Reject(Reason.BAD_TRIGGER)
        self._require_active(inst)
        qty = int(cmd["qty_lots"])
        self._check_qty(inst, qty)
        limit = 0
        if otype == OrderType.LIMIT:
            limit = int(cmd["price_ticks"])
            self._check_price(inst, limit)
        elif tif == TimeInForce.GTC:
            tif = int(TimeInForce.IOC)
        value = int(cmd["trigger_price_ticks"])
        self._check_price(inst, value)
        t = Trigger(-1, 0, acct_id, inst_id, side, ttype, source, otype, tif, flags, qty, limit,
                    value, 0, 0, int(cmd["label"]))  # fmt: skip
        current = self._source_price(inst_id, source)
        if ttype == TriggerType.TRAILING:
            if current <= 0:
                raise Reject(Reason.NO_TRIGGER_PRICE)
            t.offset, t.reference = value, current
            t.trigger = current - value if t.below else current + value
        elif current > 0 and (current <= t.trigger if t.below else current >= t.trigger):
            raise Reject(Reason.TRIGGER_WOULD_FIRE)
        if len(acct.orders) + self._trigger_count(acct_id) >= self.cfg.max_open_orders_per_account:
            raise Reject(Reason.ACCOUNT_ORDER_LIMIT)
        if len(self.trig) >= self.cfg.max_triggers:
            raise Reject(Reason.TRIGGER_POOL_FULL)
        if acct.gas < self.cfg.gas_base:
            raise Reject(Reason.GAS_EXHAUSTED)
        return t

    def _store_trigger(self, t: Trigger) -> None:
        """Give ``t`` a slot and id; ACCEPTED and TRIGGER_PLACED."""
        if self.trig_free:
            t.slot = self.trig_free.pop()
        else:
            t.slot = self.trig_hwm
            self.trig_hwm += 1
        self.trig_placed += 1
        t.placed = self.trig_placed
        self.trig[t.slot] = t
        common = dict(
            account=t.account, instrument=t.instrument, side=t.side, order_id=t.id, qty_lots=t.qty
        )
        self._emit(EventKind.ACCEPTED, price_ticks=t.trigger, label=t.label, **common)
        self._emit_trigger(EventKind.TRIGGER_PLACED, t, 0, t.trigger, t.detail)

    def _emit_trigger(self, kind, t: Trigger, reason: int, price: int, a: int) -> None:
        saved = self._kind
        self._kind = int(CommandKind.PLACE_TRIGGER)
        self._emit(kind, side=t.side, reason=reason, leg=t.spec & 0xFFFF, account=t.account,
                   instrument=t.instrument, order_id=t.id, price_ticks=price, qty_lots=t.qty,
                   a=a, label=t.label)  # fmt: skip
        self._kind = saved

    def _remove_trigger(self, t: Trigger, reason: int) -> None:
        self._emit_trigger(EventKind.TRIGGER_CANCELLED, t, reason, t.trigger, t.detail)
        self._free_trigger(t)

    def _free_trigger(self, t: Trigger) -> None:
        del self.trig[t.slot]
        if t.slot in self.trig_queue:
            self.trig_queue.remove(t.slot)
        self.trig_free.append(t.slot)

    def _cancel_trigger(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        order_id = int(cmd["order_id"])
        slot = order_id & ((1 << 24) - 1)
        t = self.trig.get(slot)
        if t is None or t.id != order_id:
            raise Reject(Reason.UNKNOWN_ORDER)
        if t.account != acct_id:
            raise Reject(Reason.NOT_ORDER_OWNER)
        self._emit(EventKind.ACCEPTED, account=acct_id, instrument=t.instrument, side=t.side,
                   order_id=t.id, price_ticks=t.trigger, qty_lots=t.qty, label=t.label)  # fmt: skip
        self._remove_trigger(t, Reason.CANCEL_BY_USER)

    def _amend_trigger(self, cmd) -> None:
        """AMEND_TRIGGER: new quantity, limit price and trigger price / offset of an
        untriggered trigger order outside a group; same id and time priority."""
        acct_id, _acct = self._user_account(cmd)
        self._charge_base(_acct)
        order_id = int(cmd["order_id"])
        t = self.trig.get(order_id & ((1 << 24) - 1))
        if t is None or t.id != order_id:
            raise Reject(Reason.UNKNOWN_ORDER)
        if t.account != acct_id:
            raise Reject(Reason.NOT_ORDER_OWNER)
        if t.queued or t.link:
            raise Reject(Reason.TRIGGER_NOT_EDITABLE)
        inst = self.instruments[t.instrument]
        self._require_active(inst)
        qty = int(cmd["qty_lots"])
        self._check_qty(inst, qty)
        limit = 0
        if t.order_type == OrderType.LIMIT:
            limit = int(cmd["price_ticks"])
            self._check_price(inst, limit)
        value = int(cmd["new_trigger_ticks"])
        self._check_price(inst, value)
        trigger, offset = value, 0
        if t.trigger_type == TriggerType.TRAILING:
            offset = value
            trigger = t.reference - value if t.below else t.reference + value
        current = self._source_price(t.instrument, t.source)
        if current > 0 and (current <= trigger if t.below else current >= trigger):
            raise Reject(Reason.TRIGGER_WOULD_FIRE)
        t.qty, t.price, t.trigger, t.offset = qty, limit, trigger, offset
        self._emit(EventKind.ACCEPTED, account=t.account, instrument=t.instrument, side=t.side,
                   order_id=t.id, price_ticks=t.trigger, qty_lots=t.qty, label=t.label)  # fmt: skip
        saved = self._kind
        self._emit_trigger(EventKind.TRIGGER_AMENDED, t, 0, t.trigger, t.detail)
        self._events[-1]["command"] = saved

    # ------------------------------------------------------------------ the trigger stage

    def _events_since(self, start: int) -> np.ndarray:
        out = np.zeros(len(self._events) - start, dtype=EVENT_DTYPE)
        for k, ev in enumerate(self._events[start:]):
            for name, value in ev.items():
                out[k][name] = value
        return out

    def _cancel_where(self, account: int | None, instrument: int | None, reason: int) -> None:
        for t in sorted(self.trig.values(), key=lambda t: t.placed):
            if (account is None or t.account == account) and (
                instrument is None or t.instrument == instrument
            ):
                self._remove_trigger(t, reason)

    def _evaluate(self, inst_id: int, source: int, price: int, crossed: list[Trigger]) -> None:
        for t in self._book(inst_id, source):
            if t.trigger_type == TriggerType.TRAILING:
                if t.below and price > t.reference:
                    t.reference, t.trigger = price, price - t.offset
                elif not t.below and price < t.reference:
                    t.reference, t.trigger = price, price + t.offset
            if price <= t.trigger if t.below else price >= t.trigger:
                t.queued, t.crossed = True, price
                crossed.append(t)

    def _crossings(self, events: np.ndarray) -> None:
        crossed: list[Trigger] = []
        for e in events:
            kind, inst_id, price = int(e["kind"]), int(e["instrument"]), int(e["price_ticks"])
            if kind == EventKind.FILLED:
                self.last_price[inst_id] = price
                self._evaluate(inst_id, TriggerSource.LAST, price, crossed)
            elif kind == EventKind.MARK_CHANGED:
                self._evaluate(inst_id, TriggerSource.MARK, price, crossed)
            elif kind == EventKind.INDEX_CHANGED and int(e["status"]) == IndexStatus.VALID:
                for j, inst in enumerate(self.instruments):
                    if inst.underlying == inst_id:
                        self._evaluate(j, TriggerSource.INDEX, price, crossed)
        self.trig_queue.extend(t.slot for t in sorted(crossed, key=lambda t: t.placed))

    def _trigger_stage(self, start: int) -> None:
        """After a command whose events begin at ``self._events[start]``."""
        events = self._events_since(start)
        if self.trig:
            for e in events:
                kind, command, status = int(e["kind"]), int(e["command"]), int(e["status"])
                account, instrument = int(e["account"]), int(e["instrument"])
                if kind == EventKind.LIQUIDATION_PROGRESSED and status == LiquidationStage.STARTED:
                    self._cancel_where(account, None, Reason.CANCEL_LIQUIDATION)
                elif kind == EventKind.INSTRUMENT_STATUS_CHANGED:
                    if status == InstrumentStatus.CLOSED:
                        self._cancel_where(None, instrument, Reason.CANCEL_INSTRUMENT_CLOSED)
                    elif status == InstrumentStatus.SETTLED:
                        self._cancel_where(None, instrument, Reason.CANCEL_EXPIRED)
                elif kind == EventKind.ACCEPTED and command == CommandKind.CANCEL_ALL:
                    self._cancel_where(account, None, Reason.CANCEL_ALL)
                elif kind == EventKind.ACCEPTED and command == CommandKind.CANCEL_ALL_INSTRUMENT:
                    self._cancel_where(account, instrument, Reason.CANCEL_ALL)
                elif kind == EventKind.ACCEPTED and command == CommandKind.BLOCK_ACCOUNT:
                    self._cancel_where(account, None, Reason.CANCEL_ACCOUNT_BLOCKED)
        self._crossings(events)
        if any(t.link for t in self.trig.values()):
            self._link_pass(start)  # tests/reference/links.py
        fired = 0
        while self.trig_queue and fired < self.cfg.trigger_fire_cap:
            self._flush()
            t = self.trig[self.trig_queue[0]]
            self._free_trigger(t)
            begin = len(self._events)
            self._spawn(t)
            self._release_flat_positions()
            fired += 1
            self._crossings(self._events_since(begin))
            if any(t.link for t in self.trig.values()):
                self._link_pass(begin)

    def _spawn(self, t: Trigger) -> None:
        cmd = command_array(1)[0]
        for name, value in (("kind", CommandKind.PLACE_ORDER), ("account", t.account),
                            ("instrument", t.instrument), ("side", t.side),
                            ("order_type", t.order_type), ("tif", t.tif), ("flags", t.flags),
                            ("price_ticks", t.price), ("qty_lots", t.qty),
                            ("label", t.label)):  # fmt: skip
            cmd[name] = value
        saved = self._kind
        self._kind = int(CommandKind.PLACE_TRIGGER)
        try:
            self._place(cmd, spawned_by=t)
        except Reject as rej:
            self._emit_trigger(EventKind.TRIGGER_FIRED, t, int(rej.reason), t.crossed, 0)
        finally:
            self._kind = saved

    def _canonical_triggers(self) -> dict:
        rows = []
        for t in sorted(self.trig.values(), key=lambda t: t.id):
            rows.append((t.id, t.account, t.instrument, t.side, t.trigger_type, t.source,
                         t.order_type, t.tif, t.flags, t.qty, t.price, t.trigger, t.offset,
                         t.reference, t.crossed if t.queued else 0, t.queued, t.label))  # fmt: skip
            if t.link:
                rows[-1] += (t.held, t.link, t.primary, t.partner, t.full, t.base, t.seen)
        return {
            "orders": rows,
            "queue": [self.trig[s].id for s in self.trig_queue],
            "last_prices": sorted((i, p) for i, p in self.last_price.items() if p),
            "placed": self.trig_placed,
            "hwm": self.trig_hwm,
            "free": list(reversed(self.trig_free)),
            "fire_cap": self.cfg.trigger_fire_cap,
        }
