"""What-if margins (scope ``read``), with the engine's own kernels (``core.risk_views``):

- ``private/get_margins`` (Deribit's): the initial margin a limit order of ``amount`` at
  ``price`` on ``instrument_name`` would add, for a buy and for a sell (negative when it
  reduces the account's risk), with the instrument's price band (``min_price``,
  ``max_price``). What the engine's pre-trade check computes for a resting order; the trader
  page shows it in the order form before sending.
- ``private/simulate_portfolio`` (Deribit's): the account's equity, initial and maintenance
  margin and available funds as if it also held ``add_positions`` (instrument name ->
  signed amount), taken at each instrument's mark with no fee. Exact: the same figures
  ``private/get_account_summary`` reports once the account holds that portfolio (bought at
  the mark, no fee). Nothing changes: the engine works on a copy of the state.

Amounts in the instrument's base currency, money in USDC. Errors: -32602 for a malformed
parameter or a position beyond the engine's maximum, 10020 for an unknown instrument, 10021 /
10007 beyond the engine's order size or price caps, 10040 ``retry`` for an instrument without
a mark yet. Costs: get_margins
O(scenarios); simulate_portfolio O(state size) for the copy (rate-limit cost 10).
"""

from __future__ import annotations

from typing import Any

from derivex.core import risk_views
from derivex.core.records import Side
from derivex.gateway import params as p
from derivex.gateway.catalog import COLLATERAL, UNITS_PER_USDC, InstrumentSpec
from derivex.gateway.errors import RpcError, invalid_params
from derivex.gateway.methods import Context, method
from derivex.gateway.private_api import _check_limits

MAX_ADDED_POSITIONS = 100


def _usdc(units: int) -> float:
    return units / UNITS_PER_USDC


def _marked(ctx: Context, spec: InstrumentSpec) -> int:
    mark = ctx.venue.exchange.mark(spec.instrument)
    if mark <= 0:
        raise RpcError(10040, "retry", {"reason": "no_mark", "instrument_name": spec.name})
    return mark


def _signed_lots(spec: InstrumentSpec, amount: Any, name: str) -> int:
    """A signed amount -> signed lots (the spec's conversion takes magnitudes)."""
    if isinstance(amount, str) and amount.startswith("-"):
        return -spec.to_lots(amount[1:], name)
    if not isinstance(amount, str) and amount < 0:
        return -spec.to_lots(-amount, name)
    return spec.to_lots(amount, name)


@method("private/get_margins", ("instrument_name", "amount", "price"), scope="read")
def get_margins(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """``buy`` / ``sell``: initial margin added by the order (USDC); ``initial_margin``:
    the account's now; ``min_price`` / ``max_price``: the price band a limit order must
    respect now."""
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    lots = spec.to_lots(p.number(params, "amount"))
    ticks = spec.to_ticks(p.number(params, "price"))
    if lots <= 0:
        raise invalid_params("amount", "must be positive")
    if ticks <= 0:
        raise invalid_params("price", "must be positive")
    _check_limits(ctx, spec.instrument, lots, ticks)
    _marked(ctx, spec)
    state = ctx.venue.exchange.engine.state
    account = ctx.session.account
    now, after_buy = risk_views.order_margin(state, account, spec.instrument, Side.BUY, lots, ticks)
    _, after_sell = risk_views.order_margin(state, account, spec.instrument, Side.SELL, lots, ticks)
    band = ctx.venue.exchange.price_band(spec.instrument)
    return {
        "buy": _usdc(after_buy - now),
        "sell": _usdc(after_sell - now),
        "initial_margin": _usdc(now),
        "min_price": spec.price(band[0]) if band is not None else None,
        "max_price": spec.price(band[1]) if band is not None else None,
    }


@method(
    "private/simulate_portfolio",
    ("currency", "add_positions", "simulated_positions"),
    scope="read",
    cost=10,
)
def simulate_portfolio(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """``add_positions``: ``{instrument_name: signed amount}`` added to what the account
    holds (Deribit's ``simulated_positions`` is accepted as the same thing)."""
    currency = str(p.text(params, "currency", COLLATERAL)).upper()
    if currency != COLLATERAL:
        raise invalid_params("currency", f"margins are in {COLLATERAL}")
    name = "add_positions" if "add_positions" in params else "simulated_positions"
    added = params.get(name) or {}
    if not isinstance(added, dict):
        raise invalid_params(name, "must be an object of instrument name -> amount")
    if len(added) > MAX_ADDED_POSITIONS:
        raise invalid_params(name, f"at most {MAX_ADDED_POSITIONS} instruments")
    additions = []
    exchange = ctx.venue.exchange
    held = {pos.instrument: pos.qty_lots for pos in exchange.positions(ctx.session.account)}
    limit = exchange.engine.config.max_position_lots
    for instrument_name, amount in added.items():
        spec = ctx.venue.catalog.get(instrument_name)
        lots = _signed_lots(spec, p.number({name: amount}, name), name)
        _check_limits(ctx, spec.instrument, abs(lots), 0)
        # a position the engine could never hold is refused, as a trade to it would be (and
        # keeps every product in the kernels inside int64)
        if abs(held.get(spec.instrument, 0) + lots) > limit:
            raise invalid_params(name, f"{instrument_name}: beyond the maximum position")
        _marked(ctx, spec)
        additions.append((spec.instrument, lots))
    state = ctx.venue.exchange.engine.state
    equity, initial, maintenance = risk_views.simulate_margins(
        state, ctx.session.account, additions
    )
    return {
        "currency": COLLATERAL,
        "equity": _usdc(equity),
        "margin_balance": _usdc(equity),
        "initial_margin": _usdc(initial),
        "maintenance_margin": _usdc(maintenance),
        "available_funds": _usdc(equity - initial),
        "add_positions": {
            ctx.venue.catalog.by_id[i].name: ctx.venue.catalog.by_id[i].amount(lots)
            for i, lots in additions
        },
    }
