"""``Exchange``: the embedded venue — an in-process sequencer in front of the pure engine,
per-command methods with typed results, the batch API, and queries.

The sequencer is the only place time enters: it stamps every command with a sequence number
and the clock's time (``clock`` is injectable; tests pass a manual clock).

>>> ex = Exchange(clock=lambda: 1_700_000_000_000_000_000)
>>> btc = ex.add_perpetual("BTC", tick_size_ticks=50, taker_fee_ppm=500, maker_fee_ppm=-100)
>>> ex.instrument_name(btc)
'BTC_USDC-PERPETUAL'
>>> ex.set_index("BTC", [(1, 1_700_000_000_000_000_000, 10_000_000)]).accepted  # oracle
True
>>> ex.mark(btc)  # a perpetual's mark follows the index
10000000
>>> alice, bob = ex.create_account(), ex.create_account()
>>> _ = ex.deposit(alice, 1_000_000_000); _ = ex.deposit(bob, 1_000_000_000)
>>> ex.place(alice, btc, "sell", 10, price_ticks=10_000_000).status
'resting'
>>> result = ex.place(bob, btc, "buy", 4, order_type="market")
>>> result.status, result.filled_lots, [(f.price_ticks, f.qty_lots) for f in result.fills]
('filled', 4, [(10000000, 4)])
>>> ex.depth(btc).asks
[(10000000, 6, 1)]
>>> summary = ex.account_summary(bob)
>>> summary.initial_margin_units, summary.equity_units  # 2% of 40 USDC; 1,000 USDC - fee
(800000, 999980000)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from derivex.core import query
from derivex.core.codec import KIND_OFFSET
from derivex.core.config import EngineConfig
from derivex.core.engine import Engine
from derivex.core.mmp_query import MmpGroup, mmp_groups
from derivex.core.query import Depth, IndexInfo, OrderInfo, Position
from derivex.core.records import (
    RECORD_BYTES,
    AccountState,
    CommandKind,
    EventKind,
    InstrumentKind,
    InstrumentSetting,
    MarginMode,
    OptionType,
    OrderFlag,
    Reason,
    SelfTradePrevention,
    SelfTradeScope,
    SystemAccount,
    TriggerSource,
    TriggerType,
    Underlying,
    command_array,
    concat_commands,
    index_records,
    risk_records,
)
from derivex.core.risk import margins, price_band
from derivex.door import OrderDoor
from derivex.exchange_orders import ORDER_TYPES, SIDES, TIME_IN_FORCE, OrderMethods
from derivex.journal.format import JournalError
from derivex.journal.recovery import Recovered, reopen
from derivex.journal.writer import DEFAULT_FSYNC, Journal
from derivex.results import CommandResult, Fill, OrderResult  # noqa: F401  (Fill: re-exported)
from derivex.sequencer import Sequencer

_TIME = int(CommandKind.TIME)  # a plain int: comparing an array to an IntEnum is slow
TRIGGER_TYPES = {
    "stop": TriggerType.STOP,
    "take": TriggerType.TAKE,
    "trailing": TriggerType.TRAILING,
}
TRIGGER_SOURCES = {
    "last": TriggerSource.LAST,
    "index": TriggerSource.INDEX,
    "mark": TriggerSource.MARK,
}


@dataclass(frozen=True)
class Quote:
    instrument: int
    bid_price_ticks: int = 0
    bid_qty_lots: int = 0
    ask_price_ticks: int = 0
    ask_qty_lots: int = 0


@dataclass(frozen=True)
class AccountSummary:
    """Margin view of one account (collateral units; Greeks in the pricing service's units,
    summed over the positions, see docs/risk.md)."""

    account: int
    margin_mode: str  # standard | portfolio
    state: str  # normal | in_liquidation | bankrupt
    balance_units: int
    equity_units: int  # balance + unrealised P&L at mark (+ option value)
    initial_margin_units: int
    maintenance_margin_units: int
    available_funds_units: int  # equity - initial margin
    delta: float
    gamma: float
    vega: float
    theta: float


def _reason(events: np.ndarray) -> Reason:
    return Reason(int(events["reason"][0])) if len(events) else Reason.UNKNOWN_COMMAND


class Exchange(OrderMethods):
    """Embedded venue. Not thread-safe: one caller drives it (as the sequencer would)."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        clock: Callable[[], int] | None = None,
        journal: Journal | None = None,
    ) -> None:
        #: the one sequencer (``derivex.sequencer``): stamps each batch, appends it to the
        #: journal (before-hook), runs the engine, lets the journal observe the events and
        #: waits for durability (after-hook)
        self.sequencer = Sequencer(Engine(config), clock=clock or time.time_ns)
        # write-ahead journal: records the config and continues its sequence (to resume
        # a journaled venue with its state, use Exchange.open)
        self._journal: Journal | None = None
        #: with a group-commit journal, ``submit`` returns once the batch is durable; a
        #: caller that holds its results until then itself (the gateway's DurabilityGate)
        #: sets this False so the engine goes on while the disk flushes
        self.durable_results = True
        if journal is not None:
            self.sequencer.seq = journal.attach(self.engine.config)
        self.journal = journal
        self._one = command_array(1)
        #: the per-command door (``derivex.door``) for place / cancel / amend: made on the
        #: first order, None when no binding runs here; ``fast_orders = False`` turns it off
        self.fast_orders = True
        self._door: OrderDoor | None = None
        self._door_tried = False
        self._sinks: list[Any] = []
        self._names: dict[str, int] = {}
        self._funding: dict[int, list[tuple[int, int]]] = {}
        self._price_decimals: dict[int, int] = {}
        self.install_native()  # place / cancel / amend in C where it builds (exchange_orders)

    @classmethod
    def from_recovered(
        cls,
        recovered: Recovered,
        journal: Journal | None = None,
        clock: Callable[[], int] | None = None,
    ) -> Exchange:
        """The venue over an engine rebuilt by ``derivex.journal.recover``, appending to
        ``journal`` (which must end where the recovery did). Raises ``JournalError`` when
        the journal has moved on."""
        if journal is not None and journal.last_seq != recovered.seq:
            raise JournalError(
                f"journal moved during recovery ({recovered.seq} -> {journal.last_seq})"
            )
        exchange = cls(recovered.config, clock=clock, journal=journal)
        exchange.engine = recovered.engine
        exchange.sequencer.seq = recovered.seq
        return exchange

    @classmethod
    def open(
        cls,
        directory: Path | str,
        *,
        clock: Callable[[], int] | None = None,
        config: EngineConfig | None = None,
        fsync: str = DEFAULT_FSYNC,
        interval_ms: float = 5.0,
        roll_bytes: int = 64 << 20,
    ) -> tuple[Exchange, Recovered]:
        """Recover the venue journaled in ``directory`` (a new one if empty) and reopen its
        journal for appending: the returned ``Exchange`` continues the sequence. Instrument
        names are shell metadata and are not journaled: refer to instruments by id.
        Recovery is read-only; only once it has succeeded does the reopened journal cut a
        genuine torn tail (reported in ``recovered.torn``). A failed open changes no file.
        Cost: a recovery (latest snapshot + replay of the tail)."""
        journal, recovered = reopen(
            directory, config=config, fsync=fsync, interval_ms=interval_ms, roll_bytes=roll_bytes
        )
        return cls.from_recovered(recovered, journal, clock), recovered

    @property
    def journal(self) -> Journal | None:
        """The write-ahead journal (None: not journaled); setting it wires the sequencer's
        hooks: append before the engine, observe (and wait for durability) after."""
        return self._journal

    @journal.setter
    def journal(self, journal: Journal | None) -> None:
        self._journal = journal
        self.sequencer.before = None if journal is None else self._append
        self.sequencer.after = None if journal is None else self._journaled

    @property
    def engine(self) -> Engine:
        """The engine the sequencer drives (replaceable: a recovered or replica engine)."""
        return self.sequencer.engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self.sequencer.engine = engine

    # ---- sequencer and batch API ----

    def submit(self, commands: np.ndarray) -> np.ndarray:
        """Sequence a batch (assign ``seq`` and ``ts_ns`` in place) and process it through
        ``self.sequencer``. Returns the events (a new array). Cost: one compiled call. With
        a journal, the batch is appended first: the events are returned only once the
        journal's policy has made it durable (``"group"``, the default: once the flush
        covering it has returned; ``"interval"``: written, flushed later). Raises TypeError
        for records that are not ``COMMAND_DTYPE``, and what the journal raises (then
        nothing is processed)."""
        events = self.sequencer.sequence(commands)
        for sink in self._sinks:
            sink.write(commands, events)
        if (
            commands.view(np.uint8)[KIND_OFFSET] == _TIME
            if len(commands) == 1
            else _TIME in commands.view(np.uint8)[KIND_OFFSET::RECORD_BYTES]
        ):
            self._record_funding(events)
        return events

    def _submit_intercepted(self) -> bool:
        """Whether ``submit`` is overridden by a subclass or replaced on this instance."""
        return type(self).submit is not Exchange.submit or "submit" in vars(self)

    def add_sink(self, sink: Any) -> None:
        """Hand every batch from now on to ``sink.write(commands, events)`` (e.g. a
        ``derivex.export.ParquetSink``), after the engine ran it. Orders then take the slow
        path, ``submit``. Cost: the sink's, per batch."""
        self._sinks.append(sink)
        self._door_changed()  # orders now take the slow path: the door checks again

    def _append(self, commands: np.ndarray) -> None:
        """The sequencer's before-hook with a journal: the stamped batch is written (and
        per the journal's policy flushed) before the engine sees it. Looked up on each
        call, so a journal's ``append`` can be replaced (tests inject disk errors)."""
        journal = self._journal
        assert journal is not None
        journal.append(commands)

    def _journaled(self, commands: np.ndarray, events: np.ndarray) -> None:
        """The sequencer's after-hook with a journal: dirty state-root leaves from the
        events, then (group commit) the wait for the flush covering this batch."""
        journal = self._journal
        assert journal is not None
        journal.observe(events)
        if journal.fsync == "group" and self.durable_results:
            # the flush started at append ran while the engine worked; the events (the
            # acknowledgement) leave only once it covers this batch
            journal.wait_durable(self.sequencer.seq)

    def _record_funding(self, events: np.ndarray) -> None:
        """Keep the funding rates applied (the fund's FUNDING event of each settlement)."""
        rates = events[
            (events["kind"] == EventKind.FUNDING)
            & (events["account"] == SystemAccount.INSURANCE_FUND)
        ]
        clock = query.clock_ns(self.engine.state)
        for event in rates:
            self._funding.setdefault(int(event["instrument"]), []).append(
                (clock, int(event["price_ticks"]))
            )

    def _command(self, kind: CommandKind, **fields: int) -> np.ndarray:
        record = self._one
        record[0] = 0
        record["kind"] = kind
        for name, value in fields.items():
            record[name] = value
        return self.submit(record)

    @staticmethod
    def _result(events: np.ndarray) -> CommandResult:
        accepted = bool(len(events)) and bool(events["kind"][0] == EventKind.ACCEPTED)
        return CommandResult(accepted, Reason.OK if accepted else _reason(events), events)

    # ---- accounts and money ----

    def create_account(
        self, self_trade_prevention: str = "cancel_resting", margin_mode: str = "standard"
    ) -> int:
        """Create an account; returns its id. Raises ValueError when rejected."""
        mode = SelfTradePrevention[self_trade_prevention.upper()]
        events = self._command(
            CommandKind.CREATE_ACCOUNT, stp=mode, margin_mode=MarginMode[margin_mode.upper()]
        )
        if events["kind"][0] != EventKind.ACCEPTED:
            raise ValueError(f"account not created: {_reason(events).name}")
        return int(events["account"][0])

    def set_self_trade_prevention(
        self, account: int, mode: str, extended_to_subaccounts: bool = False
    ) -> CommandResult:
        """``mode`` cancel_resting / reject_incoming; ``extended_to_subaccounts``: the
        resting orders of the account's whole family count as its own (core/stp.py)."""
        _, margin = query.account_settings(self.engine.state, account)
        scope = SelfTradeScope.FAMILY if extended_to_subaccounts else SelfTradeScope.ACCOUNT
        return self._result(
            self._command(
                CommandKind.SET_ACCOUNT,
                account=account,
                stp=SelfTradePrevention[mode.upper()] | scope,
                margin_mode=margin,
            )
        )

    def set_margin_mode(self, account: int, mode: str) -> CommandResult:
        """Standard or portfolio margin; only while the account holds nothing."""
        stp, _ = query.account_settings(self.engine.state, account)
        return self._result(
            self._command(
                CommandKind.SET_ACCOUNT,
                account=account,
                stp=stp,
                margin_mode=MarginMode[mode.upper()],
            )
        )

    # ---- market data (normally sequenced from the oracle and the pricing service) ----

    def _market_data(self, records: np.ndarray, apply: bool) -> CommandResult:
        if apply:  # a TIME command right after applies the staged values at once
            tick = command_array(1)
            tick["kind"] = CommandKind.TIME
            records = concat_commands([records, tick])
        events = self.submit(records)
        return self._result(events)

    def set_index(
        self, underlying: str, sources: Sequence[tuple[int, int, int]], apply: bool = True
    ) -> CommandResult:
        """Sequence an INDEX command from ``(source_id, source_ts_ns, price_ticks)`` rows."""
        return self._market_data(index_records(Underlying[underlying], list(sources)), apply)

    def set_risk(
        self,
        instrument: int,
        mark_ticks: int,
        values: Sequence[int],
        greeks: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
        mark_iv_ppm: int = 0,
        apply: bool = True,
    ) -> CommandResult:
        """Sequence a RISK_ARRAY command: an option's mark, Greeks and scenario P&Ls."""
        return self._market_data(
            risk_records(instrument, mark_ticks, list(values), greeks, mark_iv_ppm), apply
        )

    def deposit(self, account: int, amount_units: int) -> CommandResult:
        return self._result(
            self._command(CommandKind.DEPOSIT, account=account, amount_units=amount_units)
        )

    def withdraw(self, account: int, amount_units: int) -> CommandResult:
        return self._result(
            self._command(CommandKind.WITHDRAW, account=account, amount_units=amount_units)
        )

    def create_subaccount(
        self,
        main_account: int,
        self_trade_prevention: str = "cancel_resting",
        margin_mode: str = "standard",
    ) -> int:
        """Create a subaccount of ``main_account`` (core/subaccounts.py); returns its id.
        Raises ValueError when rejected."""
        events = self._command(
            CommandKind.CREATE_SUBACCOUNT,
            account=main_account,
            stp=SelfTradePrevention[self_trade_prevention.upper()],
            margin_mode=MarginMode[margin_mode.upper()],
        )
        if events["kind"][0] != EventKind.ACCEPTED:
            raise ValueError(f"subaccount not created: {_reason(events).name}")
        return int(events["account"][0])

    def transfer(self, from_account: int, to_account: int, amount_units: int) -> CommandResult:
        """Move collateral between two accounts in one command (core/subaccounts.py)."""
        return self._result(
            self._command(
                CommandKind.TRANSFER,
                account=from_account,
                to_account=to_account,
                amount_units=amount_units,
            )
        )

    def advance_time(self) -> CommandResult:
        """Sequence a TIME command at the clock's current time."""
        return self._result(self._command(CommandKind.TIME))

    # ---- instruments ----

    def _add(self, name: str, price_decimals: int, **fields: int) -> int:
        if name in self._names:
            raise ValueError(f"instrument {name} exists")
        events = self._command(CommandKind.ADD_INSTRUMENT, **fields)
        if events["kind"][0] != EventKind.ACCEPTED:
            raise ValueError(f"instrument {name} rejected: {_reason(events).name}")
        instrument = int(events["instrument"][0])
        self._names[name] = instrument
        self._price_decimals[instrument] = price_decimals
        return instrument

    def add_perpetual(
        self,
        underlying: str = "BTC",
        *,
        tick_size_ticks: int = 1,
        min_trade_lots: int = 1,
        contract_value_units: int = 1,
        maker_fee_ppm: int = 0,
        taker_fee_ppm: int = 500,
        price_decimals: int = 2,
    ) -> int:
        """Add a linear USDC perpetual named like Deribit's (``BTC_USDC-PERPETUAL``)."""
        return self._add(
            f"{underlying}_USDC-PERPETUAL",
            price_decimals,
            instrument_kind=InstrumentKind.PERPETUAL,
            underlying=Underlying[underlying],
            tick_size_ticks=tick_size_ticks,
            min_trade_lots=min_trade_lots,
            contract_value_units=contract_value_units,
            maker_fee_ppm=maker_fee_ppm,
            taker_fee_ppm=taker_fee_ppm,
        )

    def add_option(
        self,
        underlying: str,
        expiry_ts_ns: int,
        strike_ticks: int,
        option_type: str,
        *,
        tick_size_ticks: int = 1,
        min_trade_lots: int = 1,
        contract_value_units: int = 1,
        maker_fee_ppm: int = 0,
        taker_fee_ppm: int = 300,
        price_decimals: int = 2,
    ) -> int:
        """Add a European USDC option named like ``BTC_USDC-27DEC26-100000-C``."""
        kind = OptionType[option_type.upper()]
        expiry = datetime.fromtimestamp(expiry_ts_ns / 1e9, tz=UTC)
        strike = strike_ticks / 10**price_decimals
        strike_text = f"{strike:.0f}" if strike == int(strike) else f"{strike:g}".replace(".", "d")
        name = (
            f"{underlying}_USDC-{expiry.day}{expiry.strftime('%b').upper()}"
            f"{expiry.strftime('%y')}-{strike_text}-{'C' if kind == OptionType.CALL else 'P'}"
        )
        return self._add(
            name,
            price_decimals,
            instrument_kind=InstrumentKind.OPTION,
            option_type=kind,
            underlying=Underlying[underlying],
            expiry_ts_ns=expiry_ts_ns,
            strike_ticks=strike_ticks,
            tick_size_ticks=tick_size_ticks,
            min_trade_lots=min_trade_lots,
            contract_value_units=contract_value_units,
            maker_fee_ppm=maker_fee_ppm,
            taker_fee_ppm=taker_fee_ppm,
        )

    def instrument_id(self, name: str) -> int:
        return self._names[name]

    def instrument_name(self, instrument: int) -> str:
        for name, value in self._names.items():
            if value == instrument:
                return name
        raise KeyError(instrument)

    def halt(self, instrument: int) -> CommandResult:
        return self._result(self._command(CommandKind.HALT_INSTRUMENT, instrument=instrument))

    def resume(self, instrument: int) -> CommandResult:
        return self._result(self._command(CommandKind.RESUME_INSTRUMENT, instrument=instrument))

    def close(self, instrument: int) -> CommandResult:
        return self._result(self._command(CommandKind.CLOSE_INSTRUMENT, instrument=instrument))

    def block_account(self, account: int) -> CommandResult:
        """The kill switch: cancel all the account's orders and refuse its trading commands
        (ACCOUNT_BLOCKED) until ``unblock_account``. O(its orders + positions)."""
        return self._result(self._command(CommandKind.BLOCK_ACCOUNT, account=account))

    def unblock_account(self, account: int) -> CommandResult:
        return self._result(self._command(CommandKind.UNBLOCK_ACCOUNT, account=account))

    # ---- orders ----

    def place_trigger(
        self,
        account: int,
        instrument: int,
        side: str,
        qty_lots: int,
        trigger: str,
        trigger_price_ticks: int = 0,
        *,
        source: str = "last",
        trigger_offset_ticks: int = 0,
        order_type: str = "market",
        price_ticks: int = 0,
        time_in_force: str = "gtc",
        reduce_only: bool = False,
        post_only: bool = False,
        label: int = 0,
    ) -> CommandResult:
        """Place a trigger order (``trigger``: stop, take or trailing; ``source``: last,
        index or mark); docs/conditional-orders.md. The trigger order's id is the
        ACCEPTED event's ``order_id``; ``trigger_orders`` lists the live ones."""
        trailing = trigger == "trailing"
        events = self._command(
            CommandKind.PLACE_TRIGGER,
            account=account,
            instrument=instrument,
            side=SIDES[side],
            order_type=ORDER_TYPES[order_type],
            tif=TIME_IN_FORCE[time_in_force],
            flags=(OrderFlag.REDUCE_ONLY if reduce_only else 0)
            | (OrderFlag.POST_ONLY if post_only else 0),
            trigger_type=TRIGGER_TYPES[trigger],
            trigger_source=TRIGGER_SOURCES[source],
            trigger_price_ticks=trigger_offset_ticks if trailing else trigger_price_ticks,
            price_ticks=price_ticks,
            qty_lots=qty_lots,
            label=label,
        )
        return self._result(events)

    def trigger_orders(self, account: int | None = None) -> list[dict[str, int]]:
        """Live trigger orders (of ``account``), by id: see ``core.query.trigger_orders``."""
        rows = query.trigger_orders(self.engine.state)
        return [row for row in rows if account is None or row["account"] == account]

    def cancel_all(self, account: int, instrument: int | None = None) -> CommandResult:
        if instrument is None:
            return self._result(self._command(CommandKind.CANCEL_ALL, account=account))
        return self._result(
            self._command(CommandKind.CANCEL_ALL_INSTRUMENT, account=account, instrument=instrument)
        )

    def mass_quote(
        self, account: int, quotes: Sequence[Quote], label: int = 0, mmp_group: int = 0
    ) -> CommandResult:
        """Replace the account's quotes on each quoted instrument in one command; their
        fills count toward MMP group ``mmp_group`` (a code, 0: the default group)."""
        records = command_array(1 + len(quotes))
        records["kind"][0] = CommandKind.MASS_QUOTE
        records["account"][0] = account
        records["count"][0] = len(quotes)
        records["label"][0] = label
        records["mmp_group"][0] = mmp_group
        for index, quote in enumerate(quotes, start=1):
            records["kind"][index] = CommandKind.QUOTE_LEG
            records["instrument"][index] = quote.instrument
            records["bid_price_ticks"][index] = quote.bid_price_ticks
            records["bid_qty_lots"][index] = quote.bid_qty_lots
            records["ask_price_ticks"][index] = quote.ask_price_ticks
            records["ask_qty_lots"][index] = quote.ask_qty_lots
        return self._result(self.submit(records))

    def set_mmp_config(
        self,
        account: int,
        underlying: str,
        interval_s: int,
        frozen_s: int,
        *,
        qty_limit_lots: int = 0,
        delta_limit: int = 0,
        vega_limit: int = 0,
        group: int = 0,
    ) -> CommandResult:
        """Market-maker protection of one group (core/mmp.py); ``interval_s`` 0 removes it.
        Also resets the group."""
        return self._result(
            self._command(
                CommandKind.SET_MMP_CONFIG,
                account=account,
                mmp_underlying=Underlying[underlying],
                mmp_group=group,
                mmp_interval_s=interval_s,
                mmp_frozen_s=frozen_s,
                mmp_qty_limit_lots=qty_limit_lots,
                mmp_delta_limit=delta_limit,
                mmp_vega_limit=vega_limit,
            )
        )

    def reset_mmp(self, account: int, underlying: str, group: int = 0) -> CommandResult:
        """Unfreeze an MMP group at once."""
        return self._result(
            self._command(
                CommandKind.RESET_MMP,
                account=account,
                mmp_underlying=Underlying[underlying],
                mmp_group=group,
            )
        )

    def mmp_groups(self, account: int) -> list[MmpGroup]:
        """The account's MMP groups and their windows (``core.mmp_query.MmpGroup``)."""
        return mmp_groups(self.engine.state, account)

    # ---- queries (read the state directly; O(result size)) ----

    def depth(self, instrument: int, levels: int = 10) -> Depth:
        """The best ``levels`` of each side, from the book ladder and the levels' own
        totals. Cost: O(levels returned), whatever the number of orders in the book (a
        depth request never walks the orders)."""
        return query.depth(self.engine.state, instrument, levels)

    def order(self, order_id: int) -> OrderInfo | None:
        """The live order with this id, or None. O(1)."""
        return query.order(self.engine.state, order_id)

    def open_orders(self, account: int, instrument: int | None = None) -> list[OrderInfo]:
        """Resting orders of the account, by instrument, oldest first."""
        return query.open_orders(self.engine.state, account, instrument)

    def positions(self, account: int) -> list[Position]:
        """Non-zero positions of the account, by instrument."""
        return query.positions(self.engine.state, account)

    def index(self, underlying: str) -> IndexInfo:
        return query.index(self.engine.state, Underlying[underlying])

    def index_history(self, underlying: str) -> list[tuple[int, int]]:
        """``(ts_ns, index)`` of the kept valid index updates, oldest first."""
        return query.index_history(self.engine.state, Underlying[underlying])

    def set_funding_cap(self, instrument: int, cap_ppb: int) -> CommandResult:
        """This perpetual's cap on |funding rate| per period (1e-9; 0: the configured cap)."""
        return self._result(
            self._command(
                CommandKind.SET_INSTRUMENT, instrument=instrument, funding_cap_ppb=cap_ppb
            )
        )

    def set_price_band(self, instrument: int, band_ppm: int) -> CommandResult:
        """This instrument's price band around the mark, ppm (0: the configured
        ``market_band_ppm``); the funding cap is left as it is. docs/risk.md, price band."""
        return self._result(
            self._command(
                CommandKind.SET_INSTRUMENT,
                instrument=instrument,
                flags=InstrumentSetting.PRICE_BAND,
                price_band_ppm=band_ppm,
            )
        )

    def price_band(self, instrument: int) -> tuple[int, int] | None:
        """(lowest, highest) price in ticks an order may have now (the band around the
        applied mark, on the tick grid), or None while there is no mark or risk checks are
        off (then no band applies). The same kernel the engine decides with. O(1)."""
        state = self.engine.state
        if not self.engine.config.risk_checks or query.mark_ticks(state, instrument) <= 0:
            return None
        low, high = price_band(state, np.int64(instrument))
        return int(low), int(high)

    def funding_rate(self, instrument: int) -> int:
        """The perpetual's last funding rate per funding period, 1e-9 (0.0001 = 100,000)."""
        return query.funding_rate_ppb(self.engine.state, instrument)

    def funding_history(self, instrument: int) -> list[tuple[int, int]]:
        """``(sequencer time, rate per period 1e-9)`` of every funding payment this venue
        applied since it started (a journal replay through ``submit`` rebuilds it)."""
        return list(self._funding.get(instrument, []))

    def mark(self, instrument: int) -> int:
        """The instrument's applied mark price (0 if none yet)."""
        return query.mark_ticks(self.engine.state, instrument)

    def account_summary(self, account: int) -> AccountSummary:
        st = self.engine.state
        if not query.account_exists(st, account):
            raise KeyError(account)
        equity, im, mm = (int(v) for v in margins(st, np.int64(account)))
        margin_mode, state = query.account_modes(st, account)
        return AccountSummary(
            account,
            MarginMode(margin_mode).name.lower(),
            AccountState(state).name.lower(),
            query.balance_units(st, account),
            equity,
            im,
            mm,
            equity - im,
            *(g / 1e9 for g in query.position_greeks(st, account)),
        )

    def balance(self, account: int) -> int:
        return query.balance_units(self.engine.state, account)

    def balances(self) -> dict[int, int]:
        return query.balances(self.engine.state)

    def format_price(self, instrument: int, price_ticks: int) -> str:
        decimals = self._price_decimals.get(instrument, 0)
        return f"{price_ticks / 10**decimals:.{decimals}f}"

    def state_hash(self) -> str:
        return self.engine.state_hash()

    def prove(self, account: int) -> dict[str, Any]:
        """Inclusion proof of ``account`` in the current state root (see
        ``derivex.journal.prove``; check it with ``derivex.journal.verify_proof``)."""
        from derivex.journal.proof import prove

        return prove(self, account)

    def check_invariants(self) -> None:
        self.engine.check_invariants()


def open_exchange(
    directory: Path | str,
    *,
    clock: Callable[[], int] | None = None,
    config: EngineConfig | None = None,
    fsync: str = DEFAULT_FSYNC,
    interval_ms: float = 5.0,
    roll_bytes: int = 64 << 20,
) -> tuple[Exchange, Recovered]:
    """``Exchange.open``: recover the venue journaled in ``directory`` and go on appending
    to its journal (formerly ``derivex.journal.open_exchange``; the journal no longer
    imports the facade)."""
    return Exchange.open(
        directory,
        clock=clock,
        config=config,
        fsync=fsync,
        interval_ms=interval_ms,
        roll_bytes=roll_bytes,
    )
