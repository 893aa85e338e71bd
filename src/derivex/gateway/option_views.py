"""Option views (implied volatility and Greeks, as tickers and positions show them) from
what is sequenced: the engine keeps each option's ``I_MARK_IV`` and lot Greeks from its last
RISK_ARRAY command, so every gateway, in one process or in any worker of ``derivex serve
--workers N`` (restarted ones too), shows the same numbers after the same batches.

A RISK_ARRAY header carries the mark's implied volatility (``mark_iv_ppm``, 1e-6); its
RISK_GREEKS leg the Greeks of one lot at 1e-9 in ticks per lot (``derivex.pricing.risk.
lot_greeks``). Divided by the contract value (units per tick per lot) and scaled by the
price unit they are Deribit's Greeks per unit of the base in the quote currency: delta as
is, gamma / unit, vega, theta and rho x unit (gamma therefore at the resolution of 1e-9
per lot).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from derivex.core.records import CommandKind
from derivex.gateway.catalog import Catalog, InstrumentSpec

__all__ = ["option_views"]

_RISK_ARRAY, _RISK_GREEKS = int(CommandKind.RISK_ARRAY), int(CommandKind.RISK_GREEKS)


def option_view(
    spec: InstrumentSpec, iv_ppm: int, greeks_nano: Sequence[int]
) -> tuple[float, dict[str, float]]:
    """``(iv percent, greeks)`` of an option from its sequenced implied volatility (ppm)
    and lot Greeks (delta, gamma, vega, theta, rho at 1e-9). Cost O(1)."""
    per_lot = 1e-9 / float(spec.contract_value_units or 1)
    unit = float(spec.price_unit)
    delta, gamma, vega, theta, rho = greeks_nano
    return round(iv_ppm / 1e4, 2), {
        "delta": round(delta * per_lot, 5),
        "gamma": round(gamma * per_lot / unit, 8),
        "vega": round(vega * per_lot * unit, 5),
        "theta": round(theta * per_lot * unit, 5),
        "rho": round(rho * per_lot * unit, 5),
    }


def option_views(
    catalog: Catalog, commands: np.ndarray
) -> Iterator[tuple[int, float, dict[str, float]]]:
    """``(instrument, iv percent, greeks)`` of every RISK_ARRAY command in ``commands`` with
    a RISK_GREEKS leg, for instruments in ``catalog``. Cost O(commands)."""
    kinds = commands["kind"]
    for header in np.flatnonzero(kinds == _RISK_ARRAY).tolist():
        if header + 1 >= len(commands) or int(kinds[header + 1]) != _RISK_GREEKS:
            continue
        instrument = int(commands["instrument"][header])
        spec = catalog.by_id.get(instrument)
        if spec is None:
            continue
        leg = commands[header + 1]
        yield (
            instrument,
            *option_view(
                spec,
                int(commands["mark_iv_ppm"][header]),
                [
                    int(leg[name])
                    for name in ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano")
                ],
            ),
        )
