"""Raw SVI smiles: parameters, fitting and butterfly-arbitrage checks.

Raw SVI (Gatheral 2004) models the total implied variance of one expiry as a
function of log-moneyness ``k = ln(K/F)``:

    w(k) = a + b * (rho * (k - m) + sqrt((k - m)^2 + sigma^2)),

with implied volatility ``sqrt(w(k)/T)``.

Static (butterfly) arbitrage conditions used here:

* ``w(k) >= 0`` everywhere, i.e. ``a + b sigma sqrt(1 - rho^2) >= 0``;
* Roger Lee's moment formula: the wing slopes of total variance,
  ``b(1 - rho)`` (left) and ``b(1 + rho)`` (right), must not exceed 2, i.e.
  ``b(1 + |rho|) <= 2``.  (In the variance parametrisation ``w/T`` this is
  ``b_var (1 + |rho|) <= 2/T``, stricter than the ``4/T`` slope bound often
  quoted from Rogers-Tehranchi; we enforce the stricter one.)
* Gatheral's density condition ``g(k) >= 0`` with

      g(k) = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2,

  checked on a grid (``g < 0`` means a negative risk-neutral density).

:func:`fit_svi` enforces the first two exactly through its parametrisation
(wing slopes ``p = b(1+rho)``, ``n = b(1-rho)`` in ``[0, 2]`` and the minimum
variance ``v >= 0``) and the third as a penalty on a grid (so it is avoided
wherever the data allow it); :func:`check_butterfly` reports all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ButterflyReport", "SviFit", "SviParams", "check_butterfly", "fit_svi", "fit_svi_full"]

LEE_MAX_SLOPE = 2.0
G_MARGIN = 1e-6  # fitted slices keep g >= G_MARGIN on the grid
PENALTY = 1e3
N_STARTS = 4


@dataclass(frozen=True)
class SviParams:
    """Raw SVI parameters ``(a, b, rho, m, sigma)`` of one expiry slice.

    Requires ``b >= 0``, ``-1 < rho < 1`` and ``sigma > 0`` (``ValueError``
    otherwise).  All methods accept arrays of log-moneyness ``k = ln(K/F)``
    and cost O(len(k)).
    """

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def __post_init__(self) -> None:
        vals = (self.a, self.b, self.rho, self.m, self.sigma)
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"SVI parameters must be finite, got {vals}")
        if self.b < 0.0 or not -1.0 < self.rho < 1.0 or self.sigma <= 0.0:
            raise ValueError(f"invalid SVI parameters (need b>=0, |rho|<1, sigma>0): {vals}")

    def total_variance(self, k: ArrayLike) -> NDArray[np.float64]:
        """Total implied variance ``w(k)``."""
        km = np.asarray(k, dtype=np.float64) - self.m
        return self.a + self.b * (self.rho * km + np.sqrt(km * km + self.sigma**2))

    def derivatives(self, k: ArrayLike) -> tuple[NDArray[np.float64], ...]:
        """``(w, dw/dk, d2w/dk2)`` at ``k``."""
        km = np.asarray(k, dtype=np.float64) - self.m
        root = np.sqrt(km * km + self.sigma**2)
        w = self.a + self.b * (self.rho * km + root)
        w1 = self.b * (self.rho + km / root)
        w2 = self.b * self.sigma**2 / root**3
        return w, w1, w2

    def implied_vol(self, k: ArrayLike, expiry: float) -> NDArray[np.float64]:
        """Implied volatility ``sqrt(w(k)/T)`` (nan where ``w < 0``)."""
        with np.errstate(invalid="ignore"):
            return np.sqrt(self.total_variance(k) / expiry)

    def density_g(self, k: ArrayLike) -> NDArray[np.float64]:
        """Gatheral's ``g(k)``; ``g < 0`` indicates butterfly arbitrage (nan if ``w <= 0``)."""
        kk = np.asarray(k, dtype=np.float64)
        w, w1, w2 = self.derivatives(kk)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (1.0 - kk * w1 / (2.0 * w)) ** 2 - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
        return np.where(w > 0.0, g, np.nan)

    @property
    def min_total_variance(self) -> float:
        """``min_k w(k) = a + b sigma sqrt(1 - rho^2)``."""
        return self.a + self.b * self.sigma * math.sqrt(1.0 - self.rho**2)

    @property
    def wing_slopes(self) -> tuple[float, float]:
        """Asymptotic slopes ``(b(1-rho), b(1+rho))`` of ``w`` for ``k -> -inf, +inf``."""
        return self.b * (1.0 - self.rho), self.b * (1.0 + self.rho)

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return self.a, self.b, self.rho, self.m, self.sigma


@dataclass(frozen=True)
class ButterflyReport:
    """Outcome of :func:`check_butterfly` for one slice.

    ``ok`` is true iff the minimum variance is non-negative, both wing slopes
    satisfy Lee's bound (``<= 2`` up to ``tol``) and ``g(k) >= -tol`` on the
    whole grid.
    """

    ok: bool
    min_g: float
    argmin_k: float
    n_negative: int
    lee_ok: bool
    max_wing_slope: float
    positive_variance: bool
    min_total_variance: float


def default_grid(k: ArrayLike | None = None, n: int = 401) -> NDArray[np.float64]:
    """Log-moneyness grid for the checks: the data range widened by its width
    on both sides (at least ``[-1.5, 1.5]``)."""
    if k is None or np.size(k) == 0:
        lo, hi = -1.5, 1.5
    else:
        kk = np.asarray(k, dtype=np.float64)
        width = max(float(kk.max() - kk.min()), 0.5)
        lo = min(float(kk.min()) - width, -1.5)
        hi = max(float(kk.max()) + width, 1.5)
    return np.linspace(lo, hi, n)


def check_butterfly(
    params: SviParams, k_grid: ArrayLike | None = None, tol: float = 1e-10
) -> ButterflyReport:
    """Check one SVI slice for static (butterfly) arbitrage.

    Evaluates Gatheral's density condition ``g(k) >= -tol`` on ``k_grid``
    (default :func:`default_grid`), Lee's wing-slope bound and
    non-negativity of total variance.  Never raises for valid ``params``.
    Cost: O(len(k_grid)).
    """
    grid = default_grid() if k_grid is None else np.asarray(k_grid, dtype=np.float64)
    g = params.density_g(grid)
    g_eval = np.where(np.isnan(g), -np.inf, g)
    idx = int(np.argmin(g_eval))
    min_w = params.min_total_variance
    max_slope = max(params.wing_slopes)
    lee_ok = max_slope <= LEE_MAX_SLOPE + tol
    positive = min_w >= -tol
    n_neg = int(np.count_nonzero(g_eval < -tol))
    return ButterflyReport(
        ok=bool(lee_ok and positive and n_neg == 0),
        min_g=float(g_eval[idx]),
        argmin_k=float(grid[idx]),
        n_negative=n_neg,
        lee_ok=bool(lee_ok),
        max_wing_slope=float(max_slope),
        positive_variance=bool(positive),
        min_total_variance=float(min_w),
    )


@dataclass(frozen=True)
class SviFit:
    """Result of :func:`fit_svi_full`: parameters plus fit diagnostics."""

    params: SviParams
    rmse: float
    max_abs_error: float
    butterfly: ButterflyReport
    converged: bool
    n_starts: int


def _from_internal(z: NDArray[np.float64]) -> tuple[float, float, float, float, float]:
    """(v, p, n, m, sigma) -> raw (a, b, rho, m, sigma); ``|rho| < 1`` enforced."""
    v, p, n, m, sig = (float(c) for c in z)
    b = 0.5 * (p + n)
    rho = (p - n) / (p + n) if b > 0.0 else 0.0
    rho = min(max(rho, -1.0 + 1e-15), 1.0 - 1e-15)
    a = v - sig * math.sqrt(max(p * n, 0.0))
    return a, b, rho, m, sig


def _linear_start(
    k: NDArray[np.float64],
    w: NDArray[np.float64],
    sw: NDArray[np.float64],
    m: float,
    sig: float,
    box: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> NDArray[np.float64]:
    """For fixed (m, sigma) w is linear in (a, b*rho, b): solve, then map to
    the internal parameters clipped into the feasible box."""
    y = k - m
    root = np.sqrt(y * y + sig * sig)
    design = np.column_stack([np.ones_like(k), y, root]) * sw[:, None]
    coef, *_ = np.linalg.lstsq(design, w * sw, rcond=None)
    a, br, b = (float(c) for c in coef)
    b = max(b, 1e-4)
    p = min(max(b + br, 1e-4), LEE_MAX_SLOPE)
    n = min(max(b - br, 1e-4), LEE_MAX_SLOPE)
    v = max(a + sig * math.sqrt(p * n), 0.0)
    return np.clip(np.array([v, p, n, m, sig]), box[0], box[1])


def _validated(
    log_moneyness: ArrayLike, total_variance: ArrayLike, weights: ArrayLike | None
) -> tuple[NDArray[np.float64], ...]:
    k = np.asarray(log_moneyness, dtype=np.float64).reshape(-1)
    w = np.asarray(total_variance, dtype=np.float64).reshape(-1)
    if k.shape != w.shape:
        raise ValueError("log_moneyness and total_variance must have the same length")
    if k.size < 5:
        raise ValueError("need at least 5 quotes to fit 5 SVI parameters")
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(w))):
        raise ValueError("quotes must be finite")
    if np.any(w < 0.0):
        raise ValueError("total variance must be non-negative")
    if weights is None:
        om = np.ones_like(k)
    else:
        om = np.broadcast_to(np.asarray(weights, dtype=np.float64), k.shape).copy()
        if np.any(om < 0.0) or not np.all(np.isfinite(om)) or om.sum() <= 0.0:
            raise ValueError("weights must be finite, non-negative and not all zero")
    return k, w, np.sqrt(om / om.mean())


def _g_internal(z: NDArray[np.float64], grid: NDArray[np.float64]) -> NDArray[np.float64]:
    g = SviParams(*_from_internal(z)).density_g(grid)
    return np.where(np.isnan(g), -1.0, g)


def fit_svi_full(
    log_moneyness: ArrayLike,
    total_variance: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    no_butterfly: bool = True,
    k_grid: ArrayLike | None = None,
) -> SviFit:
    """Fit raw SVI to one slice of total variances; see :func:`fit_svi`.

    Returns an :class:`SviFit` with the parameters, the (unweighted) RMSE and
    max absolute error in total variance, the butterfly report on
    ``k_grid`` (default :func:`default_grid` of the data) and the number of
    least-squares starts used.
    """
    from scipy.optimize import least_squares, minimize

    k, w, sw = _validated(log_moneyness, total_variance, weights)
    scale = max(float(np.max(w)), 1e-12)
    grid = default_grid(k) if k_grid is None else np.asarray(k_grid, dtype=np.float64)
    width = max(float(k.max() - k.min()), 0.1)
    box = (
        np.array([0.0, 0.0, 0.0, float(k.min()) - 2.0 * width, 1e-6]),
        np.array(
            [
                4.0 * scale + 1e-12,
                LEE_MAX_SLOPE,
                LEE_MAX_SLOPE,
                float(k.max()) + 2.0 * width,
                10.0 * width,
            ]
        ),
    )
    pen_weight = PENALTY / math.sqrt(grid.size)

    def data_res(z: NDArray[np.float64]) -> NDArray[np.float64]:
        a, b, rho, m, sig = _from_internal(z)
        km = k - m
        return sw * (a + b * (rho * km + np.sqrt(km * km + sig * sig)) - w) / scale

    def residuals(z: NDArray[np.float64]) -> NDArray[np.float64]:
        res = data_res(z)
        if not no_butterfly:
            return res
        g = _g_internal(z, grid)
        return np.concatenate([res, pen_weight * np.minimum(g - G_MARGIN, 0.0)])

    starts = []
    for m0 in (float(k[np.argmin(w)]), 0.0, float(np.median(k))):
        for sig0 in (0.05 * width, 0.2 * width, 0.6 * width):
            z0 = _linear_start(k, w, sw, m0, sig0, box)
            starts.append((float(np.sum(residuals(z0) ** 2)), z0))
    starts.sort(key=lambda item: item[0])
    best = None
    for _, z0 in starts[:N_STARTS]:
        sol = least_squares(
            residuals,
            z0,
            bounds=box,
            method="trf",
            x_scale="jac",
            ftol=1e-15,
            xtol=1e-15,
            gtol=1e-15,
            max_nfev=2000,
        )
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    z_best = best.x
    converged = bool(best.status > 0)
    if no_butterfly and np.min(_g_internal(z_best, grid)) < 0.0:
        # The penalty left a violation: polish with hard constraints g >= margin.
        pol = minimize(
            lambda z: float(np.sum(data_res(z) ** 2)),
            z_best,
            method="SLSQP",
            bounds=list(zip(*box, strict=True)),
            constraints=[{"type": "ineq", "fun": lambda z: _g_internal(z, grid) - G_MARGIN}],
            options={"maxiter": 500, "ftol": 1e-14},
        )
        if np.min(_g_internal(pol.x, grid)) >= np.min(_g_internal(z_best, grid)):
            z_best, converged = pol.x, bool(pol.success)
    params = SviParams(*_from_internal(z_best))
    err = params.total_variance(k) - w
    return SviFit(
        params=params,
        rmse=float(np.sqrt(np.mean(err**2))),
        max_abs_error=float(np.max(np.abs(err))),
        butterfly=check_butterfly(params, grid),
        converged=converged,
        n_starts=min(len(starts), N_STARTS),
    )


def fit_svi(
    log_moneyness: ArrayLike,
    total_variance: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    no_butterfly: bool = True,
    k_grid: ArrayLike | None = None,
) -> SviParams:
    """Fit raw SVI ``(a, b, rho, m, sigma)`` to one expiry slice.

    Weighted least squares on total variance ``w_i = vol_i^2 T`` against
    log-moneyness ``k_i = ln(K_i/F)`` (weights e.g. vega or 1/spread^2;
    default equal).  Lee's wing bound and ``w >= 0`` hold exactly by
    construction.  With ``no_butterfly`` (default) Gatheral's ``g(k)`` is
    kept ``>= 1e-6`` on ``k_grid`` (default :func:`default_grid` of the data,
    401 points): first through a penalty in the least-squares residuals, then,
    if a violation remains, by an SLSQP polish with hard constraints on the
    grid.  So the fit is free of butterfly arbitrage (on the grid) wherever the
    data allow; between grid points it is not proven.  Check the result with
    :func:`check_butterfly` (or use :func:`fit_svi_full`, which reports it).

    Uses ``scipy.optimize.least_squares`` (TRF with bounds) from the best 4
    of 9 starts obtained by solving the linear sub-problem in ``(a, b rho,
    b)`` for fixed ``(m, sigma)``.  Cost: up to a few thousand O(len(k) +
    len(k_grid)) evaluations, typically 20-100 ms.  Raises ``ValueError`` for fewer than 5
    quotes, mismatched lengths, non-finite data, negative variances or bad
    weights; ``ImportError`` if scipy is missing.
    """
    return fit_svi_full(
        log_moneyness, total_variance, weights, no_butterfly=no_butterfly, k_grid=k_grid
    ).params
