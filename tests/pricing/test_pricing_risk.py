"""Risk arrays (derivex.pricing.risk) against independent recomputations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
import vollib.black.greeks.analytical as vollib
from vollib.black import black

from derivex.core import records as rec
from derivex.core.config import EngineConfig, deribit_grid, span_grid
from derivex.pricing import black76_price
from derivex.pricing.risk import (
    GREEK_SCALE,
    DeribitVolShock,
    ScenarioGrid,
    SpanVolShock,
    compute_risk_arrays,
    lot_greeks,
    perpetual_greeks,
    perpetual_risk_records,
    risk_array_records,
    scenario_values,
)

S = 10_000_000.0  # index in ticks (100,000.00 USD at 2 decimals)
OPTIONS = [  # strike ticks, years, vol, call, contract value units
    (9_000_000.0, 3 / 365, 0.70, True, 1),
    (10_000_000.0, 10 / 365, 0.55, False, 3),
    (11_000_000.0, 45 / 365, 0.50, True, 2),
    (8_000_000.0, 200 / 365, 0.65, False, 1),
    (12_500_000.0, 30 / 365, 0.30, True, 5),
]


def columns():
    k, t, v, c, cvu = (np.array(col) for col in zip(*OPTIONS, strict=True))
    return k.astype(float), t.astype(float), v.astype(float), c.astype(bool), cvu.astype(int)


def deribit_shock_by_hand(vol: float, years: float) -> tuple[float, float]:
    """Deribit rule written out scalar-wise from the parameter table (0.5/0.25/0.3/0.13)."""
    days = max(years * 365.0, 1.0)
    power = 0.3 if days < 30.0 else 0.13
    factor = (30.0 / days) ** power
    up = vol + max(vol, 0.5) * 0.5 * factor
    down = vol * max(1.0 - 0.25 * factor, 0.05)
    return down, up


def test_scenario_values_match_quantlib_black_formula():
    k, t, v, c, cvu = columns()
    marks = np.array([1_050_000, 400_000, 200_000, 150_000, 3_000])
    grid = ScenarioGrid.from_rows(deribit_grid())
    rate = 0.02
    mine = scenario_values(S, k, t, v, c, cvu, marks, grid, rate=rate)
    assert mine.shape == (len(OPTIONS), 35) and mine.dtype == np.int64
    for i, (strike, years, vol, call, units) in enumerate(OPTIONS):
        down, up = deribit_shock_by_hand(vol, years)
        for j, (move_ppm, flag, weight_ppm) in enumerate(deribit_grid()):
            sigma = {-1: down, 0: vol, 1: up}[flag]
            fwd = S * (1 + move_ppm / 1e6)
            opt = ql.Option.Call if call else ql.Option.Put
            price = ql.blackFormula(
                opt, strike, fwd, sigma * math.sqrt(years), math.exp(-rate * years)
            )
            exact = (price * units - marks[i] * units) * weight_ppm / 1e6
            tol = 1e-9 * max(1.0, abs(exact))
            # floored: never above the exact figure, less than one unit below it
            assert exact - 1 - tol < mine[i, j] <= exact + tol, (i, j, mine[i, j], exact)


def test_greeks_units_match_vollib_and_finite_differences():
    k, t, v, c, cvu = columns()
    rate = 0.03
    greeks = lot_greeks(S, k, t, v, c, cvu, rate=rate)
    assert greeks.shape == (len(OPTIONS), 5) and greeks.dtype == np.int64
    for i, (strike, years, vol, call, units) in enumerate(OPTIONS):
        flag = "c" if call else "p"
        args = (flag, S, strike, years, rate, vol)
        # vollib: vega per 1% vol, theta per day, rho per 1% rate, like ours
        expect = [
            vollib.delta(*args),
            vollib.gamma(*args),
            vollib.vega(*args),
            vollib.theta(*args),
            vollib.rho(*args),
        ]
        for column, value in enumerate(expect):
            want = value * units * GREEK_SCALE
            assert abs(greeks[i, column] - want) <= 1e-6 * abs(want) + 1, (i, column)
        # delta is collateral units of one lot per index tick: a central difference agrees
        h = 1.0
        up = black(flag, S + h, strike, years, rate, vol)
        dn = black(flag, S - h, strike, years, rate, vol)
        assert abs(greeks[i, 0] / GREEK_SCALE - (up - dn) / (2 * h) * units) < 1e-6


def test_short_call_loses_in_up_moves_and_long_put_in_down_moves():
    grid = ScenarioGrid.from_rows(deribit_grid())
    moves = grid.moves
    call = scenario_values(S, 10_500_000.0, 20 / 365, 0.6, True, 1, 300_000, grid)[0]
    put = scenario_values(S, 9_500_000.0, 20 / 365, 0.6, False, 1, 300_000, grid)[0]
    for flag in (-1, 0, 1):
        sel = np.flatnonzero((grid.vol_shocks == flag) & (grid.weights == 1.0))
        order = sel[np.argsort(moves[sel])]
        assert np.all(np.diff(call[order]) > 0)  # long call gains as the index rises
        assert np.all(np.diff(put[order]) < 0)
    biggest_up = int(np.argmax(np.where(grid.weights == 1.0, moves, -np.inf)))
    assert -call[biggest_up] < 0  # the short call's P&L (sign flipped) is a loss
    same = np.flatnonzero(grid.vol_shocks == 0)
    for j in same:  # long options: vol up >= same >= down at every price move
        down = np.flatnonzero((grid.vol_shocks == -1) & (moves == moves[j]))[0]
        up = np.flatnonzero((grid.vol_shocks == 1) & (moves == moves[j]) & (grid.weights == 1.0))[0]
        assert call[down] <= call[j] <= call[up]


def test_weights_are_applied_then_floored():
    rows = [(100_000, 1, 1_000_000), (100_000, 1, 350_000), (100_000, 1, 0)]
    grid = ScenarioGrid.from_rows(rows)
    values = scenario_values(S, 10_000_000.0, 30 / 365, 0.5, True, 7, 500_000, grid)[0]
    full, part, zero = (int(x) for x in values)
    # full = floor(p); part = floor(0.35 p) with p in [full, full + 1)
    assert 0.35 * full - 1 < part <= 0.35 * (full + 1)
    assert zero == 0


def test_rounding_is_toward_negative_infinity():
    # at expiry the value is intrinsic and exact: 1001 - 1000 = 1 tick, mark 2 -> P&L -1;
    # at half weight -0.5 must floor to -1 (truncation would give 0, understating the loss)
    grid = ScenarioGrid.from_rows([(0, 0, 500_000), (0, 0, 1_000_000), (2_000, 0, 500_000)])
    values = scenario_values(1001.0, 1000.0, 0.0, 0.5, True, 1, 2, grid)[0]
    assert values.tolist() == [-1, -1, 0]  # +2.002 ticks -> (3.002 - 2) * 0.5 = 0.501 -> 0


def test_span_grid_has_16_scenarios_with_scan_range_vol_shocks():
    grid = ScenarioGrid.from_rows(span_grid())
    assert len(grid) == 16
    shock = SpanVolShock(vol_scan_range=0.08)
    mark = round(float(black76_price(S, 10_000_000.0, 60 / 365, 0.5)))
    values = scenario_values(S, 10_000_000.0, 60 / 365, 0.5, True, 1, mark, grid, shock)
    assert values.shape == (1, 16)
    down, up = shock.shocked_vols(np.array([0.5, 0.05]), 0.1)
    assert np.allclose(up, [0.58, 0.13]) and np.allclose(down, [0.42, 0.01])
    rel_down, rel_up = SpanVolShock(0.1, relative=True).shocked_vols(0.5, 0.1)
    assert np.isclose(rel_up, 0.55) and np.isclose(rel_down, 0.45)
    # scenario 1 (move 0, vol up) and 2 (move 0, vol down) bracket the unshocked value
    assert values[0, 0] > 0 > values[0, 1]
    # the extreme scenarios carry 35% of the move's P&L
    alone = scenario_values(
        S,
        10_000_000.0,
        60 / 365,
        0.5,
        True,
        1,
        mark,
        ScenarioGrid.from_rows([(480_000, 0, 1_000_000)]),
        shock,
    )[0, 0]
    assert abs(values[0, 14] - 0.35 * alone) <= 1


def test_deribit_shock_rule():
    shock = DeribitVolShock()
    vols = np.array([0.6, 0.6, 0.6, 0.2, 0.6])
    years = np.array([29.999 / 365, 30.001 / 365, 0.0, 200 / 365, 1 / 365])
    down, up = shock.shocked_vols(vols, years)
    for i in range(len(vols)):
        hand = deribit_shock_by_hand(vols[i], years[i])
        assert np.isclose(down[i], hand[0]) and np.isclose(up[i], hand[1])
    assert abs(up[0] - up[1]) < 1e-5  # continuous across the 30-day switch
    assert up[2] == up[4]  # days floored at one
    assert np.isclose(up[3] - 0.2, 0.5 * 0.5 * (30 / 200) ** 0.13)  # min vol for shock up


def test_grid_from_engine_config_and_validation():
    grid = ScenarioGrid.from_rows(EngineConfig(scenarios=span_grid()))
    assert len(grid) == 16 and grid.weights[-1] == 0.35
    with pytest.raises(ValueError):
        ScenarioGrid.from_rows([(0, 2, 1_000_000)])
    with pytest.raises(ValueError):
        scenario_values(S, -1.0, 0.1, 0.5, True, 1, 0, grid)
    with pytest.raises(ValueError):
        scenario_values(
            S, 1.0, 0.1, 0.5, True, 1 << 40, 0, ScenarioGrid.from_rows([(0, 0, 1_000_000)])
        )


def decode(records: np.ndarray) -> list[tuple[int, int, int, list[int], list[int]]]:
    """Walk RISK_ARRAY commands back into (instrument, mark, iv, greeks, values)."""
    out, i = [], 0
    while i < len(records):
        head = records[i]
        assert head["kind"] == rec.CommandKind.RISK_ARRAY
        legs = int(head["count"])
        greeks_leg = records[i + 1]
        assert greeks_leg["kind"] == rec.CommandKind.RISK_GREEKS
        greeks = [
            int(greeks_leg[n])
            for n in ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano")
        ]
        values = []
        for leg in records[i + 2 : i + 1 + legs]:
            assert leg["kind"] == rec.CommandKind.RISK_VALUES
            values.extend(int(leg[f"v{k}"]) for k in range(rec.RISK_VALUES_PER_LEG))
        out.append(
            (
                int(head["instrument"]),
                int(head["price_ticks"]),
                int(head["mark_iv_ppm"]),
                greeks,
                values,
            )
        )
        i += 1 + legs
    return out


def test_records_round_trip_and_match_risk_records():
    k, t, v, c, cvu = columns()
    marks = np.array([1_050_000, 400_000, 200_000, 150_000, 3_000])
    arrays = compute_risk_arrays(S, k, t, v, c, cvu, marks, ScenarioGrid.from_rows(deribit_grid()))
    ids = np.arange(40, 45)
    ivs = np.rint(v * 1e6).astype(np.int64)
    records = risk_array_records(ids, marks, arrays.values, arrays.greeks, ivs)
    assert records.dtype == rec.COMMAND_DTYPE and len(records) == 5 * (2 + 7)
    slow = rec.concat_commands(
        [
            rec.risk_records(
                int(ids[i]),
                int(marks[i]),
                arrays.values[i],
                tuple(int(g) for g in arrays.greeks[i]),
                int(ivs[i]),
            )
            for i in range(5)
        ]
    )
    assert records.tobytes() == slow.tobytes()
    decoded = list(decode(records))
    assert len(decoded) == len(ids)  # every instrument decoded: the loop checks all five
    for i, (inst, mark, iv, greeks, values) in enumerate(decoded):
        assert (inst, mark, iv) == (ids[i], marks[i], ivs[i])
        assert greeks == arrays.greeks[i].tolist()
        assert values[:35] == arrays.values[i].tolist() and values[35:] == []


def test_perpetual_greeks_only_records():
    greeks = perpetual_greeks([1, 25])
    assert greeks.tolist() == [[GREEK_SCALE, 0, 0, 0, 0], [25 * GREEK_SCALE, 0, 0, 0, 0]]
    records = perpetual_risk_records([1, 2], [10_000_000, 20], [1, 25])
    decoded = decode(records)
    assert len(records) == 4
    assert decoded == [
        (1, 10_000_000, 0, [GREEK_SCALE, 0, 0, 0, 0], []),
        (2, 20, 0, [25 * GREEK_SCALE, 0, 0, 0, 0], []),
    ]
