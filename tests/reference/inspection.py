"""Canonical state and invariants, compared with the kernel's. Mirrors core/state.py and
core/invariants.py."""

from __future__ import annotations

from tests.reference.entities import (
    BUY,
    SELL,
)


class InspectionModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

    def canonical(self) -> dict:
        accounts = []
        for acct_id in sorted(self.accounts):
            a = self.accounts[acct_id]
            terms = self.terms(acct_id)
            accounts.append(
                (
                    acct_id,
                    a.balance,
                    a.stp,
                    len(a.orders),
                    a.gas,
                    a.gas_ts_ns,
                    a.margin_mode,
                    a.state,
                    tuple(terms["sums"]),
                    tuple(terms["vectors"]),
                )
            )
        instruments = []
        books = {}
        for inst_id, i in enumerate(self.instruments):
            instruments.append(
                (
                    inst_id,
                    i.kind,
                    i.option_type,
                    i.underlying,
                    i.status,
                    i.strike_ticks,
                    i.expiry_ts_ns,
                    i.tick,
                    i.min_trade,
                    i.cv,
                    i.maker_fee,
                    i.taker_fee,
                    i.max_price,
                    i.resting_count(),
                    (
                        i.mark,
                        i.mark_next,
                        i.index,
                        i.index_next,
                        i.basis_ema,
                        i.mark_iv,
                        *i.greeks,
                        i.funding_ts,
                        i.funding_rate,
                        i.premium_acc,
                        i.premium_ms,
                        i.settlement,
                        i.funding_cap,
                        i.price_band,
                    ),
                    int(i.dirty),
                    tuple(i.arr),
                    tuple(i.arr_next),
                )
            )
            books[inst_id] = {
                name: [
                    (
                        price,
                        [
                            (o.id, o.account, o.qty, o.flags, o.label)
                            for o in i.side_book(side)[price]
                        ],
                    )
                    for price in i.levels_in_priority(side)
                ]
                for name, side in (("bids", BUY), ("asks", SELL))
            }
        positions = sorted(
            (a, i, p.qty, p.basis, p.open_buy, p.open_sell, p.resting, *self._open_values(a, i))
            for (a, i), p in self.positions.items()
        )
        history = self.cfg.index_history
        underlyings = []
        for u in sorted(self.underlyings):
            index, ts, status, sources, updates, rows = self.underlyings[u]
            kept = rows[-history:]
            underlyings.append(
                (u, (index, ts, status, sources, updates % history, len(kept)), tuple(kept))
            )
        view = {
            "clock_ns": self.clock,
            "total_deposits": self.total_deposits,
            "total_withdrawals": self.total_withdrawals,
            "accounts": accounts,
            "instruments": instruments,
            "positions": positions,
            "books": books,
            "underlyings": underlyings,
            "risk_dirty": sum(1 for i in self.instruments if i.dirty),
            "bad_debt": self.bad_debt,
            "next_order_ids": self.next_order_ids(3),
            "triggers": self._canonical_triggers(),
        }
        transfers = self.canonical_transfers()  # tests/reference/transfers.py
        if transfers:
            view["transfers"] = transfers
        blocked = [acct_id for acct_id in sorted(self.accounts) if self.accounts[acct_id].blocked]
        if blocked:
            view["blocked_accounts"] = blocked
        links = self._subaccount_links()
        if links:
            view["subaccounts"] = links
        groups = self._canonical_mmp()
        if groups:
            view["mmp"] = groups
        return view

    def check_invariants(self) -> None:
        total = sum(a.balance for a in self.accounts.values()) + self.escrow_balance()
        assert total == self.total_deposits - self.total_withdrawals, "conservation"
        net: dict[int, int] = {}
        for (acct_id, inst_id), pos in self.positions.items():
            net[inst_id] = net.get(inst_id, 0) + pos.qty
            assert (pos.qty == 0) == (pos.basis == 0), "basis zero iff flat"
            assert abs(pos.basis) >= abs(pos.qty)
            assert pos.qty != 0 or pos.resting > 0, "released slot still present"
            mine = [
                o for o in self.orders.values() if o.account == acct_id and o.instrument == inst_id
            ]
            assert pos.resting == len(mine)
            assert pos.open_buy == sum(o.qty for o in mine if o.side == BUY)
            assert pos.open_sell == sum(o.qty for o in mine if o.side == SELL)
        assert all(v == 0 for v in net.values()), "net position per instrument"
        for inst in self.instruments:
            bid, ask = inst.best(BUY), inst.best(SELL)
            assert bid is None or ask is None or bid < ask, "crossed book"
            for side in (BUY, SELL):
                for price, level in inst.side_book(side).items():
                    assert level, "empty level"
                    assert all(o.qty > 0 and o.price == price and o.side == side for o in level), (
                        "level quantities"
                    )
        for acct_id, acct in self.accounts.items():
            assert all(self.orders[oid].account == acct_id for oid in acct.orders)
            assert 0 <= acct.gas <= max(self.cfg.gas_max, 0)
        assert sum(len(a.orders) for a in self.accounts.values()) == len(self.orders)
        self._check_subaccounts()
        live_slots = {oid & 0xFFFFFFFF for oid in self.orders}
        assert not live_slots & set(self.free_slots), "live slot on the free stack"
