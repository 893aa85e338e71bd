"""Demo agents that keep ``derivex serve --demo`` books alive: two market makers quoting
every instrument around its fair value (one mass quote each per step, at two spreads), and
a noise trader sending small marketable IOC orders, with its positions kept bounded.

Agents act through the ``Venue`` like any client (their orders are sequenced, journaled and
published), on the server's loop. They are seeded: the same seed and the same fair values
give the same orders.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from derivex.exchange import Quote
from derivex.gateway.catalog import InstrumentSpec
from derivex.gateway.errors import RpcError
from derivex.gateway.venue import Venue


@dataclass(frozen=True)
class MakerStyle:
    spread_ppm: int  # half-spread around fair value, of the fair value
    option_spread_ppm: int
    size_usdc: int  # quote size in notional (perpetuals) / premium terms (options)


INNER = MakerStyle(spread_ppm=300, option_spread_ppm=40_000, size_usdc=50_000)
OUTER = MakerStyle(spread_ppm=1_500, option_spread_ppm=120_000, size_usdc=250_000)


def _round_down(value: int, step: int) -> int:
    return value // step * step


class MarketMaker:
    """Quotes every instrument with a fair value: bid/ask at fair -/+ spread (rounded
    outwards to the tick), sizes of about ``size_usdc`` notional, jittered."""

    def __init__(
        self,
        venue: Venue,
        account: int,
        style: MakerStyle,
        fair: Callable[[InstrumentSpec], int],
        seed: int,
    ) -> None:
        self.venue, self.account, self.style, self.fair = venue, account, style, fair
        self.random = random.Random(seed)

    def quote(self, spec: InstrumentSpec) -> Quote | None:
        fair = self.fair(spec)
        if fair <= 0:
            return None
        tick = spec.tick_size_ticks
        spread_ppm = (
            self.style.spread_ppm if spec.kind == "perpetual" else self.style.option_spread_ppm
        )
        half = max(tick, fair * spread_ppm // 1_000_000)
        bid = _round_down(fair - half, tick)
        ask = -_round_down(-(fair + half), tick)  # rounded up
        if bid <= 0:
            bid = 0
        price = (
            float(spec.price(fair)) if spec.kind == "perpetual" else float(spec.strike)
        )  # options: size against the underlying notional
        lots = int(self.style.size_usdc / max(price, 1e-9) / float(spec.lot_size))
        lots = int(lots * self.random.uniform(0.5, 1.5))
        lots = max(spec.min_trade_lots, _round_down(lots, spec.min_trade_lots))
        return Quote(spec.instrument, bid, lots if bid else 0, ask, lots)

    def step(self) -> bool:
        quotes = [q for q in (self.quote(spec) for spec in self.venue.catalog) if q is not None]
        return self.venue.mass_quote(self.account, quotes) if quotes else False


class NoiseTrader:
    """Each step: with probability ``activity`` per instrument group, one IOC order of a
    random side and size crossing the fair value by ``aggression_ppm``; a position beyond
    ``max_notional_usdc`` is traded back towards zero instead."""

    def __init__(
        self,
        venue: Venue,
        account: int,
        fair: Callable[[InstrumentSpec], int],
        seed: int,
        activity: float = 0.5,
        aggression_ppm: int = 5_000,
        max_notional_usdc: float = 2_000_000.0,
    ) -> None:
        self.venue, self.account, self.fair = venue, account, fair
        self.random = random.Random(seed)
        self.activity = activity
        self.aggression_ppm = aggression_ppm
        self.max_notional = max_notional_usdc

    def step(self) -> int:
        specs = list(self.venue.catalog)
        perpetuals = [s for s in specs if s.kind == "perpetual"]
        options = [s for s in specs if s.kind == "option"]
        sent = 0
        for group in (perpetuals, perpetuals, options):
            if group and self.random.random() < self.activity:
                sent += self._trade(self.random.choice(group))
        return sent

    def _trade(self, spec: InstrumentSpec) -> int:
        fair = self.fair(spec)
        if fair <= 0:
            return 0
        position = {p.instrument: p.qty_lots for p in self.venue.exchange.positions(self.account)}
        held = position.get(spec.instrument, 0)
        reference = float(spec.price(fair)) if spec.kind == "perpetual" else float(spec.strike)
        notional = abs(held) * float(spec.lot_size) * reference
        side = self.random.choice(("buy", "sell"))
        if notional > self.max_notional:
            side = "sell" if held > 0 else "buy"
        lots = int(
            self.random.uniform(0.002, 0.03) * self.max_notional / reference / float(spec.lot_size)
        )
        lots = max(spec.min_trade_lots, _round_down(lots, spec.min_trade_lots))
        tick = spec.tick_size_ticks
        move = max(tick, fair * self.aggression_ppm // 1_000_000)
        if spec.kind == "option":
            move = max(move, fair // 5)
        price = fair + move if side == "buy" else fair - move
        price = -_round_down(-price, tick) if side == "buy" else _round_down(price, tick)
        if price <= 0:
            return 0
        try:
            self.venue.place(
                self.account, spec, side, lots, price, time_in_force="ioc", label="noise"
            )
        except RpcError:
            return 0  # rejects (no mark yet, margin) are part of a live venue
        return 1
