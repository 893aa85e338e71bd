"""Market-maker protection: SET_MMP_CONFIG, RESET_MMP, counting fills in command-time
windows, freezing, and the MMP stage after each command. Mirrors core/mmp.py and
core/mmp_stage.py (written from docs/core-semantics.md's MMP section, not from the kernel:
groups are plain lists, the pending groups a Python list)."""

from __future__ import annotations

from derivex.core.records import CommandKind, EventKind, OrderType, Reason
from tests.reference.entities import BUY, QUOTE, Reject

SLOTS = 6
FIELDS = 15
FOREVER = (1 << 63) - 1
SATURATED = 1 << 62
NS = 1_000_000_000
MMP = 32
TAG_SHIFT = 8  # of Order.flags (the kernel's META bit 9)
# field indices (core/mmp_layout.Mmp8)
(UNDERLYING, GROUP, INTERVAL, FROZEN_TIME, QTY_LIMIT, DELTA_LIMIT, VEGA_LIMIT, WINDOW_END,
 QTY, DELTA, VEGA, FROZEN_UNTIL, PENDING, PENDING_SEQ, NEXT) = range(FIELDS)  # fmt: skip


def _signed(code: int) -> int:
    """A uint64 group code as the int64 the state holds."""
    return code - (1 << 64) if code >= 1 << 63 else code


def _clamp(value: int) -> int:
    return max(-SATURATED, min(SATURATED, value))


class MmpModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _init_mmp(self) -> None:
        self.mmp: dict[int, list[list[int] | None]] = {}
        self.mmp_pending: list[tuple[int, int, int, int]] = []  # account, slot, seq, command

    def _groups(self, acct_id: int) -> list[list[int] | None]:
        return self.mmp.setdefault(acct_id, [None] * SLOTS)

    def _mmp_find(self, acct_id: int, underlying: int, group: int) -> int:
        for slot, row in enumerate(self.mmp.get(acct_id, [])):
            if row is not None and row[UNDERLYING] == underlying and row[GROUP] == group:
                return slot
        return -1

    def _mmp_row(self, acct_id: int, slot: int) -> list[int] | None:
        """The enabled group in ``slot``, or None."""
        if slot < 0:
            return None
        row = self._groups(acct_id)[slot]
        return row if row is not None and row[INTERVAL] > 0 else None

    def _mmp_frozen(self, row: list[int] | None) -> bool:
        return row is not None and row[FROZEN_UNTIL] > self.clock

    # ------------------------------------------------------------------ commands

    def _set_mmp_config(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        underlying = int(cmd["mmp_underlying"])
        if not 1 <= underlying < self.cfg.max_underlyings:
            raise Reject(Reason.UNKNOWN_UNDERLYING)
        group = _signed(int(cmd["mmp_group"]))
        interval = int(cmd["mmp_interval_s"]) * NS
        limits = [int(cmd[n]) for n in ("mmp_qty_limit_lots", "mmp_delta_limit", "mmp_vega_limit")]
        if min(limits) < 0 or (interval > 0 and not any(limits)):
            raise Reject(Reason.BAD_MMP_CONFIG)
        slot = self._mmp_find(acct_id, underlying, group)
        if slot < 0 and interval == 0:
            raise Reject(Reason.MMP_GROUP_UNKNOWN)
        groups = self._groups(acct_id)
        if slot < 0:
            free = [s for s in range(SLOTS) if groups[s] is None]
            reusable = [
                s
                for s in range(SLOTS)
                if self._mmp_row(acct_id, s) is None and not self._tag_in_use(acct_id, s)
            ]
            if not free and not reusable:
                raise Reject(Reason.MMP_GROUPS_FULL)
            slot = free[0] if free else reusable[0]
        row = [0] * FIELDS
        row[UNDERLYING], row[GROUP], row[INTERVAL] = underlying, group, interval
        row[FROZEN_TIME] = int(cmd["mmp_frozen_s"]) * NS
        row[QTY_LIMIT], row[DELTA_LIMIT], row[VEGA_LIMIT] = limits
        groups[slot] = row  # a reset: no window, not frozen
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=underlying,
            qty_lots=slot,
            label=group & ((1 << 64) - 1),
        )

    def _tag_in_use(self, acct_id: int, slot: int) -> bool:
        return any(
            (self.orders[oid].flags >> TAG_SHIFT) == slot + 1
            for oid in self.accounts[acct_id].orders
        )

    def _reset_mmp(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        underlying, group = int(cmd["mmp_underlying"]), _signed(int(cmd["mmp_group"]))
        slot = self._mmp_find(acct_id, underlying, group)
        row = self._mmp_row(acct_id, slot)
        if row is None:
            raise Reject(Reason.MMP_GROUP_UNKNOWN)
        row[WINDOW_END] = row[QTY] = row[DELTA] = row[VEGA] = row[FROZEN_UNTIL] = 0
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=underlying,
            qty_lots=slot,
            label=group & ((1 << 64) - 1),
        )

    # ------------------------------------------------------------------ order paths

    def _mmp_order_check(self, acct_id: int, inst, order_type: int, flags: int) -> None:
        if not flags & MMP:
            return
        if order_type == OrderType.MARKET:
            raise Reject(Reason.BAD_FLAGS)
        row = self._mmp_row(acct_id, self._mmp_find(acct_id, inst.underlying, 0))
        if self._mmp_frozen(row):
            raise Reject(Reason.MMP_FROZEN)

    def _mmp_quote_check(self, acct_id: int, cmd, legs: list) -> None:
        group = _signed(int(cmd["mmp_group"]))
        for leg_no, leg in enumerate(legs, start=self.leg_base):
            if int(leg["bid_qty_lots"]) == 0 and int(leg["ask_qty_lots"]) == 0:
                continue
            underlying = self.instruments[int(leg["instrument"])].underlying
            row = self._mmp_row(acct_id, self._mmp_find(acct_id, underlying, group))
            if group != 0 and row is None:
                raise Reject(Reason.MMP_GROUP_UNKNOWN, leg_no)
            if self._mmp_frozen(row):
                raise Reject(Reason.MMP_FROZEN, leg_no)

    def _mmp_quote_tag(self, acct_id: int, cmd, inst) -> int:
        """Flag bits a new quote of this mass quote carries for its named group (0: none)."""
        group = _signed(int(cmd["mmp_group"]))
        if group == 0:
            return 0
        return (self._mmp_find(acct_id, inst.underlying, group) + 1) << TAG_SHIFT

    def _mmp_group_of(self, order) -> int:
        tag = order.flags >> TAG_SHIFT
        if tag and order.flags & QUOTE:
            slot = tag - 1
        else:
            underlying = self.instruments[order.instrument].underlying
            slot = self._mmp_find(order.account, underlying, 0)
        return slot if self._mmp_row(order.account, slot) is not None else -1

    def _mmp_fill(self, order, q: int) -> None:
        """A fill of ``q`` lots of ``order`` (after the position and balance moved)."""
        if not order.flags & (QUOTE | MMP) or not self.mmp:
            return
        slot = self._mmp_group_of(order)
        row = self._mmp_row(order.account, slot)
        if row is None or self._mmp_frozen(row):
            return
        now = self.clock
        if now >= row[WINDOW_END]:
            row[WINDOW_END] = min(now + row[INTERVAL], FOREVER)
            row[QTY] = row[DELTA] = row[VEGA] = 0
        inst = self.instruments[order.instrument]
        sign = 1 if order.side == BUY else -1
        delta = _clamp(q * inst.greeks[0])
        vega = _clamp(q * inst.greeks[2])
        vega_units = abs(vega) // NS * (1 if vega >= 0 else -1)
        row[QTY] = _clamp(row[QTY] + q)
        row[DELTA] = _clamp(row[DELTA] + sign * delta)
        row[VEGA] = _clamp(row[VEGA] + sign * vega_units)
        if (
            (row[QTY_LIMIT] > 0 and row[QTY] >= row[QTY_LIMIT])
            or (row[DELTA_LIMIT] > 0 and abs(row[DELTA]) >= row[DELTA_LIMIT])
            or (row[VEGA_LIMIT] > 0 and abs(row[VEGA]) >= row[VEGA_LIMIT])
        ):
            frozen = row[FROZEN_TIME]
            row[FROZEN_UNTIL] = min(now + frozen, FOREVER) if frozen > 0 else FOREVER
            row[WINDOW_END] = 0
            self.mmp_pending.append((order.account, slot, self._seq, self._kind))

    # ------------------------------------------------------------------ the stage

    def _mmp_stage(self) -> None:
        """After a command and its trigger stage: each breached group in breach order."""
        pending, self.mmp_pending = self.mmp_pending, []
        saved = self._seq, self._kind
        for acct_id, slot, seq, command in pending:
            row = self._groups(acct_id)[slot]
            assert row is not None
            self._seq, self._kind = seq, command
            self._emit(
                EventKind.MMP_TRIGGERED,
                leg=slot,
                account=acct_id,
                instrument=row[UNDERLYING],
                order_id=row[GROUP] & ((1 << 64) - 1),
                price_ticks=row[DELTA],
                qty_lots=row[QTY],
                a=row[FROZEN_UNTIL],
                b=row[VEGA],
            )
            default = row[GROUP] == 0
            victims = []
            for oid in self.accounts[acct_id].orders:
                order = self.orders[oid]
                if self.instruments[order.instrument].underlying != row[UNDERLYING]:
                    continue
                tag = order.flags >> TAG_SHIFT
                if order.flags & QUOTE:
                    if tag == slot + 1 or (tag == 0 and default):
                        victims.append(order)
                elif default and order.flags & MMP:
                    victims.append(order)
            victims.sort(key=lambda o: o.instrument)  # stable: list order within one
            for order in victims:
                self._cancel_resting(order, Reason.CANCEL_MMP_TRIGGERED)
        self._seq, self._kind = saved
        if pending:
            self._release_flat_positions()

    def _canonical_mmp(self) -> list[tuple[int, ...]]:
        return [
            (acct_id, slot, *row)
            for acct_id in sorted(self.mmp)
            for slot, row in enumerate(self.mmp[acct_id])
            if row is not None
        ]


MMP_HANDLERS = {
    CommandKind.SET_MMP_CONFIG: "_set_mmp_config",
    CommandKind.RESET_MMP: "_reset_mmp",
}
