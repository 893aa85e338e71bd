"""Black-76 / BSM prices and Greeks against independent references."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pricing_refs import EPS, black_condition, mp_black, vollib_modules

from derivex.pricing import Greeks, black76_greeks, black76_price, bs_greeks, bs_price


def _random_options(n: int, seed: int, s_lo: float, s_hi: float, z_max: float):
    """Forward, strike, expiry, vol, call flag with total vol in [s_lo, s_hi]
    and |ln(F/K)| <= z_max * total vol.  Expiry from 1 hour to 10 years."""
    rng = np.random.default_rng(seed)
    f = 100.0 * np.exp(rng.uniform(-2.0, 2.0, n))
    t = 10.0 ** rng.uniform(math.log10(1.0 / 8760.0), 1.0, n)
    s = 10.0 ** rng.uniform(math.log10(s_lo), math.log10(s_hi), n)
    vol = s / np.sqrt(t)
    k = f * np.exp(rng.uniform(-z_max, z_max, n) * s)
    call = rng.random(n) < 0.5
    return f, k, t, vol, call


# "Normal" region for the 1e-12 relative price requirement: total volatility
# vol*sqrt(T) in [1e-3, 3] (e.g. 1 day at vol >= 2%), any strike with
# undiscounted price > 1e-8 * forward.  Outside it the price is either tiny,
# or so sensitive to the rounding of F/K that no double implementation can
# promise 1e-12 (see the backward-stability test below for that region).
def _normal_region(seed: int, n: int = 1500):
    f, k, t, vol, call = _random_options(n, seed, 1e-3, 3.0, 8.0)
    ref = np.array([mp_black(*a) for a in zip(f, k, t, vol, call, strict=True)])
    keep = ref > 1e-8 * f
    return f[keep], k[keep], t[keep], vol[keep], call[keep], ref[keep]


def test_price_normal_region_matches_mpmath_and_lets_be_rational():
    lbr = importlib.import_module("py_lets_be_rational")
    f, k, t, vol, call, ref = _normal_region(seed=11)
    assert ref.size > 1000
    mine = black76_price(f, k, t, vol, 0.0, call)
    assert np.max(np.abs(mine - ref) / ref) <= 1e-12
    other = np.array(
        [lbr.black(*a) for a in zip(f, k, vol, t, np.where(call, 1.0, -1.0), strict=True)]
    )
    assert np.max(np.abs(mine - other) / other) <= 1e-12


def test_price_is_backward_stable_everywhere():
    """Wide region (total vol 1e-4..20, up to 30 std devs out, prices down to
    1e-280): relative error within 32 eps times the condition number."""
    f, k, t, vol, call = _random_options(1500, 12, 1e-4, 20.0, 30.0)
    ref = np.array([mp_black(*a) for a in zip(f, k, t, vol, call, strict=True)])
    keep = ref > 1e-280
    assert keep.sum() > 1000
    mine = black76_price(f, k, t, vol, 0.0, call)[keep]
    kappa = black_condition(f[keep], k[keep], t[keep], vol[keep], call[keep], ref[keep])
    rel = np.abs(mine - ref[keep]) / ref[keep]
    assert np.all(rel <= 32.0 * EPS * np.maximum(kappa, 1.0))
    tiny = ref[keep] < 1e-100
    assert tiny.sum() > 50  # the far wings are really exercised
    assert np.max(rel[tiny] / np.maximum(kappa[tiny], 1.0)) <= 32.0 * EPS


def test_discounted_prices_match_vollib_black_and_bsm():
    black, bsm = vollib_modules()
    f, k, t, vol, call, _ = _normal_region(seed=13, n=600)
    rng = np.random.default_rng(1)
    r = rng.uniform(-0.02, 0.1, f.size)
    q = rng.uniform(-0.05, 0.1, f.size)
    flags = np.where(call, "c", "p")
    mine76 = black76_price(f, k, t, vol, r, call)
    ref76 = np.array([black(*a) for a in zip(flags, f, k, t, r, vol, strict=True)])
    assert np.max(np.abs(mine76 - ref76) / ref76) <= 1e-12
    spot = f  # reuse as spot; forward differs by exp((r-q)T)
    mine_bs = bs_price(spot, k, t, vol, r, q, call)
    ref_bs = np.array([bsm(*a) for a in zip(flags, spot, k, t, r, vol, q, strict=True)])
    ok = ref_bs > 1e-8 * spot
    assert ok.sum() > 400
    assert np.max(np.abs(mine_bs - ref_bs)[ok] / ref_bs[ok]) <= 1e-12


def test_prices_match_quantlib_black_formula():
    ql = importlib.import_module("QuantLib")
    f, k, t, vol, call, _ = _normal_region(seed=14, n=1000)
    rng = np.random.default_rng(2)
    r = rng.uniform(0.0, 0.08, f.size)
    df = np.exp(-r * t)
    mine = black76_price(f, k, t, vol, r, call)
    ref = np.array(
        [
            ql.blackFormula(ql.Option.Call if c else ql.Option.Put, kk, ff, v * math.sqrt(tt), d)
            for ff, kk, tt, v, c, d in zip(f, k, t, vol, call, df, strict=True)
        ]
    )
    # QuantLib's normal cdf is 0.5*(1+erf) (absolute, not relative accuracy
    # in the lower tail) so its prices carry ~eps*(F+K) absolute error.
    assert np.all(np.abs(mine - ref) <= 1e-12 * ref + 16 * EPS * df * (f + k))
    # Near the money both are accurate to 1e-12 relative.
    s = vol * np.sqrt(t)
    core = (np.abs(np.log(f / k)) <= 2.0 * s) & (s >= 0.05)
    assert core.sum() > 100
    assert np.max(np.abs(mine - ref)[core] / ref[core]) <= 1e-12


def _ql_bsm_engine_results(ql, spot, strike, days, vol, r, q, is_call):
    today = ql.Date(15, ql.January, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, dc)),
    )
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, strike)
    option = ql.VanillaOption(payoff, ql.EuropeanExercise(today + int(days)))
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return (
        option.NPV(),
        option.delta(),
        option.gamma(),
        option.vega(),
        option.theta(),
        option.rho(),
    )


def test_bsm_greeks_match_quantlib_analytic_engine():
    ql = importlib.import_module("QuantLib")
    rng = np.random.default_rng(3)
    n = 150
    days = rng.integers(1, 3 * 365, n)
    t = days / 365.0
    spot = rng.uniform(50.0, 150.0, n)
    vol = rng.uniform(0.05, 1.2, n)
    strike = spot * np.exp(rng.uniform(-2.0, 2.0, n) * vol * np.sqrt(t))
    r = rng.uniform(-0.01, 0.08, n)
    q = rng.uniform(0.0, 0.05, n)
    call = rng.random(n) < 0.5
    mine = bs_greeks(spot, strike, t, vol, r, q, call)
    ref = np.array(
        [
            _ql_bsm_engine_results(ql, *a)
            for a in zip(spot, strike, days, vol, r, q, call, strict=True)
        ]
    )
    for j, name in enumerate(Greeks._fields):
        got = getattr(mine, name)
        scale = np.maximum(np.abs(ref[:, j]), 1e-8 * spot)
        assert np.max(np.abs(got - ref[:, j]) / scale) <= 1e-10, name


def test_black76_greeks_match_quantlib_black_calculator():
    ql = importlib.import_module("QuantLib")
    f, k, t, vol, call, _ = _normal_region(seed=15, n=400)
    r = np.full(f.shape, 0.03)
    mine = black76_greeks(f, k, t, vol, r, call)
    rows = []
    for ff, kk, tt, v, c in zip(f, k, t, vol, call, strict=True):
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if c else ql.Option.Put, kk)
        bc = ql.BlackCalculator(payoff, ff, v * math.sqrt(tt), math.exp(-0.03 * tt))
        # with spot == forward the calculator's implied carry is q = r, which
        # is Black-76; rho + dividendRho is dV/dr at fixed forward.
        rows.append(
            (
                bc.value(),
                bc.deltaForward(),
                bc.gammaForward(),
                bc.vega(tt),
                bc.theta(ff, tt),
                bc.rho(tt) + bc.dividendRho(tt),
            )
        )
    ref = np.array(rows)
    for j, name in enumerate(Greeks._fields):
        got = getattr(mine, name)
        tol = 1e-9 * np.abs(ref[:, j]) + 64 * EPS * (f + k) * np.maximum(1.0, t)
        if name == "gamma":
            tol = 1e-9 * np.abs(ref[:, j]) + 64 * EPS * (f + k) / (f * f * vol * np.sqrt(t))
        assert np.all(np.abs(got - ref[:, j]) <= tol), name


@pytest.mark.parametrize("model", ["black76", "bsm"])
def test_greeks_match_finite_differences(model):
    rng = np.random.default_rng(4)
    n = 200
    und = rng.uniform(80.0, 120.0, n)
    t = rng.uniform(0.05, 3.0, n)
    vol = rng.uniform(0.1, 0.8, n)
    k = und * np.exp(rng.uniform(-1.5, 1.5, n) * vol * np.sqrt(t))
    r = rng.uniform(-0.02, 0.1, n)
    q = rng.uniform(0.0, 0.06, n)
    call = rng.random(n) < 0.5

    def price(u=und, tt=t, v=vol, rr=r):
        if model == "black76":
            return black76_price(u, k, tt, v, rr, call)
        return bs_price(u, k, tt, v, rr, q, call)

    g = (
        black76_greeks(und, k, t, vol, r, call)
        if model == "black76"
        else bs_greeks(und, k, t, vol, r, q, call)
    )
    h = 1e-3 * und
    fd = {
        "delta": (price(u=und + h) - price(u=und - h)) / (2 * h),
        "gamma": (price(u=und + h) - 2 * price() + price(u=und - h)) / (h * h),
        "vega": (price(v=vol + 1e-5) - price(v=vol - 1e-5)) / 2e-5,
        "theta": -(price(tt=t + 1e-5) - price(tt=t - 1e-5)) / 2e-5,
        "rho": (price(rr=r + 1e-5) - price(rr=r - 1e-5)) / 2e-5,
    }
    for name, approx in fd.items():
        exact = getattr(g, name)
        assert np.allclose(exact, approx, rtol=1e-5, atol=1e-6 * und.max()), name


def test_put_call_parity_and_symmetry():
    f, k, t, vol, _, _ = _normal_region(seed=16, n=500)
    r = 0.04
    c = black76_price(f, k, t, vol, r, True)
    p = black76_price(f, k, t, vol, r, False)
    df = np.exp(-r * t)
    assert np.all(np.abs((c - p) - df * (f - k)) <= 8 * EPS * df * np.maximum(f, k))
    # b(x, s, call) = b(-x, s, put): C(F, K) = P(K, F) undiscounted
    p_swapped = black76_price(k, f, t, vol, 0.0, False)
    c0 = black76_price(f, k, t, vol, 0.0, True)
    assert np.allclose(c0, p_swapped, rtol=1e-12, atol=0.0)


def test_zero_time_and_zero_vol_limits():
    f = np.array([90.0, 100.0, 110.0])
    g = black76_greeks(f, 100.0, 0.0, 0.3, 0.05, True)
    np.testing.assert_array_equal(g.price, [0.0, 0.0, 10.0])
    np.testing.assert_array_equal(g.delta, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(g.vega, [0.0, 0.0, 0.0])
    assert g.gamma[0] == 0.0 and g.gamma[2] == 0.0
    # zero vol, positive time: discounted intrinsic of the forward
    s = bs_price(100.0, [90.0, 110.0], 1.0, 0.0, 0.05, 0.01, [True, False])
    fwd = 100.0 * math.exp(0.04)
    expected = [math.exp(-0.05) * (fwd - 90.0), math.exp(-0.05) * (110.0 - fwd)]
    np.testing.assert_allclose(s, expected, rtol=1e-15)


def test_invalid_inputs_give_nan_and_shapes_broadcast():
    out = black76_price(
        [-1.0, 100.0, 100.0, 100.0, np.nan, 100.0],
        [100.0, 0.0, 100.0, 100.0, 100.0, 100.0],
        [1.0, 1.0, -1.0, 1.0, 1.0, np.inf],
        [0.2, 0.2, 0.2, -0.1, 0.2, 0.2],
    )
    assert np.all(np.isnan(out))
    g = bs_greeks(-5.0, 100.0, 1.0, 0.2)
    assert all(math.isnan(v) for v in g)
    grid = black76_price(100.0, np.array([[90.0], [110.0]]), np.array([0.5, 1.0, 2.0]), 0.2)
    assert grid.shape == (2, 3)
    assert isinstance(black76_price(100.0, 100.0, 1.0, 0.2), np.floating)
    np.testing.assert_array_equal(
        black76_price(100.0, 90.0, 1.0, 0.2, 0.0, ["c", "put"]),
        black76_price(100.0, 90.0, 1.0, 0.2, 0.0, [True, False]),
    )
    with pytest.raises(ValueError):
        black76_price(100.0, 90.0, 1.0, 0.2, 0.0, "straddle")
    with pytest.raises(ValueError):
        black76_price([1.0, 2.0], [1.0, 2.0, 3.0], 1.0, 0.2)


@settings(max_examples=300, deadline=None)
@given(
    fwd=st.floats(1e-3, 1e6),
    log_m=st.floats(-5.0, 5.0),
    t=st.floats(0.0, 30.0),
    v1=st.floats(0.0, 5.0),
    dv=st.floats(0.0, 1.0),
    r=st.floats(-0.1, 0.3),
    call=st.booleans(),
)
def test_property_bounds_monotonicity_and_signs(fwd, log_m, t, v1, dv, r, call):
    k = fwd * math.exp(log_m)
    df = math.exp(-r * t)
    p1 = float(black76_price(fwd, k, t, v1, r, call))
    p2 = float(black76_price(fwd, k, t, v1 + dv, r, call))
    intrinsic = df * max((fwd - k) if call else (k - fwd), 0.0)
    upper = df * (fwd if call else k)
    slack = 8 * EPS * df * (fwd + k)
    assert intrinsic - slack <= p1 <= upper + slack
    assert p2 >= p1 - slack
    g = black76_greeks(fwd, k, t, v1, r, call)
    assert g.gamma >= 0.0 and g.vega >= 0.0
    assert (0.0 <= g.delta <= df) if call else (-df <= g.delta <= 0.0)
