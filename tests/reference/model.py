"""Reference model of the exchange core: slow, plain Python, written to be obviously right.

It implements docs/core-semantics.md with Python ints (unbounded), dicts and lists. The
numba kernel (``derivex.core.engine.Engine``) must produce byte-identical events and the
same ``canonical()`` state; tests/core/test_differential.py compares the two.

Where the spec is silent or ambiguous the reading chosen here is listed in
``AMBIGUITIES`` (numbered; the code refers to them as ``[A<n>]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from derivex.core.config import MAX_FEE_PPM, EngineConfig
from derivex.core.records import (
    EVENT_DTYPE,
    AccountState,
    CommandKind,
    EventKind,
    IndexStatus,
    InstrumentKind,
    InstrumentSetting,
    InstrumentStatus,
    LiquidationStage,
    Liquidity,
    MarginMode,
    OptionType,
    OrderFlag,
    OrderType,
    Reason,
    SelfTradePrevention,
    Side,
    SystemAccount,
    TimeInForce,
)

AMBIGUITIES = [
    (
        "A1 gas clock: CREATE_ACCOUNT sets gas_ts_ns to the engine clock after this command's "
        "ts_ns is applied (max(clock, ts_ns)); refill follows the exact rule of the spec's Gas "
        "section and happens only for gas-charged commands (after the account checks)."
    ),
    (
        "A2 SET_ACCOUNT on a system account (0, 1, 2) is rejected with SYSTEM_ACCOUNT (system "
        "accounts never trade, so STP is meaningless). Checks: UNKNOWN_ACCOUNT, SYSTEM_ACCOUNT, "
        "BAD_STP_MODE."
    ),
    (
        "A3 CREATE_ACCOUNT checks BAD_STP_MODE before ACCOUNT_POOL_FULL; ADD_INSTRUMENT checks "
        "BAD_INSTRUMENT_PARAMS before INSTRUMENT_POOL_FULL. max_accounts counts the 3 system "
        "accounts."
    ),
    (
        "A4 ADD_INSTRUMENT: both maker and taker fee may be negative (only the [-1e5, 1e5] bound "
        "is checked); underlying must be a known Underlying (1..3); an instrument whose derived "
        "max_price_ticks is 0 is still accepted (every order on it is PRICE_TOO_LARGE). "
        "ADD/HALT/RESUME/CLOSE emit ACCEPTED then INSTRUMENT_STATUS(new status)."
    ),
    (
        "A5 CLOSE_INSTRUMENT of an already closed instrument: INSTRUMENT_NOT_ACTIVE (by "
        "analogy with HALT; the kernel's choice)."
    ),
    (
        "A6 Every accepted order (IOC/FOK/market too) takes an order slot (id) from the LIFO "
        "free stack, else the next never-used slot. A slot is pushed back on the free stack "
        "at the moment its order dies: a maker when its last lot fills or it is cancelled, "
        "the taker after matching ends (fully filled or expired). Rejected orders take no id."
    ),
    (
        "A7 Step 11 for PLACE_ORDER: GTC limit only: ACCOUNT_ORDER_LIMIT, BOOK_ORDER_LIMIT; "
        "every order (an IOC needs an order slot too): ORDER_POOL_FULL; GTC limit only: "
        "BOOK_LEVEL_LIMIT, LEVEL_POOL_FULL (only if no level at its price); every order: "
        "POSITION_POOL_FULL. (The kernel's reading; the spec's capacity section lists "
        "ORDER_POOL_FULL under GTC.)"
    ),
    (
        "A8 Gas in matching: every resting order reached costs gas_per_fill, including own "
        "orders cancelled by STP and reduce-only orders cancelled for zero capacity."
    ),
    (
        "A9 The liquidity scan walks until the quantity is exhausted or nothing more crosses, "
        "ignoring gas while walking; then: an own order reached (reject mode) -> "
        "SELF_TRADE_REJECTED (even beyond the point where matching would run out of gas); "
        "FOK: total gas matching would charge > budget -> GAS_EXHAUSTED; FOK not complete -> "
        "FOK_NOT_FILLED (the order the spec lists them in)."
    ),
    (
        "A10 Expiry reasons: remainder after a gas stop: EXPIRED(CANCEL_GAS) (GTC too); a market "
        "order that filled nothing (and did not stop for gas): EXPIRED(NO_LIQUIDITY), even if it "
        "reached own orders (STP-cancelled) or zero-capacity reduce-only orders; otherwise a "
        "non-resting remainder is EXPIRED(CANCEL_IOC_REMAINDER)."
    ),
    (
        "A11 'rest cancelled right after the fill' of a resting reduce-only order: the "
        "CANCELLED(CANCEL_REDUCE_ONLY) comes after the four fill events (FILLED, FILLED, "
        "POSITION, POSITION)."
    ),
    (
        "A12 FILLED.fee_units is the fee paid by the account (positive charge, negative rebate); "
        "balance -= fee, fee pool += fee."
    ),
    (
        "A13 Post-only 'would trade' compares with the opposite best price regardless of whose "
        "orders are there (own orders count)."
    ),
    (
        "A14 Amend keeps priority iff final price (after post-only repricing) == old price "
        "and final qty (after reduce-only clamp) <= old remaining (so an amend to the same "
        "price and quantity keeps priority, a=1). Level capacity (BOOK_LEVEL_LIMIT, "
        "LEVEL_POOL_FULL) is checked only when the price changes, with the current counts "
        "(the order's own old level still counts even if it is alone there). The STP scan "
        "runs only when priority is lost. Amend validation order: account, gas, "
        "UNKNOWN_ORDER, NOT_ORDER_OWNER, then steps 5-12 (no order/account/book capacity)."
    ),
    (
        "A15 Mass quote legs are numbered from 1 in events (leg 0 = header), as '0 for header "
        "problems' implies. A header is well formed when 1 <= count <= max_quote_legs and the "
        "next count records of the batch are all QUOTE_LEG: it then consumes them (they "
        "produce no events of their own and their ts_ns does not move the clock). Otherwise "
        "the header alone is BAD_MASS_QUOTE (leg 0, after the account and gas checks) and the "
        "records after it are processed normally (stray legs: ORPHAN_QUOTE_LEG)."
    ),
    (
        "A16 Mass quote validation order: account checks, gas_base, header, then per leg in "
        "order: UNKNOWN_INSTRUMENT, INSTRUMENT_HALTED/CLOSED, DUPLICATE_QUOTE_INSTRUMENT, "
        "QTY_NOT_POSITIVE (a quantity < 0), bid side then ask side (if qty > 0): QTY_TOO_LARGE, "
        "QTY_OFF_STEP, PRICE_NOT_POSITIVE, PRICE_TOO_LARGE, PRICE_OFF_TICK; CROSSED_QUOTE "
        "(both sides > 0 and bid >= ask); POSITION_LIMIT (bid then ask, replaced quote of that "
        "side counted as gone). Then capacity: ACCOUNT_ORDER_LIMIT (leg 0), BOOK_ORDER_LIMIT "
        "(first failing leg), ORDER_POOL_FULL (leg 0), BOOK_LEVEL_LIMIT (first failing leg), "
        "LEVEL_POOL_FULL (leg 0), POSITION_POOL_FULL (leg 0; counts legs with a non-zero side "
        "and no live slot). Then the extra gas (leg 0)."
    ),
    (
        "A17 Mass quote execution per leg: cancel old quote bid, then old quote ask "
        "(CANCELLED reason CANCEL_QUOTE_REPLACED, leg = new leg, label = old order's label), "
        "then place bid, then ask. Quote orders store flags QUOTE|POST_ONLY and the header's "
        "label. 'Previous quote' = any live order of the account on that instrument with the "
        "QUOTE flag (amended quotes included)."
    ),
    (
        "A18 CANCEL_ALL / CANCEL_ALL_INSTRUMENT cancel with reason CANCEL_ALL; "
        "CANCEL_ALL_INSTRUMENT of an unknown instrument is UNKNOWN_INSTRUMENT (after gas); "
        "closed/halted instruments are fine (0 or more orders)."
    ),
    (
        "A19 Overflow: the spec bounds trade values but not balances, fee pool, clearing account "
        "or deposit/withdrawal totals; the model raises UnspecifiedOverflow if any of those "
        "leaves int64 (tests discard such streams)."
    ),
    (
        "A20 SET_INSTRUMENT flags: 0 means FUNDING_CAP (the only setting before the bits "
        "existed, so older logs replay unchanged); unknown bits, a cap on a non-perpetual or a "
        "band outside [0, 1e6] reject the whole command; ACCEPTED carries the cap and band as "
        "now set (price_ticks, qty_lots)."
    ),
    (
        "A21 [R5] price band: applied after the price format checks and before reduce-only "
        "capping; a repriced post-only order is checked again (refused, never clamped); an "
        "amend is banded only if it moves the price or adds lots (compared with the raw "
        "command quantity); a mass-quote side outside the band is REJECTED on its own at "
        "placement (after the replaced quotes are cancelled, before the post-only check)."
    ),
    (
        "A22 [L9] a takeover / deleveraging transfer releases at once every position slot it "
        "leaves flat with no resting orders, the receiver's (the fund's) included."
    ),
]

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
ALL_FLAGS = PO | RPO | RO | QUOTE


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


class ReferenceEngine:
    def __init__(self, config: EngineConfig):
        self.leg_base = 1  # mass-quote legs are numbered from 1; 0 names the header
        self.cfg = config
        self.clock = 0
        self.total_deposits = 0
        self.total_withdrawals = 0
        self.accounts: dict[int, Account] = {int(a): Account() for a in SystemAccount}
        self.instruments: list[Instrument] = []
        self.S = len(config.scenarios)
        # underlying -> [index, ts, status, sources, valid updates so far, [(ts, index)]]
        self.underlyings: dict[int, list] = {}
        self.bad_debt = 0
        self.positions: dict[tuple[int, int], Position] = {}
        self.orders: dict[int, Order] = {}
        self.slot_gen: list[int] = []  # generation of the last order in each slot
        self.free_slots: list[int] = []  # LIFO
        self._events: list[dict[str, int]] = []
        self._seq = 0
        self._kind = 0

    # ------------------------------------------------------------------ plumbing

    def process(self, commands: np.ndarray) -> np.ndarray:
        self._events = []
        i, n = 0, len(commands)
        while i < n:
            cmd = commands[i]
            self._seq = int(cmd["seq"])
            self._kind = int(cmd["kind"])
            self.clock = max(self.clock, int(cmd["ts_ns"]))
            consumed = 1
            if self._kind not in (CommandKind.INDEX, CommandKind.RISK_ARRAY):
                self._flush()  # [R1]
            try:
                if self._kind in (CommandKind.INDEX, CommandKind.RISK_ARRAY):
                    legs_ok = (
                        (CommandKind.INDEX_SOURCE,)
                        if self._kind == CommandKind.INDEX
                        else (CommandKind.RISK_GREEKS, CommandKind.RISK_VALUES)
                    )
                    limit = 32 if self._kind == CommandKind.INDEX else 1 + (64 + 4) // 5
                    run = 0
                    while i + 1 + run < n and int(commands[i + 1 + run]["kind"]) in legs_ok:
                        run += 1
                    count = int(cmd["count"])
                    complete = 1 <= count <= limit and count <= run
                    consumed = 1 + (count if complete else run)
                    legs = list(commands[i + 1 : i + consumed])
                    if self._kind == CommandKind.INDEX:
                        self._index(cmd, legs, complete)
                    else:
                        self._risk_array(cmd, legs, complete)
                elif self._kind == CommandKind.MASS_QUOTE:  # [A15]
                    count = int(cmd["count"])
                    legs = list(commands[i + 1 : i + 1 + count])
                    well_formed = (
                        1 <= count <= self.cfg.max_quote_legs
                        and len(legs) == count
                        and all(leg["kind"] == CommandKind.QUOTE_LEG for leg in legs)
                    )
                    if not well_formed:
                        legs = []  # the header alone; what follows is processed normally
                    consumed = 1 + len(legs)
                    self._mass_quote(cmd, legs)
                else:
                    self._dispatch(cmd)
            except Reject as rej:
                self._reject(cmd, rej.reason, rej.leg)
            self._release_flat_positions()
            self._check_bounds()
            i += consumed
        out = np.zeros(len(self._events), dtype=EVENT_DTYPE)
        for k, ev in enumerate(self._events):
            for name, value in ev.items():
                out[k][name] = value
        self._events = []
        return out

    def _dispatch(self, cmd) -> None:
        handlers = {
            CommandKind.NOOP: self._accept_only,
            CommandKind.TIME: self._time,
            CommandKind.CREATE_ACCOUNT: self._create_account,
            CommandKind.DEPOSIT: self._deposit,
            CommandKind.WITHDRAW: self._withdraw,
            CommandKind.SET_ACCOUNT: self._set_account,
            CommandKind.ADD_INSTRUMENT: self._add_instrument,
            CommandKind.HALT_INSTRUMENT: self._halt,
            CommandKind.RESUME_INSTRUMENT: self._resume,
            CommandKind.CLOSE_INSTRUMENT: self._close,
            CommandKind.SET_INSTRUMENT: self._set_instrument,
            CommandKind.PLACE_ORDER: self._place,
            CommandKind.CANCEL_ORDER: self._cancel,
            CommandKind.AMEND_ORDER: self._amend,
            CommandKind.CANCEL_ALL: self._cancel_all,
            CommandKind.CANCEL_ALL_INSTRUMENT: self._cancel_all,
        }
        if self._kind == CommandKind.QUOTE_LEG:
            raise Reject(Reason.ORPHAN_QUOTE_LEG)
        if self._kind in (
            CommandKind.INDEX_SOURCE,
            CommandKind.RISK_GREEKS,
            CommandKind.RISK_VALUES,
        ):
            raise Reject(Reason.ORPHAN_LEG)
        handler = handlers.get(self._kind)
        if handler is None:
            raise Reject(Reason.UNKNOWN_COMMAND)
        handler(cmd)

    def _emit(self, kind: EventKind, **fields: int) -> None:
        ev = {"seq": self._seq, "kind": int(kind), "command": self._kind}
        for name, value in fields.items():
            value = int(value)
            if not I64_MIN <= value <= (1 << 64) - 1:
                raise UnspecifiedOverflow(f"event field {name}={value}")
            ev[name] = value
        self._events.append(ev)

    def _reject(self, cmd, reason: Reason, leg: int = 0) -> None:
        # the command's fields echoed as sent (same types as the event fields: raw bytes)
        self._emit(
            EventKind.REJECTED,
            reason=int(reason),
            leg=leg,
            account=int(cmd["account"]),
            instrument=int(cmd["instrument"]),
            order_id=int(cmd["order_id"]),
            side=int(cmd["side"]),
            price_ticks=int(cmd["price_ticks"]),
            qty_lots=int(cmd["qty_lots"]),
            label=int(cmd["label"]),
        )

    def _accept_only(self, cmd) -> None:
        self._emit(EventKind.ACCEPTED)

    def _check_bounds(self) -> None:
        values = [
            self.total_deposits,
            self.total_withdrawals,
            *(a.balance for a in self.accounts.values()),
        ]
        if any(not I64_MIN <= v <= I64_MAX for v in values):
            raise UnspecifiedOverflow("balance or total outside int64")

    # ------------------------------------------------------------------ accounts

    def _account(self, cmd) -> tuple[int, Account]:
        acct_id = int(cmd["account"])
        if acct_id not in self.accounts:
            raise Reject(Reason.UNKNOWN_ACCOUNT)
        return acct_id, self.accounts[acct_id]

    def _user_account(self, cmd) -> tuple[int, Account]:
        acct_id, acct = self._account(cmd)
        if acct_id < len(SystemAccount):
            raise Reject(Reason.SYSTEM_ACCOUNT)
        if acct.state == AccountState.IN_LIQUIDATION:
            raise Reject(Reason.ACCOUNT_IN_LIQUIDATION)
        return acct_id, acct

    def _create_account(self, cmd) -> None:
        stp = int(cmd["stp"])
        if stp not in (SelfTradePrevention.CANCEL_RESTING, SelfTradePrevention.REJECT_INCOMING):
            raise Reject(Reason.BAD_STP_MODE)
        mode = int(cmd["margin_mode"])
        if mode not in (0, 1):
            raise Reject(Reason.BAD_MARGIN_MODE)
        if len(self.accounts) >= self.cfg.max_accounts:
            raise Reject(Reason.ACCOUNT_POOL_FULL)
        acct_id = len(self.accounts)
        self.accounts[acct_id] = Account(
            stp=stp, gas=self.cfg.gas_max, gas_ts_ns=self.clock, margin_mode=mode
        )
        self._emit(EventKind.ACCEPTED, account=acct_id)
        self._emit(EventKind.ACCOUNT_CREATED, account=acct_id, status=stp)

    @staticmethod
    def _money_allowed(acct_id: int) -> None:
        # the P&L clearing account is a counterpart, not money anybody may move
        if acct_id == SystemAccount.PNL_CLEARING:
            raise Reject(Reason.SYSTEM_ACCOUNT)

    def _deposit(self, cmd) -> None:
        acct_id, acct = self._account(cmd)
        self._money_allowed(acct_id)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
        if acct.balance + amount > self.cfg.max_balance_units:
            raise Reject(Reason.BALANCE_LIMIT)
        if self.total_deposits + amount > (1 << 62):
            raise Reject(Reason.BALANCE_LIMIT)
        acct.balance += amount
        self.total_deposits += amount
        self._emit(EventKind.ACCEPTED, account=acct_id)
        self._emit(
            EventKind.BALANCE, account=acct_id, cash_units=amount, balance_units=acct.balance
        )
        if acct.state == AccountState.BANKRUPT:
            acct.state = int(AccountState.NORMAL)
            self._emit(EventKind.ACCOUNT_STATE, account=acct_id, status=0)

    def _withdraw(self, cmd) -> None:
        acct_id, acct = self._account(cmd)
        self._money_allowed(acct_id)
        amount = int(cmd["amount_units"])
        if amount <= 0:
            raise Reject(Reason.AMOUNT_NOT_POSITIVE)
        if amount > acct.balance:
            raise Reject(Reason.INSUFFICIENT_FUNDS)
        if acct.state == AccountState.IN_LIQUIDATION:
            raise Reject(Reason.ACCOUNT_IN_LIQUIDATION)
        if self.cfg.risk_checks and any(a == acct_id for a, _ in self.positions):
            for a, inst_id in self.positions:
                und = self.instruments[inst_id].underlying
                if a == acct_id and self._index_status(und) != IndexStatus.VALID:
                    raise Reject(Reason.INDEX_STALE)
            equity, im, _ = self.margins(acct_id)
            if equity - amount < im:
                raise Reject(Reason.INSUFFICIENT_MARGIN)
        acct.balance -= amount
        self.total_withdrawals += amount
        self._emit(EventKind.ACCEPTED, account=acct_id)
        self._emit(
            EventKind.BALANCE, account=acct_id, cash_units=-amount, balance_units=acct.balance
        )

    def _set_account(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)  # [A2]
        stp = int(cmd["stp"])
        if stp not in (SelfTradePrevention.CANCEL_RESTING, SelfTradePrevention.REJECT_INCOMING):
            raise Reject(Reason.BAD_STP_MODE)
        mode = int(cmd["margin_mode"])
        if mode not in (0, 1):
            raise Reject(Reason.BAD_MARGIN_MODE)
        if mode != acct.margin_mode and any(a == acct_id for a, _ in self.positions):
            raise Reject(Reason.MARGIN_MODE_OPEN)
        acct.stp = stp
        acct.margin_mode = mode
        self._emit(EventKind.ACCEPTED, account=acct_id, status=stp)

    # ------------------------------------------------------------------ gas

    def _refill(self, acct: Account) -> None:
        """The exact rule of the spec's Gas section."""
        now, rate, gas_max = self.clock, self.cfg.gas_refill_per_ms, self.cfg.gas_max
        if now <= acct.gas_ts_ns:
            return
        if acct.gas >= gas_max:
            acct.gas_ts_ns = now
            return
        ms = (now - acct.gas_ts_ns) // NS_PER_MS
        if ms == 0:
            return
        if rate == 0:
            acct.gas_ts_ns += ms * NS_PER_MS
        elif ms >= ceil_div(gas_max - acct.gas, rate):
            acct.gas = gas_max
            acct.gas_ts_ns = now
        else:
            acct.gas += ms * rate
            acct.gas_ts_ns += ms * NS_PER_MS

    def _charge_base(self, acct: Account) -> None:
        self._refill(acct)
        if acct.gas < self.cfg.gas_base:
            raise Reject(Reason.GAS_EXHAUSTED)
        acct.gas -= self.cfg.gas_base

    # ------------------------------------------------------------------ instruments

    def _add_instrument(self, cmd) -> None:
        kind = int(cmd["instrument_kind"])
        opt = int(cmd["option_type"])
        strike = int(cmd["strike_ticks"])
        expiry = int(cmd["expiry_ts_ns"])
        tick = int(cmd["tick_size_ticks"])
        min_trade = int(cmd["min_trade_lots"])
        cv = int(cmd["contract_value_units"])
        maker = int(cmd["maker_fee_ppm"])
        taker = int(cmd["taker_fee_ppm"])
        underlying = int(cmd["underlying"])
        if kind == InstrumentKind.PERPETUAL:
            ok = opt == OptionType.NONE and strike == 0 and expiry == 0
        elif kind == InstrumentKind.OPTION:
            ok = opt in (OptionType.CALL, OptionType.PUT) and strike > 0 and expiry > 0
        else:
            ok = False
        ok = (
            ok
            and tick >= 1
            and min_trade >= 1
            and cv >= 1
            and -MAX_FEE_PPM <= maker <= MAX_FEE_PPM
            and -MAX_FEE_PPM <= taker <= MAX_FEE_PPM
            and 1 <= underlying < self.cfg.max_underlyings
        )
        if not ok:
            raise Reject(Reason.BAD_INSTRUMENT_PARAMS)
        max_price = min(self.cfg.max_price_ticks, (1 << 62) // (self.cfg.max_position_lots * cv))
        if max_price < tick or (kind == InstrumentKind.OPTION and strike > max_price):
            raise Reject(Reason.BAD_INSTRUMENT_PARAMS)
        if len(self.instruments) >= self.cfg.max_instruments:
            raise Reject(Reason.INSTRUMENT_POOL_FULL)
        inst_id = len(self.instruments)
        self.instruments.append(
            Instrument(
                kind=kind,
                option_type=opt,
                underlying=underlying,
                strike_ticks=strike,
                expiry_ts_ns=expiry,
                tick=tick,
                min_trade=min_trade,
                cv=cv,
                maker_fee=maker,
                taker_fee=taker,
                max_price=max_price,
                arr=[0] * self.S,
                arr_next=[0] * self.S,
            )
        )
        self._emit(EventKind.ACCEPTED, instrument=inst_id)
        self._emit(
            EventKind.INSTRUMENT_STATUS, instrument=inst_id, status=int(InstrumentStatus.ACTIVE)
        )

    def _instrument(self, inst_id: int) -> Instrument:
        if inst_id >= len(self.instruments):
            raise Reject(Reason.UNKNOWN_INSTRUMENT)
        return self.instruments[inst_id]

    def _require_active(self, inst: Instrument) -> None:
        if inst.status == InstrumentStatus.HALTED:
            raise Reject(Reason.INSTRUMENT_HALTED)
        if inst.status in (InstrumentStatus.CLOSED, InstrumentStatus.SETTLED):
            raise Reject(Reason.INSTRUMENT_CLOSED)

    def _halt(self, cmd) -> None:
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)
        if inst.status != InstrumentStatus.ACTIVE:
            raise Reject(Reason.INSTRUMENT_NOT_ACTIVE)
        inst.status = int(InstrumentStatus.HALTED)
        self._emit(EventKind.ACCEPTED, instrument=inst_id)
        self._emit(EventKind.INSTRUMENT_STATUS, instrument=inst_id, status=inst.status)

    def _resume(self, cmd) -> None:
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)
        if inst.status != InstrumentStatus.HALTED:
            raise Reject(Reason.INSTRUMENT_NOT_HALTED)
        inst.status = int(InstrumentStatus.ACTIVE)
        self._emit(EventKind.ACCEPTED, instrument=inst_id)
        self._emit(EventKind.INSTRUMENT_STATUS, instrument=inst_id, status=inst.status)

    def _set_instrument(self, cmd) -> None:
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)
        which = int(cmd["flags"]) or InstrumentSetting.FUNDING_CAP  # [A20]
        cap, band = int(cmd["funding_cap_ppb"]), int(cmd["price_band_ppm"])
        if which & ~(InstrumentSetting.FUNDING_CAP | InstrumentSetting.PRICE_BAND):
            raise Reject(Reason.BAD_INSTRUMENT_PARAMS)
        if which & InstrumentSetting.FUNDING_CAP and (
            inst.kind != InstrumentKind.PERPETUAL or not 0 <= cap <= 100_000_000
        ):
            raise Reject(Reason.BAD_INSTRUMENT_PARAMS)
        if which & InstrumentSetting.PRICE_BAND and not 0 <= band <= 1_000_000:
            raise Reject(Reason.BAD_INSTRUMENT_PARAMS)
        if which & InstrumentSetting.FUNDING_CAP:
            inst.funding_cap = cap
        if which & InstrumentSetting.PRICE_BAND:
            inst.price_band = band
        self._emit(
            EventKind.ACCEPTED,
            instrument=inst_id,
            price_ticks=inst.funding_cap,
            qty_lots=inst.price_band,
        )

    def _close(self, cmd) -> None:
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)
        if inst.status in (InstrumentStatus.CLOSED, InstrumentStatus.SETTLED):
            raise Reject(Reason.INSTRUMENT_NOT_ACTIVE)  # [A5]
        self._emit(EventKind.ACCEPTED, instrument=inst_id)
        for side in (BUY, SELL):
            for price in inst.levels_in_priority(side):
                for order in list(inst.side_book(side)[price]):
                    self._cancel_resting(order, Reason.CANCEL_INSTRUMENT_CLOSED)
        inst.status = int(InstrumentStatus.CLOSED)
        self._emit(EventKind.INSTRUMENT_STATUS, instrument=inst_id, status=inst.status)

    # ------------------------------------------------------------------ order slots

    def _alloc_order_id(self) -> int:  # [A6]
        if self.free_slots:
            slot = self.free_slots.pop()
            self.slot_gen[slot] += 1
        else:
            slot = len(self.slot_gen)
            self.slot_gen.append(1)
        return (self.slot_gen[slot] << 32) | slot

    def _free_order_id(self, order_id: int) -> None:
        self.free_slots.append(order_id & 0xFFFFFFFF)

    def next_order_ids(self, n: int = 3) -> list[int]:
        ids = []
        for slot in reversed(
            self.free_slots[-n:] if n <= len(self.free_slots) else self.free_slots
        ):
            ids.append(((self.slot_gen[slot] + 1) << 32) | slot)
        fresh = len(self.slot_gen)
        while len(ids) < n:
            ids.append((1 << 32) | fresh)
            fresh += 1
        return ids[:n]

    # ------------------------------------------------------------------ positions

    def _pos(self, acct_id: int, inst_id: int) -> Position:
        """The position slot, created if missing (released at the end of the command)."""
        key = (acct_id, inst_id)
        if key not in self.positions:
            self.positions[key] = Position()
        return self.positions[key]

    def _pos_qty(self, acct_id: int, inst_id: int) -> int:
        pos = self.positions.get((acct_id, inst_id))
        return pos.qty if pos else 0

    def _release_flat_positions(self) -> None:
        for key in [k for k, p in self.positions.items() if p.qty == 0 and p.resting == 0]:
            assert self.positions[key].basis == 0
            del self.positions[key]

    @staticmethod
    def reducing_capacity(pos_qty: int, side: int) -> int:
        return max(0, -pos_qty) if side == BUY else max(0, pos_qty)

    def _position_limit_ok(
        self, acct_id: int, inst_id: int, side: int, qty: int, gone: int = 0
    ) -> bool:
        pos = self.positions.get((acct_id, inst_id)) or Position()
        if side == BUY:
            exposure = pos.qty + (pos.open_buy - gone) + qty
        else:
            exposure = -(pos.qty - (pos.open_sell - gone) - qty)
        return exposure <= self.cfg.max_position_lots

    # ------------------------------------------------------------------ book plumbing

    def live_levels(self) -> int:
        return sum(len(i.bids) + len(i.asks) for i in self.instruments)

    def _rest(self, order: Order) -> None:
        inst = self.instruments[order.instrument]
        inst.side_book(order.side).setdefault(order.price, []).append(order)
        self.orders[order.id] = order
        self.accounts[order.account].orders.append(order.id)
        pos = self._pos(order.account, order.instrument)
        pos.resting += 1
        if order.side == BUY:
            pos.open_buy += order.qty
        else:
            pos.open_sell += order.qty

    def _unrest(self, order: Order) -> None:
        """Take a resting order out of its level and the account's lists (id kept)."""
        inst = self.instruments[order.instrument]
        level = inst.side_book(order.side)[order.price]
        level.remove(order)
        if not level:
            del inst.side_book(order.side)[order.price]
        del self.orders[order.id]
        self.accounts[order.account].orders.remove(order.id)
        pos = self.positions[(order.account, order.instrument)]
        pos.resting -= 1
        if order.side == BUY:
            pos.open_buy -= order.qty
        else:
            pos.open_sell -= order.qty

    def _cancel_resting(self, order: Order, reason: Reason, leg: int = 0) -> None:
        self._unrest(order)
        self._free_order_id(order.id)
        self._emit(
            EventKind.CANCELLED,
            reason=int(reason),
            leg=leg,
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=order.price,
            qty_lots=order.qty,
            label=order.label,
        )

    # ------------------------------------------------------------------ fills

    @staticmethod
    def _apply_to_position(pos: Position, dq: int, pv: int) -> int:
        """Rules 1-2 of the spec; returns the realised P&L."""
        if pos.qty == 0 or sign(pos.qty) == sign(dq):
            pos.qty += dq
            pos.basis += sign(dq) * pv * abs(dq)
            return 0
        closing = min(abs(dq), abs(pos.qty))
        long = pos.qty > 0
        if closing == abs(pos.qty):
            e = abs(pos.basis)
        elif long:
            e = ceil_div(abs(pos.basis) * closing, abs(pos.qty))
        else:
            e = (abs(pos.basis) * closing) // abs(pos.qty)
        realised = pv * closing - e if long else e - pv * closing
        pos.basis -= sign(pos.qty) * e
        pos.qty += sign(dq) * closing
        rest = abs(dq) - closing
        if rest:
            assert pos.qty == 0 and pos.basis == 0
            pos.qty = sign(dq) * rest
            pos.basis = sign(dq) * pv * rest
        return realised

    @staticmethod
    def fee(value: int, rate_ppm: int) -> int:
        if rate_ppm >= 0:
            return ceil_div(value * rate_ppm, PPM)  # a charge: rounded up
        return -((value * -rate_ppm) // PPM)  # a rebate: rounded toward zero

    def _fill(self, maker: Order, taker: Order, q: int) -> None:
        inst = self.instruments[maker.instrument]
        price = maker.price
        pv = price * inst.cv
        value = pv * q
        maker.qty -= q
        taker.qty -= q
        results = []
        for order, rate in ((maker, inst.maker_fee), (taker, inst.taker_fee)):
            acct = self.accounts[order.account]
            pos = self._pos(order.account, order.instrument)
            if order is maker:
                if order.side == BUY:
                    pos.open_buy -= q
                else:
                    pos.open_sell -= q
            dq = q if order.side == BUY else -q
            realised = self._apply_to_position(pos, dq, pv)
            if inst.kind == InstrumentKind.PERPETUAL:
                cash = realised
                self.accounts[SystemAccount.PNL_CLEARING].balance -= realised
            else:
                cash = -value if order.side == BUY else value
            fee = self.fee(value, rate)
            acct.balance += cash - fee
            self.accounts[SystemAccount.FEE_POOL].balance += fee
            results.append((order, pos, cash, fee, acct.balance))
        if maker.qty == 0:
            self._unrest(maker)
            self._free_order_id(maker.id)
        for (order, _pos, _cash, fee, _bal), liq in zip(
            results, (Liquidity.MAKER, Liquidity.TAKER), strict=False
        ):
            self._emit(
                EventKind.FILLED,
                account=order.account,
                instrument=order.instrument,
                side=order.side,
                liquidity=int(liq),
                order_id=order.id,
                price_ticks=price,
                qty_lots=q,
                fee_units=fee,
                remaining_lots=order.qty,
            )
        for (order, pos, cash, _fee, bal), liq in zip(
            results, (Liquidity.MAKER, Liquidity.TAKER), strict=False
        ):
            self._emit(
                EventKind.POSITION,
                account=order.account,
                instrument=order.instrument,
                side=order.side,
                liquidity=int(liq),
                order_id=order.id,
                basis_units=pos.basis,
                position_lots=pos.qty,
                cash_units=cash,
                balance_units=bal,
            )

    # ------------------------------------------------------------------ matching

    def _scan(
        self,
        acct_id: int,
        inst_id: int,
        side: int,
        limit: int | None,
        qty: int,
        fok: bool,
        stp_reject: bool,
    ) -> Reason | None:
        """Step 12: walk the opposite side as matching would, changing nothing. [A9]

        The walk goes on until the quantity is exhausted or nothing more crosses, adding up
        the gas that matching would charge. Then: an own order reached (reject mode) is
        SELF_TRADE_REJECTED; for a FOK, gas needed > budget is GAS_EXHAUSTED and an
        incomplete fill FOK_NOT_FILLED."""
        inst = self.instruments[inst_id]
        gas_needed = 0
        sim_pos: dict[int, int] = {}
        remaining = qty
        opposite = 1 - side
        own = False
        for price in inst.levels_in_priority(opposite):
            if remaining == 0 or own or not crosses(side, price, limit):
                break
            gas_needed += self.cfg.gas_per_level
            for resting in inst.side_book(opposite)[price]:
                if remaining == 0:
                    break
                gas_needed += self.cfg.gas_per_fill
                if resting.account == acct_id:
                    if stp_reject:
                        own = True
                        break
                    continue  # would be cancelled (CANCEL_RESTING)
                owner_pos = sim_pos.get(resting.account, self._pos_qty(resting.account, inst_id))
                q = min(remaining, resting.qty)
                if resting.flags & RO:
                    q = min(q, self.reducing_capacity(owner_pos, resting.side))
                sim_pos[resting.account] = owner_pos + (q if resting.side == BUY else -q)
                remaining -= q
        if own:
            return Reason.SELF_TRADE_REJECTED
        if fok and gas_needed > self.accounts[acct_id].gas:
            return Reason.GAS_EXHAUSTED
        if fok and remaining > 0:
            return Reason.FOK_NOT_FILLED
        return None

    def _match(self, taker: Order, limit: int | None) -> tuple[int, bool]:
        """Match an incoming order; returns (filled quantity, stopped for gas)."""
        inst = self.instruments[taker.instrument]
        acct = self.accounts[taker.account]
        opposite = 1 - taker.side
        filled = 0
        while taker.qty > 0:
            best = inst.best(opposite)
            if best is None or not crosses(taker.side, best, limit):
                return filled, False
            if acct.gas < self.cfg.gas_per_level:
                return filled, True
            acct.gas -= self.cfg.gas_per_level
            level = inst.side_book(opposite)[best]
            while taker.qty > 0 and best in inst.side_book(opposite):
                resting = level[0]
                if acct.gas < self.cfg.gas_per_fill:
                    return filled, True
                acct.gas -= self.cfg.gas_per_fill
                if resting.account == taker.account:
                    assert acct.stp == SelfTradePrevention.CANCEL_RESTING
                    self._cancel_resting(resting, Reason.CANCEL_SELF_TRADE)
                    continue
                if resting.flags & RO:
                    cap = self.reducing_capacity(
                        self._pos_qty(resting.account, resting.instrument), resting.side
                    )
                    if cap == 0:
                        self._cancel_resting(resting, Reason.CANCEL_REDUCE_ONLY)
                        continue
                    q = min(taker.qty, resting.qty, cap)
                    self._fill(resting, taker, q)
                    filled += q
                    if q == cap and resting.qty > 0:  # [A11]
                        self._cancel_resting(resting, Reason.CANCEL_REDUCE_ONLY)
                    continue
                q = min(taker.qty, resting.qty)
                self._fill(resting, taker, q)
                filled += q
        return filled, False

    def _finish_taker(
        self,
        taker: Order,
        limit: int | None,
        tif: int,
        filled: int,
        gas_stop: bool,
        market: bool | None = None,
    ) -> None:
        """After matching: rest a GTC remainder, expire anything else. [A10]"""
        if market is None:
            market = limit is None
        if taker.qty == 0:
            self._free_order_id(taker.id)
            return
        if gas_stop:
            reason = Reason.CANCEL_GAS
        elif limit is not None and tif == TimeInForce.GTC:
            self._rest(taker)
            return
        elif market and filled == 0:
            reason = Reason.NO_LIQUIDITY
        else:
            reason = Reason.CANCEL_IOC_REMAINDER
        self._free_order_id(taker.id)
        self._emit(
            EventKind.EXPIRED,
            reason=int(reason),
            account=taker.account,
            instrument=taker.instrument,
            side=taker.side,
            order_id=taker.id,
            price_ticks=taker.price,
            qty_lots=taker.qty,
            label=taker.label,
        )

    # ------------------------------------------------------------------ order validation

    def _check_qty(self, inst: Instrument, qty: int) -> None:
        if qty <= 0:
            raise Reject(Reason.QTY_NOT_POSITIVE)
        if qty > self.cfg.max_order_lots:
            raise Reject(Reason.QTY_TOO_LARGE)
        if qty % inst.min_trade:
            raise Reject(Reason.QTY_OFF_STEP)

    def _check_price(self, inst: Instrument, price: int) -> None:
        if price <= 0:
            raise Reject(Reason.PRICE_NOT_POSITIVE)
        if price > inst.max_price:
            raise Reject(Reason.PRICE_TOO_LARGE)
        if price % inst.tick:
            raise Reject(Reason.PRICE_OFF_TICK)

    def _post_only_price(self, inst: Instrument, side: int, price: int, reject: bool) -> int:
        """Step 9. [A13]"""
        best = inst.best(1 - side)
        if best is None or not crosses(side, best, price):
            return price
        if reject:
            raise Reject(Reason.POST_ONLY_WOULD_TAKE)
        new = best - inst.tick if side == BUY else best + inst.tick
        if new <= 0 or new > inst.max_price:
            raise Reject(Reason.POST_ONLY_WOULD_TAKE)
        return new

    def _check_levels(self, inst: Instrument, side: int, price: int) -> None:
        """Level capacity for an order that will rest at ``price`` (current counts)."""
        book = inst.side_book(side)
        if price in book:
            return
        if len(book) >= self.cfg.max_levels_per_side:
            raise Reject(Reason.BOOK_LEVEL_LIMIT)
        if self.live_levels() >= self.cfg.max_levels:
            raise Reject(Reason.LEVEL_POOL_FULL)

    # ------------------------------------------------------------------ PLACE_ORDER

    def _place(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)  # 1
        self._charge_base(acct)  # 2
        inst_id = int(cmd["instrument"])
        inst = self._instrument(inst_id)  # 3
        side, otype, tif, flags = (
            int(cmd["side"]),
            int(cmd["order_type"]),
            int(cmd["tif"]),
            int(cmd["flags"]),
        )
        if side not in (BUY, SELL):  # 4
            raise Reject(Reason.BAD_SIDE)
        if otype not in (OrderType.LIMIT, OrderType.MARKET):
            raise Reject(Reason.BAD_ORDER_TYPE)
        if tif not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
            raise Reject(Reason.BAD_TIME_IN_FORCE)
        if (
            flags & ~ALL_FLAGS
            or flags & QUOTE
            or (flags & RPO and not flags & PO)
            or (flags & PO and (otype == OrderType.MARKET or tif != TimeInForce.GTC))
        ):
            raise Reject(Reason.BAD_FLAGS)
        self._require_active(inst)  # 5
        self._market_check(inst, bool(flags & RO))  # [R2]
        qty = int(cmd["qty_lots"])
        self._check_qty(inst, qty)  # 6
        if otype == OrderType.LIMIT:  # 7
            price = int(cmd["price_ticks"])
            self._check_price(inst, price)
            if self.cfg.risk_checks:  # [R5]
                price = self._banded_price(inst, side, price)
            limit: int | None = price
        else:
            price, limit = 0, None
            if tif == TimeInForce.GTC:
                tif = int(TimeInForce.IOC)
            if self.cfg.risk_checks:  # [R3]
                price = limit = self._band_price(inst, side)
        if flags & RO:  # 8
            cap = self.reducing_capacity(self._pos_qty(acct_id, inst_id), side)
            if cap == 0:
                raise Reject(Reason.REDUCE_ONLY_WOULD_INCREASE)
            qty = min(qty, cap)
        if flags & PO:  # 9
            price = limit = self._post_only_price(inst, side, price, bool(flags & RPO))
            if self.cfg.risk_checks:  # [R5] repriced out of the band
                self._check_band(inst, price)
        if not self._position_limit_ok(acct_id, inst_id, side, qty):  # 10
            raise Reject(Reason.POSITION_LIMIT)
        self._margin_check(acct_id, inst_id, side, qty, qty * price)  # [R4]
        resting = otype == OrderType.LIMIT and tif == TimeInForce.GTC
        if resting:  # 11 [A7]
            if len(acct.orders) >= self.cfg.max_open_orders_per_account:
                raise Reject(Reason.ACCOUNT_ORDER_LIMIT)
            if inst.resting_count() >= self.cfg.max_orders_per_book:
                raise Reject(Reason.BOOK_ORDER_LIMIT)
        if len(self.orders) >= self.cfg.max_orders:
            raise Reject(Reason.ORDER_POOL_FULL)
        if resting:
            self._check_levels(inst, side, price)
        if (acct_id, inst_id) not in self.positions and len(
            self.positions
        ) >= self.cfg.max_positions:  # [A7]
            raise Reject(Reason.POSITION_POOL_FULL)
        stp_reject = acct.stp == SelfTradePrevention.REJECT_INCOMING
        if tif == TimeInForce.FOK or stp_reject:  # 12
            reason = self._scan(
                acct_id, inst_id, side, limit, qty, tif == TimeInForce.FOK, stp_reject
            )
            if reason is not None:
                raise Reject(reason)
        label = int(cmd["label"])
        order = Order(
            id=self._alloc_order_id(),
            account=acct_id,
            instrument=inst_id,
            side=side,
            price=price,
            qty=qty,
            flags=flags,
            label=label,
        )
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=inst_id,
            side=side,
            order_id=order.id,
            price_ticks=price,
            qty_lots=qty,
            label=label,
        )
        self._pos(acct_id, inst_id)  # the slot is live from acceptance
        filled, gas_stop = self._match(order, limit)
        self._finish_taker(order, limit, tif, filled, gas_stop, otype == OrderType.MARKET)

    # ------------------------------------------------------------------ CANCEL / AMEND

    def _owned_order(self, cmd, acct_id: int) -> Order:
        order = self.orders.get(int(cmd["order_id"]))
        if order is None:
            raise Reject(Reason.UNKNOWN_ORDER)
        if order.account != acct_id:
            raise Reject(Reason.NOT_ORDER_OWNER)
        return order

    def _cancel(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        order = self._owned_order(cmd, acct_id)
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=order.price,
            qty_lots=order.qty,
            label=order.label,
        )
        self._cancel_resting(order, Reason.CANCEL_BY_USER)

    def _amend(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        order = self._owned_order(cmd, acct_id)
        inst = self.instruments[order.instrument]
        self._require_active(inst)
        self._market_check(inst, bool(order.flags & RO))
        qty = int(cmd["qty_lots"])
        self._check_qty(inst, qty)
        price = int(cmd["price_ticks"])
        self._check_price(inst, price)
        banded = self.cfg.risk_checks and (price != order.price or qty > order.qty)  # [R5]
        if banded:
            price = self._banded_price(inst, order.side, price)
        if order.flags & RO:
            cap = self.reducing_capacity(self._pos_qty(acct_id, order.instrument), order.side)
            if cap == 0:
                raise Reject(Reason.REDUCE_ONLY_WOULD_INCREASE)
            qty = min(qty, cap)
        if order.flags & PO:
            price = self._post_only_price(inst, order.side, price, bool(order.flags & RPO))
            if banded:
                self._check_band(inst, price)
        keep = price == order.price and qty <= order.qty  # [A14]
        if not self._position_limit_ok(acct_id, order.instrument, order.side, qty, gone=order.qty):
            raise Reject(Reason.POSITION_LIMIT)
        self._margin_check(
            acct_id,
            order.instrument,
            order.side,
            qty - order.qty,
            qty * price - order.qty * order.price,
        )
        if price != order.price:  # [A14]
            self._check_levels(inst, order.side, price)
        if not keep and acct.stp == SelfTradePrevention.REJECT_INCOMING:
            reason = self._scan(acct_id, order.instrument, order.side, price, qty, False, True)
            if reason is not None:
                raise Reject(reason)
        self._emit(
            EventKind.ACCEPTED,
            account=acct_id,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=price,
            qty_lots=qty,
            label=order.label,
        )
        self._emit(
            EventKind.AMENDED,
            account=acct_id,
            instrument=order.instrument,
            side=order.side,
            order_id=order.id,
            price_ticks=price,
            qty_lots=qty,
            label=order.label,
            a=int(keep),
        )
        if keep:
            pos = self.positions[(acct_id, order.instrument)]
            if order.side == BUY:
                pos.open_buy -= order.qty - qty
            else:
                pos.open_sell -= order.qty - qty
            order.qty = qty
            return
        self._unrest(order)
        order.price, order.qty = price, qty
        filled, gas_stop = self._match(order, price)
        self._finish_taker(order, price, int(TimeInForce.GTC), filled, gas_stop)

    def _cancel_all(self, cmd) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        only: int | None = None
        if self._kind == CommandKind.CANCEL_ALL_INSTRUMENT:
            only = int(cmd["instrument"])
            self._instrument(only)
        victims = [
            self.orders[oid]
            for oid in acct.orders
            if only is None or self.orders[oid].instrument == only
        ]
        victims.sort(key=lambda o: o.instrument)  # stable: list order within an instrument
        fields = {"account": acct_id, "qty_lots": len(victims)}
        if only is not None:
            fields["instrument"] = only
        self._emit(EventKind.ACCEPTED, **fields)
        for order in victims:
            self._cancel_resting(order, Reason.CANCEL_ALL)  # [A18]

    # ------------------------------------------------------------------ MASS_QUOTE

    def _quote_orders(self, acct_id: int, inst_id: int) -> dict[int, list[Order]]:
        found: dict[int, list[Order]] = {BUY: [], SELL: []}
        for oid in self.accounts[acct_id].orders:
            order = self.orders[oid]
            if order.instrument == inst_id and order.flags & QUOTE:
                found[order.side].append(order)
        return found

    def _mass_quote(self, cmd, legs: list) -> None:
        acct_id, acct = self._user_account(cmd)
        self._charge_base(acct)
        count = int(cmd["count"])
        if not legs:
            raise Reject(Reason.BAD_MASS_QUOTE, 0)
        parsed = []  # (leg_no, inst_id, inst, [(side, price, qty)], replaced)
        seen: set[int] = set()
        for leg_no, leg in enumerate(legs, start=self.leg_base):  # [A15] [A16]
            inst_id = int(leg["instrument"])
            if inst_id >= len(self.instruments):
                raise Reject(Reason.UNKNOWN_INSTRUMENT, leg_no)
            inst = self.instruments[inst_id]
            try:
                self._require_active(inst)
                self._market_check(inst, False)
            except Reject as rej:
                raise Reject(rej.reason, leg_no) from None
            if inst_id in seen:
                raise Reject(Reason.DUPLICATE_QUOTE_INSTRUMENT, leg_no)
            seen.add(inst_id)
            bid_p, bid_q = int(leg["bid_price_ticks"]), int(leg["bid_qty_lots"])
            ask_p, ask_q = int(leg["ask_price_ticks"]), int(leg["ask_qty_lots"])
            if bid_q < 0 or ask_q < 0:
                raise Reject(Reason.QTY_NOT_POSITIVE, leg_no)
            sides = [(s, p, q) for s, p, q in ((BUY, bid_p, bid_q), (SELL, ask_p, ask_q)) if q > 0]
            for _s, p, q in sides:
                try:
                    self._check_qty(inst, q)
                    self._check_price(inst, p)
                except Reject as rej:
                    raise Reject(rej.reason, leg_no) from None
            if bid_q > 0 and ask_q > 0 and bid_p >= ask_p:
                raise Reject(Reason.CROSSED_QUOTE, leg_no)
            replaced = self._quote_orders(acct_id, inst_id)
            for s, _p, q in sides:
                gone = sum(o.qty for o in replaced[s])
                if not self._position_limit_ok(acct_id, inst_id, s, q, gone=gone):
                    raise Reject(Reason.POSITION_LIMIT, leg_no)
            parsed.append((leg_no, inst_id, inst, sides, replaced))
        n_new = sum(len(p[3]) for p in parsed)
        n_replaced = sum(len(p[4][BUY]) + len(p[4][SELL]) for p in parsed)
        if len(acct.orders) - n_replaced + n_new > self.cfg.max_open_orders_per_account:
            raise Reject(Reason.ACCOUNT_ORDER_LIMIT, 0)
        for leg_no, _i, inst, sides, replaced in parsed:
            book_after = (
                inst.resting_count() - len(replaced[BUY]) - len(replaced[SELL]) + len(sides)
            )
            if book_after > self.cfg.max_orders_per_book:
                raise Reject(Reason.BOOK_ORDER_LIMIT, leg_no)
        if len(self.orders) - n_replaced + n_new > self.cfg.max_orders:
            raise Reject(Reason.ORDER_POOL_FULL, 0)
        new_levels = 0
        for leg_no, _i, inst, sides, _r in parsed:
            for s, p, _q in sides:
                if p not in inst.side_book(s):
                    new_levels += 1
                    if len(inst.side_book(s)) + 1 > self.cfg.max_levels_per_side:
                        raise Reject(Reason.BOOK_LEVEL_LIMIT, leg_no)
        if self.live_levels() + new_levels > self.cfg.max_levels:
            raise Reject(Reason.LEVEL_POOL_FULL, 0)
        new_slots = sum(
            1
            for _l, inst_id, _n, sides, _r in parsed
            if sides and (acct_id, inst_id) not in self.positions
        )
        if len(self.positions) + new_slots > self.cfg.max_positions:
            raise Reject(Reason.POSITION_POOL_FULL, 0)
        extra = self.cfg.gas_per_level * 2 * count
        if acct.gas < extra:
            raise Reject(Reason.GAS_EXHAUSTED, 0)
        acct.gas -= extra
        label = int(cmd["label"])
        self._emit(EventKind.ACCEPTED, account=acct_id, qty_lots=count, label=label)
        for leg_no, inst_id, inst, sides, _r in parsed:  # [A17]
            current = self._quote_orders(acct_id, inst_id)
            for s in (BUY, SELL):
                for old in current[s]:
                    self._cancel_resting(old, Reason.CANCEL_QUOTE_REPLACED, leg_no)
            for s, p, q in sides:
                if self.cfg.risk_checks:  # [R5] a side outside the band: refused on its own
                    try:
                        self._check_band(inst, p)
                    except Reject as rej:
                        self._emit(
                            EventKind.REJECTED,
                            reason=int(rej.reason),
                            leg=leg_no,
                            account=acct_id,
                            instrument=inst_id,
                            side=s,
                            price_ticks=p,
                            qty_lots=q,
                            label=label,
                        )
                        continue
                best = inst.best(1 - s)
                if best is not None and crosses(s, best, p):
                    self._emit(
                        EventKind.REJECTED,
                        reason=int(Reason.POST_ONLY_WOULD_TAKE),
                        leg=leg_no,
                        account=acct_id,
                        instrument=inst_id,
                        side=s,
                        price_ticks=p,
                        qty_lots=q,
                        label=label,
                    )
                    continue
                try:
                    self._margin_check(acct_id, inst_id, s, q, q * p)
                except Reject as rej:
                    self._emit(
                        EventKind.REJECTED,
                        reason=int(rej.reason),
                        leg=leg_no,
                        account=acct_id,
                        instrument=inst_id,
                        side=s,
                        price_ticks=p,
                        qty_lots=q,
                        label=label,
                    )
                    continue
                order = Order(
                    id=self._alloc_order_id(),
                    account=acct_id,
                    instrument=inst_id,
                    side=s,
                    price=p,
                    qty=q,
                    flags=QUOTE | PO,
                    label=label,
                )
                self._emit(
                    EventKind.ACCEPTED,
                    leg=leg_no,
                    account=acct_id,
                    instrument=inst_id,
                    side=s,
                    order_id=order.id,
                    price_ticks=p,
                    qty_lots=q,
                    label=label,
                )
                self._rest(order)

    # ------------------------------------------------------------------ risk (docs/risk.md)

    def _index_status(self, underlying: int) -> int:
        row = self.underlyings.get(underlying)
        return row[2] if row else int(IndexStatus.NONE)

    def _market_check(self, inst: Instrument, reduce_only: bool) -> None:
        """[R2] NO_MARK, then INDEX_STALE (reduce-only orders pass a stale index)."""
        if not self.cfg.risk_checks:
            return
        if inst.mark <= 0:
            raise Reject(Reason.NO_MARK)
        if self._index_status(inst.underlying) != IndexStatus.VALID and not reduce_only:
            raise Reject(Reason.INDEX_STALE)

    def band(self, inst: Instrument) -> tuple[int, int]:
        """[R5] (low, high): mark -/+ floor(mark x band / 1e6) rounded inwards to the tick
        grid, at least one tick and at most the max price on the grid."""
        default = (
            self.cfg.option_band_ppm
            if inst.kind == InstrumentKind.OPTION
            else self.cfg.market_band_ppm
        )
        width = inst.mark * (inst.price_band or default) // PPM
        low = max(ceil_div(inst.mark - width, inst.tick) * inst.tick, inst.tick)
        high = min(
            (inst.mark + width) // inst.tick * inst.tick, inst.max_price // inst.tick * inst.tick
        )
        return low, high

    def _band_price(self, inst: Instrument, side: int) -> int:
        """[R3] market orders trade no further than the band's edge on their side."""
        low, high = self.band(inst)
        return high if side == BUY else low

    def _banded_price(self, inst: Instrument, side: int, price: int) -> int:
        """[R5] a buy above the band is clamped to its top, a sell below to its bottom; a
        buy below / a sell above is refused (a band without a grid price: low > high)."""
        low, high = self.band(inst)
        if side == BUY:
            if price > high:
                return high
            if price < min(low, high):
                raise Reject(Reason.PRICE_BELOW_BAND)
            return price
        if price < low:
            return low
        if price > max(low, high):
            raise Reject(Reason.PRICE_ABOVE_BAND)
        return price

    def _check_band(self, inst: Instrument, price: int) -> None:
        """[R5] refuse a price outside the band as given (quotes, repriced post-only)."""
        low, high = self.band(inst)
        if price < min(low, high):
            raise Reject(Reason.PRICE_BELOW_BAND)
        if price > max(low, high):
            raise Reject(Reason.PRICE_ABOVE_BAND)

    def _open_values(self, acct_id: int, inst_id: int) -> tuple[int, int]:
        """Sum of price x qty of the resting bids and asks of one position."""
        values = [0, 0]
        for order in self.orders.values():
            if order.account == acct_id and order.instrument == inst_id:
                values[order.side] += order.price * order.qty
        return values[0], values[1]

    def _perp_rate(self, notional: int, base: int, step: int) -> int:
        return min(base + step * (notional // self.cfg.perp_tier_units), PPM)

    def std_im(self, inst: Instrument, x: int, mark: int, index: int) -> int:
        cfg = self.cfg
        if x == 0:
            return 0
        if inst.kind == InstrumentKind.PERPETUAL:
            notional = abs(x) * mark * inst.cv
            return ceil_div(
                notional * self._perp_rate(notional, cfg.perp_im_ppm, cfg.perp_tier_im_ppm), PPM
            )
        if x > 0:
            return x * mark * inst.cv
        underlying = index * inst.cv
        otm = max(
            0,
            (inst.strike_ticks - index)
            if inst.option_type == OptionType.CALL
            else (index - inst.strike_ticks),
        )
        need = max(
            ceil_div(underlying * cfg.option_im_ppm, PPM) - otm * inst.cv,
            ceil_div(underlying * cfg.option_im_min_ppm, PPM),
        )
        return -x * (need + mark * inst.cv)

    def std_mm(self, inst: Instrument, x: int, mark: int, index: int) -> int:
        cfg = self.cfg
        if x == 0:
            return 0
        if inst.kind == InstrumentKind.PERPETUAL:
            notional = abs(x) * mark * inst.cv
            return ceil_div(
                notional * self._perp_rate(notional, cfg.perp_mm_ppm, cfg.perp_tier_mm_ppm), PPM
            )
        if x > 0:
            return x * mark * inst.cv
        return -x * (ceil_div(index * inst.cv * cfg.option_mm_ppm, PPM) + mark * inst.cv)

    def pm_addon(self, inst: Instrument, x: int, index: int) -> int:
        if x >= 0 or inst.kind != InstrumentKind.OPTION:
            return 0
        return -x * ceil_div(index * inst.cv * self.cfg.pm_short_option_ppm, PPM)

    def terms(self, acct_id: int, extra: tuple[int, int, int, int] | None = None) -> dict:
        """The account's margin inputs computed from scratch over its positions (applied
        marks), optionally with ``extra = (instrument, side, lots, value)`` more resting."""
        S = self.S
        sums = [0] * 8  # value, bid cash, ask cash, std IM, std MM, add-on pos/bid/ask
        vectors = [0] * (3 * S)
        if not self.cfg.risk_checks or acct_id not in self.accounts:
            return {"sums": sums, "vectors": vectors}
        portfolio = self.accounts[acct_id].margin_mode == MarginMode.PORTFOLIO
        held = {i for a, i in self.positions if a == acct_id}
        if extra is not None:
            held.add(extra[0])
        for inst_id in sorted(held):
            inst = self.instruments[inst_id]
            pos = self.positions.get((acct_id, inst_id)) or Position()
            q, ob, os_ = pos.qty, pos.open_buy, pos.open_sell
            bv, sv = self._open_values(acct_id, inst_id)
            if extra is not None and extra[0] == inst_id:
                if extra[1] == BUY:
                    ob, bv = ob + extra[2], bv + extra[3]
                else:
                    os_, sv = os_ + extra[2], sv + extra[3]
            m, x, cv = inst.mark, inst.index, inst.cv
            value = q * m * cv
            if inst.kind == InstrumentKind.PERPETUAL:
                value -= pos.basis
            sums[0] += value
            sums[1] += (ob * m - bv) * cv
            sums[2] += (sv - os_ * m) * cv
            if portfolio:
                sums[5] += self.pm_addon(inst, q, x)
                sums[6] += self.pm_addon(inst, q + ob, x)
                sums[7] += self.pm_addon(inst, q - os_, x)
                for s in range(S):
                    vectors[s] += q * inst.arr[s]
                    vectors[S + s] += ob * inst.arr[s]
                    vectors[2 * S + s] -= os_ * inst.arr[s]
            else:
                sums[3] += max(self.std_im(inst, q + ob, m, x), self.std_im(inst, q - os_, m, x))
                sums[4] += self.std_mm(inst, q, m, x)
        return {"sums": sums, "vectors": vectors}

    def margins(self, acct_id: int, extra=None) -> tuple[int, int, int]:
        """(equity, initial margin, maintenance margin)."""
        t = self.terms(acct_id, extra)
        sums, v, S = t["sums"], t["vectors"], self.S
        equity = self.accounts[acct_id].balance + sums[0]
        bid_need, ask_need = max(0, -sums[1]), max(0, -sums[2])
        if self.accounts[acct_id].margin_mode == MarginMode.PORTFOLIO:

            def worst(offset: int | None) -> int:
                return max(
                    [0] + [-(v[s] + (v[offset + s] if offset is not None else 0)) for s in range(S)]
                )

            im = max(worst(S) + sums[6] + bid_need, worst(2 * S) + sums[7] + ask_need)
            mm = ceil_div((worst(None) + sums[5]) * self.cfg.pm_mm_ppm, PPM)
        else:
            im = sums[3] + max(bid_need, ask_need)
            mm = sums[4]
        return equity, im, mm

    def _margin_check(self, acct_id: int, inst_id: int, side: int, lots: int, value: int) -> None:
        """[R4] reject if initial margin after resting ``lots`` more would exceed equity and
        be higher than now."""
        if not self.cfg.risk_checks:
            return
        equity, im, _ = self.margins(acct_id)
        _, after, _ = self.margins(acct_id, (inst_id, side, lots, value))
        if after > equity and after > im:
            raise Reject(Reason.INSUFFICIENT_MARGIN)

    def _scenario_pnl(self, value: int, move: int, weight: int) -> int:
        pnl = (value * move) // PPM  # floor for either sign
        return (pnl * weight) // PPM

    def _index(self, cmd, legs: list, complete: bool) -> None:
        underlying = int(cmd["index_underlying"])
        if not complete:
            raise Reject(Reason.BAD_INDEX)
        if not 1 <= underlying < self.cfg.max_underlyings:
            raise Reject(Reason.UNKNOWN_UNDERLYING)
        ids = [int(leg["source_id"]) for leg in legs]
        if len(set(ids)) != len(ids) or any(
            not 0 < int(leg["price_ticks"]) <= self.cfg.max_price_ticks for leg in legs
        ):
            raise Reject(Reason.BAD_INDEX)
        self._emit(EventKind.ACCEPTED, instrument=underlying, qty_lots=len(legs))
        oldest = self.clock - self.cfg.index_stale_ms * NS_PER_MS
        prices = sorted(
            int(leg["price_ticks"]) for leg in legs if int(leg["source_ts_ns"]) >= oldest
        )
        row = self.underlyings.setdefault(underlying, [0, 0, 0, 0, 0, []])
        row[1] = self.clock
        used: list[int] = []
        if len(prices) >= self.cfg.index_min_sources:
            k = len(prices)
            median = prices[k // 2] if k % 2 else (prices[k // 2 - 1] + prices[k // 2]) // 2
            band = median * self.cfg.index_outlier_ppm // PPM
            for p in prices:
                if median - band <= p <= median + band:
                    used.append(p)
                elif not self.cfg.index_outlier_discard:
                    used.append(min(max(p, median - band), median + band))
        if not used:
            row[2] = int(IndexStatus.STALE)
            self._emit(
                EventKind.INDEX,
                reason=int(Reason.INDEX_STALE),
                instrument=underlying,
                price_ticks=row[0],
                status=int(IndexStatus.STALE),
            )
            return
        index = sum(used) // len(used)
        row[0], row[2], row[3] = index, int(IndexStatus.VALID), len(used)
        row[4] += 1
        row[5].append((self.clock, index))
        del row[5][: -self.cfg.index_history]
        self._emit(
            EventKind.INDEX,
            instrument=underlying,
            price_ticks=index,
            qty_lots=len(used),
            status=int(IndexStatus.VALID),
        )
        for inst_id, inst in enumerate(self.instruments):
            if inst.underlying != underlying:
                continue
            inst.index_next = index
            inst.dirty = True
            if inst.kind == InstrumentKind.PERPETUAL:
                if inst.bids and inst.asks:
                    basis = (inst.best(BUY) + inst.best(SELL)) // 2 - index
                    limit = index * self.cfg.mark_basis_clamp_ppm // PPM
                    basis = min(max(basis, -limit), limit)
                    inst.basis_ema += (basis - inst.basis_ema) * self.cfg.mark_ema_ppm // PPM
                inst.mark_next = max(index + inst.basis_ema, 1)
                value = inst.mark_next * inst.cv
                inst.arr_next = [
                    self._scenario_pnl(value, move, weight)
                    for move, _vol, weight in self.cfg.scenarios
                ]
                self._emit(
                    EventKind.MARK, instrument=inst_id, price_ticks=inst.mark_next, a=inst.basis_ema
                )

    def _risk_array(self, cmd, legs: list, complete: bool) -> None:
        inst_id = int(cmd["instrument"])
        price = int(cmd["price_ticks"])
        value_legs = (self.S + 4) // 5
        if not complete or int(legs[0]["kind"]) != CommandKind.RISK_GREEKS:
            raise Reject(Reason.BAD_RISK_ARRAY)
        inst = self._instrument(inst_id)
        if inst.kind == InstrumentKind.PERPETUAL:
            if len(legs) != 1 or price != 0:
                raise Reject(Reason.BAD_RISK_ARRAY)
        elif (
            len(legs) != 1 + value_legs
            or not 0 < price <= inst.max_price
            or any(int(leg["kind"]) != CommandKind.RISK_VALUES for leg in legs[1:])
        ):
            raise Reject(Reason.BAD_RISK_ARRAY)
        self._emit(EventKind.ACCEPTED, instrument=inst_id, price_ticks=price, qty_lots=len(legs))
        g = legs[0]
        inst.greeks = [
            int(g[name])
            for name in ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano")
        ]
        if inst.kind == InstrumentKind.PERPETUAL:
            return
        values = [int(leg[f"v{k}"]) for leg in legs[1:] for k in range(5)]
        inst.arr_next = values[: self.S]
        inst.mark_next = price
        inst.mark_iv = int(cmd["mark_iv_ppm"])
        row = self.underlyings.get(inst.underlying)
        inst.index_next = row[0] if row else 0
        inst.dirty = True
        self._emit(EventKind.MARK, instrument=inst_id, price_ticks=price, a=inst.mark_iv)

    def _flush(self) -> None:
        """[R1] staged marks, indices and scenario P&Ls become the applied ones before any
        command other than INDEX / RISK_ARRAY."""
        for inst in self.instruments:
            if inst.dirty:
                inst.mark, inst.index, inst.arr = (
                    inst.mark_next,
                    inst.index_next,
                    list(inst.arr_next),
                )
                inst.dirty = False

    # ------------------------------------------------------------------ TIME (docs/liquidation.md)

    def _time(self, cmd) -> None:
        """[L1] ACCEPTED, then expiry, funding and liquidation, in that order."""
        self._emit(EventKind.ACCEPTED)
        if not self.cfg.risk_checks:
            return
        self._expire()
        self._fund()
        self._liquidate()
        self._unwind_fund()

    def _engine_ioc(self, acct_id: int, inst_id: int, q: int, price: int) -> int:
        """One liquidation step of a position of ``q`` lots through the book, no worse than
        ``price``, without gas; returns the lots filled."""
        inst = self.instruments[inst_id]
        lots = ceil_div(abs(q) * self.cfg.liquidation_step_ppm, PPM)
        lots = min(ceil_div(lots, inst.min_trade) * inst.min_trade, abs(q))
        order = Order(
            id=self._alloc_order_id(),
            account=acct_id,
            instrument=inst_id,
            side=SELL if q > 0 else BUY,
            price=price,
            qty=lots,
            flags=RO,
            label=0,
        )
        acct = self.accounts[acct_id]
        gas, acct.gas = acct.gas, 1 << 62
        filled, _ = self._match(order, price)
        acct.gas = gas
        self._free_order_id(order.id)
        return filled

    def _unwind_fund(self) -> None:
        """[L2] the fund reduces each taken-over position by one step through the book,
        within the market band."""
        fund_id = int(SystemAccount.INSURANCE_FUND)
        for inst_id, inst in enumerate(self.instruments):
            pos = self.positions.get((fund_id, inst_id))
            if pos is None or pos.qty == 0:
                continue
            if (
                inst.status != InstrumentStatus.ACTIVE
                or self._index_status(inst.underlying) != IndexStatus.VALID
                or inst.mark <= 0
                or len(self.orders) >= self.cfg.max_orders
            ):
                continue
            price = self._band_price(inst, SELL if pos.qty > 0 else BUY)
            filled = self._engine_ioc(fund_id, inst_id, pos.qty, price)
            if filled > 0:
                self._stage(fund_id, LiquidationStage.BOOK, inst_id, price, filled)

    def _twap(self, underlying: int, start: int, end: int) -> int:
        row = self.underlyings.get(underlying)
        rows = row[5][-self.cfg.index_history :] if row else []
        total = span = level = 0
        at = start
        have = False
        for ts, value in rows:
            if ts > end:
                break
            if ts <= start:
                level, have = value, True
                continue
            if have:
                duration = (ts - at) // NS_PER_MS
                total += level * duration
                span += duration
            at, level, have = ts, value, True
        if not have:
            return 0
        duration = (end - at) // NS_PER_MS
        total += level * duration
        span += duration
        return level if span <= 0 else total // span

    def _expire(self) -> None:
        for inst_id, inst in enumerate(self.instruments):
            if (
                inst.kind != InstrumentKind.OPTION
                or inst.status == InstrumentStatus.SETTLED
                or inst.expiry_ts_ns > self.clock
            ):
                continue
            start = inst.expiry_ts_ns - self.cfg.expiry_twap_ms * NS_PER_MS
            price = self._twap(inst.underlying, start, inst.expiry_ts_ns)
            if price <= 0:
                continue
            for side in (BUY, SELL):
                while inst.side_book(side):
                    best = inst.levels_in_priority(side)[0]
                    self._cancel_resting(inst.side_book(side)[best][0], Reason.CANCEL_EXPIRED)
            payoff = (
                price - inst.strike_ticks
                if inst.option_type == OptionType.CALL
                else inst.strike_ticks - price
            )
            payoff = max(payoff, 0) * inst.cv
            for acct_id in sorted(self.accounts):
                pos = self.positions.get((acct_id, inst_id))
                if pos is None or pos.qty == 0:
                    continue
                cash = pos.qty * payoff
                self.accounts[acct_id].balance += cash
                q, pos.qty, pos.basis = pos.qty, 0, 0
                self._emit(
                    EventKind.SETTLEMENT,
                    account=acct_id,
                    instrument=inst_id,
                    price_ticks=price,
                    qty_lots=q,
                    a=cash,
                    b=self.accounts[acct_id].balance,
                )
            inst.status = int(InstrumentStatus.SETTLED)
            inst.settlement = price
            self._emit(
                EventKind.INSTRUMENT_STATUS,
                instrument=inst_id,
                price_ticks=price,
                status=int(InstrumentStatus.SETTLED),
            )

    @staticmethod
    def _premium_ppb(mark: int, index: int) -> int:
        diff = mark - index
        while index >= (1 << 31):
            index >>= 1
            diff >>= 1
        if index <= 0:
            return 0
        return (diff * 1_000_000_000) // index

    def _fund(self) -> None:
        cfg = self.cfg
        period = cfg.funding_period_ms
        for inst_id, inst in enumerate(self.instruments):
            if inst.kind != InstrumentKind.PERPETUAL:
                continue
            row = self.underlyings.get(inst.underlying)
            index = row[0] if row else 0
            valid = bool(row) and row[2] == IndexStatus.VALID
            if inst.funding_ts == 0 or not valid or inst.mark <= 0:
                inst.funding_ts = self.clock
                continue
            elapsed = (self.clock - inst.funding_ts) // NS_PER_MS
            if elapsed <= 0:
                continue
            premium = self._premium_ppb(inst.mark, index)
            if cfg.funding_mode == 0:
                band = cfg.funding_dead_band_ppb
                rate = (
                    premium - band if premium > band else (premium + band if premium < -band else 0)
                )
                cap = inst.funding_cap or cfg.funding_cap_ppb
                rate = max(-cap, min(cap, rate))
                elapsed = min(elapsed, period)
                inst.funding_ts = self.clock
                inst.funding_rate = rate
                if rate:
                    self._pay_funding(inst_id, inst, rate, elapsed, index)
                continue
            done = inst.premium_ms
            step = elapsed if done + elapsed <= period else period - done
            inst.premium_acc += premium * step
            inst.premium_ms = done + step
            inst.funding_ts = self.clock
            if done + elapsed >= period:
                average = inst.premium_acc // period
                clamp = cfg.funding_clamp_ppb
                rate = average + max(-clamp, min(clamp, cfg.funding_interest_ppb - average))
                cap = inst.funding_cap or cfg.funding_cap_ppb
                rate = max(-cap, min(cap, rate))
                inst.premium_acc = inst.premium_ms = 0
                self._pay_funding(inst_id, inst, rate, period, index)

    def _pay_funding(
        self, inst_id: int, inst: Instrument, rate: int, elapsed: int, index: int
    ) -> None:
        period = self.cfg.funding_period_ms
        paid = received = 0
        for acct_id in sorted(self.accounts):
            if acct_id < len(SystemAccount):
                continue
            pos = self.positions.get((acct_id, inst_id))
            if pos is None or pos.qty == 0:
                continue
            value = abs(pos.qty) * index * inst.cv
            if (pos.qty > 0) == (rate > 0):
                amount = -ceil_div(ceil_div(value * abs(rate), 10**9) * elapsed, period)
                paid -= amount
            else:
                amount = (value * abs(rate) // 10**9) * elapsed // period
                received += amount
            self.accounts[acct_id].balance += amount
            self._emit(
                EventKind.FUNDING,
                account=acct_id,
                instrument=inst_id,
                price_ticks=rate,
                qty_lots=pos.qty,
                a=amount,
                b=self.accounts[acct_id].balance,
            )
        fund = self.accounts[SystemAccount.INSURANCE_FUND]
        fund.balance += paid - received
        inst.funding_rate = rate
        self._emit(
            EventKind.FUNDING,
            account=int(SystemAccount.INSURANCE_FUND),
            instrument=inst_id,
            price_ticks=rate,
            a=paid - received,
            b=fund.balance,
        )

    # liquidation

    def _stage(
        self,
        acct_id: int,
        stage: LiquidationStage,
        instrument: int = 0,
        price: int = 0,
        qty: int = 0,
        money: int = 0,
    ) -> None:
        self._emit(
            EventKind.LIQUIDATION,
            account=acct_id,
            instrument=instrument,
            price_ticks=price,
            qty_lots=qty,
            a=int(stage),
            b=money,
        )

    def _set_state(self, acct_id: int, state: AccountState) -> None:
        self.accounts[acct_id].state = int(state)
        self._emit(EventKind.ACCOUNT_STATE, account=acct_id, status=int(state))

    def _first_position(self, acct_id: int) -> int | None:
        held = [i for (a, i), p in self.positions.items() if a == acct_id and p.qty != 0]
        if not held:
            return None
        return min(held, key=lambda i: (self.instruments[i].kind != InstrumentKind.PERPETUAL, i))

    def _bankruptcy_price(self, inst: Instrument, q: int, equity: int) -> int:
        size, tick = abs(q), inst.tick
        top = inst.max_price // tick * tick
        if q > 0:
            price = ceil_div(size * inst.mark * inst.cv - equity, size * inst.cv)
            price = ceil_div(price, tick) * tick
        else:
            price = (size * inst.mark * inst.cv + equity) // (size * inst.cv) // tick * tick
        return min(max(price, tick), top)

    def _stale_exposed(self, acct_id: int) -> bool:
        return any(
            self._index_status(self.instruments[i].underlying) != IndexStatus.VALID
            for (a, i), p in self.positions.items()
            if a == acct_id and (p.qty != 0 or p.resting > 0)
        )

    def _liquidate(self) -> None:
        for acct_id in sorted(self.accounts):
            if acct_id < len(SystemAccount):
                continue
            acct = self.accounts[acct_id]
            if acct.state != AccountState.IN_LIQUIDATION:
                live = any(
                    a == acct_id and (p.qty != 0 or p.resting > 0)
                    for (a, _), p in self.positions.items()
                )
                if not live and acct.balance >= 0:
                    continue
                equity, _, mm = self.margins(acct_id)
                if equity >= mm:
                    continue
            if self._stale_exposed(acct_id):
                continue
            self._liquidation_round(acct_id)

    def _liquidation_round(self, acct_id: int) -> None:
        acct = self.accounts[acct_id]
        equity, _, mm = self.margins(acct_id)
        if acct.state != AccountState.IN_LIQUIDATION:
            self._stage(acct_id, LiquidationStage.STARTED, qty=mm, money=equity)
            self._set_state(acct_id, AccountState.IN_LIQUIDATION)
            victims = sorted((self.orders[oid] for oid in acct.orders), key=lambda o: o.instrument)
            for order in victims:
                self._cancel_resting(order, Reason.CANCEL_LIQUIDATION)
            self._stage(acct_id, LiquidationStage.ORDERS_CANCELLED, qty=len(victims))
            equity, _, mm = self.margins(acct_id)
        inst_id = self._first_position(acct_id)
        if (inst_id is None and equity >= 0) or (inst_id is not None and equity >= mm):
            self._stage(acct_id, LiquidationStage.ENDED, qty=mm, money=equity)
            self._set_state(acct_id, AccountState.NORMAL)
            return
        if inst_id is not None and equity > 0 and len(self.orders) < self.cfg.max_orders:
            inst = self.instruments[inst_id]
            q = self.positions[(acct_id, inst_id)].qty
            price = self._bankruptcy_price(inst, q, equity)
            filled = self._engine_ioc(acct_id, inst_id, q, price)
            if filled > 0:
                fee = ceil_div(filled * inst.mark * inst.cv * self.cfg.liquidation_fee_ppm, PPM)
                left = self.margins(acct_id)[0]
                if fee > left:
                    fee = max(left, 0)
                acct.balance -= fee
                self.accounts[SystemAccount.INSURANCE_FUND].balance += fee
                self._stage(acct_id, LiquidationStage.BOOK, inst_id, price, filled, fee)
                equity, _, mm = self.margins(acct_id)
                if equity >= mm:
                    self._stage(acct_id, LiquidationStage.ENDED, qty=mm, money=equity)
                    self._set_state(acct_id, AccountState.NORMAL)
                return
        fund_id = int(SystemAccount.INSURANCE_FUND)
        needed = sum(
            1
            for (a, i), p in self.positions.items()
            if a == acct_id and p.qty != 0 and (fund_id, i) not in self.positions
        )
        if needed > self.cfg.max_positions - len(self.positions):
            return
        self._takeover(acct_id)

    def _transfer(self, inst_id: int, seller: int, buyer: int, qty: int, price: int) -> None:
        inst = self.instruments[inst_id]
        pv = price * inst.cv
        for acct_id, dq in ((seller, -qty), (buyer, qty)):
            pos = self._pos(acct_id, inst_id)
            realised = self._apply_to_position(pos, dq, pv)
            if inst.kind == InstrumentKind.PERPETUAL:
                cash = realised
                self.accounts[SystemAccount.PNL_CLEARING].balance -= realised
            else:
                cash = pv * qty if dq < 0 else -pv * qty
            self.accounts[acct_id].balance += cash

    def _transfer_signed(self, inst_id: int, holder: int, other: int, qty: int, price: int) -> None:
        if qty > 0:
            self._transfer(inst_id, holder, other, qty, price)
        else:
            self._transfer(inst_id, other, holder, -qty, price)
        for acct_id in (other, holder):  # [A22]
            pos = self.positions.get((acct_id, inst_id))
            if pos is not None and pos.qty == 0 and pos.resting == 0:
                del self.positions[(acct_id, inst_id)]

    def _adl_score(self, acct_id: int, inst_id: int) -> int:
        inst = self.instruments[inst_id]
        pos = self.positions[(acct_id, inst_id)]
        value = pos.qty * inst.mark * inst.cv
        pnl = value - pos.basis
        scale = abs(pos.basis) // PPM + 1
        pnl_ppm = max(-(10**9), min(10**9, pnl // scale))
        equity = self.margins(acct_id)[0]
        leverage = 10**9 if equity <= 0 else min(10**9, abs(value) // (equity // PPM + 1))
        leverage = max(leverage, 1)
        if pnl_ppm >= 0:
            return pnl_ppm * leverage // PPM
        return pnl_ppm * PPM // leverage

    def _deleverage(self, acct_id: int, inst_id: int, price: int) -> int:
        q = self.positions[(acct_id, inst_id)].qty
        candidates = []
        for other in sorted(self.accounts):
            if other < len(SystemAccount) or other == acct_id:
                continue
            theirs = self.positions.get((other, inst_id))
            if theirs is None or theirs.qty == 0 or (theirs.qty > 0) == (q > 0):
                continue
            candidates.append([other, self._adl_score(other, inst_id)])
        left = abs(q)
        for _ in range(self.cfg.adl_max_counterparties):
            if left == 0 or not candidates:
                break
            best = max(range(len(candidates)), key=lambda k: (candidates[k][1], -k))
            other = candidates.pop(best)[0]
            lots = min(abs(self.positions[(other, inst_id)].qty), left)
            self._transfer_signed(inst_id, acct_id, other, lots if q > 0 else -lots, price)
            left -= lots
            self._stage(acct_id, LiquidationStage.AUTO_DELEVERAGE, inst_id, price, lots, other)
            self._stage(other, LiquidationStage.AUTO_DELEVERAGE, inst_id, price, lots, acct_id)
        return left

    def _takeover(self, acct_id: int) -> None:
        fund_id = int(SystemAccount.INSURANCE_FUND)
        equity = self.margins(acct_id)[0]
        ranked = self.cfg.adl_mode == 0
        if ranked and self.margins(fund_id)[0] + equity < 0:
            while (inst_id := self._first_position(acct_id)) is not None:
                inst = self.instruments[inst_id]
                q = self.positions[(acct_id, inst_id)].qty
                price = self._bankruptcy_price(inst, q, self.margins(acct_id)[0])
                left = self._deleverage(acct_id, inst_id, price)
                if left > 0:
                    self._transfer_signed(
                        inst_id, acct_id, fund_id, left if q > 0 else -left, price
                    )
                    self._stage(acct_id, LiquidationStage.INSURANCE_FUND, inst_id, price, left)
        while (inst_id := self._first_position(acct_id)) is not None:
            inst = self.instruments[inst_id]
            q = self.positions[(acct_id, inst_id)].qty
            self._transfer_signed(inst_id, acct_id, fund_id, q, inst.mark)
            self._stage(acct_id, LiquidationStage.INSURANCE_FUND, inst_id, inst.mark, abs(q))
        acct = self.accounts[acct_id]
        balance = acct.balance
        acct.balance = 0
        self.accounts[fund_id].balance += balance
        self._stage(acct_id, LiquidationStage.INSURANCE_FUND, money=balance)
        if self.accounts[fund_id].balance < 0 and not ranked:
            self._socialise()
        self._stage(acct_id, LiquidationStage.ENDED)
        self._set_state(acct_id, AccountState.BANKRUPT)

    def _socialise(self) -> None:
        fund = self.accounts[SystemAccount.INSURANCE_FUND]
        deficit = -fund.balance
        users = [a for a in sorted(self.accounts) if a >= len(SystemAccount)]
        total = sum(self.accounts[a].balance for a in users if self.accounts[a].balance > 0)
        if total <= 0:
            self.bad_debt += deficit
            self._stage(
                int(SystemAccount.INSURANCE_FUND), LiquidationStage.SOCIALISED, money=-deficit
            )
            return
        largest = max(
            (a for a in users if self.accounts[a].balance > 0),
            key=lambda a: (self.accounts[a].balance, -a),
        )
        if deficit > total:
            self.bad_debt += deficit - total
            deficit = total
        charged = 0
        for a in users:
            balance = self.accounts[a].balance
            if balance <= 0 or a == largest:
                continue
            share = balance if deficit >= total else balance * deficit // total
            if share > 0:
                self.accounts[a].balance -= share
                charged += share
                self._stage(a, LiquidationStage.SOCIALISED, money=-share)
        rest = deficit - charged
        self.accounts[largest].balance -= rest
        self._stage(largest, LiquidationStage.SOCIALISED, money=-rest)
        fund.balance += deficit

    # ------------------------------------------------------------------ inspection

    def canonical(self) -> dict:
        accounts = []
        for acct_id in sorted(self.accounts):
            a = self.accounts[acct_id]
            terms = self.terms(acct_id)
            accounts.append(
                (
                    acct_id,
                    a.balance,
                    a.stp,
                    len(a.orders),
                    a.gas,
                    a.gas_ts_ns,
                    a.margin_mode,
                    a.state,
                    tuple(terms["sums"]),
                    tuple(terms["vectors"]),
                )
            )
        instruments = []
        books = {}
        for inst_id, i in enumerate(self.instruments):
            instruments.append(
                (
                    inst_id,
                    i.kind,
                    i.option_type,
                    i.underlying,
                    i.status,
                    i.strike_ticks,
                    i.expiry_ts_ns,
                    i.tick,
                    i.min_trade,
                    i.cv,
                    i.maker_fee,
                    i.taker_fee,
                    i.max_price,
                    i.resting_count(),
                    (
                        i.mark,
                        i.mark_next,
                        i.index,
                        i.index_next,
                        i.basis_ema,
                        i.mark_iv,
                        *i.greeks,
                        i.funding_ts,
                        i.funding_rate,
                        i.premium_acc,
                        i.premium_ms,
                        i.settlement,
                        i.funding_cap,
                        i.price_band,
                    ),
                    int(i.dirty),
                    tuple(i.arr),
                    tuple(i.arr_next),
                )
            )
            books[inst_id] = {
                name: [
                    (
                        price,
                        [
                            (o.id, o.account, o.qty, o.flags, o.label)
                            for o in i.side_book(side)[price]
                        ],
                    )
                    for price in i.levels_in_priority(side)
                ]
                for name, side in (("bids", BUY), ("asks", SELL))
            }
        positions = sorted(
            (a, i, p.qty, p.basis, p.open_buy, p.open_sell, p.resting, *self._open_values(a, i))
            for (a, i), p in self.positions.items()
        )
        history = self.cfg.index_history
        underlyings = []
        for u in sorted(self.underlyings):
            index, ts, status, sources, updates, rows = self.underlyings[u]
            kept = rows[-history:]
            underlyings.append(
                (u, (index, ts, status, sources, updates % history, len(kept)), tuple(kept))
            )
        return {
            "clock_ns": self.clock,
            "total_deposits": self.total_deposits,
            "total_withdrawals": self.total_withdrawals,
            "accounts": accounts,
            "instruments": instruments,
            "positions": positions,
            "books": books,
            "underlyings": underlyings,
            "risk_dirty": sum(1 for i in self.instruments if i.dirty),
            "bad_debt": self.bad_debt,
            "next_order_ids": self.next_order_ids(3),
        }

    def check_invariants(self) -> None:
        total = sum(a.balance for a in self.accounts.values())
        assert total == self.total_deposits - self.total_withdrawals, "conservation"
        net: dict[int, int] = {}
        for (acct_id, inst_id), pos in self.positions.items():
            net[inst_id] = net.get(inst_id, 0) + pos.qty
            assert (pos.qty == 0) == (pos.basis == 0), "basis zero iff flat"
            assert abs(pos.basis) >= abs(pos.qty)
            assert pos.qty != 0 or pos.resting > 0, "released slot still present"
            mine = [
                o for o in self.orders.values() if o.account == acct_id and o.instrument == inst_id
            ]
            assert pos.resting == len(mine)
            assert pos.open_buy == sum(o.qty for o in mine if o.side == BUY)
            assert pos.open_sell == sum(o.qty for o in mine if o.side == SELL)
        assert all(v == 0 for v in net.values()), "net position per instrument"
        for inst in self.instruments:
            bid, ask = inst.best(BUY), inst.best(SELL)
            assert bid is None or ask is None or bid < ask, "crossed book"
            for side in (BUY, SELL):
                for price, level in inst.side_book(side).items():
                    assert level, "empty level"
                    assert all(o.qty > 0 and o.price == price and o.side == side for o in level), (
                        "level quantities"
                    )
        for acct_id, acct in self.accounts.items():
            assert all(self.orders[oid].account == acct_id for oid in acct.orders)
            assert 0 <= acct.gas <= max(self.cfg.gas_max, 0)
        assert sum(len(a.orders) for a in self.accounts.values()) == len(self.orders)
        live_slots = {oid & 0xFFFFFFFF for oid in self.orders}
        assert not live_slots & set(self.free_slots), "live slot on the free stack"
