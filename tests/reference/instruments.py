"""Instruments: add, halt, resume, close and per-instrument settings. Mirrors core/admin.py."""

from __future__ import annotations

from derivex.core.config import MAX_FEE_PPM
from derivex.core.records import (
    EventKind,
    InstrumentKind,
    InstrumentSetting,
    InstrumentStatus,
    OptionType,
    Reason,
)
from tests.reference.entities import (
    BUY,
    SELL,
    Instrument,
    Reject,
)


class InstrumentsModel:
    """Methods of ``ReferenceEngine`` for the concept in the module docstring."""

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
