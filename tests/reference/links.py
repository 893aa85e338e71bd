"""Linked orders: PLACE_LINKED and the link pass of the trigger stage. Mirrors
core/order_links.py and core/link_pass.py with the reference's Trigger objects, written from
docs/conditional-orders.md ("Linked orders")."""

from __future__ import annotations

import numpy as np

from derivex.core.records import (
    EVENT_DTYPE,
    CommandKind,
    EventKind,
    FillCondition,
    LinkType,
    Reason,
    TriggerType,
)
from tests.reference.entities import Reject
from tests.reference.triggers import Trigger

MAX_LINK_LEGS = 3
ROLE_SECONDARY, ROLE_OCO = 1, 2
WATCHED = (
    EventKind.FILLED,
    EventKind.CANCELLED,
    EventKind.EXPIRED,
    EventKind.TRIGGER_FIRED,
    EventKind.TRIGGER_CANCELLED,
)


class LinksModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _linked_span(self, commands, i: int) -> tuple[int, bool]:
        run, n = 0, len(commands)
        legs = (CommandKind.LINKED_ORDER, CommandKind.LINKED_TRIGGER)
        while i + 1 + run < n and int(commands[i + 1 + run]["kind"]) in legs:
            run += 1
        count = int(commands[i]["count"])
        complete = 1 <= count <= MAX_LINK_LEGS and count <= run
        return 1 + (count if complete else run), complete

    def _check_link_shape(self, cmd, legs) -> None:
        link_type, fill = int(cmd["link_type"]), int(cmd["fill_condition"])
        bad = (
            link_type not in (LinkType.OTO, LinkType.OCO, LinkType.OTOCO)
            or fill > FillCondition.INCREMENTAL
            or (link_type == LinkType.OTO and len(legs) not in (2, 3))
            or (link_type == LinkType.OCO and len(legs) != 2)
            or (link_type == LinkType.OTOCO and len(legs) != 3)
        )
        for j, leg in enumerate(legs):
            if bad:
                break
            bad = (
                int(leg["account"]) != int(cmd["account"])
                or int(leg["instrument"]) != int(legs[0]["instrument"])
                or (
                    int(leg["kind"]) == CommandKind.LINKED_ORDER
                    and (j > 0 or link_type == LinkType.OCO)
                )
            )
        if bad:
            raise Reject(Reason.BAD_LINK)

    def _place_linked(self, cmd, legs, complete: bool) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        if not complete:
            raise Reject(Reason.BAD_LINK)
        self._check_link_shape(cmd, legs)
        inst_id = int(legs[0]["instrument"])
        if inst_id >= len(self.instruments):
            raise Reject(Reason.UNKNOWN_INSTRUMENT)
        for j, leg in enumerate(legs, 1):
            if int(leg["kind"]) == CommandKind.LINKED_TRIGGER:
                try:
                    self._validate_trigger(leg, acct_id, acct)
                except Reject as rej:
                    raise Reject(rej.reason, j) from None
        open_orders = len(acct.orders) + self._trigger_count(acct_id)
        if open_orders + len(legs) > self.cfg.max_open_orders_per_account:
            raise Reject(Reason.ACCOUNT_ORDER_LIMIT)
        if len(self.trig) + len(legs) > self.cfg.max_triggers:
            raise Reject(Reason.TRIGGER_POOL_FULL)
        if acct.gas < 2 * (len(legs) + 1) * self.cfg.gas_base:
            raise Reject(Reason.GAS_EXHAUSTED)
        link_type, fill = int(cmd["link_type"]), int(cmd["fill_condition"])
        has_primary = link_type != LinkType.OCO
        rows = legs[1:] if has_primary else legs
        prepaid = 2 * len(rows) * self.cfg.gas_base
        acct.gas -= prepaid
        primary = base = 0
        header_kind = self._kind  # every event keeps the header's seq
        try:
            if has_primary:
                leg = legs[0]
                plain = int(leg["kind"]) == CommandKind.LINKED_ORDER
                self._kind = int(CommandKind.PLACE_ORDER if plain else CommandKind.PLACE_TRIGGER)
                start = len(self._events)
                try:
                    self._place(leg) if plain else self._place_trigger(leg)
                except Reject as rej:
                    self._kind = int(leg["kind"])
                    self._reject(leg, rej.reason, rej.leg)
                    acct.gas += prepaid
                    return
                primary = self._events[start]["order_id"]
                base = self._events[start]["qty_lots"]
            stored = [self._store_linked_row(row, acct_id, acct, has_primary) for row in rows]
        finally:
            self._kind = header_kind
        for t in stored:
            role = 0
            if has_primary:
                role |= ROLE_SECONDARY
                t.primary, t.base = primary, base
            if len(stored) == 2 and link_type != LinkType.OTO:
                role |= ROLE_OCO
                t.partner = (stored[1] if t is stored[0] else stored[0]).id
            t.link = link_type | fill << 2 | role << 4
        for t in stored:
            self._emit_link(EventKind.ORDER_LINKED, t, t.link, t.full, t.primary, b=t.partner)

    def _store_linked_row(self, leg, acct_id: int, acct, held: bool) -> Trigger:
        self._kind = int(CommandKind.PLACE_TRIGGER)
        t = self._terms_of(leg, acct_id)  # validated; the primary may have moved the price
        t.full, t.held = t.qty, held
        self._store_trigger(t)
        return t

    def _terms_of(self, leg, acct_id: int) -> Trigger:
        tif, otype = int(leg["tif"]), int(leg["order_type"])
        limit = int(leg["price_ticks"]) if otype == 0 else 0
        if otype == 1 and tif == 0:
            tif = 1
        t = Trigger(-1, 0, acct_id, int(leg["instrument"]), int(leg["side"]),
                    int(leg["trigger_type"]), int(leg["trigger_source"]), otype, tif,
                    int(leg["flags"]), int(leg["qty_lots"]), limit,
                    int(leg["trigger_price_ticks"]), 0, 0, int(leg["label"]))  # fmt: skip
        if t.trigger_type == TriggerType.TRAILING:
            current = self._source_price(t.instrument, t.source)
            t.offset, t.reference = t.trigger, current
            t.trigger = current - t.offset if t.below else current + t.offset
        return t

    def _emit_link(self, kind, t: Trigger, price: int, qty: int, a: int, b: int | None = None):
        fields = dict(side=t.side, reason=0, leg=t.spec & 0xFFFF, account=t.account,
                      instrument=t.instrument, order_id=t.id, price_ticks=price, qty_lots=qty,
                      a=a)  # fmt: skip
        if b is None:
            fields["label"] = t.label
        else:
            fields["b"] = b
        saved = self._kind
        self._kind = int(CommandKind.PLACE_LINKED)
        self._emit(kind, **fields)
        self._kind = saved

    # ------------------------------------------------------------------ the link pass

    def _link_pass(self, start: int) -> None:
        j = start
        while j < len(self._events) and any(t.link for t in self.trig.values()):
            if self._events[j]["kind"] not in WATCHED:
                j += 1
                continue
            e = self._record_at(j)  # aliased fields read as the kernel reads them
            j += 1
            oid = int(e["order_id"])
            for slot in sorted(self.trig):
                t = self.trig.get(slot)
                if t is None or not t.link:
                    continue
                if t.primary == oid:
                    self._on_primary(t, e, oid)
                elif t.partner == oid:
                    self._on_partner(t, e)

    def _record_at(self, j: int):
        out = np.zeros(1, dtype=EVENT_DTYPE)
        for name, value in self._events[j].items():
            out[0][name] = value
        return out[0]

    @staticmethod
    def _gone(e) -> bool:
        kind = int(e["kind"])
        return kind in (
            EventKind.CANCELLED,
            EventKind.EXPIRED,
            EventKind.TRIGGER_CANCELLED,
        ) or (kind == EventKind.TRIGGER_FIRED and int(e["a"]) == 0)

    def _step_floor(self, t: Trigger, lots: int) -> int:
        step = self.instruments[t.instrument].min_trade
        return lots - lots % step if step > 1 else lots

    def _activate(self, t: Trigger, qty: int, primary: int) -> None:
        t.qty = qty
        if t.held:
            t.held = False
            current = self._source_price(t.instrument, t.source)
            if t.trigger_type == TriggerType.TRAILING and current > 0:
                t.reference = current
                t.trigger = current - t.offset if t.below else current + t.offset
            if current > 0 and (current <= t.trigger if t.below else current >= t.trigger):
                t.queued, t.crossed = True, current
                self.trig_queue.append(t.slot)
        self._emit_link(EventKind.LINK_ACTIVATED, t, t.trigger, qty, primary)

    def _on_primary(self, t: Trigger, e, oid: int) -> None:
        kind, fill = int(e["kind"]), (t.link >> 2) & 3
        if kind == EventKind.TRIGGER_FIRED and int(e["a"]):
            t.primary, t.base = int(e["a"]), int(e["qty_lots"])
            return
        if kind == EventKind.FILLED:
            t.seen += int(e["qty_lots"])
            done = int(e["remaining_lots"]) == 0
            if fill == FillCondition.FIRST_HIT or (fill == FillCondition.COMPLETE_FILL and done):
                t.primary = 0
                if t.held:
                    self._activate(t, t.full, oid)
            elif fill == FillCondition.INCREMENTAL:
                target = t.full
                if not done:
                    target = self._step_floor(t, t.full * min(t.seen, t.base) // t.base)
                else:
                    t.primary = 0
                if target > (0 if t.held else t.qty):
                    self._activate(t, target, oid)
            return
        if self._gone(e):
            t.primary = 0
            if t.held:
                if fill == FillCondition.COMPLETE_FILL and t.seen > 0:
                    self._activate(t, t.full, oid)
                else:
                    self._remove_trigger(t, Reason.OTO_PRIMARY_CLOSED)

    def _on_partner(self, t: Trigger, e) -> None:
        kind, fill = int(e["kind"]), (t.link >> 2) & 3
        first_hit = fill == FillCondition.FIRST_HIT or (t.link & 3) == LinkType.OTOCO
        if kind == EventKind.TRIGGER_FIRED and int(e["a"]) and not first_hit:
            t.partner, t.base, t.seen = int(e["a"]), int(e["qty_lots"]), 0
            return
        if kind in (EventKind.TRIGGER_FIRED, EventKind.TRIGGER_CANCELLED):
            self._remove_trigger(t, Reason.OCO_OTHER_CLOSED)
            return
        if kind == EventKind.FILLED:
            t.seen += int(e["qty_lots"])
            if int(e["remaining_lots"]) == 0:
                self._remove_trigger(t, Reason.OCO_OTHER_CLOSED)
                return
            if fill == FillCondition.INCREMENTAL:
                left = t.full - self._step_floor(t, t.full * min(t.seen, t.base) // t.base)
                if left <= 0:
                    self._remove_trigger(t, Reason.OCO_OTHER_CLOSED)
                elif left < t.qty:
                    t.qty = left
                    self._emit_link(EventKind.LINK_REDUCED, t, t.trigger, left, int(e["order_id"]))
            return
        if self._gone(e):
            if fill == FillCondition.COMPLETE_FILL:
                self._remove_trigger(t, Reason.OCO_OTHER_CLOSED)
            else:
                t.partner = 0
