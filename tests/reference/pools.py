"""Order slots (ids with generations, a LIFO free stack) and position slots. Mirrors
core/pools.py."""

from __future__ import annotations

from tests.reference.entities import (
    BUY,
    Position,
)


class PoolsModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def _alloc_order_id(self) -> int:  # [A6]
        if self.free_slots:
            slot = self.free_slots.pop()
            self.slot_gen[slot] += 1
        else:
            slot = len(self.slot_gen)
            self.slot_gen.append(1)
        return (self.slot_gen[slot] << 32) | slot

    def _free_order_id(self, order_id: int) -> None:
        self.free_slots.append(order_id & 0xFFFFFFFF)

    def next_order_ids(self, n: int = 3) -> list[int]:
        ids = []
        for slot in reversed(
            self.free_slots[-n:] if n <= len(self.free_slots) else self.free_slots
        ):
            ids.append(((self.slot_gen[slot] + 1) << 32) | slot)
        fresh = len(self.slot_gen)
        while len(ids) < n:
            ids.append((1 << 32) | fresh)
            fresh += 1
        return ids[:n]

    # ------------------------------------------------------------------ positions

    def _pos(self, acct_id: int, inst_id: int) -> Position:
        """The position slot, created if missing (released at the end of the command)."""
        key = (acct_id, inst_id)
        if key not in self.positions:
            self.positions[key] = Position()
        return self.positions[key]

    def _pos_qty(self, acct_id: int, inst_id: int) -> int:
        pos = self.positions.get((acct_id, inst_id))
        return pos.qty if pos else 0

    def _release_flat_positions(self) -> None:
        for key in [k for k, p in self.positions.items() if p.qty == 0 and p.resting == 0]:
            assert self.positions[key].basis == 0
            del self.positions[key]

    @staticmethod
    def reducing_capacity(pos_qty: int, side: int) -> int:
        return max(0, -pos_qty) if side == BUY else max(0, pos_qty)

    def _position_limit_ok(
        self, acct_id: int, inst_id: int, side: int, qty: int, gone: int = 0
    ) -> bool:
        pos = self.positions.get((acct_id, inst_id)) or Position()
        if side == BUY:
            exposure = pos.qty + (pos.open_buy - gone) + qty
        else:
            exposure = -(pos.qty - (pos.open_sell - gone) - qty)
        return exposure <= self.cfg.max_position_lots
