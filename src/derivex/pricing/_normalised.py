"""Normalised Black function (internal numba kernels).

With ``x = ln(F/K)``, total volatility ``s = sigma*sqrt(T)`` and ``theta = +1``
for calls, ``-1`` for puts, the undiscounted Black price is
``sqrt(F*K) * b(x, s, theta)`` with

    b(x, s, theta) = theta * [exp(x/2) Phi(theta(x/s + s/2))
                              - exp(-x/2) Phi(theta(x/s - s/2))].

Every option is reduced to its out-of-the-money counterpart, which by
put-call symmetry is always the OTM *call* ``b_c(-|x|, s)``; in-the-money
prices are intrinsic + OTM value.  For ``x <= 0`` write ``h = x/s``,
``t = s/2`` and ``Y = Phi/phi``; then (the factorisation removes three of the
four exponentials of the textbook formula)

    b_c(x, s) = exp(-(h^2 + t^2)/2)/sqrt(2 pi) * [Y(h + t) - Y(h - t)].

Four evaluation regions follow P. Jaeckel, "Let's Be Rational" (2015):

1. ``h + t < -9.79`` (far wing): asymptotic expansion of ``Y`` where the
   difference ``Y(h+t) - Y(h-t)`` is taken analytically (no cancellation).
2. ``t < 0.21`` (short total vol): Taylor series in ``t`` of the bracket,
   whose coefficients follow from the recursion ``Y^(m+1) = h Y^(m) + m Y^(m-1)``.
3. ``h + t > 0.85``: the first term dominates; no cancellation.
4. otherwise: the bracket with ``Y`` from the scaled ``erfcx``.

The series and expansions were derived for this module from the identities
above (they are not copied from any implementation).
"""

from __future__ import annotations

import math

import numba

from ._special import ONE_OVER_SQRT_TWO_PI, mills_y, norm_cdf, norm_pdf

# forceinline (LLVM alwaysinline) for the small hot kernels of the pricing loops; see _lbr.
_jit = numba.njit(cache=True, error_model="numpy", forceinline=True)

ASYMPTOTIC_H_THRESHOLD = -10.0
SMALL_T_THRESHOLD = 2.0 * 2.220446049250313e-16 ** (1.0 / 16.0)  # ~0.2102
_ASYMPTOTIC_TERMS = 30
_SMALL_T_MAX_ORDER = 21


@_jit
def _asymptotic_bracket(h: float, t: float) -> float:
    """``Y(h+t) - Y(h-t)`` for ``h + t < -9.79`` via the asymptotic series.

    ``Y(z) ~ sum_k c_k z^-(2k+1)`` with ``c_k = (-1)^(k+1) (2k-1)!!``.  With
    ``a = 1/(h+t)``, ``d = 1/(h-t)``: ``a^n - d^n = (a - d) S_n`` where
    ``S_n = sum_i a^(n-1-i) d^i`` has terms of one sign (``a*d > 0``), so the
    difference is formed without cancellation.  ``a - d = -2t/((h+t)(h-t))``.
    """
    a = 1.0 / (h + t)
    d = 1.0 / (h - t)
    ad_pow = 1.0  # d^(n-1)
    s_n = 1.0  # S_1
    coef = 1.0  # (2k-1)!! with sign (-1)^k
    total = 1.0  # k = 0 term: +1 * S_1
    for k in range(1, _ASYMPTOTIC_TERMS):
        # advance S_n from n = 2k-1 to n = 2k+1: S_{m+1} = a S_m + d^m
        ad_pow *= d
        s_n = a * s_n + ad_pow
        ad_pow *= d
        s_n = a * s_n + ad_pow
        coef *= -(2.0 * k - 1.0)
        total += coef * s_n
    return 2.0 * t / ((h + t) * (h - t)) * total


@_jit
def _small_t_bracket(h: float, t: float) -> float:
    """``Y(h+t) - Y(h-t) = 2 sum_{m odd} Y^(m)(h) t^m/m!`` for small ``t``.

    ``Y^(m)`` from ``Y' = 1 + hY`` and ``Y^(m+1) = h Y^(m) + m Y^(m-1)``.
    The forward recursion loses ``~|h|^m`` ulps, but ``t^m/m!`` with
    ``|h| t <= 2.1`` keeps the effect at the ulp level of the result.
    """
    y_prev = mills_y(h)  # Y^(0)
    y_cur = 1.0 + h * y_prev  # Y^(1)
    total = y_cur * t
    t2 = t * t
    power = t  # t^m / m!
    for m in range(1, _SMALL_T_MAX_ORDER, 2):
        # step to order m+1 then m+2
        y_next = h * y_cur + m * y_prev
        y_prev, y_cur = y_cur, y_next
        y_next = h * y_cur + (m + 1) * y_prev
        y_prev, y_cur = y_cur, y_next
        power *= t2 / ((m + 1.0) * (m + 2.0))
        term = y_cur * power
        total += term
        if term < 1e-17 * total:
            break
    return 2.0 * total


@_jit
def normalised_black_otm_call_and_vega(x: float, s: float) -> tuple[float, float]:
    """``(b_c(x, s), db_c/ds)`` for ``x <= 0`` and ``s >= 0``.

    The vega ``exp(-(h^2 + t^2)/2)/sqrt(2 pi)`` is the prefactor of three of the four
    regions, so the pair costs one exponential less than the two functions called
    separately; both values are bit-identical to :func:`normalised_black_otm_call` and
    :func:`normalised_vega`.
    """
    if s <= 0.0:
        return 0.0, normalised_vega(x, s)
    h = x / s
    t = 0.5 * s
    vega = ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t))
    if h + t < ASYMPTOTIC_H_THRESHOLD + SMALL_T_THRESHOLD and h < ASYMPTOTIC_H_THRESHOLD:
        if h < -40.0:  # b < exp(-h^2/2) underflows
            return 0.0, vega
        return max(vega * _asymptotic_bracket(h, t), 0.0), vega
    if t < SMALL_T_THRESHOLD:
        return max(vega * _small_t_bracket(h, t), 0.0), vega
    if h + t > 0.85:
        # exp(x/2) [Phi(h+t) - phi(h+t) Y(h-t)]; the second term is small.
        return (
            max(math.exp(0.5 * x) * (norm_cdf(h + t) - norm_pdf(h + t) * mills_y(h - t)), 0.0),
            vega,
        )
    return max(vega * (mills_y(h + t) - mills_y(h - t)), 0.0), vega


@_jit
def normalised_black_otm_call(x: float, s: float) -> float:
    """Normalised Black call ``b_c(x, s)`` for ``x <= 0`` and ``s >= 0``.

    Relative accuracy is within a few 1e-15 except where the price is below
    ~1e-300 (gradual underflow).  Returns 0 for ``s == 0``.  (The unused vega
    exponential of the shared evaluation is removed by the compiler.)
    """
    return normalised_black_otm_call_and_vega(x, s)[0]


@_jit
def normalised_vega(x: float, s: float) -> float:
    """``db/ds = exp(-(x^2/s^2 + s^2/4)/2)/sqrt(2 pi)`` (same for calls and puts).

    At ``s = 0`` the limit: ``1/sqrt(2 pi)`` at the money, else 0."""
    if s <= 0.0:
        return ONE_OVER_SQRT_TWO_PI if x == 0.0 else 0.0
    h = x / s
    t = 0.5 * s
    return ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t))


@_jit
def normalised_intrinsic(x: float, theta: float) -> float:
    """``max(theta*(exp(x/2) - exp(-x/2)), 0) = max(2 theta sinh(x/2), 0)``."""
    if theta * x <= 0.0:
        return 0.0
    return abs(2.0 * math.sinh(0.5 * x))


@_jit
def normalised_black(x: float, s: float, theta: float) -> float:
    """Normalised Black price ``b(x, s, theta)`` (intrinsic + OTM value)."""
    return normalised_intrinsic(x, theta) + normalised_black_otm_call(-abs(x), s)
