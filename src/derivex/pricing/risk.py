"""Risk arrays for the core: scenario P&L and Greeks of one option lot, as integers.

The core margins with integers only. For every option instrument it receives a RISK_ARRAY
command (see :func:`derivex.core.records.risk_records`) carrying the mark, the Greeks of one
lot and the P&L of one lot under each scenario of the configured grid. This module computes
those numbers with floats (Black-76) and rounds them by written rules. The full contract is
in ``docs/risk-arrays.md``; in short:

Units. Prices of the index, strikes and marks are in ticks of the instrument's quote
(``price_decimals``); the value of one lot at price ``p`` ticks is ``p * cvu`` collateral
units (``cvu`` = ``contract_value_units``). The forward is ``F = S exp(carry T)`` for index
``S``; premiums are discounted at ``rate`` (both 0 by default, the crypto convention of
pricing off the index).

Scenario values (``int64``, collateral units, one lot, a loss negative)::

    value[i, j] = floor((black76(F_i (1 + move_j), K_i, T_i, vol_ij) * cvu_i
                         - mark_ticks_i * cvu_i) * weight_j)

``move_j`` and ``weight_j`` are the grid's ppm figures / 1e6; ``vol_ij`` is the option's
volatility shocked down / not / up by the grid's vol flag (-1 / 0 / +1) under a
:class:`DeribitVolShock` or :class:`SpanVolShock` rule. Volatility is sticky-strike (the
option keeps its own volatility when the index moves) and time does not pass. Flooring
means a long lot's loss is never understated (by the float model); the core multiplies by
signed quantity, so a short lot's loss can be understated by less than one unit per lot.

Greeks of one lot (``int64``, fixed point 1e-9, all in collateral units of one lot):

=========  ===================================================================
delta      dV/dS per index tick: ``round(1e9 * Delta * cvu)`` (a perpetual: ``1e9 cvu``)
gamma      d2V/dS2 per index tick squared: ``round(1e9 * Gamma * cvu)``
vega       dV per +0.01 of volatility (one vol point): ``round(1e9 * vega / 100 * cvu)``
theta      dV per calendar day passing (365-day year): ``round(1e9 * theta / 365 * cvu)``
rho        dV per +0.01 of the discount rate (forward held): ``round(1e9 * rho / 100 * cvu)``
=========  ===================================================================

Errors: ``ValueError`` for a non-finite result or one outside int64. Cost: one compiled
pass, O(options x scenarios) (about 50 ns per repricing on one core).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..core.config import EngineConfig, Scenario
from ..core.records import RISK_VALUES_PER_LEG, CommandKind, command_array
from ._arrays import call_flag_to_theta
from ._normalised import normalised_black_otm_call
from .black import black76_greeks

__all__ = [
    "GREEK_SCALE",
    "DeribitVolShock",
    "RiskArrays",
    "ScenarioGrid",
    "SpanVolShock",
    "compute_risk_arrays",
    "lot_greeks",
    "perpetual_greeks",
    "perpetual_risk_records",
    "risk_array_records",
    "scenario_values",
]

GREEK_SCALE = 1_000_000_000
DAYS_PER_YEAR = 365.0
_INT64_LIMIT = 9.2e18  # below 2**63 with room for the float's rounding


@dataclass(frozen=True)
class DeribitVolShock:
    """Deribit-style volatility shocks, scaled by tenor (venue-mechanics 3.1).

    With ``days = max(T * 365, min_days)`` and ``power`` the short-term power below
    ``switch_days`` and the long-term one from it on, ``factor = (reference_days /
    days) ** power`` (with both at 30 the factor is 1 at 30 days from either side, so the
    switch is continuous). Then::

        vol_up   = vol + max(vol, min_volatility_for_shock_up) * volatility_range_up * factor
        vol_down = vol * max(1 - volatility_range_down * factor, min_down_fraction)

    ``min_volatility_for_shock_up`` is our reading of Deribit's parameter: a low-volatility
    option is shocked up as if its volatility were at least that.
    """

    volatility_range_up: float = 0.5
    volatility_range_down: float = 0.25
    short_term_vega_power: float = 0.3
    long_term_vega_power: float = 0.13
    min_volatility_for_shock_up: float = 0.5
    switch_days: float = 30.0
    reference_days: float = 30.0
    min_days: float = 1.0
    min_down_fraction: float = 0.05

    def shocked_vols(
        self, vol: ArrayLike, expiry_years: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(vol_down, vol_up)`` arrays for each option. Cost O(n)."""
        v = np.asarray(vol, dtype=np.float64)
        days = np.maximum(np.asarray(expiry_years, dtype=np.float64) * DAYS_PER_YEAR, self.min_days)
        power = np.where(
            days < self.switch_days, self.short_term_vega_power, self.long_term_vega_power
        )
        factor = (self.reference_days / days) ** power
        up = v + np.maximum(v, self.min_volatility_for_shock_up) * (
            self.volatility_range_up * factor
        )
        down = v * np.maximum(1.0 - self.volatility_range_down * factor, self.min_down_fraction)
        return down, up


@dataclass(frozen=True)
class SpanVolShock:
    """SPAN-style volatility scan range: ``vol +/- vol_scan_range`` (absolute decimal vol),
    or ``vol * (1 +/- vol_scan_range)`` with ``relative=True``; the shocked-down volatility
    is floored at ``min_vol``. Tenor does not scale it."""

    vol_scan_range: float = 0.05
    relative: bool = False
    min_vol: float = 0.01

    def shocked_vols(
        self, vol: ArrayLike, expiry_years: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(vol_down, vol_up)`` arrays for each option. Cost O(n)."""
        v = np.asarray(vol, dtype=np.float64)
        v, _ = np.broadcast_arrays(v, np.asarray(expiry_years, dtype=np.float64))
        shift = v * self.vol_scan_range if self.relative else self.vol_scan_range
        return np.maximum(v - shift, self.min_vol), v + shift


VolShock = DeribitVolShock | SpanVolShock


@dataclass(frozen=True)
class ScenarioGrid:
    """A scenario grid as floats: ``moves`` (fraction of the index), ``vol_shocks``
    (-1/0/+1) and ``weights`` (fraction), one entry per scenario, in the core's order."""

    moves: NDArray[np.float64]
    vol_shocks: NDArray[np.int64]
    weights: NDArray[np.float64]

    @classmethod
    def from_rows(cls, rows: Sequence[Scenario] | EngineConfig) -> ScenarioGrid:
        """From ``EngineConfig.scenarios`` rows ``(move ppm, vol -1/0/1, weight ppm)`` or
        from an ``EngineConfig``. Raises ``ValueError`` on an empty grid or bad flags."""
        table = rows.scenarios if isinstance(rows, EngineConfig) else rows
        data = np.asarray(table, dtype=np.int64).reshape(-1, 3)
        if data.shape[0] == 0 or not np.all(np.isin(data[:, 1], (-1, 0, 1))):
            raise ValueError("a grid needs at least one row with vol shocks in -1/0/+1")
        return cls(moves=data[:, 0] / 1e6, vol_shocks=data[:, 1].copy(), weights=data[:, 2] / 1e6)

    def __len__(self) -> int:
        return int(self.moves.shape[0])


class RiskArrays(NamedTuple):
    """Integer inputs for the core: ``values`` (n, scenarios) and ``greeks`` (n, 5)
    (delta, gamma, vega, theta, rho), both ``int64``; see the module docstring."""

    values: NDArray[np.int64]
    greeks: NDArray[np.int64]


@numba.njit(cache=True, error_model="numpy")
def _black_value(f, k, t, sig, df, w):
    # Same formula as black._kernel (intrinsic + OTM normalised value), scalar, plus the
    # limit F -> 0 that a -100% scenario reaches.
    if f <= 0.0:
        return df * max(-w * k, 0.0)
    x = math.log(f / k)
    s = sig * math.sqrt(t)
    intrinsic = max(w * (f - k), 0.0)
    return df * (intrinsic + math.sqrt(f) * math.sqrt(k) * normalised_black_otm_call(-abs(x), s))


@numba.njit(cache=True, error_model="numpy")
def _scenario_kernel(
    fwd,
    strike,
    expiry,
    vol,
    vol_down,
    vol_up,
    df,
    theta,
    cvu,
    mark_units,
    moves,
    vol_shocks,
    weights,
    out,
):
    bad = 0
    for i in range(fwd.shape[0]):
        for j in range(moves.shape[0]):
            shock = vol_shocks[j]
            sig = vol[i] if shock == 0 else (vol_up[i] if shock > 0 else vol_down[i])
            value = _black_value(
                fwd[i] * (1.0 + moves[j]), strike[i], expiry[i], sig, df[i], theta[i]
            )
            pnl = (value * cvu[i] - mark_units[i]) * weights[j]
            # checked as a float: numba's math.floor already converts to int64
            if not (abs(pnl) < _INT64_LIMIT):  # also catches nan
                bad += 1
                out[i, j] = 0
            else:
                out[i, j] = math.floor(pnl)
    return bad


def _flat(values: ArrayLike, n: int) -> NDArray[np.float64]:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)))


def _inputs(index_ticks, strike_ticks, expiry_years, vol, carry):
    strike = np.atleast_1d(np.asarray(strike_ticks, dtype=np.float64)).reshape(-1)
    n = strike.shape[0]
    t = _flat(expiry_years, n)
    fwd = _flat(index_ticks, n) * np.exp(carry * t)
    sig = _flat(vol, n)
    bad = ~(
        np.isfinite(fwd)
        & (fwd > 0)
        & (strike > 0)
        & np.isfinite(t)
        & (t >= 0)
        & np.isfinite(sig)
        & (sig >= 0)
    )
    if bad.any():
        raise ValueError(
            f"invalid option input at index {int(np.flatnonzero(bad)[0])}: need "
            "index > 0, strike > 0, expiry >= 0, vol >= 0, all finite"
        )
    return n, fwd, np.ascontiguousarray(strike), t, sig


def scenario_values(
    index_ticks: ArrayLike,
    strike_ticks: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    contract_value_units: ArrayLike,
    mark_ticks: ArrayLike,
    grid: ScenarioGrid,
    shock: VolShock | None = None,
    rate: float = 0.0,
    carry: float = 0.0,
) -> NDArray[np.int64]:
    """Weighted scenario P&L of one lot of each option, ``int64`` of shape (n, len(grid)),
    floored (module docstring). Per-option arguments are 1-D arrays of length n (scalars
    broadcast). ``shock`` defaults to :class:`DeribitVolShock`. Raises ``ValueError`` on
    invalid input or a value outside int64. Cost O(n * scenarios), one compiled pass."""
    n, fwd, strike, t, sig = _inputs(index_ticks, strike_ticks, expiry_years, vol, carry)
    down, up = (shock or DeribitVolShock()).shocked_vols(sig, t)
    theta = _flat(call_flag_to_theta(is_call), n)
    cvu = _flat(contract_value_units, n)
    mark_units = _flat(mark_ticks, n) * cvu
    out = np.empty((n, len(grid)), dtype=np.int64)
    bad = _scenario_kernel(
        fwd,
        strike,
        t,
        sig,
        _flat(down, n),
        _flat(up, n),
        np.exp(-rate * t),
        theta,
        cvu,
        mark_units,
        np.ascontiguousarray(grid.moves, dtype=np.float64),
        np.ascontiguousarray(grid.vol_shocks, dtype=np.int64),
        np.ascontiguousarray(grid.weights, dtype=np.float64),
        out,
    )
    if bad:
        raise ValueError(f"{bad} scenario values are not finite or overflow int64")
    return out


def _to_nano(values: NDArray[np.float64], what: str) -> NDArray[np.int64]:
    scaled = np.rint(values * GREEK_SCALE)
    if not np.all(np.abs(scaled) < _INT64_LIMIT):
        raise ValueError(f"{what} is not finite or overflows int64 at 1e-9 fixed point")
    return scaled.astype(np.int64)


def lot_greeks(
    index_ticks: ArrayLike,
    strike_ticks: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    contract_value_units: ArrayLike,
    rate: float = 0.0,
    carry: float = 0.0,
) -> NDArray[np.int64]:
    """Greeks of one lot, ``int64`` (n, 5): delta, gamma, vega, theta, rho at 1e-9 in the
    units of the module docstring (rounded to nearest). With ``carry`` the delta and gamma
    are taken with respect to the index (chain rule through ``F = S exp(carry T)``) and
    theta holds the index fixed. Raises ``ValueError`` on invalid input or overflow.
    Cost O(n)."""
    n, fwd, strike, t, sig = _inputs(index_ticks, strike_ticks, expiry_years, vol, carry)
    g = black76_greeks(fwd, strike, t, sig, rate, _flat(call_flag_to_theta(is_call), n) > 0)
    growth = np.exp(carry * t)  # dF/dS
    cvu = _flat(contract_value_units, n)
    delta_s = g.delta * growth
    with np.errstate(invalid="ignore"):  # gamma is +inf at the money at expiry
        gamma_s = np.where(np.isfinite(g.gamma), g.gamma * growth * growth, 0.0)
    theta_s = np.where(np.isfinite(g.theta), g.theta - carry * fwd * g.delta, 0.0)
    columns = [
        (delta_s, "delta"),
        (gamma_s, "gamma"),
        (g.vega / 100.0, "vega"),
        (theta_s / DAYS_PER_YEAR, "theta"),
        (g.rho / 100.0, "rho"),
    ]
    return np.stack([_to_nano(col * cvu, name) for col, name in columns], axis=1)


def perpetual_greeks(contract_value_units: ArrayLike) -> NDArray[np.int64]:
    """Greeks of one perpetual lot, ``int64`` (n, 5): delta ``1e9 * cvu`` (the lot's
    underlying exposure, collateral units per index tick), the others 0."""
    cvu = np.atleast_1d(np.asarray(contract_value_units, dtype=np.int64))
    out = np.zeros((cvu.shape[0], 5), dtype=np.int64)
    out[:, 0] = cvu * GREEK_SCALE
    return out


def compute_risk_arrays(
    index_ticks: ArrayLike,
    strike_ticks: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    contract_value_units: ArrayLike,
    mark_ticks: ArrayLike,
    grid: ScenarioGrid,
    shock: VolShock | None = None,
    rate: float = 0.0,
    carry: float = 0.0,
) -> RiskArrays:
    """:func:`scenario_values` and :func:`lot_greeks` together."""
    values = scenario_values(
        index_ticks,
        strike_ticks,
        expiry_years,
        vol,
        is_call,
        contract_value_units,
        mark_ticks,
        grid,
        shock,
        rate,
        carry,
    )
    greeks = lot_greeks(
        index_ticks, strike_ticks, expiry_years, vol, is_call, contract_value_units, rate, carry
    )
    return RiskArrays(values, greeks)


def risk_array_records(
    instruments: ArrayLike,
    mark_ticks: ArrayLike,
    values: ArrayLike,
    greeks: ArrayLike,
    mark_iv_ppm: ArrayLike | None = None,
) -> np.ndarray:
    """RISK_ARRAY commands for n instruments, one after another: the same bytes as
    ``concat_commands([risk_records(...) for each instrument])``, built column-wise.

    ``values`` is (n, S) (S may be 0: a Greeks-only command), ``greeks`` (n, 5). Cost O(n S).
    """
    inst = np.atleast_1d(np.asarray(instruments, dtype=np.int64))
    n = inst.shape[0]
    vals = np.asarray(values, dtype=np.int64).reshape(n, -1)
    grk = np.asarray(greeks, dtype=np.int64).reshape(n, 5)
    count = vals.shape[1]
    legs = -(-count // RISK_VALUES_PER_LEG)
    rows = 2 + legs
    records = command_array(n * rows)
    header = records[0::rows]
    header["kind"] = CommandKind.RISK_ARRAY
    header["instrument"] = inst
    header["price_ticks"] = np.broadcast_to(np.asarray(mark_ticks, dtype=np.int64), (n,))
    header["mark_iv_ppm"] = (
        0 if mark_iv_ppm is None else np.broadcast_to(np.asarray(mark_iv_ppm, dtype=np.int64), (n,))
    )
    header["count"] = 1 + legs
    leg = records[1::rows]
    leg["kind"] = CommandKind.RISK_GREEKS
    for column, name in enumerate(
        ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano")
    ):
        leg[name] = grk[:, column]
    padded = np.zeros((n, legs * RISK_VALUES_PER_LEG), dtype=np.int64)
    padded[:, :count] = vals
    for index in range(legs):
        leg = records[2 + index :: rows]
        leg["kind"] = CommandKind.RISK_VALUES
        for k in range(RISK_VALUES_PER_LEG):
            leg[f"v{k}"] = padded[:, index * RISK_VALUES_PER_LEG + k]
    return records


def perpetual_risk_records(
    instruments: ArrayLike, mark_ticks: ArrayLike, contract_value_units: ArrayLike
) -> np.ndarray:
    """Greeks-only RISK_ARRAY commands for perpetuals (no RISK_VALUES legs: the core
    computes perpetual scenario values itself), delta as in :func:`perpetual_greeks`."""
    inst = np.atleast_1d(np.asarray(instruments, dtype=np.int64))
    return risk_array_records(
        inst,
        mark_ticks,
        np.zeros((inst.shape[0], 0), dtype=np.int64),
        perpetual_greeks(np.broadcast_to(np.asarray(contract_value_units), inst.shape)),
    )
