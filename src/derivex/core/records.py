"""Record layouts, type codes and reason codes: the one place they are defined.

Every command and event is a fixed-size (64-byte) little-endian record. Some
fields are *aliases*: several names over the same bytes, so each command kind
reads its payload under a name that carries its unit (``amount_units`` for a
deposit, ``strike_ticks`` for an instrument). The table in ``COMMAND_FIELDS``
documents which names each kind uses.

Codes are part of the wire and journal format: they are never renumbered and
never reused. New codes are appended inside their band.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

RECORD_BYTES = 64


def _layout(fields: list[tuple[str, str, int]]) -> np.dtype:
    return np.dtype(
        {
            "names": [name for name, _, _ in fields],
            "formats": [fmt for _, fmt, _ in fields],
            "offsets": [offset for _, _, offset in fields],
            "itemsize": RECORD_BYTES,
        }
    )


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

COMMAND_DTYPE = _layout(
    [
        # header, common to every kind
        ("seq", "<u8", 0),  # sequence number, assigned by the sequencer
        ("ts_ns", "<i8", 8),  # sequencer timestamp, nanoseconds since the epoch
        ("kind", "u1", 16),  # CommandKind
        ("side", "u1", 17),  # Side (orders)
        ("order_type", "u1", 18),  # OrderType
        ("tif", "u1", 19),  # TimeInForce
        ("flags", "u1", 20),  # OrderFlag bits
        ("stp", "u1", 21),  # SelfTradePrevention | SelfTradeScope (create/set account)
        ("count", "<u2", 22),  # number of QUOTE_LEG records after a MASS_QUOTE
        ("account", "<u4", 24),
        ("instrument", "<u4", 28),
        ("order_id", "<u8", 32),  # target of cancel / amend
        ("price_ticks", "<i8", 40),
        ("qty_lots", "<i8", 48),
        ("label", "<u8", 56),  # client label, echoed in events
        # aliases: deposit / withdraw
        ("amount_units", "<i8", 48),
        # aliases: QUOTE_LEG (instrument at 28)
        ("bid_price_ticks", "<i8", 32),
        ("bid_qty_lots", "<i8", 40),
        ("ask_price_ticks", "<i8", 48),
        ("ask_qty_lots", "<i8", 56),
        # aliases: ADD_INSTRUMENT
        ("instrument_kind", "u1", 17),
        ("option_type", "u1", 18),
        ("underlying", "<u2", 22),
        ("tick_size_ticks", "<u4", 24),
        ("expiry_ts_ns", "<i8", 32),
        ("strike_ticks", "<i8", 40),
        ("min_trade_lots", "<u4", 48),
        ("contract_value_units", "<u4", 52),  # collateral units per tick x lot
        ("maker_fee_ppm", "<i4", 56),
        ("taker_fee_ppm", "<i4", 60),
        # aliases: SET_INSTRUMENT
        ("funding_cap_ppb", "<i8", 40),  # |funding rate| cap per period, 1e-9; 0 = config's
        ("price_band_ppm", "<i8", 48),  # price band around the mark, ppm; 0 = config's
        # ``flags`` says which InstrumentSetting the command sets (0: the funding cap only)
        # aliases: CREATE_ACCOUNT / SET_ACCOUNT
        ("margin_mode", "u1", 19),  # MarginMode
        # aliases: INDEX header (count = number of INDEX_SOURCE legs that follow)
        ("index_underlying", "<u4", 24),  # Underlying
        # aliases: INDEX_SOURCE leg (price_ticks at 40)
        ("source_id", "<u4", 24),
        ("source_ts_ns", "<i8", 32),
        # aliases: RISK_ARRAY header (instrument at 28, price_ticks at 40 = option mark,
        # count = number of legs that follow: one RISK_GREEKS leg, then RISK_VALUES legs)
        ("mark_iv_ppm", "<i8", 48),  # implied volatility of the mark, 1e-6 (informative)
        # aliases: RISK_GREEKS leg: Greeks of one lot, fixed point 1e-9 (see docs/risk.md)
        ("delta_nano", "<i8", 24),
        ("gamma_nano", "<i8", 32),
        ("vega_nano", "<i8", 40),
        ("theta_nano", "<i8", 48),
        ("rho_nano", "<i8", 56),
        # aliases: RISK_VALUES leg: five consecutive scenario P&Ls of one lot, collateral
        # units (a loss is negative), scenarios 5k..5k+4 for the k-th RISK_VALUES leg
        ("v0", "<i8", 24),
        ("v1", "<i8", 32),
        ("v2", "<i8", 40),
        ("v3", "<i8", 48),
        ("v4", "<i8", 56),
        # aliases: PLACE_TRIGGER (core/triggers.py): the order it spawns is described by side,
        # order_type, tif, flags, price_ticks (limit), qty_lots and label as for PLACE_ORDER
        ("trigger_type", "u1", 21),  # TriggerType
        ("trigger_source", "u1", 22),  # TriggerSource
        ("trigger_price_ticks", "<i8", 32),  # stop / take: the trigger price
        ("trigger_offset_ticks", "<i8", 32),  # trailing: the offset from the best price seen
        # aliases: TRANSFER (core/subaccounts.py): ``account`` pays ``amount_units`` to
        # ``to_account``; CREATE_SUBACCOUNT: ``account`` is the main account (stp and
        # margin_mode as CREATE_ACCOUNT)
        ("to_account", "<u4", 28),
        # aliases: SET_MMP_CONFIG / RESET_MMP (core/mmp.py); MASS_QUOTE reads ``mmp_group``
        ("mmp_underlying", "u1", 17),  # Underlying of the MMP group
        ("mmp_interval_s", "<u2", 22),  # window length, seconds; 0 removes the config
        ("mmp_frozen_s", "<u4", 28),  # frozen time after a breach, seconds; 0 = until reset
        ("mmp_group", "<u8", 32),  # group name code (gateway/mmp_api.py); 0 = default group
        ("mmp_qty_limit_lots", "<i8", 40),  # lots filled in a window; 0 = no limit
        ("mmp_delta_limit", "<i8", 48),  # |net delta| filled, lots x delta_nano; 0 = none
        ("mmp_vega_limit", "<i8", 56),  # |net vega| filled, collateral units; 0 = none
        # aliases: TRANSFER_OUT / TRANSFER_IN / TRANSFER_REFUND (core/escrow.py), with
        # account and amount_units: the peer domain and the transfer's number (a refund:
        # the refusal's number, and the transfer refunded)
        ("domain", "<u4", 28),
        ("transfer_id", "<u8", 32),
        ("refund_of", "<u8", 40),
        # aliases: PLACE_LINKED header (core/order_links.py; count = legs that follow, each a
        # LINKED_ORDER or LINKED_TRIGGER laid out as PLACE_ORDER / PLACE_TRIGGER)
        ("link_type", "u1", 17),  # LinkType
        ("fill_condition", "u1", 18),  # FillCondition
        # aliases: AMEND_TRIGGER (order_id = the trigger id, price_ticks = the new limit
        # price of a limit type, qty_lots = the new quantity)
        ("new_trigger_ticks", "<i8", 56),  # the new trigger price (trailing: the new offset)
    ]
)

#: Scenario values carried by one RISK_VALUES leg.
RISK_VALUES_PER_LEG = 5


class CommandKind(IntEnum):
    NOOP = 0
    CREATE_ACCOUNT = 1
    DEPOSIT = 2
    WITHDRAW = 3
    SET_ACCOUNT = 4
    # subaccounts 5-9 (core/subaccounts.py)
    TRANSFER = 5  # move collateral between two accounts, atomically
    CREATE_SUBACCOUNT = 6  # a new account linked to ``account`` (its main account)
    ADD_INSTRUMENT = 10
    HALT_INSTRUMENT = 11
    RESUME_INSTRUMENT = 12
    CLOSE_INSTRUMENT = 13
    SET_INSTRUMENT = 14  # per-instrument risk settings (perpetuals: the funding rate cap)
    BLOCK_ACCOUNT = 15  # kill switch: cancel all the account's orders, refuse its new ones
    UNBLOCK_ACCOUNT = 16
    PLACE_ORDER = 20
    CANCEL_ORDER = 21
    AMEND_ORDER = 22
    CANCEL_ALL = 23
    CANCEL_ALL_INSTRUMENT = 24
    MASS_QUOTE = 25
    QUOTE_LEG = 26
    ADVANCE_TIME = 30
    SET_INDEX = 31  # header; ``count`` INDEX_SOURCE legs follow
    INDEX_SOURCE = 32
    SET_RISK_ARRAY = 33  # header; ``count`` legs follow: RISK_GREEKS, then RISK_VALUES
    RISK_GREEKS = 34
    RISK_VALUES = 35
    # conditional orders 40-49 (core/triggers.py)
    PLACE_TRIGGER = 40  # a stop / take / trailing order; also the ``command`` of what fires
    # market-maker protection 50-54 (core/mmp.py)
    SET_MMP_CONFIG = 50  # set (or, interval 0, remove) an account's MMP group; resets it
    RESET_MMP = 51  # unfreeze an account's MMP group at once
    # cross-domain transfers 60-64 (core/escrow.py)
    TRANSFER_OUT = 60  # source domain: account -> escrow for ``domain``
    TRANSFER_IN = 61  # destination: ``domain``'s transfer ``transfer_id`` -> account
    TRANSFER_REFUND = 62  # source: a refused transfer's amount, escrow -> account
    PLACE_LINKED = 41  # header (core/order_links.py); ``count`` LINKED_* legs follow
    LINKED_ORDER = 42  # leg: an order as PLACE_ORDER (the primary of OTO / OTOCO)
    LINKED_TRIGGER = 43  # leg: a trigger order as PLACE_TRIGGER
    AMEND_TRIGGER = 44  # edit an untriggered trigger order (core/triggers.py)

    # deprecated names (see RENAMED): aliases of the members above, same codes
    TIME = ADVANCE_TIME
    INDEX = SET_INDEX
    RISK_ARRAY = SET_RISK_ARRAY


#: Whether a command kind can change state (journal writers may drop the others).
COMMAND_MUTATES: dict[CommandKind, bool] = {
    CommandKind.NOOP: False,
    CommandKind.CREATE_ACCOUNT: True,
    CommandKind.DEPOSIT: True,
    CommandKind.WITHDRAW: True,
    CommandKind.SET_ACCOUNT: True,
    CommandKind.TRANSFER: True,
    CommandKind.CREATE_SUBACCOUNT: True,
    CommandKind.ADD_INSTRUMENT: True,
    CommandKind.HALT_INSTRUMENT: True,
    CommandKind.RESUME_INSTRUMENT: True,
    CommandKind.CLOSE_INSTRUMENT: True,
    CommandKind.SET_INSTRUMENT: True,
    CommandKind.BLOCK_ACCOUNT: True,
    CommandKind.UNBLOCK_ACCOUNT: True,
    CommandKind.PLACE_ORDER: True,
    CommandKind.CANCEL_ORDER: True,
    CommandKind.AMEND_ORDER: True,
    CommandKind.CANCEL_ALL: True,
    CommandKind.CANCEL_ALL_INSTRUMENT: True,
    CommandKind.MASS_QUOTE: True,
    CommandKind.QUOTE_LEG: True,
    CommandKind.ADVANCE_TIME: True,
    CommandKind.SET_INDEX: True,
    CommandKind.INDEX_SOURCE: True,
    CommandKind.SET_RISK_ARRAY: True,
    CommandKind.RISK_GREEKS: True,
    CommandKind.RISK_VALUES: True,
    CommandKind.PLACE_TRIGGER: True,
    CommandKind.SET_MMP_CONFIG: True,
    CommandKind.RESET_MMP: True,
    CommandKind.TRANSFER_OUT: True,
    CommandKind.TRANSFER_IN: True,
    CommandKind.TRANSFER_REFUND: True,
    CommandKind.PLACE_LINKED: True,
    CommandKind.LINKED_ORDER: True,
    CommandKind.LINKED_TRIGGER: True,
    CommandKind.AMEND_TRIGGER: True,
}

#: Payload field names each command kind reads (documentation and validation aid).
COMMAND_FIELDS: dict[CommandKind, tuple[str, ...]] = {
    CommandKind.NOOP: (),
    CommandKind.CREATE_ACCOUNT: ("stp", "margin_mode"),
    CommandKind.DEPOSIT: ("account", "amount_units"),
    CommandKind.WITHDRAW: ("account", "amount_units"),
    CommandKind.SET_ACCOUNT: ("account", "stp", "margin_mode"),
    CommandKind.TRANSFER: ("account", "to_account", "amount_units"),
    CommandKind.CREATE_SUBACCOUNT: ("account", "stp", "margin_mode"),
    CommandKind.ADD_INSTRUMENT: (
        "instrument_kind",
        "option_type",
        "underlying",
        "tick_size_ticks",
        "expiry_ts_ns",
        "strike_ticks",
        "min_trade_lots",
        "contract_value_units",
        "maker_fee_ppm",
        "taker_fee_ppm",
    ),
    CommandKind.HALT_INSTRUMENT: ("instrument",),
    CommandKind.RESUME_INSTRUMENT: ("instrument",),
    CommandKind.CLOSE_INSTRUMENT: ("instrument",),
    CommandKind.SET_INSTRUMENT: ("instrument", "flags", "funding_cap_ppb", "price_band_ppm"),
    CommandKind.BLOCK_ACCOUNT: ("account",),
    CommandKind.UNBLOCK_ACCOUNT: ("account",),
    CommandKind.PLACE_ORDER: (
        "account",
        "instrument",
        "side",
        "order_type",
        "tif",
        "flags",
        "price_ticks",
        "qty_lots",
        "label",
    ),
    CommandKind.CANCEL_ORDER: ("account", "order_id", "flags", "label"),
    CommandKind.AMEND_ORDER: ("account", "order_id", "flags", "label", "price_ticks", "qty_lots"),
    CommandKind.CANCEL_ALL: ("account",),
    CommandKind.CANCEL_ALL_INSTRUMENT: ("account", "instrument"),
    CommandKind.MASS_QUOTE: ("account", "count", "label", "mmp_group"),
    CommandKind.QUOTE_LEG: (
        "instrument",
        "bid_price_ticks",
        "bid_qty_lots",
        "ask_price_ticks",
        "ask_qty_lots",
    ),
    CommandKind.ADVANCE_TIME: (),
    CommandKind.SET_INDEX: ("index_underlying", "count"),
    CommandKind.INDEX_SOURCE: ("source_id", "source_ts_ns", "price_ticks"),
    CommandKind.SET_RISK_ARRAY: ("instrument", "price_ticks", "mark_iv_ppm", "count"),
    CommandKind.RISK_GREEKS: ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano"),
    CommandKind.RISK_VALUES: ("v0", "v1", "v2", "v3", "v4"),
    CommandKind.PLACE_TRIGGER: (
        "account",
        "instrument",
        "side",
        "order_type",
        "tif",
        "flags",
        "trigger_type",
        "trigger_source",
        "trigger_price_ticks",
        "price_ticks",
        "qty_lots",
        "label",
    ),
    CommandKind.SET_MMP_CONFIG: (
        "account",
        "mmp_underlying",
        "mmp_group",
        "mmp_interval_s",
        "mmp_frozen_s",
        "mmp_qty_limit_lots",
        "mmp_delta_limit",
        "mmp_vega_limit",
    ),
    CommandKind.RESET_MMP: ("account", "mmp_underlying", "mmp_group"),
    CommandKind.TRANSFER_OUT: ("account", "domain", "amount_units"),
    CommandKind.TRANSFER_IN: ("account", "domain", "transfer_id", "amount_units"),
    CommandKind.TRANSFER_REFUND: (
        "account",
        "domain",
        "transfer_id",
        "refund_of",
        "amount_units",
    ),
    CommandKind.PLACE_LINKED: ("account", "link_type", "fill_condition", "count"),
    CommandKind.AMEND_TRIGGER: (
        "account",
        "order_id",
        "price_ticks",
        "qty_lots",
        "new_trigger_ticks",
    ),
}
COMMAND_FIELDS[CommandKind.LINKED_ORDER] = COMMAND_FIELDS[CommandKind.PLACE_ORDER]
COMMAND_FIELDS[CommandKind.LINKED_TRIGGER] = COMMAND_FIELDS[CommandKind.PLACE_TRIGGER]


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1


class TimeInForce(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2


class OrderFlag(IntEnum):
    POST_ONLY = 1
    REJECT_POST_ONLY = 2  # with POST_ONLY: reject instead of repricing
    REDUCE_ONLY = 4
    QUOTE = 8  # set by the engine on mass-quote orders; not accepted from clients
    # place: ``label`` is a client order id, unique among the account's open orders;
    # cancel / amend: the target is named by ``label``, not ``order_id`` (core/client_ids.py)
    CLIENT_ORDER_ID = 16
    # market-maker protection (core/mmp.py): fills count toward the account's default MMP
    # group of the underlying; refused while it is frozen; limit orders only
    MMP = 32


class TriggerType(IntEnum):
    """What a PLACE_TRIGGER order waits for (docs/conditional-orders.md)."""

    STOP = 1  # sell: the source falls to the trigger price; buy: rises to it
    TAKE = 2  # sell: the source rises to the trigger price; buy: falls to it
    TRAILING = 3  # sell: falls by the offset from the highest price seen; buy: mirrored


class TriggerSource(IntEnum):
    """The price a trigger order watches."""

    LAST = 0  # the instrument's last trade price (Deribit's default)
    INDEX = 1  # the underlying's index
    MARK = 2  # the instrument's mark price


class LinkType(IntEnum):
    """How the legs of a PLACE_LINKED group act on each other (Deribit's
    ``linked_order_type``)."""

    OTO = 1  # one_triggers_other: the secondaries wait for the primary's fills
    OCO = 2  # one_cancels_other: two trigger orders, one firing or filling cancels the other
    OTOCO = 3  # one_triggers_one_cancels_other: a primary, then an OCO pair


class FillCondition(IntEnum):
    """When linked legs react (Deribit's ``trigger_fill_condition``)."""

    FIRST_HIT = 0  # on the first fill (OTO: place whole; OCO: cancel at the other's firing)
    COMPLETE_FILL = 1  # once the watched order is gone (filled, or ended after a fill)
    INCREMENTAL = 2  # pro rata to each fill, rounded down to the lot step


#: Trigger order ids carry this bit, so they never equal an order id.
TRIGGER_ID_TAG = 1 << 62


class InstrumentSetting(IntEnum):
    """Bits of SET_INSTRUMENT's ``flags``: which settings the command sets (0 = FUNDING_CAP,
    as before these bits existed)."""

    FUNDING_CAP = 1  # perpetuals only
    PRICE_BAND = 2


CLIENT_ORDER_FLAGS = (
    OrderFlag.POST_ONLY
    | OrderFlag.REJECT_POST_ONLY
    | OrderFlag.REDUCE_ONLY
    | OrderFlag.CLIENT_ORDER_ID
    | OrderFlag.MMP
)


class SelfTradePrevention(IntEnum):
    CANCEL_RESTING = 0  # the resting own order is cancelled, matching continues
    REJECT_INCOMING = 1  # the incoming order is rejected whole, nothing changes


class SelfTradeScope(IntEnum):
    """Bit 7 of the ``stp`` field (CREATE_ACCOUNT, CREATE_SUBACCOUNT, SET_ACCOUNT) and of the
    account's setting, beside the ``SelfTradePrevention`` mode in bit 0 (core/stp.py)."""

    ACCOUNT = 0  # the account's own resting orders only (the default)
    FAMILY = 128  # also those of its main account and of every subaccount of that main


class InstrumentKind(IntEnum):
    PERPETUAL = 1
    OPTION = 2


class OptionType(IntEnum):
    NONE = 0
    CALL = 1
    PUT = 2


class InstrumentStatus(IntEnum):
    UNUSED = 0
    ACTIVE = 1
    HALTED = 2
    CLOSED = 3
    SETTLED = 4  # expired and cash-settled


class Underlying(IntEnum):
    BTC = 1
    ETH = 2
    SOL = 3


class MarginMode(IntEnum):
    STANDARD = 0  # per-instrument % of notional (perpetuals) and Deribit option formulas
    PORTFOLIO = 1  # worst scenario loss of the whole portfolio plus add-ons


class AccountState(IntEnum):
    NORMAL = 0
    IN_LIQUIDATION = 1
    BANKRUPT = 2


class LiquidationStage(IntEnum):
    """``status``/``a`` of a LIQUIDATION event. qty_lots/price_ticks: what was closed and at
    what price; ``b``: the money involved (fee, fund payment, bad debt), collateral units."""

    STARTED = 1  # equity < maintenance margin: the account is taken over
    ORDERS_CANCELLED = 2
    BOOK = 3  # a reducing IOC order filled through the book (no worse than bankruptcy)
    INSURANCE_FUND = 4  # the fund took the remainder at the bankruptcy price
    AUTO_DELEVERAGE = 5  # an opposite position was closed at the bankruptcy price
    SOCIALISED = 6  # a loss the fund could not cover was spread over winning accounts
    FEE = 7  # liquidation fee to the insurance fund
    ENDED = 8  # back above maintenance margin, or flat


class IndexStatus(IntEnum):
    NONE = 0  # never set: instruments of the underlying cannot trade
    VALID = 1
    STALE = 2  # no valid source at the last update (see docs/risk.md for what is allowed)


class SystemAccount(IntEnum):
    """Accounts created with the engine; they hold real balances and never trade."""

    FEE_POOL = 0
    INSURANCE_FUND = 1
    PNL_CLEARING = 2  # counterpart of realised perpetual P&L (see docs/core-semantics.md)


SYSTEM_ACCOUNTS = len(SystemAccount)


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------

EVENT_DTYPE = _layout(
    [
        ("seq", "<u8", 0),  # seq of the command that produced the event
        ("kind", "u1", 8),  # EventKind
        ("command", "u1", 9),  # CommandKind of that command
        ("side", "u1", 10),
        ("liquidity", "u1", 11),  # Liquidity (fills)
        ("reason", "<u2", 12),  # Reason
        ("leg", "<u2", 14),  # mass-quote leg index
        ("account", "<u4", 16),
        ("instrument", "<u4", 20),
        ("order_id", "<u8", 24),
        ("price_ticks", "<i8", 32),
        ("qty_lots", "<i8", 40),
        ("a", "<i8", 48),  # kind-specific, see aliases
        ("b", "<i8", 56),  # kind-specific, see aliases
        # aliases
        ("label", "<u8", 56),  # ACCEPTED, REJECTED, AMENDED, CANCELLED, EXPIRED
        ("fee_units", "<i8", 48),  # FILLED
        ("remaining_lots", "<i8", 56),  # FILLED: resting/remaining qty of this order after the fill
        ("cash_units", "<i8", 48),  # POSITION, BALANCE: balance change excluding fees
        ("balance_units", "<i8", 56),  # POSITION, BALANCE: balance after the event
        ("position_lots", "<i8", 40),  # POSITION: position after the fill
        ("basis_units", "<i8", 32),  # POSITION: signed entry value after the fill
        ("status", "<i8", 48),  # INSTRUMENT_STATUS, ACCOUNT_CREATED (stp mode)
        ("counterpart", "<i8", 32),  # BALANCE_CHANGED of a TRANSFER: the other account
    ]
)


class EventKind(IntEnum):
    ACCEPTED = 1  # the command passed validation; its consequences follow
    REJECTED = 2  # the command changed nothing (except its gas charge)
    FILLED = 3  # one side of a trade
    CANCELLED = 4  # a resting order left the book; qty_lots = cancelled remainder
    EXPIRED = 5  # the unfilled remainder of a non-resting order
    AMENDED = 6
    POSITION_CHANGED = 7  # position and balance of one side after a fill
    BALANCE_CHANGED = 8  # deposit / withdrawal
    ACCOUNT_CREATED = 9
    INSTRUMENT_STATUS_CHANGED = 10  # added, halted, resumed, closed
    INDEX_CHANGED = 11  # underlying in ``instrument``; price_ticks = index, status = IndexStatus,
    #             qty_lots = sources used
    MARK_CHANGED = 12  # instrument's new mark price (price_ticks); a = mark IV ppm (options)
    LIQUIDATION_PROGRESSED = 13  # one stage of a liquidation: status = LiquidationStage, see below
    ACCOUNT_STATE_CHANGED = 14  # an account's AccountState changed: status = the new state
    FUNDING_PAID = 15  # funding paid (cash_units < 0) or received by one perpetual position
    SETTLED = 16  # expiry: cash settlement of one option position at price_ticks
    # subaccounts 17-19 (core/subaccounts.py). A TRANSFER's two BALANCE_CHANGED events
    # carry the other account in ``price_ticks`` (alias ``counterpart``; 0 for a deposit or
    # withdrawal, as no system account can be a transfer's party)
    SUBACCOUNT_LINKED = 17  # account = the new subaccount, ``status`` = its main account
    # conditional orders 30-39 (core/triggers.py): ``leg`` = the trigger's spec (type | source
    # << 2 | order type << 4 | tif << 5 | flags << 8), order_id = the trigger order's id,
    # ``a`` = limit price (limit types) or offset (trailing), ``label`` = its label
    TRIGGER_PLACED = 30  # price_ticks = trigger price, qty_lots = lots
    TRIGGER_FIRED = 31  # price_ticks = the source price that crossed; ``a`` = the spawned
    #                     order's id, or 0 and ``reason`` = why the spawned order was rejected
    TRIGGER_CANCELLED = 32  # reason = why; price_ticks = trigger price at the time
    # market-maker protection 40-44 (core/mmp.py)
    MMP_TRIGGERED = 40  # a group breached its limits and froze: instrument = underlying,
    #   order_id = group code, leg = its slot, qty_lots / price_ticks / b = lots, delta and
    #   vega filled in the window, a = frozen until (ns; 2**63-1: until reset); its quotes
    #   and MMP orders are CANCELLED (CANCEL_MMP_TRIGGERED) next, in cancel-all's order
    # cross-domain transfers 45-49 (core/escrow.py): instrument = the peer domain, order_id =
    # the transfer number, price_ticks = the refusal number (REFUSED, REFUNDED), cash_units
    # = the amount, balance_units = the balance after
    TRANSFER_SENT = 45  # TRANSFER_OUT applied: the account's funds are in escrow
    TRANSFER_RECEIVED = 46  # TRANSFER_IN credited
    TRANSFER_REFUSED = 47  # TRANSFER_IN processed but not credited (reason): to be refunded
    TRANSFER_REFUNDED = 48  # TRANSFER_REFUND credited back from escrow
    # linked orders 33-36 (core/order_links.py), on trigger orders that belong to a group;
    # ``leg`` = the trigger's spec, ``command`` = PLACE_LINKED
    ORDER_LINKED = 33  # placement: a = the primary's id (0: OCO), b = the OCO partner's id
    #                    (0: none), price_ticks = link spec, qty_lots = the full quantity
    LINK_ACTIVATED = 34  # a held secondary placed or grown: qty_lots = its quantity now,
    #                      price_ticks = trigger price, a = the primary's id
    LINK_REDUCED = 35  # an OCO member reduced pro rata (incremental): qty_lots = its quantity
    #                    now, a = the order whose fill reduced it
    TRIGGER_AMENDED = 36  # AMEND_TRIGGER applied: price_ticks = trigger price, qty_lots, a
    #                       as TRIGGER_PLACED (command = AMEND_TRIGGER)

    # deprecated names (see RENAMED): aliases of the members above, same codes
    POSITION = POSITION_CHANGED
    BALANCE = BALANCE_CHANGED
    INSTRUMENT_STATUS = INSTRUMENT_STATUS_CHANGED
    INDEX = INDEX_CHANGED
    MARK = MARK_CHANGED
    LIQUIDATION = LIQUIDATION_PROGRESSED
    ACCOUNT_STATE = ACCOUNT_STATE_CHANGED
    FUNDING = FUNDING_PAID
    SETTLEMENT = SETTLED


class Liquidity(IntEnum):
    NONE = 0
    MAKER = 1
    TAKER = 2


class Reason(IntEnum):
    """Reject and cancel reasons, banded by subsystem. Never renumbered."""

    OK = 0
    # validation 100-199
    UNKNOWN_COMMAND = 100
    BAD_SIDE = 101
    BAD_ORDER_TYPE = 102
    BAD_TIME_IN_FORCE = 103
    BAD_FLAGS = 104
    QTY_NOT_POSITIVE = 105
    PRICE_NOT_POSITIVE = 106
    PRICE_OFF_TICK = 107
    QTY_OFF_STEP = 108
    QTY_TOO_LARGE = 109
    PRICE_TOO_LARGE = 110
    OVERFLOW = 111
    UNKNOWN_INSTRUMENT = 112
    UNKNOWN_ACCOUNT = 113
    UNKNOWN_ORDER = 114
    NOT_ORDER_OWNER = 115
    BAD_MASS_QUOTE = 116
    ORPHAN_QUOTE_LEG = 117
    BAD_INSTRUMENT_PARAMS = 118
    AMOUNT_NOT_POSITIVE = 119
    SYSTEM_ACCOUNT = 120
    BAD_STP_MODE = 121
    DUPLICATE_QUOTE_INSTRUMENT = 122
    CROSSED_QUOTE = 123
    BAD_INDEX = 124
    BAD_RISK_ARRAY = 125
    UNKNOWN_UNDERLYING = 126
    BAD_MARGIN_MODE = 127
    ORPHAN_LEG = 128
    DUPLICATE_CLIENT_ORDER_ID = 129  # another open order of the account has this client id
    BAD_CLIENT_ORDER_ID = 130  # a client order id must be non-zero
    SAME_ACCOUNT = 131  # a TRANSFER to the account it comes from
    PARENT_IS_SUBACCOUNT = 132  # CREATE_SUBACCOUNT under a subaccount (one level only)
    UNKNOWN_RECIPIENT = 133  # a TRANSFER's to_account does not exist
    BAD_TRIGGER = 140  # unknown trigger type or source, or a limit trailing order
    TRIGGER_WOULD_FIRE = 141  # the source is already at or past the trigger price
    NO_TRIGGER_PRICE = 142  # trailing: the source has no price yet to trail from
    BAD_MMP_CONFIG = 150  # a negative limit, or an enabled group without any limit
    MMP_GROUP_UNKNOWN = 151  # no (enabled) MMP config for this account, underlying, group
    MMP_GROUPS_FULL = 152  # the account has MMP_SLOTS groups already
    BAD_DOMAIN = 155  # a transfer's peer domain is out of range
    DUPLICATE_TRANSFER = 156  # this transfer (or refund) number was processed already
    TRANSFER_AHEAD = 157  # beyond the processed-transfer window: deliver the earlier ones
    BAD_TRANSFER_ID = 158  # not a transfer number (zero, or a refund of one never sent)
    BAD_LINK = 143  # link type, fill condition, legs (count, kinds, account, instrument)
    TRIGGER_NOT_EDITABLE = 144  # AMEND_TRIGGER of a triggered (queued) or grouped trigger order
    # risk 200-299
    INSUFFICIENT_FUNDS = 200
    POSITION_LIMIT = 201
    INSUFFICIENT_MARGIN = 202
    INDEX_STALE = 203  # the underlying has no valid index: only risk-reducing actions
    NO_MARK = 204  # the instrument has no mark price / risk array yet
    PRICE_BAND = 205  # reserved, never emitted: outside the band is 208 / 209
    MARGIN_MODE_OPEN = 206  # margin mode cannot change with positions or orders open
    ACCOUNT_IN_LIQUIDATION = 207  # the engine controls the account until liquidation ends
    PRICE_BELOW_BAND = 208  # a buy below the price band, or a quote side below it
    PRICE_ABOVE_BAND = 209  # a sell above the price band, or a quote side above it
    MMP_FROZEN = 210  # the order's / quote's MMP group is frozen (a breach, until reset/time)
    # matching 300-399
    POST_ONLY_WOULD_TAKE = 300
    FOK_NOT_FILLED = 301
    REDUCE_ONLY_WOULD_INCREASE = 302
    SELF_TRADE_REJECTED = 303
    NO_LIQUIDITY = 304
    CANCEL_BY_USER = 350
    CANCEL_IOC_REMAINDER = 351
    CANCEL_SELF_TRADE = 352
    CANCEL_REDUCE_ONLY = 353
    CANCEL_GAS = 354
    CANCEL_INSTRUMENT_CLOSED = 355
    CANCEL_QUOTE_REPLACED = 356
    CANCEL_ALL = 357
    CANCEL_LIQUIDATION = 358
    CANCEL_EXPIRED = 359  # the instrument expired
    CANCEL_ACCOUNT_BLOCKED = 360  # an operator blocked the account (BLOCK_ACCOUNT)
    CANCEL_MMP_TRIGGERED = 365  # the order's MMP group breached its limits and froze
    OCO_OTHER_CLOSED = 361  # the other leg of a one-cancels-other pair fired, filled or left
    OTO_PRIMARY_CLOSED = 362  # the primary of a held secondary left without the fills it needed
    # account 400-499
    BALANCE_LIMIT = 400
    SUBACCOUNT_LIMIT = 401  # the main account has MAX_SUBACCOUNTS subaccounts already
    RECIPIENT_BLOCKED = 402  # a TRANSFER to a blocked account (the kill switch)
    RECIPIENT_IN_LIQUIDATION = 403  # a TRANSFER to an account the engine is liquidating
    TRANSFER_LIMIT = 410  # escrow totals would overflow, or a refund exceeds the escrow
    # admin 500-599
    INSTRUMENT_HALTED = 500
    INSTRUMENT_CLOSED = 501
    INSTRUMENT_NOT_HALTED = 502
    INSTRUMENT_NOT_ACTIVE = 503
    ACCOUNT_BLOCKED = 504  # the account is blocked: no trading command until UNBLOCK_ACCOUNT
    ACCOUNT_NOT_BLOCKED = 505  # UNBLOCK_ACCOUNT of an account that is not blocked
    # capacity 600-699
    ORDER_POOL_FULL = 600
    LEVEL_POOL_FULL = 601
    ACCOUNT_POOL_FULL = 602
    INSTRUMENT_POOL_FULL = 603
    POSITION_POOL_FULL = 604
    ACCOUNT_ORDER_LIMIT = 605
    BOOK_ORDER_LIMIT = 606
    GAS_EXHAUSTED = 607
    BOOK_LEVEL_LIMIT = 608
    TRIGGER_POOL_FULL = 620


def reason_band(reason: int) -> str:
    """Name of the subsystem band a reason code belongs to."""
    bands = (
        (0, "ok"),
        (100, "validation"),
        (200, "risk"),
        (300, "matching"),
        (400, "account"),
        (500, "admin"),
        (600, "capacity"),
    )
    name = "unknown"
    for start, band in bands:
        if reason >= start:
            name = band
    return name


def command_array(n: int) -> np.ndarray:
    """Zeroed array of ``n`` command records."""
    return np.zeros(n, dtype=COMMAND_DTYPE)


def event_array(n: int) -> np.ndarray:
    """Zeroed array of ``n`` event records."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def concat_commands(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate command arrays keeping the aliased layout (``np.concatenate`` would
    repack the overlapping fields into a different, larger dtype)."""
    out = command_array(sum(len(part) for part in parts))
    start = 0
    for part in parts:
        out.view(np.uint8).reshape(-1, RECORD_BYTES)[start : start + len(part)] = part.view(
            np.uint8
        ).reshape(-1, RECORD_BYTES)
        start += len(part)
    return out


def index_records(underlying: int, sources: list[tuple[int, int, int]]) -> np.ndarray:
    """An INDEX command: the header and one INDEX_SOURCE leg per ``(source_id, source_ts_ns,
    price_ticks)``."""
    records = command_array(1 + len(sources))
    records["kind"][0] = CommandKind.SET_INDEX
    records["index_underlying"][0] = underlying
    records["count"][0] = len(sources)
    for index, (source, ts_ns, price) in enumerate(sources, start=1):
        records["kind"][index] = CommandKind.INDEX_SOURCE
        records["source_id"][index] = source
        records["source_ts_ns"][index] = ts_ns
        records["price_ticks"][index] = price
    return records


def risk_records(
    instrument: int,
    mark_ticks: int,
    values: list[int] | np.ndarray,
    greeks: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
    mark_iv_ppm: int = 0,
) -> np.ndarray:
    """A RISK_ARRAY command for one instrument: its mark, one RISK_GREEKS leg (delta, gamma,
    vega, theta, rho of one lot, 1e-9) and the scenario P&Ls of one lot (collateral units,
    one per configured scenario) in RISK_VALUES legs of five."""
    count = len(values)
    legs = -(-count // RISK_VALUES_PER_LEG)
    records = command_array(2 + legs)
    records["kind"][0] = CommandKind.SET_RISK_ARRAY
    records["instrument"][0] = instrument
    records["price_ticks"][0] = mark_ticks
    records["mark_iv_ppm"][0] = mark_iv_ppm
    records["count"][0] = 1 + legs
    records["kind"][1] = CommandKind.RISK_GREEKS
    for name, value in zip(
        ("delta_nano", "gamma_nano", "vega_nano", "theta_nano", "rho_nano"), greeks, strict=True
    ):
        records[name][1] = value
    padded = np.zeros(legs * RISK_VALUES_PER_LEG, dtype=np.int64)
    padded[:count] = np.asarray(values, dtype=np.int64)
    for leg in range(legs):
        row = records[2 + leg]
        row["kind"] = CommandKind.RISK_VALUES
        for k in range(RISK_VALUES_PER_LEG):
            row[f"v{k}"] = padded[leg * RISK_VALUES_PER_LEG + k]
    return records


#: The one table of renamed Python names (issue 13: commands imperative, events past tense).
#: Numeric codes never change; each old name is an alias of its member and keeps working.
RENAMED: dict[str, str] = {
    "CommandKind.TIME": "CommandKind.ADVANCE_TIME",
    "CommandKind.INDEX": "CommandKind.SET_INDEX",
    "CommandKind.RISK_ARRAY": "CommandKind.SET_RISK_ARRAY",
    "EventKind.POSITION": "EventKind.POSITION_CHANGED",
    "EventKind.BALANCE": "EventKind.BALANCE_CHANGED",
    "EventKind.INSTRUMENT_STATUS": "EventKind.INSTRUMENT_STATUS_CHANGED",
    "EventKind.INDEX": "EventKind.INDEX_CHANGED",
    "EventKind.MARK": "EventKind.MARK_CHANGED",
    "EventKind.LIQUIDATION": "EventKind.LIQUIDATION_PROGRESSED",
    "EventKind.ACCOUNT_STATE": "EventKind.ACCOUNT_STATE_CHANGED",
    "EventKind.FUNDING": "EventKind.FUNDING_PAID",
    "EventKind.SETTLEMENT": "EventKind.SETTLED",
}
