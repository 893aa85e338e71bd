"""Black-76 and Black-Scholes(-Merton) prices and Greeks, vectorised.

Conventions (all functions):

* ``expiry`` is time to expiry in years, ``vol`` a decimal (0.2 = 20%),
  ``rate`` and ``dividend`` continuously compounded decimals per year.
* ``is_call`` is a bool (array) or ``"c"``/``"call"``/``"p"``/``"put"``.
* All arguments broadcast against each other with numpy rules; results have
  the broadcast shape (numpy scalars for all-scalar input).
* Black-76 (options on futures/forwards): ``V = exp(-rT) * Black(F, K, vol, T)``.
  Black-Scholes-Merton (spot ``S``, rate ``r``, dividend yield / carry ``q``):
  ``V = exp(-rT) * Black(S exp((r-q)T), K, vol, T)``.

Greeks units:

* ``delta`` = dV/dF (Black-76) or dV/dS (BSM); ``gamma`` its derivative.
* ``vega`` = dV/dvol **per 1.0 of volatility** (divide by 100 for the change
  per vol point).
* ``theta`` = dV/dt = -dV/dT **per year** (calendar time passing; divide by
  365 for a per-day figure).  Usually negative for long options.
* ``rho`` = dV/dr per 1.0 of rate.  For Black-76 the forward is held fixed,
  so ``rho = -T V``; for BSM spot and dividend yield are held fixed.

Invalid inputs give nan in every output, no exception: non-finite values,
``forward/spot <= 0``, ``strike <= 0``, ``expiry < 0``, ``vol < 0``.
At ``vol * sqrt(T) == 0`` (expiry or zero vol) prices are the discounted
intrinsic value of the forward and Greeks are the ``vol -> 0`` limits: the
cdf terms become steps (1/2 exactly at the money), density terms vanish,
except at the money where ``gamma = +inf`` and ``vega = D F sqrt(T)/sqrt(2 pi)``.

Accuracy: prices are computed through the normalised Black function
(:mod:`derivex.pricing._normalised`): OTM value and time value keep full
relative precision (a few 1e-15, more where the price is below ~1e-290),
including far out-of-the-money where the textbook ``F N(d1) - K N(d2)``
cancels catastrophically.

Cost: one compiled pass, O(n) time and O(n) extra memory for n broadcast
elements (roughly 0.1 us/option for the price and 0.1-0.2 us with Greeks on
one core; see ``bench/pricing_bench.py``).  The first call in a fresh
environment compiles the numba kernel (a few seconds), later processes load
it from numba's on-disk cache.

Every function takes ``parallel=False``; ``parallel=True`` runs the same per-element
code over numba's thread pool (``numba.get_num_threads()`` threads: one per core unless
``NUMBA_NUM_THREADS`` or ``numba.set_num_threads`` says otherwise).  Elements are
independent, so results are bit-identical to the serial default, which stays serial
because the exchange process decides what its cores run.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike

from ._arrays import broadcast_flat, call_flag_to_theta, shaped
from ._normalised import normalised_black_otm_call
from ._special import ONE_OVER_SQRT_TWO_PI, norm_cdf, norm_pdf

__all__ = [
    "Greeks",
    "black76_greeks",
    "black76_price",
    "bs_greeks",
    "bs_price",
]

_BLACK76 = 0
_BSM = 1


class Greeks(NamedTuple):
    """Price and first-order risk; each field has the broadcast shape."""

    price: Any
    delta: Any
    gamma: Any
    vega: Any
    theta: Any
    rho: Any


_jit = numba.njit(cache=True, error_model="numpy")
_jit_parallel = numba.njit(cache=True, error_model="numpy", parallel=True)


@_jit
def _price_element(model, s0, k, t, sig, r, q, w, with_greeks):
    """``(price, delta, gamma, vega, theta, rho)`` of one option (Greeks nan unless
    ``with_greeks``)."""
    valid = (
        s0 > 0.0
        and k > 0.0
        and t >= 0.0
        and sig >= 0.0
        and math.isfinite(s0)
        and math.isfinite(k)
        and math.isfinite(t)
        and math.isfinite(sig)
        and math.isfinite(r)
        and math.isfinite(q)
    )
    if not valid:
        return math.nan, math.nan, math.nan, math.nan, math.nan, math.nan
    df = math.exp(-r * t)
    if model == _BSM:
        dq = math.exp(-q * t)
        fwd = s0 * math.exp((r - q) * t)
    else:
        dq = df
        fwd = s0
    x = math.log(fwd / k)
    sqrt_t = math.sqrt(t)
    s = sig * sqrt_t
    intrinsic = max(w * (fwd - k), 0.0)
    otm = math.sqrt(fwd) * math.sqrt(k) * normalised_black_otm_call(-abs(x), s)
    value = df * (intrinsic + otm)
    if not with_greeks:
        return value, math.nan, math.nan, math.nan, math.nan, math.nan
    # cdf(w d1), cdf(w d2), pdf(d1) with their s -> 0 limits
    if s > 0.0:
        d1 = x / s + 0.5 * s
        d2 = d1 - s
        n1 = norm_cdf(w * d1)
        n2 = norm_cdf(w * d2)
        pdf1 = norm_pdf(d1)
    else:
        step = 1.0 if w * x > 0.0 else (0.5 if x == 0.0 else 0.0)
        n1 = step
        n2 = step
        pdf1 = ONE_OVER_SQRT_TWO_PI if x == 0.0 else 0.0
    delta = w * dq * n1
    if s > 0.0:
        gamma = dq * (pdf1 / s) / s0  # no 0/0 when s0*s underflows
        decay = -dq * s0 * pdf1 * sig / (2.0 * sqrt_t)
    else:
        gamma = math.inf if x == 0.0 and t > 0.0 else 0.0
        decay = -math.inf if (x == 0.0 and t == 0.0 and sig > 0.0) else 0.0
    vega = dq * s0 * pdf1 * sqrt_t
    if model == _BSM:
        theta_v = decay - w * r * k * df * n2 + w * q * s0 * dq * n1
        rho = w * k * t * df * n2
    else:
        theta_v = decay + r * value
        rho = -t * value
    return value, delta, gamma, vega, theta_v, rho


@_jit
def _store(out, i, row):
    out[0, i] = row[0]
    if out.shape[0] > 1:
        for j in range(1, 6):
            out[j, i] = row[j]


# Serial and parallel kernels share the element function (elements are independent), so
# their results are bit-identical.
@_jit
def _kernel(model, und, strike, expiry, vol, rate, div, theta, with_greeks, out):
    for i in range(und.shape[0]):
        _store(
            out,
            i,
            _price_element(
                model, und[i], strike[i], expiry[i], vol[i], rate[i], div[i], theta[i], with_greeks
            ),
        )


@_jit_parallel
def _kernel_parallel(model, und, strike, expiry, vol, rate, div, theta, with_greeks, out):
    for i in numba.prange(und.shape[0]):
        _store(
            out,
            i,
            _price_element(
                model, und[i], strike[i], expiry[i], vol[i], rate[i], div[i], theta[i], with_greeks
            ),
        )


def _run(
    model: int,
    und: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike,
    div: ArrayLike,
    is_call: ArrayLike,
    with_greeks: bool,
    parallel: bool,
) -> Any:
    theta = call_flag_to_theta(is_call)
    shape, (u, k, t, v, r, q, w) = broadcast_flat(und, strike, expiry, vol, rate, div, theta)
    out = np.empty((6 if with_greeks else 1, u.shape[0]), dtype=np.float64)
    kernel = _kernel_parallel if parallel else _kernel
    kernel(model, u, k, t, v, r, q, w, with_greeks, out)
    if not with_greeks:
        return shaped(out[0], shape)
    return Greeks(*(shaped(out[j], shape) for j in range(6)))


def black76_price(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    *,
    parallel: bool = False,
) -> Any:
    """Discounted Black-76 price of European options on a forward/future.

    ``V = exp(-rate*expiry) * (theta*(F*N(theta*d1) - K*N(theta*d2)))`` with
    ``d1,2 = ln(F/K)/(vol sqrt(T)) +- vol sqrt(T)/2``, ``theta = +1`` call, ``-1`` put.

    Args broadcast together (see module docstring for units).  Returns an
    array of the broadcast shape; nan marks invalid input.  Raises
    ``ValueError`` only for non-broadcastable shapes or bad call/put flags.
    ``parallel=True`` spreads the elements over numba's threads (bit-identical
    results; see the module docstring).  Cost: O(n), one compiled pass.
    """
    return _run(_BLACK76, forward, strike, expiry, vol, rate, 0.0, is_call, False, parallel)


def black76_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    *,
    parallel: bool = False,
) -> Greeks:
    """Black-76 price and Greeks as a :class:`Greeks` tuple.

    ``delta = dV/dF``, ``gamma = d2V/dF2``, ``vega = dV/dvol`` (per 1.0 vol),
    ``theta = -dV/dT`` (per year), ``rho = dV/dr = -T V`` (forward held
    fixed).  Errors/cost as :func:`black76_price` (about 2x its time).
    """
    return _run(_BLACK76, forward, strike, expiry, vol, rate, 0.0, is_call, True, parallel)


def bs_price(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike = 0.0,
    dividend: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    *,
    parallel: bool = False,
) -> Any:
    """Black-Scholes-Merton price with continuous dividend yield/carry ``q``.

    ``V = theta*(S e^{-qT} N(theta d1) - K e^{-rT} N(theta d2))``, computed as
    the discounted Black price of the forward ``S e^{(r-q)T}``.  Errors/cost
    as :func:`black76_price`.
    """
    return _run(_BSM, spot, strike, expiry, vol, rate, dividend, is_call, False, parallel)


def bs_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    vol: ArrayLike,
    rate: ArrayLike = 0.0,
    dividend: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    *,
    parallel: bool = False,
) -> Greeks:
    """BSM price and Greeks (:class:`Greeks`), spot-based.

    ``delta = dV/dS``, ``gamma = d2V/dS2``, ``vega = dV/dvol`` (per 1.0 vol),
    ``theta = -dV/dT`` per year (spot, r, q fixed), ``rho = dV/dr`` (spot and
    q fixed; the dividend sensitivity is not included).  Errors/cost as
    :func:`black76_price`.
    """
    return _run(_BSM, spot, strike, expiry, vol, rate, dividend, is_call, True, parallel)
