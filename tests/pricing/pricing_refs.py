"""Reference helpers for derivex.pricing tests.

References are independent implementations installed as test dependencies:
QuantLib (analytic Black calculator / European engine), py_lets_be_rational
and vollib/py_vollib (Jaeckel's normalised Black, transcribed to Python) and
mpmath (50-digit arithmetic).  Tests needing one skip if it is missing.
"""

from __future__ import annotations

import math

import numpy as np

EPS = float(np.finfo(float).eps)


def mp_black(
    forward: float, strike: float, expiry: float, vol: float, is_call: bool, dps: int = 50
) -> float:
    """Undiscounted Black price in mpmath at ``dps`` digits (exact inputs)."""
    import mpmath as mp

    with mp.workdps(dps):
        f, k, t, v = (mp.mpf(a) for a in (forward, strike, expiry, vol))
        sd = v * mp.sqrt(t)
        d1 = mp.log(f / k) / sd + sd / 2
        d2 = d1 - sd
        w = 1 if is_call else -1
        return float(w * (f * mp.ncdf(w * d1) - k * mp.ncdf(w * d2)))


def black_condition(forward, strike, expiry, vol, is_call, price):
    """Relative condition number of the undiscounted Black price w.r.t. its
    inputs: ``(|F dP/dF| + |K dP/dK| + |vol dP/dvol|) / P``.  A backward
    stable implementation has relative error of order ``eps`` times this."""
    from scipy.special import ndtr

    f, k, t, v = (np.asarray(a, dtype=float) for a in (forward, strike, expiry, vol))
    w = np.where(is_call, 1.0, -1.0)
    sd = v * np.sqrt(t)
    d1 = np.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    vega_term = f * np.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) * sd
    return (f * ndtr(w * d1) + k * ndtr(w * d2) + vega_term) / price


def vollib_modules():
    """(black, black_scholes_merton) price functions from vollib, or from the
    deprecated py_vollib shim if only that is installed."""
    import warnings

    try:
        from vollib.black import black
        from vollib.black_scholes_merton import black_scholes_merton
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from py_vollib.black import black
            from py_vollib.black_scholes_merton import black_scholes_merton
    return black, black_scholes_merton
