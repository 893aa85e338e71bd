"""Reference model of the exchange core: slow, plain Python, written to be obviously right.

It implements docs/core-semantics.md with Python ints (unbounded), dicts and lists. The
numba kernel (``derivex.core.engine.Engine``) must produce byte-identical events and the
same ``canonical()`` state; tests/core/test_differential.py compares the two.

Where the spec is silent or ambiguous the reading chosen here is listed in
``AMBIGUITIES`` (numbered; the code refers to them as ``[A<n>]``).
"""

from __future__ import annotations

import numpy as np

from derivex.core.config import EngineConfig
from derivex.core.records import (
    EVENT_DTYPE,
    CommandKind,
    EventKind,
    Reason,
    SystemAccount,
)
from tests.reference.accounts import AccountsModel
from tests.reference.ambiguities import AMBIGUITIES
from tests.reference.book import BookModel
from tests.reference.entities import (
    I64_MAX,
    I64_MIN,
    Account,
    Instrument,
    Order,
    Position,
    Reject,
    UnspecifiedOverflow,
)
from tests.reference.inspection import InspectionModel
from tests.reference.instruments import InstrumentsModel
from tests.reference.lifecycle import LifecycleModel
from tests.reference.links import LinksModel
from tests.reference.liquidation import LiquidationModel
from tests.reference.matching import MatchingModel
from tests.reference.mmp import MmpModel
from tests.reference.orders import OrdersModel
from tests.reference.pools import PoolsModel
from tests.reference.quotes import QuotesModel
from tests.reference.risk import RiskModel
from tests.reference.subaccounts import SubaccountsModel
from tests.reference.transfers import TransfersModel
from tests.reference.triggers import TriggersModel

__all__ = ["AMBIGUITIES", "ReferenceEngine", "UnspecifiedOverflow"]


class ReferenceEngine(
    AccountsModel,
    InstrumentsModel,
    PoolsModel,
    BookModel,
    MatchingModel,
    OrdersModel,
    QuotesModel,
    RiskModel,
    LifecycleModel,
    LiquidationModel,
    InspectionModel,
    TriggersModel,
    SubaccountsModel,
    MmpModel,
    TransfersModel,
    LinksModel,
):
    """The reference engine: state and plumbing here, one mixin per concept of core/."""

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
        self._init_triggers()
        self._init_mmp()

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
            start = len(self._events)
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
                elif self._kind == CommandKind.PLACE_LINKED:
                    consumed, complete = self._linked_span(commands, i)
                    self._place_linked(cmd, list(commands[i + 1 : i + consumed]), complete)
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
            self._trigger_stage(start)  # core/triggers.py: after every command
            self._mmp_stage()  # core/mmp_stage.py: after the trigger stage
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
            CommandKind.TRANSFER: self._transfer_command,
            CommandKind.CREATE_SUBACCOUNT: self._create_subaccount,
            CommandKind.ADD_INSTRUMENT: self._add_instrument,
            CommandKind.HALT_INSTRUMENT: self._halt,
            CommandKind.RESUME_INSTRUMENT: self._resume,
            CommandKind.CLOSE_INSTRUMENT: self._close,
            CommandKind.SET_INSTRUMENT: self._set_instrument,
            CommandKind.BLOCK_ACCOUNT: self._block,
            CommandKind.UNBLOCK_ACCOUNT: self._block,
            CommandKind.PLACE_ORDER: self._place,
            CommandKind.CANCEL_ORDER: (
                self._cancel_trigger if int(cmd["order_id"]) >> 62 == 1 else self._cancel
            ),
            CommandKind.PLACE_TRIGGER: self._place_trigger,
            CommandKind.AMEND_TRIGGER: self._amend_trigger,
            CommandKind.AMEND_ORDER: self._amend,
            CommandKind.CANCEL_ALL: self._cancel_all,
            CommandKind.CANCEL_ALL_INSTRUMENT: self._cancel_all,
            CommandKind.SET_MMP_CONFIG: self._set_mmp_config,
            CommandKind.RESET_MMP: self._reset_mmp,
            **self._transfer_handlers(),
        }
        if self._kind == CommandKind.QUOTE_LEG:
            raise Reject(Reason.ORPHAN_QUOTE_LEG)
        if self._kind in (
            CommandKind.INDEX_SOURCE,
            CommandKind.RISK_GREEKS,
            CommandKind.RISK_VALUES,
            CommandKind.LINKED_ORDER,
            CommandKind.LINKED_TRIGGER,
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
