"""Differential tests of the risk engine: random streams with index updates, price shocks,
option risk arrays, standard and portfolio-margin accounts, through the kernel and the
reference model.

After every batch the events must be byte-identical and ``canonical()`` equal (the model
computes every account's margin sums and scenario vectors from scratch, the kernel keeps them
incrementally), and the kernel's ``check_invariants`` recomputes them from scratch as well.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derivex.core.config import EngineConfig, deribit_grid, span_grid
from derivex.core.records import CommandKind, index_records, risk_records
from tests.core.test_differential import (
    HypothesisChooser,
    Pair,
    RandomChooser,
    StreamGen,
    run_seeded,
    run_stream,
)

# also run as plain Python by the no-JIT pass of scripts/test.sh (about a minute for all
# of tests/core): the kernels' Python semantics must match the compiled ones
pytestmark = pytest.mark.nojit

K = CommandKind


def draw_risk_config(ch) -> EngineConfig:
    grid = ch.pick(
        [
            ((0, 0, 1_000_000),),
            ((-200_000, 1, 1_000_000), (0, 0, 1_000_000), (200_000, -1, 1_000_000)),
            (
                (-500_000, 1, 350_000),
                (-100_000, 0, 1_000_000),
                (100_000, 0, 1_000_000),
                (900_000, 1, 500_000),
                (30_000, -1, 1_000_000),
                (-30_000, 1, 1_000_000),
            ),
            span_grid(),
            deribit_grid(),
        ]
    )
    im = ch.pick([20_000, 200_000, 600_000])
    tier_im = ch.pick([0, 5_000, 300_000])
    return EngineConfig(
        risk_checks=True,
        scenarios=grid,
        max_order_lots=ch.pick([50, 1 << 40]),
        max_position_lots=ch.pick([30, 1000, (1 << 31) - 1]),
        max_price_ticks=ch.pick([600, 1 << 40]),
        max_open_orders_per_account=ch.int(2, 8),
        max_orders=ch.pick([12, 1000]),
        max_accounts=ch.int(6, 9),
        max_instruments=ch.int(2, 5),
        max_quote_legs=ch.int(1, 3),
        index_stale_ms=ch.pick([50, 30_000, 30_000]),
        index_outlier_ppm=ch.pick([0, 5_000, 100_000]),
        index_outlier_discard=ch.chance(400),
        index_min_sources=ch.int(1, 2),
        index_history=ch.pick([2, 3, 1024]),
        mark_ema_ppm=ch.pick([0, 200_000, 1_000_000]),
        mark_basis_clamp_ppm=ch.pick([0, 10_000, 200_000]),
        market_band_ppm=ch.pick([0, 50_000, 300_000]),
        perp_im_ppm=im,
        perp_mm_ppm=im // 2,
        perp_tier_units=ch.pick([100, 10_000, 10**13]),
        perp_tier_im_ppm=tier_im,
        perp_tier_mm_ppm=tier_im // 2,
        option_im_ppm=ch.pick([150_000, 400_000]),
        option_im_min_ppm=ch.pick([0, 100_000]),
        option_mm_ppm=ch.pick([0, 75_000]),
        pm_mm_ppm=ch.pick([500_000, 800_000, 1_000_000]),
        pm_short_option_ppm=ch.pick([0, 10_000, 200_000]),
        funding_mode=ch.pick([0, 1]),
        funding_period_ms=ch.pick([3, 50, 28_800_000]),
        funding_dead_band_ppb=ch.pick([0, 250_000, 50_000_000]),
        funding_cap_ppb=ch.pick([1_000_000, 100_000_000]),
        funding_clamp_ppb=ch.pick([0, 500_000]),
        expiry_twap_ms=ch.pick([1, 5, 1_800_000]),
        liquidation_fee_ppm=ch.pick([0, 5_000, 100_000]),
        liquidation_step_ppm=ch.pick([1, 250_000, 1_000_000]),
        adl_mode=ch.pick([0, 0, 1]),
        adl_max_counterparties=ch.int(1, 3),
        initial_orders=1,
        initial_levels=1,
        initial_accounts=4,
        initial_instruments=1,
        initial_positions=1,
        initial_levels_per_side=1,
    )


class RiskStreamGen(StreamGen):
    """The matching stream generator plus market data: INDEX updates (gaps and shocks,
    stale and outlier sources, malformed headers), option RISK_ARRAYs, margin modes, and
    deposits small enough for margin to bind."""

    def __init__(self, ch, config: EngineConfig):
        super().__init__(ch, config)
        self.index = 100
        self.marks: dict[int, int] = {1: 5}  # option marks sent, so trades can be in band

    def add_instrument(self, kind: str | None = None) -> np.ndarray:
        out = super().add_instrument(kind)
        if int(out["instrument_kind"][0]) == 2 and int(out["expiry_ts_ns"][0]) > 0:
            out["expiry_ts_ns"] = self.ts + self.ch.pick([10**6, 10**8, 10**9, 10**18])
        return out

    def index_update(self) -> list[np.ndarray]:
        ch = self.ch
        r = ch.int(0, 99)
        if r < 70:
            self.index = max(1, self.index + ch.int(-6, 6))
        elif r < 85:
            self.index = max(1, self.index * ch.pick([50, 70, 130, 200]) // 100)  # a gap
        count = ch.int(1, 4)
        sources = []
        for source in range(count):
            price = self.index + ch.int(-2, 2)
            if ch.chance(150):
                price = self.index * ch.pick([2, 3])  # an outlier
            ts = self.ts - (0 if not ch.chance(200) else ch.pick([10_000_000, 10**11]))
            sources.append(
                (
                    source if not ch.chance(30) else 0,
                    ts,
                    max(price, 1) if not ch.chance(20) else ch.pick([0, -3, 1 << 62]),
                )
            )
        records = index_records(ch.pick([1, 1, 1, 2]) if not ch.chance(30) else 99, sources)
        if ch.chance(50):
            records["count"][0] = ch.pick([0, count + 1, 40])  # malformed header
        return [records[k : k + 1] for k in range(len(records))]

    def risk_array(self) -> list[np.ndarray]:
        ch = self.ch
        instrument = 1 if ch.chance(500) else self.instrument()[0]  # 1: the setup's option
        scenarios = len(self.cfg.scenarios)
        values = [ch.int(-300, 120) for _ in range(scenarios)]
        mark = ch.pick([1, 2, 5, 10, 40]) if not ch.chance(40) else ch.pick([0, 1 << 50])
        greeks = tuple(ch.int(-(10**9), 10**9) for _ in range(5))
        if 0 < mark < 1 << 50:
            self.marks[instrument] = mark
        records = risk_records(instrument, mark, values, greeks, ch.int(0, 10**6))
        if ch.chance(60):
            records = records[:-1] if len(records) > 2 else records  # one leg short
        if ch.chance(30):
            records = risk_records(instrument, 0, [], greeks)[:2]  # perpetual-style Greeks
        return [records[k : k + 1] for k in range(len(records))]

    def trade_pair(self) -> list[np.ndarray]:
        """A resting order and an IOC from another account crossing it near the index (an
        option: near the last mark sent for it, where its price band is)."""
        ch = self.ch
        inst, tick, step = self.instrument()
        centre = self.marks.get(inst, self.index)
        price = max(tick, (centre + ch.int(-3, 3)) // tick * tick)
        qty = step * ch.int(1, 8)
        side = ch.pick([0, 1])
        return [
            self.record(
                K.PLACE_ORDER,
                account=self.account(),
                instrument=inst,
                side=side,
                price_ticks=price,
                qty_lots=qty,
            ),
            self.record(
                K.PLACE_ORDER,
                account=self.account(),
                instrument=inst,
                side=1 - side,
                tif=1,
                price_ticks=price,
                qty_lots=qty,
            ),
        ]

    def command(self) -> list[np.ndarray]:
        ch = self.ch
        r = ch.int(0, 999)
        if r < 150:
            return self.trade_pair()
        r = ch.int(0, 999)
        if r < 110:
            return self.index_update()
        if r < 170:
            return self.risk_array()
        if r < 175:
            return [
                self.record(
                    K.SET_INSTRUMENT,
                    instrument=self.instrument()[0],
                    flags=ch.pick([0, 0, 1, 2, 2, 3, 4]),
                    funding_cap_ppb=ch.pick([0, 100_000, 2_000_000, -1, 10**9]),
                    price_band_ppm=ch.pick([0, 1, 20_000, 1_000_000, -1, 10**7]),
                )
            ]
        if r < 185:
            return [
                self.record(
                    K.SET_ACCOUNT,
                    account=self.account(),
                    stp=ch.pick([0, 1]),
                    margin_mode=ch.pick([0, 1, 1, 2]),
                )
            ]
        if r < 195:
            return [
                self.record(K.CREATE_ACCOUNT, stp=ch.pick([0, 1]), margin_mode=ch.pick([0, 1, 3]))
            ]
        if r < 230:
            kind = ch.pick([K.DEPOSIT, K.WITHDRAW, K.WITHDRAW])
            amount = ch.pick([ch.int(1, 2_000), ch.int(1, 100), 10**6])
            return [self.record(kind, account=self.account(), amount_units=amount)]
        return super().command()

    def setup_batch(self) -> np.ndarray:
        ch = self.ch
        self._pending_inst = []
        recs = [
            self.record(K.CREATE_ACCOUNT, stp=ch.pick([0, 0, 1]), margin_mode=ch.pick([0, 1]))
            for _ in range(ch.int(2, 4))
        ]
        recs += [self.add_instrument("perp"), self.add_instrument("option")]
        if ch.chance(400):
            recs.append(self.add_instrument("perp"))
        for acct in range(3, 3 + len(recs)):
            recs.append(
                self.record(
                    K.DEPOSIT, account=acct, amount_units=ch.pick([300, 2_000, 20_000, 5_000_000])
                )
            )
        index = index_records(1, [(0, self.ts, self.index)])
        recs += [index[k : k + 1] for k in range(len(index))]
        values = [ch.int(-200, 100) for _ in self.cfg.scenarios]
        risk = risk_records(1, 5, values, (1, 2, 3, 4, 5), 500_000)
        recs += [risk[k : k + 1] for k in range(len(risk))]
        recs.append(self.record(K.TIME))
        return self.stamp(recs)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(st.data())
def test_risk_differential_random_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 5)),
        batch_size=(1, 40),
        draw=draw_risk_config,
        generator=RiskStreamGen,
    )


def test_risk_differential_long_seeded():
    """~3k commands for each of five seeds with price shocks, checked after every batch;
    the streams must have exercised margin rejects, stale indices, marks, fills,
    liquidations, funding, settlements, and orders and amends refused by the price band."""
    seen = {
        "margin": 0,
        "stale": 0,
        "marks": 0,
        "fills": 0,
        "liquidations": 0,
        "funding": 0,
        "settlements": 0,
        "band_orders": 0,
        "band_amends": 0,
    }
    ran = {}
    for seed in (11, 12, 13, 14, 15):
        ch = RandomChooser(seed)
        config = draw_risk_config(ch)
        pair = Pair(config)
        for events in run_seeded(ch, RiskStreamGen(ch, config), pair, 3_000, 200):
            seen["margin"] += int(np.sum(events["reason"] == 202))
            seen["stale"] += int(np.sum(events["reason"] == 203))
            seen["marks"] += int(np.sum(events["kind"] == 12))
            seen["fills"] += int(np.sum(events["kind"] == 3))
            seen["liquidations"] += int(np.sum(events["kind"] == 13))
            seen["funding"] += int(np.sum(events["kind"] == 15))
            seen["settlements"] += int(np.sum(events["kind"] == 16))
            banded = (events["kind"] == 2) & np.isin(events["reason"], (208, 209))
            seen["band_orders"] += int(np.sum(banded & (events["command"] == K.PLACE_ORDER)))
            seen["band_amends"] += int(np.sum(banded & (events["command"] == K.AMEND_ORDER)))
        ran[seed] = (pair.stopped_early, pair.commands_run() - len(pair.history[0]))
    # every stream ran its full length (an early stop would shorten the check unseen)
    assert all(not stopped and count >= 3_000 for stopped, count in ran.values()), ran
    assert all(count > 0 for count in seen.values()), str(seen)
