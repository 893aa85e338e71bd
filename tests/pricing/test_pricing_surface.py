"""SVI surface: time interpolation, implied vols and calendar-arbitrage check."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from derivex.pricing import (
    SviParams,
    SviSurface,
    black76_price,
    check_calendar,
    implied_vol_black76,
)

importlib.import_module("scipy")

EXPIRIES = [0.1, 0.5, 1.0]
SLICES = [
    SviParams(0.004, 0.10, -0.40, 0.02, 0.10),
    SviParams(0.018, 0.16, -0.35, 0.03, 0.15),
    SviParams(0.036, 0.20, -0.30, 0.04, 0.20),
]


def test_calendar_check_passes_on_increasing_slices_and_flags_crossing():
    rep = check_calendar(EXPIRIES, SLICES)
    assert rep.ok and rep.min_increment > 0.0 and rep.violations == 0
    # A later slice with a steeper left wing but lower level crosses the
    # earlier one near the money: calendar arbitrage.
    crossing = [SLICES[0], SviParams(0.001, 0.30, -0.9, 0.0, 0.05), SLICES[2]]
    bad = check_calendar(EXPIRIES, crossing)
    assert not bad.ok and bad.min_increment < 0.0 and bad.violations > 0
    assert bad.worst_pair in ((0.1, 0.5), (0.5, 1.0))
    w_pair = [
        crossing[EXPIRIES.index(bad.worst_pair[0])],
        crossing[EXPIRIES.index(bad.worst_pair[1])],
    ]
    k = bad.argmin_k
    assert w_pair[1].total_variance(k) < w_pair[0].total_variance(k)
    with pytest.raises(ValueError):
        check_calendar([0.5, 0.1, 1.0], SLICES)


def test_total_variance_interpolation_in_time():
    surf = SviSurface(EXPIRIES, SLICES)
    k = np.linspace(-1.0, 1.0, 9)
    for t_i, p in zip(EXPIRIES, SLICES, strict=True):  # exact on the slices
        np.testing.assert_allclose(surf.total_variance(k, t_i), p.total_variance(k), rtol=1e-15)
    mid = surf.total_variance(k, 0.75)
    expected = 0.5 * (SLICES[1].total_variance(k) + SLICES[2].total_variance(k))
    np.testing.assert_allclose(mid, expected, rtol=1e-14)
    # flat implied vol outside the slice range
    np.testing.assert_allclose(
        surf.total_variance(k, 0.05), SLICES[0].total_variance(k) / 2, rtol=1e-14
    )
    np.testing.assert_allclose(
        surf.total_variance(k, 2.0), SLICES[2].total_variance(k) * 2, rtol=1e-14
    )
    # non-decreasing in T at fixed k (follows from the calendar check)
    ts = np.linspace(0.01, 3.0, 300)
    grid = surf.total_variance(k[:, None], ts[None, :])
    assert np.all(np.diff(grid, axis=1) >= -1e-15)
    assert np.isnan(surf.total_variance(0.0, -1.0))


def test_implied_vol_from_strike_forward_and_broadcasting():
    surf = SviSurface(EXPIRIES, SLICES)
    fwd = 2500.0
    strikes = np.array([2000.0, 2500.0, 3000.0])
    vols = surf.implied_vol(strikes, 0.5, fwd)
    expected = np.sqrt(SLICES[1].total_variance(np.log(strikes / fwd)) / 0.5)
    np.testing.assert_allclose(vols, expected, rtol=1e-15)
    grid = surf.implied_vol(strikes[None, :], np.array([[0.2], [0.8]]), fwd)
    assert grid.shape == (2, 3) and np.all(np.isfinite(grid))
    assert np.isnan(surf.implied_vol(-1.0, 0.5, fwd))
    assert np.isnan(surf.implied_vol(2500.0, 0.0, fwd))
    with pytest.raises(ValueError):
        SviSurface([0.5, 0.1], SLICES[:2])
    with pytest.raises(ValueError):
        SviSurface([0.1, 0.5], SLICES)


def test_surface_fit_from_option_prices_end_to_end():
    """Quotes -> implied vols -> per-expiry SVI fit -> no-arbitrage checks -> repricing."""
    fwd = 60000.0
    strikes = fwd * np.exp(np.linspace(-0.8, 0.6, 25))
    quotes_vol = []
    for t, p in zip(EXPIRIES, SLICES, strict=True):
        vol = p.implied_vol(np.log(strikes / fwd), t)
        is_call = strikes >= fwd
        prices = black76_price(fwd, strikes, t, vol, 0.02, is_call)
        quotes_vol.append(implied_vol_black76(prices, fwd, strikes, t, 0.02, is_call))
    surf = SviSurface.fit_implied_vols(EXPIRIES, [fwd] * 3, [strikes] * 3, quotes_vol)
    assert all(r.ok for r in surf.check_butterfly())
    assert surf.check_calendar().ok
    for t, vols in zip(EXPIRIES, quotes_vol, strict=True):
        np.testing.assert_allclose(surf.implied_vol(strikes, t, fwd), vols, atol=1e-8)
    # between slices the surface still prices consistently (finite, positive vols)
    v = surf.implied_vol(strikes, 0.3, fwd)
    assert np.all(np.isfinite(v)) and np.all(v > 0.0)
    assert math.isclose(float(surf.expiries[1]), 0.5)
