"""The liquidation stress harness through the real engine: determinism (in process and in a
fresh ``derivex stress`` process), the crash's liquidations, conservation, and the plot."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from derivex.core.records import LiquidationStage
from derivex.sim.stress import STAGES, StressResult, StressSpec, plot_stress, run_stress

# small enough for the test run: 800 accounts, 6 simulated minutes of 2-second steps
# (36 s of build-up, -30% over 2 minutes, half of it back over 2 minutes)
SPEC = StressSpec(seed=11, accounts=800, minutes=6.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run() -> StressResult:
    return run_stress(SPEC)


def test_same_seed_gives_same_state_hash_and_summary(run: StressResult) -> None:
    again = run_stress(SPEC)
    assert again.state_hash == run.state_hash, f"seed {SPEC.seed}"
    assert again.summary() == run.summary()
    for name in ("index_ticks", "mark_ticks", "fund_units", "liquidations", "bad_debt_units"):
        np.testing.assert_array_equal(getattr(again, name), getattr(run, name), err_msg=name)


def test_another_seed_gives_another_run(run: StressResult) -> None:
    other = run_stress(replace(SPEC, seed=SPEC.seed + 1))
    assert other.state_hash != run.state_hash
    assert not np.array_equal(other.index_ticks, run.index_ticks)


def test_fresh_process_prints_the_same_hash(run: StressResult, tmp_path: Path) -> None:
    png = tmp_path / "cli.png"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "derivex.cli",
            "stress",
            "--seed",
            str(SPEC.seed),
            "--accounts",
            str(SPEC.accounts),
            "--minutes",
            str(SPEC.minutes),
            "--out",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    hashes = re.findall(r"^state hash ([0-9a-f]{64})$", completed.stdout, re.MULTILINE)
    assert hashes == [run.state_hash], completed.stdout + completed.stderr
    assert "insurance fund before" in completed.stdout
    assert png.read_bytes().startswith(PNG_MAGIC)
    # the command checks the engine's invariants after the run and exits 1 if one breaks
    assert completed.returncode == 0, completed.stdout[-2_000:] + completed.stderr


def test_population_and_market(run: StressResult) -> None:
    counts = run.counts
    assert counts["traders"] == SPEC.accounts - SPEC.market_makers
    assert counts["option_traders"] > 0 and counts["portfolio_accounts"] > 0
    assert counts["trader_fills"] > counts["traders"] // 2  # most entries found liquidity
    assert counts["steps"] == 180 and len(run.index_ticks) == 181
    ex = run.exchange
    assert ex is not None
    modes = {ex.account_summary(a).margin_mode for a in range(3, 3 + SPEC.accounts)}
    assert modes == {"standard", "portfolio"}
    start = int(run.index_ticks[0])
    assert 9_500_000 < start < 10_500_000  # 100,000 USDC in 0.01 ticks, with noise
    assert run.index_ticks.min() < start * 0.75  # the crash reached about -30%
    assert run.index_ticks[-1] > run.index_ticks.min() * 1.1  # and rebounded
    assert (run.mark_ticks > 0).all()


def test_crash_liquidates_through_several_stages(run: StressResult) -> None:
    totals = {stage: run.stage_total(stage) for stage in STAGES}
    assert totals[LiquidationStage.STARTED] > 0
    assert totals[LiquidationStage.BOOK] > 0, totals
    assert totals[LiquidationStage.INSURANCE_FUND] + totals[LiquidationStage.AUTO_DELEVERAGE] > 0
    assert sum(1 for count in totals.values() if count) >= 4, totals
    assert run.counts["liquidated_accounts"] > 0 and run.counts["bankrupt_accounts"] > 0
    # cumulative series never decrease and start at zero before any trading
    assert (np.diff(run.liquidations, axis=0) >= 0).all()
    assert run.liquidations[0].sum() == 0
    # the crash put traders under maintenance; by the end, after the rebound and the flat
    # tail, the engine has liquidated every one of them
    assert run.below_maintenance.max() > 0
    assert run.below_maintenance[-1] == 0 and run.negative_equity_units[-1] == 0
    assert run.fund_units[-1] == run.fund_after_units
    assert run.fund_before_units == SPEC.insurance_fund_usdc * 1_000_000


def test_conservation_holds_after_the_run(run: StressResult) -> None:
    ex = run.exchange
    assert ex is not None
    # independently of the engine's own check: nobody withdrew, so the balances of all
    # accounts (fee pool, insurance fund and P&L clearing included) add up to the deposits,
    # and every instrument's positions net to zero
    assert sum(ex.balances().values()) == run.counts["deposited_units"]
    net: dict[int, int] = {}
    for account in range(3 + SPEC.accounts):
        for position in ex.positions(account):
            net[position.instrument] = net.get(position.instrument, 0) + position.qty_lots
    assert net and set(net.values()) == {0}, net
    ex.check_invariants()  # conservation, books, pools and margin sums, in the engine


def test_plot_is_a_png(run: StressResult, tmp_path: Path) -> None:
    out = plot_stress(run, tmp_path / "stress.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.parametrize(
    "change",
    [
        {"accounts": 5},
        {"minutes": 0.05},
        {"crash_drop": 1.2},
        {"crash_share": 0.9},
        {"leverage": (2, 3)},
        {"options_share": 0.7, "portfolio_share": 0.5},
    ],
)
def test_bad_specs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        replace(SPEC, **change)
