"""Read-only risk figures for the shells, computed with the engine's own kernels so they are
exactly what the engine would decide: the initial margin an order would use, the margins
of a portfolio with positions added (on a copy of the state), and the auto-deleveraging
queue. Nothing here changes the state it is given.
"""

from __future__ import annotations

import numpy as np

from derivex.core.arena import pack
from derivex.core.deleveraging import _adl_score as adl_score  # the engine's own ranking
from derivex.core.growth import grow
from derivex.core.layout import Ins8, Pos8
from derivex.core.pools import position_get_or_create
from derivex.core.query import live_positions
from derivex.core.records import SYSTEM_ACCOUNTS, SystemAccount
from derivex.core.risk import initial_margin_after, margins
from derivex.core.state import State
from derivex.core.transfers import position_of, transfer


def adl_ranking(st: State, instrument: int, count: int) -> dict[str, list[tuple[int, int, int]]]:
    """The auto-deleveraging queue of ``instrument`` per side: ``{"long": [...], "short":
    [...]}``, each ``(account, qty_lots, score)`` best-ranked first (the score and the order
    the engine's deleveraging uses: profit x leverage, highest first, lowest account on
    ties), at most ``count`` each. A liquidated long is closed against the "short" queue.
    O(live positions) plus one compiled score per position of the instrument."""
    slots, accounts, instruments = live_positions(st)
    mine = instruments == instrument
    slots, accounts = slots[mine], accounts[mine]
    queues: dict[str, list[tuple[int, int, int]]] = {"long": [], "short": []}
    for slot, account in zip(slots.tolist(), accounts.tolist(), strict=True):
        qty = int(st.pos_i8[slot, Pos8.QTY])
        if qty == 0 or account < SYSTEM_ACCOUNTS:
            continue
        score = int(adl_score(st, np.int64(slot), np.int64(account)))
        queues["long" if qty > 0 else "short"].append((account, qty, score))
    for side, rows in queues.items():
        rows.sort(key=lambda row: (-row[2], row[0]))
        queues[side] = rows[:count]
    return queues


def order_margin(
    st: State, account: int, instrument: int, side: int, qty_lots: int, price_ticks: int
) -> tuple[int, int]:
    """``(initial margin now, initial margin with the order resting)`` of ``account`` for an
    order of ``qty_lots`` at ``price_ticks`` on ``side`` of ``instrument``: the engine's own
    pre-trade figure (``risk.initial_margin_after``), collateral units. Nothing changes.
    The caller has checked the quantity and price are within the engine's limits. O(scenarios)."""
    a, i = np.int64(account), np.int64(instrument)
    position = position_of(st, a, i)
    _, initial, _ = margins(st, a)
    after = initial_margin_after(
        st, a, i, position, np.int64(side), np.int64(qty_lots), np.int64(qty_lots * price_ticks)
    )
    return int(initial), int(after)


def simulate_margins(
    st: State, account: int, additions: list[tuple[int, int]]
) -> tuple[int, int, int]:
    """``(equity, initial margin, maintenance margin)`` of ``account`` as if it also held
    ``additions`` (``(instrument, signed lots)`` each), bought or sold at each instrument's
    mark with no fee against the insurance fund, exactly as the engine would margin the
    account holding them. ``st`` is not touched: the work happens on a copy. Every
    instrument must have a mark. Cost: O(state size) for the copy, O(scenarios) per
    addition."""
    _, _, scratch = pack(grow(st, 2 * len(additions) + 2))
    a = np.int64(account)
    fund = np.int64(SystemAccount.INSURANCE_FUND)
    for instrument, lots in additions:
        if lots == 0:
            continue
        i = np.int64(instrument)
        mark = np.int64(scratch.ins_i8[instrument, Ins8.MARK])
        if lots > 0:
            transfer(scratch, i, position_get_or_create(scratch, fund, i), a, np.int64(lots), mark)
        else:
            transfer(scratch, i, position_get_or_create(scratch, a, i), fund, np.int64(-lots), mark)
    equity, initial, maintenance = margins(scratch, a)
    return int(equity), int(initial), int(maintenance)
