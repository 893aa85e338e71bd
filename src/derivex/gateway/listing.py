"""Listing instruments on an ``Exchange`` with their gateway specs, and the default set
``derivex serve`` lists: BTC and ETH USDC perpetuals and a BTC USDC options chain.

Units (every instrument): prices in 0.01 USDC ticks, so index prices, strikes and premiums
share one scale. Lots: 0.0001 BTC, 0.001 ETH. One tick times one lot is then a whole number
of collateral units (1e-6 USDC): 1 for BTC, 10 for ETH.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from derivex.exchange import Exchange
from derivex.gateway.catalog import Catalog, InstrumentSpec, option_name

PRICE_UNIT = Decimal("0.01")
LOT_SIZES = {"BTC": Decimal("0.0001"), "ETH": Decimal("0.001"), "SOL": Decimal("0.01")}
START_PRICES = {"BTC": Decimal(60_000), "ETH": Decimal(3_000)}


def list_instrument(exchange: Exchange, spec: InstrumentSpec) -> InstrumentSpec:
    """Add ``spec`` (its ``instrument`` is ignored) to the exchange; returns it with the id
    the engine gave. Raises ValueError when the engine rejects it."""
    if spec.kind == "perpetual":
        instrument = exchange.add_perpetual(
            spec.base,
            tick_size_ticks=spec.tick_size_ticks,
            min_trade_lots=spec.min_trade_lots,
            contract_value_units=spec.contract_value_units,
            maker_fee_ppm=spec.maker_fee_ppm,
            taker_fee_ppm=spec.taker_fee_ppm,
            price_decimals=spec.price_decimals,
        )
    else:
        instrument = exchange.add_option(
            spec.base,
            spec.expiry_ms * 1_000_000,
            int(spec.strike / spec.price_unit),
            spec.option_type,
            tick_size_ticks=spec.tick_size_ticks,
            min_trade_lots=spec.min_trade_lots,
            contract_value_units=spec.contract_value_units,
            maker_fee_ppm=spec.maker_fee_ppm,
            taker_fee_ppm=spec.taker_fee_ppm,
            price_decimals=spec.price_decimals,
        )
    return replace(spec, instrument=instrument)


def perpetual(base: str, created_ms: int = 0) -> InstrumentSpec:
    tick = {"BTC": 50, "ETH": 5}.get(base, 1)  # 0.50 USDC, 0.05 USDC
    return InstrumentSpec(
        -1,
        f"{base}_USDC-PERPETUAL",
        "perpetual",
        base,
        PRICE_UNIT,
        LOT_SIZES[base],
        tick_size_ticks=tick,
        min_trade_lots=1,
        maker_fee_ppm=-100,
        taker_fee_ppm=500,
        created_ms=created_ms,
    )


def option(
    base: str, expiry_ms: int, strike: Decimal, option_type: str, created_ms: int = 0
) -> InstrumentSpec:
    """A USDC option: premium tick 5 USDC, amount step 0.01 of the base."""
    return InstrumentSpec(
        -1,
        option_name(base, expiry_ms, strike, option_type),
        "option",
        base,
        PRICE_UNIT,
        LOT_SIZES[base],
        tick_size_ticks=500,
        min_trade_lots=100,
        expiry_ms=expiry_ms,
        strike=strike,
        option_type=option_type,
        maker_fee_ppm=300,
        taker_fee_ppm=300,
        created_ms=created_ms,
    )


def expiries(now_ms: int, weekly: int = 3, monthly: int = 1) -> list[int]:
    """Fridays 08:00 UTC: the next ``weekly`` at least two days away, then the last Friday
    of each of the following ``monthly`` months (ms since the epoch, ascending)."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    day = (now + timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    while day.weekday() != 4 or day < now + timedelta(days=2):
        day += timedelta(days=1)
    result = [day + timedelta(weeks=k) for k in range(weekly)]
    month_start = (result[-1] if result else now).replace(day=1)
    for _ in range(monthly):
        month_start = (month_start + timedelta(days=32)).replace(day=1)
        last = (month_start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        while last.weekday() != 4:
            last -= timedelta(days=1)
        result.append(last.replace(hour=8, minute=0, second=0, microsecond=0))
    return sorted({int(d.timestamp() * 1000) for d in result})


def default_specs(now_ms: int, spot: dict[str, Decimal] | None = None) -> list[InstrumentSpec]:
    """BTC and ETH perpetuals, and BTC calls and puts at 7 strikes around spot for each
    expiry of ``expiries(now_ms)``."""
    prices = spot or START_PRICES
    specs = [perpetual("BTC", now_ms), perpetual("ETH", now_ms)]
    btc = prices["BTC"]
    strikes = sorted(
        {
            (btc * Decimal(k) / 1000).quantize(Decimal(1)) * 1000
            for k in ("0.8", "0.9", "0.95", "1", "1.05", "1.1", "1.2")
        }
    )
    for expiry in expiries(now_ms):
        for strike in strikes:
            for kind in ("call", "put"):
                specs.append(option("BTC", expiry, strike, kind, now_ms))
    return specs


def list_all(exchange: Exchange, specs: list[InstrumentSpec]) -> Catalog:
    return Catalog([list_instrument(exchange, spec) for spec in specs])


def catalog_from_state(exchange: Exchange) -> Catalog:
    """Rebuild the catalogue of a recovered venue from its engine state, assuming the units
    of this module (for a venue whose ``instruments.json`` was lost)."""
    from derivex.core import query
    from derivex.core.records import InstrumentKind, OptionType, Underlying

    state = exchange.engine.state
    ids = list(range(query.instrument_count(state)))
    columns = {name: v.tolist() for name, v in query.instrument_columns(state, ids).items()}
    specs = []
    for instrument in ids:
        base = Underlying(columns["underlying"][instrument]).name
        if columns["kind"][instrument] == InstrumentKind.PERPETUAL:
            spec = perpetual(base)
        else:
            kind = "call" if columns["option_type"][instrument] == OptionType.CALL else "put"
            spec = option(
                base,
                columns["expiry_ts_ns"][instrument] // 1_000_000,
                columns["strike_ticks"][instrument] * PRICE_UNIT,
                kind,
            )
        specs.append(
            replace(
                spec,
                instrument=instrument,
                tick_size_ticks=columns["tick_size_ticks"][instrument],
                min_trade_lots=columns["min_trade_lots"][instrument],
                maker_fee_ppm=columns["maker_fee_ppm"][instrument],
                taker_fee_ppm=columns["taker_fee_ppm"][instrument],
            )
        )
    return Catalog(specs)
