"""Small helpers to build command records and read events (shared by the core tests)."""

from __future__ import annotations

import contextlib

import numpy as np

from derivex.core.records import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    EventKind,
    InstrumentKind,
    OptionType,
    Reason,
    Underlying,
)

K = CommandKind


def cmd(kind: int, **fields: int) -> np.void:
    """One command record; fields by (alias) name, everything else zero."""
    rec = np.zeros(1, dtype=COMMAND_DTYPE)
    rec["kind"] = int(kind)
    for name, value in fields.items():
        rec[name] = value
    return rec[0]


def place(
    account: int,
    instrument: int,
    side: int,
    price: int,
    qty: int,
    *,
    order_type: int = 0,
    tif: int = 0,
    flags: int = 0,
    label: int = 0,
) -> np.void:
    return cmd(
        K.PLACE_ORDER,
        account=account,
        instrument=instrument,
        side=side,
        price_ticks=price,
        qty_lots=qty,
        order_type=order_type,
        tif=tif,
        flags=flags,
        label=label,
    )


def perpetual(
    tick: int = 1,
    min_trade: int = 1,
    cv: int = 1,
    maker: int = 0,
    taker: int = 0,
    underlying: int = Underlying.BTC,
) -> np.void:
    return cmd(
        K.ADD_INSTRUMENT,
        instrument_kind=InstrumentKind.PERPETUAL,
        option_type=OptionType.NONE,
        underlying=underlying,
        tick_size_ticks=tick,
        min_trade_lots=min_trade,
        contract_value_units=cv,
        maker_fee_ppm=maker,
        taker_fee_ppm=taker,
    )


def option(
    strike: int = 100,
    expiry: int = 10**18,
    option_type: int = OptionType.CALL,
    tick: int = 1,
    min_trade: int = 1,
    cv: int = 1,
    maker: int = 0,
    taker: int = 0,
    underlying: int = Underlying.BTC,
) -> np.void:
    return cmd(
        K.ADD_INSTRUMENT,
        instrument_kind=InstrumentKind.OPTION,
        option_type=option_type,
        underlying=underlying,
        tick_size_ticks=tick,
        min_trade_lots=min_trade,
        contract_value_units=cv,
        maker_fee_ppm=maker,
        taker_fee_ppm=taker,
        strike_ticks=strike,
        expiry_ts_ns=expiry,
    )


def quote_leg(instrument: int, bid: int, bid_qty: int, ask: int, ask_qty: int) -> np.void:
    return cmd(
        K.QUOTE_LEG,
        instrument=instrument,
        bid_price_ticks=bid,
        bid_qty_lots=bid_qty,
        ask_price_ticks=ask,
        ask_qty_lots=ask_qty,
    )


class Stream:
    """Assigns seq (1, 2, ...) and ts_ns to commands and feeds an engine batch by batch."""

    def __init__(self, engine, ts_ns: int = 0):
        self.engine = engine
        self.seq = 0
        self.ts = ts_ns

    def batch(self, *records: np.void, ts_ns: int | None = None) -> np.ndarray:
        if ts_ns is not None:
            self.ts = ts_ns
        arr = np.zeros(len(records), dtype=COMMAND_DTYPE)
        for i, rec in enumerate(records):
            arr[i] = rec
            self.seq += 1
            arr[i]["seq"] = self.seq
            arr[i]["ts_ns"] = self.ts
        return arr

    def run(self, *records: np.void, ts_ns: int | None = None) -> list[dict]:
        events = self.engine.process(self.batch(*records, ts_ns=ts_ns))
        return decode(events)


EVENT_FIELDS = {
    EventKind.ACCEPTED: (
        "leg",
        "account",
        "instrument",
        "side",
        "order_id",
        "price_ticks",
        "qty_lots",
        "label",
        "status",
    ),
    EventKind.REJECTED: (
        "reason",
        "leg",
        "account",
        "instrument",
        "side",
        "order_id",
        "price_ticks",
        "qty_lots",
        "label",
    ),
    EventKind.FILLED: (
        "account",
        "instrument",
        "side",
        "liquidity",
        "order_id",
        "price_ticks",
        "qty_lots",
        "fee_units",
        "remaining_lots",
    ),
    EventKind.CANCELLED: (
        "reason",
        "leg",
        "account",
        "instrument",
        "side",
        "order_id",
        "price_ticks",
        "qty_lots",
        "label",
    ),
    EventKind.EXPIRED: (
        "reason",
        "account",
        "instrument",
        "side",
        "order_id",
        "price_ticks",
        "qty_lots",
        "label",
    ),
    EventKind.AMENDED: (
        "account",
        "instrument",
        "side",
        "order_id",
        "price_ticks",
        "qty_lots",
        "label",
        "a",
    ),
    EventKind.POSITION: (
        "account",
        "instrument",
        "side",
        "liquidity",
        "order_id",
        "basis_units",
        "position_lots",
        "cash_units",
        "balance_units",
    ),
    EventKind.BALANCE: ("account", "cash_units", "balance_units"),
    EventKind.ACCOUNT_CREATED: ("account", "status"),
    EventKind.INSTRUMENT_STATUS: ("instrument", "status"),
}


def decode_one(ev: np.void) -> dict:
    """An event as a dict: kind/reason names plus the fields its kind uses."""
    kind = int(ev["kind"])
    out: dict = {"seq": int(ev["seq"]), "command": int(ev["command"])}
    try:
        out["kind"] = EventKind(kind).name
        names = EVENT_FIELDS[EventKind(kind)]
    except (ValueError, KeyError):  # (an event kind without a field list: all fields)
        out["kind"] = kind
        names = tuple(n for n in EVENT_DTYPE.names if n not in ("seq", "kind", "command"))
    for name in names:
        value = int(ev[name])
        if name == "reason":
            with contextlib.suppress(ValueError):
                value = Reason(value).name
        out[name] = value
    return out


def decode(events: np.ndarray) -> list[dict]:
    return [decode_one(ev) for ev in events]


def raw_fields(ev: np.void) -> dict:
    """Every distinct (non-alias) field of an event, for byte-level diffs."""
    names = (
        "seq",
        "kind",
        "command",
        "side",
        "liquidity",
        "reason",
        "leg",
        "account",
        "instrument",
        "order_id",
        "price_ticks",
        "qty_lots",
        "a",
        "b",
    )
    return {n: int(ev[n]) for n in names}


def describe_command(rec: np.void) -> dict:
    out = {}
    for name in COMMAND_DTYPE.names:
        value = int(rec[name])
        if value:
            out[name] = value
    with contextlib.suppress(ValueError):
        out["kind"] = CommandKind(int(rec["kind"])).name
    return out


__all__ = [
    "EVENT_DTYPE",
    "Stream",
    "cmd",
    "decode",
    "decode_one",
    "describe_command",
    "option",
    "perpetual",
    "place",
    "quote_leg",
    "raw_fields",
]
