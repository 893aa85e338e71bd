"""Self-trade prevention over the API: Deribit's ``private/set_self_trading_config`` and
the self-trading fields of the account summary (core/stp.py does the work).

- ``private/set_self_trading_config`` (``mode``: ``reject_taker`` | ``cancel_maker``,
  ``extended_to_subaccounts``: bool, both required; ``block_rfq_self_match_prevention``:
  optional bool): ``reject_taker`` rejects an incoming order that would trade against an
  own resting order (REJECT_INCOMING, error 10003 ``order_overlap``), ``cancel_maker``
  cancels the resting one (CANCEL_RESTING, its ``cancel_reason`` ``self_trade_prevention``)
  and matching goes on. ``extended_to_subaccounts`` gives the account the FAMILY scope: the
  resting orders of its main account and of every subaccount of that main count as its own.
  A main account's call sets every member of its family (one SET_ACCOUNT each, in one
  batch: Deribit's setting is the main account's), a subaccount's call sets itself only.
  A subaccount created later starts with its main account's setting
  (``subaccount_api.create_subaccount``). This venue offers no block RFQs:
  ``block_rfq_self_match_prevention`` ``false`` is accepted (what it already is), ``true``
  is refused (-32602 naming it). Reply: ``"ok"``.
- Deribit has no ``get_self_trading_config``: the setting is read, as there, from
  ``private/get_account_summary`` with ``extended`` and ``private/get_account_summaries``
  (``self_trading_reject_mode``, ``self_trading_extended_to_subaccounts``,
  ``block_rfq_self_match_prevention``: ``self_trading_fields``).

The engine's rejects (a blocked caller) map through ``errors``; every worker of
``--workers N`` reads the same replicated setting. Cost: one engine command per family
member (at most 21).
"""

from __future__ import annotations

from typing import Any

from derivex.core import query
from derivex.core.records import (
    CommandKind,
    EventKind,
    SelfTradePrevention,
    SelfTradeScope,
    command_array,
)
from derivex.gateway import params as p
from derivex.gateway.errors import invalid_params, rpc_error_for
from derivex.gateway.methods import ENGINE, Context, method

__all__ = ["MODES", "self_trading_fields", "set_self_trading_config"]

MODES = {
    "cancel_maker": int(SelfTradePrevention.CANCEL_RESTING),
    "reject_taker": int(SelfTradePrevention.REJECT_INCOMING),
}
_MODE_NAMES = {code: name for name, code in MODES.items()}
_MODE_BIT = 1
_FAMILY = int(SelfTradeScope.FAMILY)


def self_trading_fields(state: Any, account: int) -> dict[str, Any]:
    """The account's self-trading setting as Deribit's account summary shows it.

    >>> from derivex.core.config import EngineConfig
    >>> from derivex.exchange import Exchange
    >>> ex = Exchange(EngineConfig())
    >>> account = ex.create_account("reject_incoming")
    >>> self_trading_fields(ex.engine.state, account)["self_trading_reject_mode"]
    'reject_taker'
    """
    stp, _ = query.account_settings(state, account)
    return {
        "self_trading_reject_mode": _MODE_NAMES[stp & _MODE_BIT],
        "self_trading_extended_to_subaccounts": bool(stp & _FAMILY),
        "block_rfq_self_match_prevention": False,
    }


def _members(state: Any, account: int) -> list[int]:
    """Whom the caller's setting covers: itself, and its subaccounts if it is a main."""
    if query.parent_of(state, account):
        return [account]
    return [account, *query.subaccounts_of(state, account)]


@method(
    "private/set_self_trading_config",
    ("mode", "extended_to_subaccounts", "block_rfq_self_match_prevention"),
    scope="trade",
    cost=ENGINE,
)
def set_self_trading_config(ctx: Context, params: dict[str, Any]) -> str:
    """Set the caller's (a main account: its family's) self-trade prevention; see the
    module docstring. Errors: -32602 naming a bad or missing parameter; the engine's
    reject of the caller's own SET_ACCOUNT (a blocked account)."""
    name = p.text(params, "mode")
    if name not in MODES:
        raise invalid_params("mode", "reject_taker or cancel_maker")
    extended = p.boolean(params, "extended_to_subaccounts")
    if p.boolean(params, "block_rfq_self_match_prevention", False):
        raise invalid_params("block_rfq_self_match_prevention", "this venue has no block RFQs")
    stp = MODES[name] | (_FAMILY if extended else 0)
    state = ctx.venue.exchange.engine.state
    members = _members(state, ctx.session.account)
    records = command_array(len(members))
    records["kind"] = CommandKind.SET_ACCOUNT
    records["stp"] = stp
    for index, account in enumerate(members):
        records["account"][index] = account
        # SET_ACCOUNT sets the margin mode too: each member keeps its own
        records["margin_mode"][index] = query.account_settings(state, account)[1]
    events = ctx.venue.submit_inputs(records)
    # the caller's command is the first: its reject is the reply (a blocked subaccount
    # keeps its setting, as it keeps everything else while blocked)
    if not len(events) or int(events["kind"][0]) != EventKind.ACCEPTED:
        raise rpc_error_for(int(events["reason"][0]) if len(events) else 0)
    return "ok"
