"""Special functions and the normalised Black function against mpmath."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from pricing_refs import EPS

from derivex.pricing import _lbr, _normalised, _special

mp = importlib.import_module("mpmath")


def _rel(a: float, b) -> float:
    return float(abs(mp.mpf(a) - b) / abs(b))


def test_erfcx_and_normal_functions():
    with mp.workdps(40):
        for z in [-26.0, -5.0, -1.0, -1e-3, 0.0, 0.3, 1.0, 5.0, 12.0, 25.9, 26.1, 40.0, 1e4]:
            ref = mp.exp(mp.mpf(z) ** 2) * mp.erfc(z)
            assert _rel(_special.erfcx(z), ref) <= 4 * EPS, z
        assert _special.erfcx(1e200) == pytest.approx(1 / (1e200 * math.sqrt(math.pi)), rel=1e-15)
        assert _special.erfcx(-30.0) == math.inf
        for z in [-37.0, -20.0, -8.0, -1.0, 0.0, 2.0, 8.0]:
            assert _rel(_special.norm_cdf(z), mp.ncdf(z)) <= 4 * EPS * max(1.0, z * z), z
        for p in [1e-300, 1e-100, 1e-20, 1e-5, 0.1, 0.3, 0.5 + 1e-9, 0.7, 0.999999]:
            ref = mp.sqrt(2) * mp.erfinv(2 * mp.mpf(p) - 1)
            got = _special.inverse_norm_cdf(p)
            assert abs(got - float(ref)) <= 1e-14 * max(1.0, abs(float(ref))), p
    assert _special.inverse_norm_cdf(0.0) == -math.inf
    assert _special.inverse_norm_cdf(1.0) == math.inf
    assert math.isnan(_special.inverse_norm_cdf(math.nan))


def _mp_normalised(x: float, s: float):
    x, s = mp.mpf(x), mp.mpf(s)
    return mp.exp(x / 2) * mp.ncdf(x / s + s / 2) - mp.exp(-x / 2) * mp.ncdf(x / s - s / 2)


@pytest.mark.parametrize("region", ["asymptotic", "small_t", "upper", "erfcx"])
def test_normalised_black_regions(region):
    """Each evaluation region of b_c(x, s) against 60-digit arithmetic; the
    tolerance is eps times the conditioning of b in (x, s), i.e. what exact
    arithmetic on the rounded h = x/s and h^2 + t^2 allows."""
    rng = np.random.default_rng(hash(region) % 2**32)
    cases = []
    while len(cases) < 150:
        x = -(10.0 ** rng.uniform(-4, 2.7))
        s = 10.0 ** rng.uniform(-4, 1.5)
        h, t = x / s, s / 2
        kind = (
            "asymptotic"
            if h < -10 and h + t < -10 + _normalised.SMALL_T_THRESHOLD
            else "small_t"
            if t < _normalised.SMALL_T_THRESHOLD
            else "upper"
            if h + t > 0.85
            else "erfcx"
        )
        if kind == region:
            cases.append((x, s))
    with mp.workdps(60):
        for x, s in cases:
            ref = _mp_normalised(x, s)
            if ref < mp.mpf("1e-290"):
                continue
            got = _normalised.normalised_black_otm_call(x, s)
            h2 = (x / s) ** 2 + s * s / 4
            assert _rel(got, ref) <= 16 * EPS * (1.0 + h2), (x, s)


def test_normalised_vega_and_intrinsic():
    with mp.workdps(40):
        for x, s in [(-1.0, 0.3), (-0.01, 2.0), (-20.0, 5.0)]:
            d = mp.diff(lambda u, x=x: _mp_normalised(x, u), s)
            assert _rel(_normalised.normalised_vega(x, s), d) <= 1e-12
    assert _normalised.normalised_vega(0.0, 0.0) == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert _normalised.normalised_intrinsic(0.5, -1.0) == 0.0
    assert _normalised.normalised_intrinsic(0.5, 1.0) == pytest.approx(2 * math.sinh(0.25))


def test_lbr_handles_extreme_normalised_inputs():
    """Tiny prices, |x| up to 700, x == 0, prices next to the maximum."""
    for x in [-0.0, -1e-300, -1e-200, -1e-100, -1e-30, -1e-12, -1e-6, -1.0, -30.0, -700.0]:
        b_max = math.exp(0.5 * x)
        for beta in [1e-300, 1e-200, 1e-100, 1e-20, 1e-5, 0.5 * b_max, b_max * (1 - 1e-12)]:
            if not 0.0 < beta < b_max:
                continue
            s, it = _lbr.normalised_implied_vol_otm_call(beta, x)
            assert math.isfinite(s) and s > 0.0
            # a few iterations, except next to the maximum where b is flat in s
            assert it <= (4 if beta < 0.5 * b_max else 12)
            b = _normalised.normalised_black_otm_call(x, s)
            vega = _normalised.normalised_vega(x, s)
            # reproduces beta up to what one ulp of s moves b, or b's own rounding
            tol = 1e-14 * beta + 8 * EPS * s * vega + 4 * EPS * b_max * (beta > 0.5 * b_max)
            assert abs(b - beta) <= tol, (x, beta)
            assert vega >= 0.0
    assert _lbr.normalised_implied_vol_otm_call(0.0, -1.0)[0] == 0.0
    assert _lbr.normalised_implied_vol_otm_call(1e-310, -1.0)[0] == 0.0  # subnormal
    assert _lbr.normalised_implied_vol_otm_call(math.exp(-0.5), -1.0)[0] == math.inf
