"""Constants, exceptions and the plain data types of the reference model (accounts,
instruments, orders, positions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from derivex.core.records import (
    InstrumentStatus,
    OrderFlag,
    Reason,
    Side,
)

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
NS_PER_MS = 1_000_000
PPM = 1_000_000

BUY = int(Side.BUY)
SELL = int(Side.SELL)
PO = int(OrderFlag.POST_ONLY)
RPO = int(OrderFlag.REJECT_POST_ONLY)
RO = int(OrderFlag.REDUCE_ONLY)
QUOTE = int(OrderFlag.QUOTE)
CID = int(OrderFlag.CLIENT_ORDER_ID)
MMP = int(OrderFlag.MMP)
ALL_FLAGS = PO | RPO | RO | QUOTE | CID | MMP


class UnspecifiedOverflow(Exception):
    """A value the spec does not bound left int64: behaviour is undefined (see A19)."""


class Reject(Exception):
    def __init__(self, reason: Reason, leg: int = 0):
        super().__init__(reason.name)
        self.reason = reason
        self.leg = leg


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


@dataclass
class Account:
    balance: int = 0
    stp: int = 0
    margin_mode: int = 0
    state: int = 0  # AccountState
    blocked: bool = False  # BLOCK_ACCOUNT (the kill switch) until UNBLOCK_ACCOUNT
    parent: int = 0  # CREATE_SUBACCOUNT: the main account (0: not a subaccount)
    gas: int = 0
    gas_ts_ns: int = 0
    orders: list[int] = field(default_factory=list)  # live resting order ids, list order


@dataclass
class Instrument:
    kind: int
    option_type: int
    underlying: int
    strike_ticks: int
    expiry_ts_ns: int
    tick: int
    min_trade: int
    cv: int
    maker_fee: int
    taker_fee: int
    max_price: int
    status: int = int(InstrumentStatus.ACTIVE)
    # risk (docs/risk.md): applied and staged mark / index / scenario P&Ls
    mark: int = 0
    mark_next: int = 0
    index: int = 0
    index_next: int = 0
    basis_ema: int = 0
    mark_iv: int = 0
    greeks: list[int] = field(default_factory=lambda: [0] * 5)
    dirty: bool = False
    funding_ts: int = 0
    funding_rate: int = 0
    premium_acc: int = 0
    premium_ms: int = 0
    settlement: int = 0
    funding_cap: int = 0
    price_band: int = 0  # ppm; 0 = the config's market_band_ppm
    arr: list[int] = field(default_factory=list)
    arr_next: list[int] = field(default_factory=list)
    bids: dict[int, list[Order]] = field(default_factory=dict)  # price -> FIFO
    asks: dict[int, list[Order]] = field(default_factory=dict)

    def side_book(self, side: int) -> dict[int, list[Order]]:
        return self.bids if side == BUY else self.asks

    def levels_in_priority(self, side: int) -> list[int]:
        """Prices of one side, best first."""
        return sorted(self.side_book(side), reverse=(side == BUY))

    def best(self, side: int) -> int | None:
        prices = self.levels_in_priority(side)
        return prices[0] if prices else None

    def resting_count(self) -> int:
        return sum(len(q) for book in (self.bids, self.asks) for q in book.values())


@dataclass
class Order:
    id: int
    account: int
    instrument: int
    side: int
    price: int
    qty: int  # remaining
    flags: int
    label: int


@dataclass
class Position:
    qty: int = 0
    basis: int = 0
    open_buy: int = 0
    open_sell: int = 0
    resting: int = 0


def crosses(side: int, level_price: int, limit: int | None) -> bool:
    if limit is None:  # market order
        return True
    return level_price <= limit if side == BUY else level_price >= limit
