"""Deribit's JSON objects built from the venue: instrument books, tickers, orders, trades,
positions and account summaries (the fields ccxt reads, and Deribit's usual others).

Engine integers become decimals here and nowhere else: prices through the instrument's
``price_unit``, amounts through its ``lot_size``, money through 1e-6 USDC.
"""

from __future__ import annotations

import time
from typing import Any

from derivex.core import query
from derivex.core.records import Side
from derivex.gateway import linked_records, trigger_orders
from derivex.gateway.catalog import COLLATERAL, UNITS_PER_USDC, Catalog, InstrumentSpec
from derivex.gateway.venue import OrderRecord, Trade, Venue, side_name

DAY_MS = 86_400_000


def _price_or_none(spec: InstrumentSpec, ticks: int) -> float | None:
    return spec.price(ticks) if ticks else None


def levels(
    venue: Venue, spec: InstrumentSpec, depth: int
) -> tuple[list[list[float]], list[list[float]]]:
    """``[[price, amount], ...]`` per side, best first."""
    book = venue.exchange.depth(spec.instrument, depth)
    bids = [[spec.price(p), spec.amount(q)] for p, q, _ in book.bids]
    asks = [[spec.price(p), spec.amount(q)] for p, q, _ in book.asks]
    return bids, asks


def mark_ticks(venue: Venue, spec: InstrumentSpec) -> int:
    """The engine's mark when it has one; otherwise the mid, the last trade, or 0."""
    mark = venue.mark_ticks(spec.instrument)
    if mark:
        return mark
    book = venue.exchange.depth(spec.instrument, 1)
    if book.bids and book.asks:
        tick = spec.tick_size_ticks
        return (book.bids[0][0] + book.asks[0][0]) // (2 * tick) * tick
    return venue.last_price_ticks(spec.instrument)


def stats(venue: Venue, spec: InstrumentSpec, now_ms: int) -> dict[str, Any]:
    high = low = None
    volume = 0
    notional = 0.0
    first = last = 0
    for trade in reversed(venue.public_trades.get(spec.instrument, ())):
        if trade.timestamp_ms < now_ms - DAY_MS:
            break
        high = trade.price_ticks if high is None else max(high, trade.price_ticks)
        low = trade.price_ticks if low is None else min(low, trade.price_ticks)
        volume += trade.qty_lots
        notional += spec.price(trade.price_ticks) * spec.amount(trade.qty_lots)
        first = trade.price_ticks
        last = last or trade.price_ticks
    change = round((last - first) / first * 100, 4) if first else 0.0
    return {
        "high": _price_or_none(spec, high or 0),
        "low": _price_or_none(spec, low or 0),
        "volume": spec.amount(volume),
        "volume_usd": notional,
        "volume_notional": notional,
        "price_change": change,
    }


def open_interest_lots(venue: Venue, instrument: int) -> int:
    return query.open_interest_lots(venue.exchange.engine.state, instrument)


def ticker(venue: Venue, spec: InstrumentSpec) -> dict[str, Any]:
    now = venue.now_ms() or time.time_ns() // 1_000_000
    book = venue.exchange.depth(spec.instrument, 1)
    mark = mark_ticks(venue, spec)
    index = venue.index_ticks(spec.base)
    band = venue.exchange.price_band(spec.instrument)  # the engine's own band, same ticks
    data: dict[str, Any] = {
        "instrument_name": spec.name,
        "timestamp": now,
        "state": "open",
        "last_price": _price_or_none(spec, venue.last_price_ticks(spec.instrument)),
        "best_bid_price": spec.price(book.bids[0][0]) if book.bids else 0.0,
        "best_bid_amount": spec.amount(book.bids[0][1]) if book.bids else 0.0,
        "best_ask_price": spec.price(book.asks[0][0]) if book.asks else 0.0,
        "best_ask_amount": spec.amount(book.asks[0][1]) if book.asks else 0.0,
        "mark_price": spec.price(mark),
        "index_price": spec.price(index),
        "estimated_delivery_price": spec.price(index),
        "settlement_price": spec.price(mark),
        "open_interest": spec.amount(open_interest_lots(venue, spec.instrument)),
        "min_price": spec.price(band[0]) if band else 0.0,
        "max_price": spec.price(band[1]) if band else 0.0,
        "stats": stats(venue, spec, now),
    }
    if spec.kind == "perpetual":
        rate = funding_rate(venue, spec)
        data.update(funding_8h=rate, current_funding=rate, interest_value=0.0)
    else:
        data.update(
            underlying_price=spec.price(index),
            underlying_index=f"{spec.base}-USDC",
            interest_rate=0.0,
            mark_iv=venue.mark_iv(spec.instrument),
            bid_iv=0.0,
            ask_iv=0.0,
            greeks=venue.greeks(spec.instrument),
        )
    return data


def funding_rate(venue: Venue, spec: InstrumentSpec) -> float:
    """``Exchange.funding_rate`` once funding exists (issue 4); 0.0 until then."""
    rate = getattr(venue.exchange, "funding_rate", None)
    return float(rate(spec.instrument)) if rate is not None else 0.0


def order_book(venue: Venue, spec: InstrumentSpec, depth: int) -> dict[str, Any]:
    data = ticker(venue, spec)
    bids, asks = levels(venue, spec, depth)
    data.update(bids=bids, asks=asks, change_id=venue.change_ids.get(spec.instrument, 0))
    return data


def order(record: OrderRecord, catalog: Catalog) -> dict[str, Any]:
    """Deribit's order object. The fields fixed by the order's kind (instrument, direction,
    type, time in force, flags) come from a template per kind, copied, and the rest are
    set on the copy (same keys, same order; a fraction of building all 26). The record
    keeps its template once it is shared (``OrderRecord.template``). Prices and amounts
    are ``spec.price`` / ``spec.amount`` inlined (integer ratios, the same floats)."""
    spec = catalog.by_id[record.instrument]
    template = record.template
    if template is None:
        template = _order_template(record, spec, catalog)
    data = template.copy()
    price_num, price_den = spec._price_ratio  # type: ignore[attr-defined]
    lot_num, lot_den = spec._lot_ratio  # type: ignore[attr-defined]
    filled = record.filled_lots
    amount = record.amount_lots * lot_num / lot_den
    data["order_id"] = str(record.order_id)
    data["order_state"] = record.state
    data["amount"] = amount
    data["filled_amount"] = filled * lot_num / lot_den
    if record.order_type != "market":
        data["price"] = record.price_ticks * price_num / price_den
    if filled:
        data["average_price"] = price_num / price_den * (record.traded_value / filled)
    data["creation_timestamp"] = record.created_ms
    data["last_update_timestamp"] = record.updated_ms
    data["commission"] = record.fee_units / UNITS_PER_USDC
    data["max_show"] = amount
    data["replaced"] = record.replaced
    if record.cancel_reason:
        data["cancel_reason"] = record.cancel_reason
    if record.trigger:
        trigger_orders.add_fields(record, data, spec)
    if record.link is not None:
        linked_records.add_fields(record, data)
    return data


def _order_template(record: OrderRecord, spec: InstrumentSpec, catalog: Catalog) -> dict[str, Any]:
    """The order object's fields fixed by ``record``'s kind, the others as placeholders
    (in Deribit's key order); shared through ``catalog.order_templates`` (and then
    ``record.template``) while there are fewer than ``ORDER_TEMPLATES`` kinds."""
    key = (
        record.instrument,
        record.side,
        record.order_type,
        record.time_in_force,
        record.post_only,
        record.reject_post_only,
        record.reduce_only,
        record.quote,
        record.label,
        record.mmp,
    )
    template = catalog.order_templates.get(key)
    if template is None:
        template = {
            "order_id": "",
            "instrument_name": spec.name,
            "direction": side_name(record.side),
            "order_type": record.order_type,
            "order_state": "",
            "amount": 0.0,
            "filled_amount": 0.0,
            "price": "market_price",
            "average_price": 0.0,
            "creation_timestamp": 0,
            "last_update_timestamp": 0,
            "time_in_force": record.time_in_force,
            "post_only": record.post_only,
            "reject_post_only": record.reject_post_only,
            "reduce_only": record.reduce_only,
            "label": record.label,
            "commission": 0.0,
            "max_show": 0.0,
            "api": True,
            "web": False,
            "is_liquidation": False,
            "replaced": False,
            "quote": record.quote,
            "mmp": record.mmp,
            "risk_reducing": False,
        }
        if len(catalog.order_templates) >= ORDER_TEMPLATES:
            return template  # not shared: the record does not keep it either
        catalog.order_templates[key] = template
    record.template = template
    return template


ORDER_TEMPLATES = 4096  # order kinds kept per catalog (labels make kinds unbounded)


def public_trade(trade: Trade, spec: InstrumentSpec) -> dict[str, Any]:
    return {
        "trade_id": trade.trade_id,
        "trade_seq": trade.trade_seq,
        "instrument_name": spec.name,
        "timestamp": trade.timestamp_ms,
        "price": spec.price(trade.price_ticks),
        "amount": spec.amount(trade.qty_lots),
        "direction": side_name(trade.direction),
        "tick_direction": trade.tick_direction,
        "mark_price": spec.price(trade.mark_ticks),
        "index_price": spec.price(trade.index_ticks),
    }


def user_trade(trade: Trade, account: int, venue: Venue) -> dict[str, Any]:
    """A trade as one of its two sides sees it: ``public_trade``'s fields (``direction``
    the account's own side) and then the order's, in one literal."""
    spec = venue.catalog.by_id[trade.instrument]
    taker = trade.taker_account == account
    order_id = trade.taker_order if taker else trade.maker_order
    record = venue.orders.get(order_id) or venue.closed.get(order_id)
    side = trade.direction if taker else 1 - trade.direction
    return {
        "trade_id": trade.trade_id,
        "trade_seq": trade.trade_seq,
        "instrument_name": spec.name,
        "timestamp": trade.timestamp_ms,
        "price": spec.price(trade.price_ticks),
        "amount": spec.amount(trade.qty_lots),
        "direction": "buy" if side == _BUY else "sell",
        "tick_direction": trade.tick_direction,
        "mark_price": spec.price(trade.mark_ticks),
        "index_price": spec.price(trade.index_ticks),
        "order_id": str(order_id),
        "order_type": record.order_type if record is not None else "limit",
        "liquidity": "T" if taker else "M",
        "fee": (trade.taker_fee_units if taker else trade.maker_fee_units) / UNITS_PER_USDC,
        "fee_currency": COLLATERAL,
        "state": record.state if record is not None else "filled",
        "self_trade": False,
        "reduce_only": record.reduce_only if record is not None else False,
        "post_only": record.post_only if record is not None else False,
        "label": record.label if record is not None else "",
        "matching_id": None,
        "api": True,
    }


_BUY = int(Side.BUY)


def position(venue: Venue, spec: InstrumentSpec, qty_lots: int, basis_units: int) -> dict[str, Any]:
    mark = mark_ticks(venue, spec)
    value = mark * qty_lots * spec.contract_value_units
    floating = (value - basis_units) / UNITS_PER_USDC if qty_lots else 0.0
    average = (basis_units / (qty_lots * spec.contract_value_units)) if qty_lots else 0.0
    size = spec.amount(qty_lots)
    greeks = venue.greeks(spec.instrument) if spec.kind == "option" else {"delta": 1.0}
    return {
        "instrument_name": spec.name,
        "kind": "future" if spec.kind == "perpetual" else "option",
        "direction": "buy" if qty_lots > 0 else "sell" if qty_lots < 0 else "zero",
        "size": size,
        "size_currency": size,
        "average_price": float(average * float(spec.price_unit)),
        "mark_price": spec.price(mark),
        "index_price": spec.price(venue.index_ticks(spec.base)),
        "settlement_price": spec.price(mark),
        "floating_profit_loss": floating,
        "realized_profit_loss": 0.0,
        "total_profit_loss": floating,
        "initial_margin": 0.0,
        "maintenance_margin": 0.0,
        "open_orders_margin": 0.0,
        "estimated_liquidation_price": None,
        "leverage": 0,
        "delta": round(size * greeks.get("delta", 0.0), 8),
    }


def positions(
    venue: Venue, account: int, currency: str | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    wanted = {spec.instrument for spec in venue.catalog.matching(currency, kind)}
    result = []
    for pos in venue.exchange.positions(account):
        spec = venue.catalog.by_id.get(pos.instrument)
        if spec is not None and pos.instrument in wanted:
            result.append(position(venue, spec, pos.qty_lots, pos.basis_units))
    return result


def account_summary(venue: Venue, account: int) -> dict[str, Any]:
    """The USDC summary; the engine's margin figures once it has them
    (``Exchange.account_summary``), else balance and mark-to-market equity."""
    balance = venue.exchange.balance(account)
    floating = 0
    option_value = 0
    for pos in venue.exchange.positions(account):
        spec = venue.catalog.by_id.get(pos.instrument)
        if spec is None:
            continue
        value = mark_ticks(venue, spec) * pos.qty_lots * spec.contract_value_units
        if spec.kind == "option":
            option_value += value
        else:
            floating += value - pos.basis_units
    equity = balance + floating + option_value
    initial = maintenance = 0
    available = equity
    greeks = {"delta": 0.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0}
    mode = "standard"
    summary_of = getattr(venue.exchange, "account_summary", None)
    if summary_of is not None:
        summary = summary_of(account)
        equity = summary.equity_units
        initial = summary.initial_margin_units
        maintenance = summary.maintenance_margin_units
        available = summary.available_funds_units
        mode = summary.margin_mode
        greeks = {name: float(getattr(summary, name)) for name in greeks}
    usd = UNITS_PER_USDC
    return {
        "id": account,
        "currency": COLLATERAL,
        "balance": balance / usd,
        "equity": equity / usd,
        "margin_balance": equity / usd,
        "available_funds": available / usd,
        "available_withdrawal_funds": max(0, min(available, balance)) / usd,
        "initial_margin": initial / usd,
        "maintenance_margin": maintenance / usd,
        "projected_initial_margin": initial / usd,
        "projected_maintenance_margin": maintenance / usd,
        "total_pl": floating / usd,
        "session_upl": floating / usd,
        "session_rpl": 0.0,
        "futures_pl": floating / usd,
        "options_value": option_value / usd,
        "options_pl": 0.0,
        "delta_total": greeks["delta"],
        "options_delta": greeks["delta"],
        "options_gamma": greeks["gamma"],
        "options_vega": greeks["vega"],
        "options_theta": greeks["theta"],
        "portfolio_margining_enabled": mode == "portfolio",
        "margin_model": "cross_pm" if mode == "portfolio" else "segregated_sm",
        "fee_balance": 0.0,
        "estimated_liquidation_ratio": 0.0,
    }
