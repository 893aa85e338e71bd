"""Implied volatility: round trips, references, statuses, robustness."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pricing_refs import EPS

from derivex.pricing import (
    IvStatus,
    black76_greeks,
    black76_price,
    bs_greeks,
    bs_price,
    implied_vol_black76,
    implied_vol_bs,
    normalised_implied_vol,
)
from derivex.pricing._lbr import normalised_implied_vol_otm_call
from derivex.pricing._normalised import normalised_black_otm_call

HOUR = 1.0 / (365.0 * 24.0)


def _grid():
    """Full-factorial grid: deep ITM/OTM strikes, 1 hour .. 30 years, 1% .. 400% vol."""
    x = np.array(
        [-6.0, -3.0, -1.5, -0.7, -0.3, -0.1, -0.02, 0.0, 0.02, 0.1, 0.3, 0.7, 1.5, 3.0, 6.0]
    )
    t = np.array([HOUR, 1.0 / 365.0, 7.0 / 365.0, 0.25, 1.0, 5.0, 30.0])
    vol = np.array([0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0])
    xx, tt, vv, cc = np.meshgrid(x, t, vol, [True, False], indexing="ij")
    f = 100.0
    return f, f * np.exp(-xx.ravel()), tt.ravel(), vv.ravel(), cc.ravel()


def _well_posed(price, vega, tol=1e-12):
    """One ulp of the price moves the implied vol by at most ``tol``, and the
    price is a normal number: then a 1e-10 round trip is achievable."""
    return (price > 1e-280) & (EPS * price <= tol * vega)


def test_black76_round_trip_wide_grid():
    f, k, t, vol, call = _grid()
    r = 0.03
    g = black76_greeks(f, k, t, vol, r, call)
    iv, status = implied_vol_black76(g.price, f, k, t, r, call, return_status=True)
    good = _well_posed(g.price, g.vega)
    assert np.all(np.abs(iv[good] - vol[good]) <= 1e-10)
    # the well-posed set really contains the hard cases
    x = np.log(f / k)
    itm = np.where(call, x, -x)
    s = vol * np.sqrt(t)
    # deep in the money: K <= 0.22 F for calls (>= F/0.22 for puts), and
    # beyond 2.5 standard deviations.  (Further than ~3.5 standard deviations
    # the time value is below one ulp of the price: the vol is not determined
    # by the quote in double precision, and only the reprice check applies.)
    assert np.sum(good & (itm >= 1.5)) >= 10
    assert np.sum(good & (itm > 2.5 * s)) >= 10
    assert np.sum(good & (g.price < 1e-20 * f)) >= 10  # deep out of the money
    assert np.sum(good & (t <= 1.0 / 365.0) & (np.abs(x) >= 0.1)) >= 10  # near expiry, away
    assert good.sum() >= 0.5 * good.size
    # Ill-posed points: no exception, and the answer reprices the quote (or the
    # quote sits at the upper bound to within rounding).
    bad = ~good
    ok = status == IvStatus.OK
    repriced = black76_price(f, k, t, np.where(ok, iv, 0.0), r, call)
    upper = np.exp(-r * t) * np.where(call, f, k)
    at_upper = (status == IvStatus.ABOVE_MAXIMUM) & (g.price >= upper * (1 - 8 * EPS))
    assert np.all(ok[bad] | at_upper[bad])
    assert np.all(iv[ok] >= 0.0)
    close = np.abs(repriced - g.price) <= 8 * EPS * np.maximum(g.price, upper * 1e-300) + 1e-300
    assert np.all(close[bad & ok])


def test_bsm_round_trip_with_rates_and_dividends():
    rng = np.random.default_rng(21)
    n = 4000
    spot = 100.0
    t = 10.0 ** rng.uniform(math.log10(HOUR), math.log10(10.0), n)
    vol = 10.0 ** rng.uniform(-2.0, 0.5, n)
    k = spot * np.exp(rng.uniform(-8.0, 8.0, n) * vol * np.sqrt(t))
    r = rng.uniform(-0.02, 0.15, n)
    q = rng.uniform(-0.05, 0.15, n)
    call = rng.random(n) < 0.5
    g = bs_greeks(spot, k, t, vol, r, q, call)
    iv = implied_vol_bs(g.price, spot, k, t, r, q, call)
    good = _well_posed(g.price, g.vega)
    assert good.sum() > 0.6 * n
    assert np.all(np.abs(iv[good] - vol[good]) <= 1e-10)


def test_round_trip_from_independent_reference_prices():
    """Prices from py_lets_be_rational (not our pricer) invert to the input vol."""
    lbr = importlib.import_module("py_lets_be_rational")
    _, k, t, vol, call = _grid()
    keep = slice(None, None, 3)
    f_, k_, t_, v_, c_ = 100.0, k[keep], t[keep], vol[keep], call[keep]
    prices = np.array(
        [
            lbr.black(f_, kk, vv, tt, 1.0 if cc else -1.0)
            for kk, vv, tt, cc in zip(k_, v_, t_, c_, strict=True)
        ]
    )
    vega = black76_greeks(f_, k_, t_, v_, 0.0, c_).vega
    iv = implied_vol_black76(prices, f_, k_, t_, 0.0, c_)
    good = _well_posed(prices, vega)
    assert good.sum() > 100
    assert np.all(np.abs(iv[good] - v_[good]) <= 1e-10)


def test_agrees_with_lets_be_rational_implied_vol():
    lbr = importlib.import_module("py_lets_be_rational")
    rng = np.random.default_rng(22)
    n = 600
    f = 100.0
    t = 10.0 ** rng.uniform(math.log10(HOUR), 1.0, n)
    vol = 10.0 ** rng.uniform(-2.0, 0.5, n)
    k = f * np.exp(rng.uniform(-6.0, 6.0, n) * vol * np.sqrt(t))
    call = rng.random(n) < 0.5
    g = black76_greeks(f, k, t, vol, 0.0, call)
    good = _well_posed(g.price, g.vega)
    mine = implied_vol_black76(g.price, f, k, t, 0.0, call)
    ref = []
    for p, kk, tt, cc in zip(g.price[good], k[good], t[good], call[good], strict=True):
        try:
            ref.append(
                lbr.implied_volatility_from_a_transformed_rational_guess(
                    p, f, kk, tt, 1.0 if cc else -1.0
                )
            )
        except Exception:  # the reference raises on some extreme inputs
            ref.append(np.nan)
    ref = np.array(ref)
    finite = np.isfinite(ref)
    assert finite.sum() > 0.9 * good.sum()
    assert np.all(np.abs(mine[good][finite] - ref[finite]) <= 1e-10)


def test_status_codes_and_error_modes():
    f, k, t = 100.0, 80.0, 0.5
    intrinsic = f - k
    prices = np.array([intrinsic * (1 - 1e-10), -1.0, 100.0, 150.0, intrinsic, 21.0])
    iv, st_ = implied_vol_black76(prices, f, k, t, 0.0, True, return_status=True)
    assert list(st_) == [
        IvStatus.BELOW_INTRINSIC,
        IvStatus.BELOW_INTRINSIC,
        IvStatus.ABOVE_MAXIMUM,
        IvStatus.ABOVE_MAXIMUM,
        IvStatus.OK,
        IvStatus.OK,
    ]
    assert np.isnan(iv[:4]).all() and iv[4] == 0.0 and 0.0 < iv[5] < 1.0
    # zero time: intrinsic -> EXPIRED, more -> ABOVE_MAXIMUM
    iv0, st0 = implied_vol_black76([20.0, 20.5], f, k, 0.0, 0.0, True, return_status=True)
    assert list(st0) == [IvStatus.EXPIRED, IvStatus.ABOVE_MAXIMUM] and np.isnan(iv0).all()
    _, st_inv = implied_vol_black76(
        [1.0, 1.0, 1.0, np.nan],
        [100.0, -1.0, 100.0, 100.0],
        [100.0, 100.0, 0.0, 100.0],
        1.0,
        return_status=True,
    )
    assert list(st_inv) == [IvStatus.OK] + [IvStatus.INVALID_INPUT] * 3
    # put bounds: max is discounted strike
    _, stp = implied_vol_black76(
        [80.0 * math.exp(-0.05), 1.0], f, k, 1.0, 0.05, False, return_status=True
    )
    assert list(stp) == [IvStatus.ABOVE_MAXIMUM, IvStatus.OK]
    with pytest.raises(ValueError, match="below intrinsic"):
        implied_vol_black76(prices, f, k, t, 0.0, True, errors="raise")
    assert implied_vol_black76(21.0, f, k, t, errors="raise") == iv[5]
    with pytest.raises(ValueError):
        implied_vol_bs(1.0, 100.0, 100.0, 1.0, errors="ignore")


def test_normalised_api_and_iteration_budget():
    rng = np.random.default_rng(23)
    x = -(10.0 ** rng.uniform(-6.0, 2.5, 3000))
    s = 10.0 ** rng.uniform(-3.0, 1.0, 3000)
    iters = []
    for xi, si in zip(x, s, strict=True):
        b = normalised_black_otm_call(xi, si)
        if b < 1e-280 or b > (1 - 1e-6) * math.exp(0.5 * xi):
            continue
        s_hat, it = normalised_implied_vol_otm_call(b, xi)
        iters.append(it)
        assert abs(s_hat - si) <= 1e-12 * si + 4 * EPS * b / (
            math.exp(-0.5 * (xi * xi / (si * si) + si * si / 4)) / math.sqrt(2 * math.pi)
        )
    iters = np.array(iters)
    assert iters.size > 2000
    # rational guess + Householder(3): two or three iterations, never many
    assert iters.max() <= 4 and iters.mean() <= 3.0
    # public normalised wrapper: ITM put <-> OTM call by symmetry
    b_otm = normalised_black_otm_call(-0.5, 0.3)
    itm_put = 2.0 * math.sinh(0.25) + b_otm  # put with x = -0.5 is in the money
    got = normalised_implied_vol([b_otm, itm_put, 0.0], [-0.5, -0.5, -0.5], [True, False, True])
    assert abs(got[0] - 0.3) < 1e-14 and abs(got[1] - 0.3) < 1e-12
    assert got[2] == 0.0  # zero time value -> zero vol
    assert np.isnan(normalised_implied_vol(0.1, -0.5, False))  # below intrinsic 2 sinh(1/4)
    assert np.isnan(normalised_implied_vol(math.exp(-0.25), -0.5, True))  # at the maximum


@settings(max_examples=400, deadline=None)
@given(
    price=st.one_of(st.floats(-10.0, 1e7), st.floats(0.0, 1e-300), st.just(math.nan)),
    fwd=st.floats(1e-6, 1e7),
    strike=st.floats(1e-6, 1e7),
    t=st.one_of(st.just(0.0), st.floats(1e-8, 100.0)),
    r=st.floats(-0.2, 0.5),
    call=st.booleans(),
)
def test_property_never_raises_and_reprices(price, fwd, strike, t, r, call):
    iv, status = implied_vol_black76(price, fwd, strike, t, r, call, return_status=True)
    if status != IvStatus.OK:
        assert math.isnan(iv)
        return
    assert iv >= 0.0 and math.isfinite(iv)
    repriced = float(black76_price(fwd, strike, t, iv, r, call))
    df = math.exp(-r * t)
    # within a few ulp of the quote (or of the intrinsic value it sits on);
    # the vol itself may be ill-determined, the price is not.  Time values
    # whose normalised value is subnormal return vol 0 (documented).
    scale = abs(price)
    intrinsic = df * max((fwd - strike) if call else (strike - fwd), 0.0)
    subnormal = 2.3e-308 * df * math.sqrt(fwd) * math.sqrt(strike)
    assert abs(repriced - price) <= 1e-12 * scale + 8 * EPS * max(intrinsic, scale) + subnormal


@settings(max_examples=200, deadline=None)
@given(
    log_m=st.floats(-3.0, 3.0),
    vol=st.floats(0.005, 3.0),
    t=st.floats(1.0 / 365.0 / 24.0, 20.0),
    call=st.booleans(),
)
def test_property_round_trip(log_m, vol, t, call):
    f, k = 100.0, 100.0 * math.exp(log_m)
    g = black76_greeks(f, k, t, vol, 0.01, call)
    iv = implied_vol_black76(g.price, f, k, t, 0.01, call)
    if _well_posed(np.array([g.price]), np.array([g.vega]))[0]:
        assert abs(iv - vol) <= 1e-10
    else:
        assert math.isnan(iv) or iv >= 0.0


def test_bsm_prices_from_bs_price_round_trip_shapes():
    strikes = np.array([[80.0, 100.0, 120.0]])
    expiries = np.array([[0.1], [1.0]])
    p = bs_price(100.0, strikes, expiries, 0.25, 0.02, 0.01, True)
    iv = implied_vol_bs(p, 100.0, strikes, expiries, 0.02, 0.01, True)
    assert iv.shape == (2, 3)
    np.testing.assert_allclose(iv, 0.25, rtol=0, atol=1e-12)
