"""Errors the gateway answers with: JSON-RPC 2.0 error objects carrying Deribit's codes.

``REASON_ERRORS`` is the one table from engine reason codes (``derivex.core.records.Reason``)
to Deribit error codes. Clients such as ccxt map errors by the exact code, so every code
here is one Deribit documents, chosen for the exception a client should raise
(``InvalidOrder``, ``InsufficientFunds``, ``DDoSProtection``, ...).

The gateway's own codes for limits and overload (docs/limits.md): **10028**
``too_many_requests`` for rate limits (per key, and public methods per connection and per
address, ``data.reason`` naming which); **10047** ``matching_engine_queue_full`` for a new
order that can take liquidity shed under overload and **10040** ``retry`` for any other new
order shed (both with ``data.reason = "overload"`` and ``data.class``); a slow WebSocket
consumer is closed with code 1008, reason ``slow consumer: ...``.

>>> REASON_ERRORS[Reason.POST_ONLY_WOULD_TAKE]
(11054, 'post_only_reject')
>>> rpc_error_for(Reason.GAS_EXHAUSTED).code
10028
"""

from __future__ import annotations

from typing import Any

from derivex.core.records import Reason

# JSON-RPC 2.0 codes. INVALID_PARAMS: a parameter of the wrong type, a number outside the
# grammar of ``numbers`` or beyond int64, or one the method does not implement (``data``
# names it); see docs/gateway.md
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
MISSING_PARAMS = -32000

# Deribit codes the gateway raises itself (not from an engine reason)
ORDER_NOT_FOUND = 10004
ALREADY_CLOSED = 10010
INVALID_INSTRUMENT = 10020
INVALID_AMOUNT = 10021  # also: not whole lots, above the engine's maximum order size
INVALID_PRICE = 10023
TOO_MANY_REQUESTS = 10028  # rate limits (per key; public methods per connection / address)
RETRY = 10040  # also: a new passive order shed under overload (data.reason "overload")
QUEUE_FULL = 10047  # a new order that can take liquidity, shed under overload
PRICE_WRONG_TICK = 10043
PRICE_TOO_HIGH = 10007  # also the gateway's own check of the instrument's price cap
QTY_TOO_LOW = 10002
INVALID_ARGUMENTS = 11029
OTHER_REJECT = 11030
NOT_OPEN_ORDER = 11044
BAD_REQUEST = 11050
INTERNAL_ERROR = 11094  # a bug: never the answer to anything a client can send
# authentication (docs/gateway-credentials.md): 13004 a failed public/auth grant, whatever
# was wrong (unknown id, wrong secret or signature, revoked key); 13009 a failed signed
# request, token or refresh token, a stale timestamp or a replayed signature
# (data.reason says which, never whether an id exists); 10028 (TOO_MANY_REQUESTS) also
# answers an origin or client id backed off after failed attempts (data.retry_after_ms)
# the command was taken but its outcome is unknown (engine or journal stalled): query it
OUTCOME_UNKNOWN = 13888
INVALID_CREDENTIALS = 13004
USER_NOT_FOUND = 13007
UNAUTHORIZED = 13009
NOT_FOUND = 13020
FORBIDDEN = 13021

#: engine reason -> (Deribit code, Deribit message). Every ``Reason`` is listed (tested).
REASON_ERRORS: dict[Reason, tuple[int, str]] = {
    Reason.OK: (0, "ok"),
    # validation
    Reason.UNKNOWN_COMMAND: (BAD_REQUEST, "bad_request"),
    Reason.BAD_SIDE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_ORDER_TYPE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_TIME_IN_FORCE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_FLAGS: (11047, "unsupported_arg_combination"),
    Reason.QTY_NOT_POSITIVE: (INVALID_AMOUNT, "invalid_amount"),
    Reason.PRICE_NOT_POSITIVE: (INVALID_PRICE, "invalid_price"),
    Reason.PRICE_OFF_TICK: (PRICE_WRONG_TICK, "price_wrong_tick"),
    Reason.QTY_OFF_STEP: (INVALID_AMOUNT, "invalid_amount"),
    Reason.QTY_TOO_LARGE: (INVALID_AMOUNT, "invalid_amount"),
    Reason.PRICE_TOO_LARGE: (PRICE_TOO_HIGH, "price_too_high"),
    Reason.OVERFLOW: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.UNKNOWN_INSTRUMENT: (INVALID_INSTRUMENT, "invalid_or_unsupported_instrument"),
    Reason.UNKNOWN_ACCOUNT: (USER_NOT_FOUND, "user_not_found"),
    Reason.UNKNOWN_ORDER: (ORDER_NOT_FOUND, "order_not_found"),
    Reason.NOT_ORDER_OWNER: (ORDER_NOT_FOUND, "order_not_found"),  # never reveal others' ids
    Reason.BAD_MASS_QUOTE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.ORPHAN_QUOTE_LEG: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_INSTRUMENT_PARAMS: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.AMOUNT_NOT_POSITIVE: (INVALID_AMOUNT, "invalid_amount"),
    Reason.SYSTEM_ACCOUNT: (FORBIDDEN, "forbidden"),
    Reason.BAD_STP_MODE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.DUPLICATE_QUOTE_INSTRUMENT: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.CROSSED_QUOTE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_INDEX: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_RISK_ARRAY: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.UNKNOWN_UNDERLYING: (INVALID_INSTRUMENT, "invalid_or_unsupported_instrument"),
    Reason.BAD_MARGIN_MODE: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.ORPHAN_LEG: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.DUPLICATE_CLIENT_ORDER_ID: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_CLIENT_ORDER_ID: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.BAD_TRIGGER: (INVALID_ARGUMENTS, "invalid_arguments"),
    # relative to the last trade, index or mark price (Deribit's 11036)
    Reason.TRIGGER_WOULD_FIRE: (11036, "invalid_trigger_price"),
    Reason.BAD_LINK: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.TRIGGER_NOT_EDITABLE: (11044, "not_open_order"),  # crossed (queued) or grouped
    Reason.NO_TRIGGER_PRICE: (11036, "invalid_trigger_price"),
    Reason.SAME_ACCOUNT: (12100, "transfer_not_allowed"),
    Reason.PARENT_IS_SUBACCOUNT: (13012, "unavailable_in_subaccount"),
    Reason.UNKNOWN_RECIPIENT: (USER_NOT_FOUND, "user_not_found"),
    Reason.BAD_MMP_CONFIG: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.MMP_GROUP_UNKNOWN: (INVALID_ARGUMENTS, "invalid_arguments"),  # data.reason names it
    Reason.MMP_GROUPS_FULL: (INVALID_ARGUMENTS, "invalid_arguments"),
    # cross-domain transfers (core/escrow.py)
    Reason.BAD_DOMAIN: (INVALID_ARGUMENTS, "invalid_arguments"),
    Reason.DUPLICATE_TRANSFER: (OTHER_REJECT, "other_reject"),
    Reason.TRANSFER_AHEAD: (10040, "retry"),  # the earlier transfers come first
    Reason.BAD_TRANSFER_ID: (INVALID_ARGUMENTS, "invalid_arguments"),
    # risk
    Reason.INSUFFICIENT_FUNDS: (10009, "not_enough_funds"),
    Reason.POSITION_LIMIT: (10018, "non_pme_max_future_position_size"),
    Reason.INSUFFICIENT_MARGIN: (10009, "not_enough_funds"),
    Reason.INDEX_STALE: (10040, "retry"),  # trading resumes with the next valid index
    Reason.NO_MARK: (10040, "retry"),  # the instrument gets a mark from the pricing service
    Reason.PRICE_BAND: (10011, "price_not_allowed"),
    Reason.PRICE_BELOW_BAND: (10005, "price_too_low"),  # below the ticker's min_price
    Reason.PRICE_ABOVE_BAND: (10007, "price_too_high"),  # above the ticker's max_price
    Reason.MARGIN_MODE_OPEN: (OTHER_REJECT, "other_reject"),
    Reason.ACCOUNT_IN_LIQUIDATION: (10009, "not_enough_funds"),  # only de-risking allowed
    Reason.MMP_FROZEN: (OTHER_REJECT, "other_reject"),  # data.reason "mmp_frozen"
    # matching
    Reason.POST_ONLY_WOULD_TAKE: (11054, "post_only_reject"),
    Reason.FOK_NOT_FILLED: (OTHER_REJECT, "other_reject"),
    Reason.REDUCE_ONLY_WOULD_INCREASE: (OTHER_REJECT, "other_reject"),
    Reason.SELF_TRADE_REJECTED: (10003, "order_overlap"),
    Reason.NO_LIQUIDITY: (OTHER_REJECT, "other_reject"),
    # cancel reasons (never rejects; listed so the table is total)
    Reason.CANCEL_BY_USER: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_IOC_REMAINDER: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_SELF_TRADE: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_REDUCE_ONLY: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_GAS: (TOO_MANY_REQUESTS, "too_many_requests"),
    Reason.CANCEL_INSTRUMENT_CLOSED: (10012, "book_closed"),
    Reason.CANCEL_QUOTE_REPLACED: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_ALL: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_LIQUIDATION: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_EXPIRED: (10012, "book_closed"),
    Reason.CANCEL_ACCOUNT_BLOCKED: (10019, "locked_by_admin"),
    Reason.OCO_OTHER_CLOSED: (OTHER_REJECT, "other_reject"),
    Reason.OTO_PRIMARY_CLOSED: (OTHER_REJECT, "other_reject"),
    Reason.CANCEL_MMP_TRIGGERED: (OTHER_REJECT, "other_reject"),
    # account
    Reason.BALANCE_LIMIT: (OTHER_REJECT, "other_reject"),
    Reason.SUBACCOUNT_LIMIT: (12001, "too_many_subaccounts"),
    Reason.RECIPIENT_BLOCKED: (10019, "locked_by_admin"),
    Reason.RECIPIENT_IN_LIQUIDATION: (12100, "transfer_not_allowed"),
    Reason.TRANSFER_LIMIT: (OTHER_REJECT, "other_reject"),
    # admin
    Reason.INSTRUMENT_HALTED: (10019, "locked_by_admin"),
    Reason.INSTRUMENT_CLOSED: (10012, "book_closed"),
    Reason.INSTRUMENT_NOT_HALTED: (OTHER_REJECT, "other_reject"),
    Reason.INSTRUMENT_NOT_ACTIVE: (OTHER_REJECT, "other_reject"),
    Reason.ACCOUNT_BLOCKED: (10019, "locked_by_admin"),  # the operator's kill switch
    Reason.ACCOUNT_NOT_BLOCKED: (OTHER_REJECT, "other_reject"),
    # capacity
    Reason.ORDER_POOL_FULL: (10040, "retry"),
    Reason.LEVEL_POOL_FULL: (10040, "retry"),
    Reason.ACCOUNT_POOL_FULL: (10040, "retry"),
    Reason.INSTRUMENT_POOL_FULL: (10040, "retry"),
    Reason.POSITION_POOL_FULL: (10040, "retry"),
    Reason.ACCOUNT_ORDER_LIMIT: (10013, "pme_max_total_open_orders"),
    Reason.TRIGGER_POOL_FULL: (11035, "no_more_triggers"),
    Reason.BOOK_ORDER_LIMIT: (10040, "retry"),
    Reason.GAS_EXHAUSTED: (TOO_MANY_REQUESTS, "too_many_requests"),
    Reason.BOOK_LEVEL_LIMIT: (10040, "retry"),
}

#: Deribit's ``cancel_reason`` of an order cancelled or expired for an engine reason.
CANCEL_REASONS: dict[int, str] = {
    Reason.CANCEL_BY_USER: "user_request",
    Reason.CANCEL_ALL: "user_request",
    Reason.CANCEL_IOC_REMAINDER: "immediate_or_cancel",
    Reason.NO_LIQUIDITY: "immediate_or_cancel",
    Reason.CANCEL_SELF_TRADE: "self_trade_prevention",
    Reason.CANCEL_REDUCE_ONLY: "reduce_only",
    Reason.CANCEL_GAS: "rate_limit",
    Reason.CANCEL_INSTRUMENT_CLOSED: "settlement",
    Reason.CANCEL_QUOTE_REPLACED: "mass_quote",
    Reason.CANCEL_LIQUIDATION: "liquidation",
    Reason.CANCEL_EXPIRED: "settlement",
    Reason.CANCEL_ACCOUNT_BLOCKED: "risk_mitigation",
    Reason.CANCEL_MMP_TRIGGERED: "mmp_trigger",
    Reason.OCO_OTHER_CLOSED: "oco_other_closed",  # Deribit's names for linked cancels
    Reason.OTO_PRIMARY_CLOSED: "oto_primary_closed",
}


class RpcError(Exception):
    """An error answered to the client: ``code`` (Deribit or JSON-RPC), ``message`` and
    optional ``data``. Never carries secrets (they are not in requests' data we echo)."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def rpc_error_for(reason: int) -> RpcError:
    """The error for an engine reject ``reason`` (unknown codes: ``other_reject``)."""
    try:
        member = Reason(reason)
    except ValueError:
        return RpcError(OTHER_REJECT, "other_reject", {"reason": int(reason)})
    code, message = REASON_ERRORS.get(member, (OTHER_REJECT, "other_reject"))
    return RpcError(code, message, {"reason": member.name.lower()})


def invalid_params(param: str, reason: str) -> RpcError:
    return RpcError(INVALID_PARAMS, "Invalid params", {"param": param, "reason": reason})
