"""The traders of the stress harness: who they are (deposit, leverage, what they trade,
margin mode, when they open) and the orders they send.

Every draw comes from the caller's seeded generator, in a fixed order that does not depend
on the engine's answers, so the same seed gives the same crowd and the same orders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from derivex.core.config import EngineConfig
from derivex.core.records import Side
from derivex.sim.stress_market import (
    OPTION_MIN_LOTS,
    OPTION_TICK,
    PERP_TICK,
    USDC,
    Row,
    StressVenue,
    round_to,
)

PERPETUAL, OPTIONS, PORTFOLIO = 0, 1, 2  # kinds of trader
ENTRY_SLIPPAGE = 0.0025  # opening IOC orders cross the makers' quotes up to this far
LEVERAGE_JITTER = 0.15  # each trader's leverage is its drawn value x U(1 -/+ this)
PORTFOLIO_LEVERAGE = 4.0  # portfolio margin counts the extended scenarios: less room
PUT_WRITER_LEVERAGE = 5.0  # short options need 10-15% of the underlying in standard mode


def max_leverage(config: EngineConfig, notional_units: float) -> float:
    """Leverage an opening perpetual order can pass the initial-margin check with: the
    check counts the IOC limit's distance from the mark as a loss, and the taker fee is
    paid, on top of the tiered initial-margin rate."""
    tiers = notional_units // config.perp_tier_units
    rate = (config.perp_im_ppm + config.perp_tier_im_ppm * tiers) / 1e6
    return 0.95 / (rate + ENTRY_SLIPPAGE + 0.0005)


@dataclass(frozen=True)
class Crowd:
    """Traders as columns: trader ``i`` is account ``first_account + i``."""

    first_account: int
    deposit_units: NDArray[np.int64]
    leverage: NDArray[np.float64]
    kind: NDArray[np.int8]  # PERPETUAL, OPTIONS (standard margin) or PORTFOLIO
    long: NDArray[np.bool_]  # perpetual: long; options: premium buyer (else put writer)
    entry_step: NDArray[np.int64]
    pick: NDArray[np.float64]  # uniform draw choosing the option
    fraction: NDArray[np.float64]  # uniform draw sizing premium, choosing written/bought puts

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        count: int,
        first_account: int,
        *,
        leverage: Sequence[float],
        leverage_weights: Sequence[float],
        long_share: float,
        options_share: float,
        portfolio_share: float,
        entry_steps: int,
    ) -> Crowd:
        """``count`` traders: deposits log-normal around 5,000 USDC (100 to 1,000,000),
        leverage from the weighted values with a +/-15% jitter, kinds and directions by the
        shares, entry steps uniform in ``[1, entry_steps)``. O(count)."""
        deposits = np.clip(np.exp(rng.normal(math.log(5_000.0), 1.0, count)), 100.0, 1_000_000.0)
        weights = np.asarray(leverage_weights, dtype=np.float64)
        drawn = rng.choice(
            np.asarray(leverage, dtype=np.float64), size=count, p=weights / weights.sum()
        )
        jitter = 1.0 + LEVERAGE_JITTER * (2.0 * rng.random(count) - 1.0)
        roll = rng.random(count)
        kind = np.where(
            roll < options_share,
            OPTIONS,
            np.where(roll < options_share + portfolio_share, PORTFOLIO, PERPETUAL),
        )
        return cls(
            first_account,
            (deposits.round() * USDC).astype(np.int64),
            np.maximum(drawn * jitter, 1.0),
            kind.astype(np.int8),
            rng.random(count) < long_share,
            rng.integers(1, max(entry_steps, 2), count),
            rng.random(count),
            rng.random(count),
        )

    def __len__(self) -> int:
        return len(self.deposit_units)

    def accounts(self) -> NDArray[np.int64]:
        return np.arange(self.first_account, self.first_account + len(self), dtype=np.int64)


class OptionChoices:
    """The options each role picks from (indices into ``venue.options``): bought puts
    80-100% and calls 100-120% of the start price on the weekly and monthly expiries,
    written puts 80-95% on any expiry."""

    def __init__(self, venue: StressVenue) -> None:
        chain = venue.options
        percent = np.array([s.strike_ticks * 100 // venue.start_ticks for s in chain])
        calls = np.array([s.is_call for s in chain])
        first_expiry = min(s.expiry_ns for s in chain)
        later = np.array([s.expiry_ns > first_expiry for s in chain])
        self.roles = {
            "put": np.flatnonzero(~calls & later & (percent >= 80) & (percent <= 100)),
            "call": np.flatnonzero(calls & later & (percent >= 100) & (percent <= 120)),
            "written_put": np.flatnonzero(~calls & (percent >= 80) & (percent <= 95)),
        }

    def pick(self, role: str, draw: float) -> int:
        candidates = self.roles[role]
        return int(candidates[min(int(draw * len(candidates)), len(candidates) - 1)])


def _option_lots(units: float, price_ticks: int) -> int:
    return max(OPTION_MIN_LOTS, int(units / price_ticks) // OPTION_MIN_LOTS * OPTION_MIN_LOTS)


def entry_orders(
    crowd: Crowd,
    traders: NDArray[np.int64],
    venue: StressVenue,
    choices: OptionChoices,
    index: float,
    option_marks: NDArray[np.int64],
) -> list[Row]:
    """The opening orders of ``traders`` (IOC limits crossing the makers' quotes):
    perpetual traders long or short at their leverage; option buyers spend 20-80% of their
    deposit on puts or calls; put writers sell puts on up to 5x their deposit; portfolio
    accounts go long the perpetual (up to 4x) and write or buy puts on half of it."""
    rows: list[Row] = []
    buy_limit = int(round_to(index * (1 + ENTRY_SLIPPAGE), PERP_TICK, up=True))
    sell_limit = int(round_to(index * (1 - ENTRY_SLIPPAGE), PERP_TICK, up=False))

    def option_row(account: int, k: int, buy: bool, lots: int) -> Row:
        mark = float(option_marks[k])
        if buy:
            limit = int(round_to(mark * 1.5 + OPTION_TICK, OPTION_TICK, up=True))
        else:
            limit = max(OPTION_TICK, int(round_to(mark * 0.5, OPTION_TICK, up=False)))
        return (account, int(venue.option_ids[k]), Side.BUY if buy else Side.SELL, limit, lots)

    for trader in traders.tolist():
        account = crowd.first_account + trader
        deposit = float(crowd.deposit_units[trader])
        leverage = float(crowd.leverage[trader])
        kind, long = int(crowd.kind[trader]), bool(crowd.long[trader])
        pick, fraction = float(crowd.pick[trader]), float(crowd.fraction[trader])
        if kind == PERPETUAL:
            leverage = min(leverage, max_leverage(venue.config, leverage * deposit))
            lots = int(leverage * deposit / index)
            if lots > 0:
                rows.append(
                    (
                        account,
                        venue.perp,
                        Side.BUY if long else Side.SELL,
                        buy_limit if long else sell_limit,
                        lots,
                    )
                )
        elif kind == OPTIONS and long:
            k = choices.pick("put" if pick < 0.5 else "call", (pick % 0.5) * 2)
            budget = deposit * (0.2 + 0.6 * fraction)
            limit = int(round_to(float(option_marks[k]) * 1.5 + OPTION_TICK, OPTION_TICK, up=True))
            rows.append(option_row(account, k, True, _option_lots(budget, limit)))
        elif kind == OPTIONS:
            k = choices.pick("written_put", pick)
            notional = min(leverage, PUT_WRITER_LEVERAGE) * deposit
            rows.append(option_row(account, k, False, _option_lots(notional, int(index))))
        else:
            lots = int(min(leverage, PORTFOLIO_LEVERAGE) * deposit / index)
            if lots <= 0:
                continue
            rows.append((account, venue.perp, Side.BUY, buy_limit, lots))
            put_lots = max(OPTION_MIN_LOTS, lots // 2 // OPTION_MIN_LOTS * OPTION_MIN_LOTS)
            rows.append(
                option_row(account, choices.pick("written_put", pick), fraction >= 0.5, put_lots)
            )
    return rows


def noise_orders(
    crowd: Crowd,
    rng: np.random.Generator,
    count: int,
    venue: StressVenue,
    index: float,
    active: bool,
) -> list[Row]:
    """``count`` random traders each send an IOC perpetual order of 1-3x their deposit,
    buy or sell, up to 0.5% through the index. The draws are made even when not
    ``active`` (no orders then), so the stream of draws does not depend on the phase."""
    traders = rng.integers(0, len(crowd), count)
    sells = rng.random(count) < 0.5
    sizes = 1.0 + 2.0 * rng.random(count)
    rows: list[Row] = []
    if not active:
        return rows
    for trader, sell, size in zip(traders.tolist(), sells.tolist(), sizes.tolist(), strict=True):
        lots = int(crowd.deposit_units[trader] * size / index)
        if lots > 0:
            limit = int(round_to(index * (0.995 if sell else 1.005), PERP_TICK, up=not sell))
            rows.append((crowd.first_account + trader, venue.perp, int(sell), limit, lots))
    return rows
