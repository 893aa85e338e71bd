"""Differential tests of market-maker protection (core/mmp.py): the random streams of the
matching and risk differential suites with MMP configs (valid and not), resets, mass quotes
naming groups, MMP-flagged orders and jumps of the clock mixed in, plus trigger orders (a
fired order may breach a group). Events byte-identical and ``canonical()`` (which holds
every group: window, sums, frozen time) equal after every batch; both sides' invariants
hold after every batch; a replay reaches the same state hash.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from derivex.core.records import CommandKind, EventKind, OrderFlag, Reason
from tests.core.test_differential import (
    HypothesisChooser,
    Pair,
    RandomChooser,
    StreamGen,
    draw_config,
    run_seeded,
    run_stream,
)
from tests.core.test_risk_differential import RiskStreamGen, draw_risk_config
from tests.core.test_trigger_differential import SUPPRESS, TriggerCommands

pytestmark = pytest.mark.nojit

SECOND = 1_000_000_000


class MmpCommands:
    """Mixed into a stream generator: SET_MMP_CONFIG, RESET_MMP, mass quotes in groups,
    MMP orders, clock jumps."""

    mmp_share = 350  # per mille of commands

    def group(self) -> int:
        return self.ch.pick([0, 0, 0, 1, 2, (1 << 64) - 1])  # type: ignore[attr-defined]

    def underlying(self) -> int:
        return self.ch.pick([1, 1, 1, 1, 2, 0, 200])  # type: ignore[attr-defined]

    def command(self) -> list[np.ndarray]:
        ch = self.ch  # type: ignore[attr-defined]
        if not ch.chance(self.mmp_share):
            return super().command()  # type: ignore[misc]
        r = ch.int(0, 999)
        record = self.record  # type: ignore[attr-defined]
        if r < 180:
            limits = {
                "mmp_qty_limit_lots": ch.pick([0, 1, 2, 4, 8, 20, -1]),
                "mmp_delta_limit": ch.pick([0, 0, 3, 10**9, 5 * 10**9, -2]),
                "mmp_vega_limit": ch.pick([0, 0, 0, 1, 100]),
            }
            return [
                record(
                    CommandKind.SET_MMP_CONFIG,
                    account=self.account(),  # type: ignore[attr-defined]
                    mmp_underlying=self.underlying(),
                    mmp_group=self.group(),
                    mmp_interval_s=ch.pick([1, 1, 2, 5, 0, 65535]),
                    mmp_frozen_s=ch.pick([0, 1, 1, 2, (1 << 32) - 1]),
                    **limits,
                )
            ]
        if r < 280:
            return [
                record(
                    CommandKind.RESET_MMP,
                    account=self.account(),  # type: ignore[attr-defined]
                    mmp_underlying=self.underlying(),
                    mmp_group=self.group(),
                )
            ]
        if r < 450:
            legs = self.quote_legs()  # type: ignore[attr-defined]
            legs[0]["mmp_group"] = self.group()
            return legs
        if r < 900:
            inst, tick, step = self.instrument()  # type: ignore[attr-defined]
            flags = OrderFlag.MMP | (OrderFlag.POST_ONLY if ch.chance(300) else 0)
            return [
                record(
                    CommandKind.PLACE_ORDER,
                    account=self.account(),  # type: ignore[attr-defined]
                    instrument=inst,
                    side=ch.pick([0, 1]),
                    order_type=0 if not ch.chance(50) else 1,
                    tif=ch.pick([0, 0, 0, 1]),
                    flags=flags,
                    price_ticks=self.price(tick),  # type: ignore[attr-defined]
                    qty_lots=self.qty(step),  # type: ignore[attr-defined]
                    label=ch.int(0, 5),
                )
            ]
        self.ts += ch.pick([SECOND // 2, SECOND, 3 * SECOND])  # type: ignore[attr-defined]
        return [record(CommandKind.NOOP)]


class MmpStreamGen(MmpCommands, TriggerCommands, StreamGen):
    pass


class RiskMmpStreamGen(MmpCommands, TriggerCommands, RiskStreamGen):
    pass


@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_mmp_differential_random_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_config,
        generator=MmpStreamGen,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=SUPPRESS)
@given(st.data())
def test_mmp_differential_risk_streams(data):
    run_stream(
        HypothesisChooser(data),
        n_batches=data.draw(st.integers(1, 4)),
        batch_size=(1, 40),
        draw=draw_risk_config,
        generator=RiskMmpStreamGen,
    )


# (seeds drawn so that each stream really breaches, cancels and refuses)
@pytest.mark.parametrize(("seed", "risk"), [(3, False), (8, False), (2, True), (7, True)])
def test_mmp_differential_long_seeded(seed, risk):
    """~3k commands per seed through both; the streams must really configure, breach,
    cancel and refuse (counted), or the test proves nothing."""
    ch = RandomChooser(seed)
    config = (draw_risk_config if risk else draw_config)(ch)
    gen = (RiskMmpStreamGen if risk else MmpStreamGen)(ch, config)
    pair = Pair(config)
    seen = {"config": 0, "triggered": 0, "cancelled": 0, "frozen": 0, "reset": 0}
    for events in run_seeded(ch, gen, pair, 3_000, 200):
        kinds, commands = events["kind"], events["command"]
        reasons = events["reason"]
        accepted = kinds == EventKind.ACCEPTED
        seen["config"] += int(np.sum(accepted & (commands == CommandKind.SET_MMP_CONFIG)))
        seen["reset"] += int(np.sum(accepted & (commands == CommandKind.RESET_MMP)))
        seen["triggered"] += int(np.sum(kinds == EventKind.MMP_TRIGGERED))
        seen["cancelled"] += int(np.sum(reasons == Reason.CANCEL_MMP_TRIGGERED))
        seen["frozen"] += int(np.sum(reasons == Reason.MMP_FROZEN))
    assert not pair.stopped_early
    assert all(count > 0 for count in seen.values()), seen
    pair.check_replay()
