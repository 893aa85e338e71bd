"""MASS_QUOTE: replacing an account's quotes leg by leg. Mirrors core/quotes.py."""

from __future__ import annotations

from derivex.core.records import (
    EventKind,
    Reason,
)
from tests.reference.entities import (
    BUY,
    PO,
    QUOTE,
    SELL,
    Order,
    Reject,
    crosses,
)


class QuotesModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _quote_orders(self, acct_id: int, inst_id: int) -> dict[int, list[Order]]:
        found: dict[int, list[Order]] = {BUY: [], SELL: []}
        for oid in self.accounts[acct_id].orders:
            order = self.orders[oid]
            if order.instrument == inst_id and order.flags & QUOTE:
                found[order.side].append(order)
        return found

    def _mass_quote(self, cmd, legs: list) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        count = int(cmd["count"])
        if not legs:
            raise Reject(Reason.BAD_MASS_QUOTE, 0)
        parsed = []  # (leg_no, inst_id, inst, [(side, price, qty)], replaced)
        seen: set[int] = set()
        for leg_no, leg in enumerate(legs, start=self.leg_base):  # [A15] [A16]
            inst_id = int(leg["instrument"])
            if inst_id >= len(self.instruments):
                raise Reject(Reason.UNKNOWN_INSTRUMENT, leg_no)
            inst = self.instruments[inst_id]
            try:
                self._require_active(inst)
                self._market_check(inst, False)
            except Reject as rej:
                raise Reject(rej.reason, leg_no) from None
            if inst_id in seen:
                raise Reject(Reason.DUPLICATE_QUOTE_INSTRUMENT, leg_no)
            seen.add(inst_id)
            bid_p, bid_q = int(leg["bid_price_ticks"]), int(leg["bid_qty_lots"])
            ask_p, ask_q = int(leg["ask_price_ticks"]), int(leg["ask_qty_lots"])
            if bid_q < 0 or ask_q < 0:
                raise Reject(Reason.QTY_NOT_POSITIVE, leg_no)
            sides = [(s, p, q) for s, p, q in ((BUY, bid_p, bid_q), (SELL, ask_p, ask_q)) if q > 0]
            for _s, p, q in sides:
                try:
                    self._check_qty(inst, q)
                    self._check_price(inst, p)
                except Reject as rej:
                    raise Reject(rej.reason, leg_no) from None
            if bid_q > 0 and ask_q > 0 and bid_p >= ask_p:
                raise Reject(Reason.CROSSED_QUOTE, leg_no)
            replaced = self._quote_orders(acct_id, inst_id)
            for s, _p, q in sides:
                gone = sum(o.qty for o in replaced[s])
                if not self._position_limit_ok(acct_id, inst_id, s, q, gone=gone):
                    raise Reject(Reason.POSITION_LIMIT, leg_no)
            parsed.append((leg_no, inst_id, inst, sides, replaced))
        self._mmp_quote_check(acct_id, cmd, legs)  # tests/reference/mmp.py
        n_new = sum(len(p[3]) for p in parsed)
        n_replaced = sum(len(p[4][BUY]) + len(p[4][SELL]) for p in parsed)
        if len(acct.orders) - n_replaced + n_new > self.cfg.max_open_orders_per_account:
            raise Reject(Reason.ACCOUNT_ORDER_LIMIT, 0)
        for leg_no, _i, inst, sides, replaced in parsed:
            book_after = (
                inst.resting_count() - len(replaced[BUY]) - len(replaced[SELL]) + len(sides)
            )
            if book_after > self.cfg.max_orders_per_book:
                raise Reject(Reason.BOOK_ORDER_LIMIT, leg_no)
        if len(self.orders) - n_replaced + n_new > self.cfg.max_orders:
            raise Reject(Reason.ORDER_POOL_FULL, 0)
        new_levels = 0
        for leg_no, _i, inst, sides, _r in parsed:
            for s, p, _q in sides:
                if p not in inst.side_book(s):
                    new_levels += 1
                    if len(inst.side_book(s)) + 1 > self.cfg.max_levels_per_side:
                        raise Reject(Reason.BOOK_LEVEL_LIMIT, leg_no)
        if self.live_levels() + new_levels > self.cfg.max_levels:
            raise Reject(Reason.LEVEL_POOL_FULL, 0)
        new_slots = sum(
            1
            for _l, inst_id, _n, sides, _r in parsed
            if sides and (acct_id, inst_id) not in self.positions
        )
        if len(self.positions) + new_slots > self.cfg.max_positions:
            raise Reject(Reason.POSITION_POOL_FULL, 0)
        extra = self.cfg.gas_per_level * 2 * count
        if acct.gas < extra:
            raise Reject(Reason.GAS_EXHAUSTED, 0)
        acct.gas -= extra
        label = int(cmd["label"])
        self._emit(EventKind.ACCEPTED, account=acct_id, qty_lots=count, label=label)
        for leg_no, inst_id, inst, sides, _r in parsed:  # [A17]
            current = self._quote_orders(acct_id, inst_id)
            for s in (BUY, SELL):
                for old in current[s]:
                    self._cancel_resting(old, Reason.CANCEL_QUOTE_REPLACED, leg_no)
            for s, p, q in sides:
                if self.cfg.risk_checks:  # [R5] a side outside the band: refused on its own
                    try:
                        self._check_band(inst, p)
                    except Reject as rej:
                        self._emit(
                            EventKind.REJECTED,
                            reason=int(rej.reason),
                            leg=leg_no,
                            account=acct_id,
                            instrument=inst_id,
                            side=s,
                            price_ticks=p,
                            qty_lots=q,
                            label=label,
                        )
                        continue
                best = inst.best(1 - s)
                if best is not None and crosses(s, best, p):
                    self._emit(
                        EventKind.REJECTED,
                        reason=int(Reason.POST_ONLY_WOULD_TAKE),
                        leg=leg_no,
                        account=acct_id,
                        instrument=inst_id,
                        side=s,
                        price_ticks=p,
                        qty_lots=q,
                        label=label,
                    )
                    continue
                try:
                    self._margin_check(acct_id, inst_id, s, q, q * p)
                except Reject as rej:
                    self._emit(
                        EventKind.REJECTED,
                        reason=int(rej.reason),
                        leg=leg_no,
                        account=acct_id,
                        instrument=inst_id,
                        side=s,
                        price_ticks=p,
                        qty_lots=q,
                        label=label,
                    )
                    continue
                order = Order(
                    id=self._alloc_order_id(),
                    account=acct_id,
                    instrument=inst_id,
                    side=s,
                    price=p,
                    qty=q,
                    flags=QUOTE | PO | self._mmp_quote_tag(acct_id, cmd, inst),
                    label=label,
                )
                self._emit(
                    EventKind.ACCEPTED,
                    leg=leg_no,
                    account=acct_id,
                    instrument=inst_id,
                    side=s,
                    order_id=order.id,
                    price_ticks=p,
                    qty_lots=q,
                    label=label,
                )
                self._rest(order)
