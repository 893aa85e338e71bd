"""SVI slice fitting and butterfly-arbitrage checks."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from derivex.pricing import SviParams, check_butterfly, fit_svi, fit_svi_full
from derivex.pricing.svi import default_grid

importlib.import_module("scipy")

# Axel Vogt's raw SVI example (Gatheral & Jacquier 2014): T = 1, negative density.
VOGT = SviParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)


def _random_arbitrage_free_params(rng: np.random.Generator) -> SviParams:
    while True:
        p = SviParams(
            a=rng.uniform(-0.02, 0.06),
            b=rng.uniform(0.05, 0.5),
            rho=rng.uniform(-0.8, 0.4),
            m=rng.uniform(-0.2, 0.2),
            sigma=rng.uniform(0.08, 0.5),
        )
        if p.min_total_variance > 0.005 and check_butterfly(p, default_grid()).min_g > 1e-3:
            return p


@pytest.mark.parametrize("seed", range(6))
def test_fit_recovers_known_parameters(seed):
    rng = np.random.default_rng(seed)
    true = _random_arbitrage_free_params(rng)
    k = np.sort(rng.uniform(-1.0, 0.8, 30))
    fit = fit_svi_full(k, true.total_variance(k))
    assert np.allclose(fit.params.as_tuple(), true.as_tuple(), rtol=0, atol=1e-6)
    assert fit.max_abs_error <= 1e-10
    assert fit.butterfly.ok


def test_fit_with_weights_and_noise_stays_close():
    rng = np.random.default_rng(42)
    true = SviParams(0.02, 0.3, -0.5, 0.05, 0.15)
    k = np.linspace(-0.9, 0.6, 40)
    noise = rng.normal(0.0, 2e-4, k.size)
    weights = np.exp(-k * k)  # trust the centre more
    params = fit_svi(k, true.total_variance(k) + noise, weights)
    assert np.max(np.abs(params.total_variance(k) - true.total_variance(k))) < 5e-4
    assert check_butterfly(params).ok
    # zero weights remove points from the fit: a wild outlier with weight 0 is ignored
    w_out = true.total_variance(k).copy()
    w_out[5] += 1.0
    wts = np.ones_like(k)
    wts[5] = 0.0
    ignored = fit_svi(k, w_out, wts)
    assert np.allclose(ignored.as_tuple(), true.as_tuple(), atol=1e-6)


def test_vogt_example_is_flagged_and_fit_removes_the_arbitrage():
    report = check_butterfly(VOGT, default_grid())
    assert not report.ok and report.min_g < -0.01 and report.n_negative > 0
    assert report.lee_ok and report.positive_variance  # it is the density that fails
    k = np.linspace(-1.5, 1.5, 31)
    w = VOGT.total_variance(k)
    exact = fit_svi_full(k, w, no_butterfly=False)  # unconstrained: reproduces the data
    assert exact.max_abs_error < 1e-10 and not exact.butterfly.ok
    free = fit_svi_full(k, w)  # default: arbitrage avoided at a small cost in fit
    assert free.butterfly.ok and free.butterfly.min_g >= 0.0
    assert 0.0 < free.rmse < 0.01


def test_lee_and_negative_variance_violations_are_flagged():
    steep = SviParams(a=0.01, b=1.5, rho=0.6, m=0.0, sigma=0.2)  # right wing slope 2.4
    rep = check_butterfly(steep)
    assert not rep.lee_ok and not rep.ok and rep.max_wing_slope == pytest.approx(2.4)
    negative = SviParams(a=-0.1, b=0.2, rho=0.0, m=0.0, sigma=0.1)
    rep = check_butterfly(negative)
    assert not rep.positive_variance and not rep.ok
    # the fit enforces Lee's bound even when the data are steeper
    k = np.linspace(-1.0, 1.0, 21)
    params = fit_svi(k, steep.total_variance(k))
    assert max(params.wing_slopes) <= 2.0 + 1e-12
    assert params.min_total_variance >= -1e-15


def test_density_g_matches_numerical_density():
    """g(k) is the risk-neutral density in disguise: compare with the second
    strike derivative of undiscounted Black call prices built from the smile."""
    from derivex.pricing import black76_price

    p = SviParams(0.02, 0.25, -0.4, 0.05, 0.2)
    f, t = 1.0, 1.0
    k = np.linspace(-0.8, 0.8, 17)
    strikes = f * np.exp(k)
    h = 1e-4

    def call(kk):
        return black76_price(f, kk, t, p.implied_vol(np.log(kk / f), t), 0.0, True)

    density = (call(strikes + h) - 2 * call(strikes) + call(strikes - h)) / (h * h)
    w, _, _ = p.derivatives(k)
    d2 = -k / np.sqrt(w) - np.sqrt(w) / 2
    expected = p.density_g(k) / np.sqrt(2 * np.pi * w) * np.exp(-d2 * d2 / 2) / strikes
    np.testing.assert_allclose(density, expected, rtol=1e-5)


def test_input_validation():
    with pytest.raises(ValueError):
        SviParams(0.0, -0.1, 0.0, 0.0, 0.1)
    with pytest.raises(ValueError):
        SviParams(0.0, 0.1, 1.0, 0.0, 0.1)
    with pytest.raises(ValueError):
        SviParams(0.0, 0.1, 0.0, 0.0, 0.0)
    k = np.linspace(-1, 1, 10)
    with pytest.raises(ValueError):
        fit_svi(k[:4], np.full(4, 0.04))
    with pytest.raises(ValueError):
        fit_svi(k, np.full(9, 0.04))
    with pytest.raises(ValueError):
        fit_svi(k, np.full(10, -0.04))
    with pytest.raises(ValueError):
        fit_svi(k, np.full(10, 0.04), weights=-np.ones(10))
