"""``public/get_tradingview_chart_data``: OHLCV candles derived from the public trades the
venue keeps (``Venue.public_trades``: the latest ``history`` trades per instrument, 10,000 by
default), so candles reach back only as far as those trades; no other memory is kept.

The reply has Deribit's shape: ``ticks`` (each candle's start, ms), ``open``/``high``/
``low``/``close`` (prices), ``volume`` (amount traded) and ``cost`` (the quote value traded),
``status`` ``"ok"``, or ``"no_data"`` with empty lists when no kept trade falls in the range.
Candles with no trade are left out (TradingView draws gaps).

>>> bucket_start(125_000, 60_000)
120000
"""

from __future__ import annotations

from typing import Any

from derivex.gateway import params as p
from derivex.gateway.methods import Context, method

#: Deribit's resolutions, in minutes ("1D": a day)
RESOLUTIONS_MS = {
    **{str(m): m * 60_000 for m in (1, 3, 5, 10, 15, 30, 60, 120, 180, 360, 720)},
    "1D": 86_400_000,
}
MAX_CANDLES = 5_000


def bucket_start(timestamp_ms: int, width_ms: int) -> int:
    """The start of the candle (of ``width_ms``, aligned to the epoch) holding the time."""
    return timestamp_ms - timestamp_ms % width_ms


def candles(trades: list[tuple[int, float, float]], width_ms: int) -> dict[str, Any]:
    """OHLCV of ``(timestamp_ms, price, amount)`` trades in time order, one candle per
    ``width_ms`` bucket that holds a trade. Cost: O(trades)."""
    out: dict[str, Any] = {k: [] for k in ("ticks", "open", "high", "low", "close", "volume")}
    out["cost"] = []
    current = None
    for timestamp, price, amount in trades:
        start = bucket_start(timestamp, width_ms)
        if start != current:
            current = start
            out["ticks"].append(start)
            out["open"].append(price)
            out["high"].append(price)
            out["low"].append(price)
            out["close"].append(price)
            out["volume"].append(0.0)
            out["cost"].append(0.0)
        out["high"][-1] = max(out["high"][-1], price)
        out["low"][-1] = min(out["low"][-1], price)
        out["close"][-1] = price
        out["volume"][-1] += amount
        out["cost"][-1] += price * amount
    return out


@method(
    "public/get_tradingview_chart_data",
    ("instrument_name", "start_timestamp", "end_timestamp", "resolution"),
    cost=2,
)
def get_tradingview_chart_data(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Candles of ``resolution`` from ``start_timestamp`` to ``end_timestamp`` (ms,
    inclusive; both required as on Deribit), at most ``MAX_CANDLES`` (the latest)."""
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    start = p.integer(params, "start_timestamp")
    end = p.integer(params, "end_timestamp")
    resolution = str(params.get("resolution", ""))
    width = RESOLUTIONS_MS.get(resolution)
    if width is None:
        raise p.invalid_params("resolution", f"one of {', '.join(RESOLUTIONS_MS)}")
    if end < start:
        raise p.invalid_params("end_timestamp", "before start_timestamp")
    kept = ctx.venue.public_trades.get(spec.instrument, ())
    first = bucket_start(start, width)
    trades = [
        (t.timestamp_ms, spec.price(t.price_ticks), spec.amount(t.qty_lots))
        for t in kept
        if first <= t.timestamp_ms <= end
    ]
    out = candles(trades, width)
    if len(out["ticks"]) > MAX_CANDLES:
        out = {key: values[-MAX_CANDLES:] for key, values in out.items()}
    out["status"] = "ok" if out["ticks"] else "no_data"
    return out
