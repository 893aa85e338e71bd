"""The operator's controls (scope ``admin``): halt / resume an instrument and block / unblock
an account (the kill switch), and what is halted and blocked now.

Each control is one sequenced core command (HALT_INSTRUMENT, RESUME_INSTRUMENT,
BLOCK_ACCOUNT, UNBLOCK_ACCOUNT): journaled, replayed and in the state root like any other,
answered once the venue has walked its events (and, as every reply, once it is durable).
Blocking cancels every order of the account at once and refuses its trading commands with
10019 ``locked_by_admin`` until it is unblocked; a halted instrument refuses new orders and
amends (cancels go on). A control that changes nothing (halting a halted instrument,
unblocking an account that is not blocked, a system account) is refused with the engine's
reason in ``data.reason`` and changes nothing. A ``read``/``trade`` key is refused with
13021 ``forbidden`` before anything is sequenced. Cost: O(1), block O(the account's orders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from derivex.core import query
from derivex.core.records import CommandKind, EventKind, InstrumentStatus, command_array
from derivex.gateway import params as p
from derivex.gateway.errors import rpc_error_for
from derivex.gateway.methods import Context, method

if TYPE_CHECKING:
    from derivex.gateway.venue import Venue

ADMIN = "admin"
ACCOUNT_LIMIT = 2**32 - 1  # the command record's account field is a u4


def _sequence(venue: Venue, kind: int, account: int = 0, instrument: int = 0) -> np.ndarray:
    """Sequence one admin command; its events, or the mapped error if it was rejected."""
    record = command_array(1)
    record["kind"] = kind
    record["account"] = account
    record["instrument"] = instrument
    events = venue.submit_inputs(record)
    if not len(events) or int(events["kind"][0]) != EventKind.ACCEPTED:
        raise rpc_error_for(int(events["reason"][0]) if len(events) else 0)
    return events


def _state_name(status: int) -> str:
    try:
        return InstrumentStatus(status).name.lower()
    except ValueError:
        return "unknown"


def instrument_state(venue: Venue, instrument: int) -> str:
    """``active``, ``halted``, ``closed`` or ``settled`` (lower-case ``InstrumentStatus``)."""
    state = venue.exchange.engine.state
    return _state_name(int(query.instrument_columns(state, [instrument])["status"][0]))


def _instrument_reply(venue: Venue, name: str, instrument: int) -> dict[str, Any]:
    return {"instrument_name": name, "state": instrument_state(venue, instrument)}


@method("private/admin_halt_instrument", ("instrument_name",), scope=ADMIN, cost=10)
def halt_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Halt trading on ``instrument_name``: new orders and amends are refused (10019),
    resting orders stay and may be cancelled. Reply: the instrument's state."""
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    _sequence(ctx.venue, CommandKind.HALT_INSTRUMENT, instrument=spec.instrument)
    return _instrument_reply(ctx.venue, spec.name, spec.instrument)


@method("private/admin_resume_instrument", ("instrument_name",), scope=ADMIN, cost=10)
def resume_instrument(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Resume a halted instrument. Reply: the instrument's state."""
    spec = ctx.venue.catalog.get(p.text(params, "instrument_name"))
    _sequence(ctx.venue, CommandKind.RESUME_INSTRUMENT, instrument=spec.instrument)
    return _instrument_reply(ctx.venue, spec.name, spec.instrument)


@method("private/admin_block_account", ("account",), scope=ADMIN, cost=10)
def block_account(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The kill switch: cancel every order of ``account`` (an account id) at once and refuse
    its trading commands until it is unblocked. Reply: ``account``, ``blocked`` and
    ``cancelled`` (how many orders were cancelled)."""
    account = p.integer(params, "account", low=0, high=ACCOUNT_LIMIT)
    events = _sequence(ctx.venue, CommandKind.BLOCK_ACCOUNT, account=account)
    return {"account": account, "blocked": True, "cancelled": int(events["qty_lots"][0])}


@method("private/admin_unblock_account", ("account",), scope=ADMIN, cost=10)
def unblock_account(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Let a blocked ``account`` trade again. Reply: ``account`` and ``blocked``."""
    account = p.integer(params, "account", low=0, high=ACCOUNT_LIMIT)
    _sequence(ctx.venue, CommandKind.UNBLOCK_ACCOUNT, account=account)
    return {"account": account, "blocked": False}


@method("private/admin_get_controls", (), scope=ADMIN)
def get_controls(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """What the controls set now: every instrument not ``active`` and every blocked
    account. Cost: O(instruments + accounts)."""
    return controls(ctx.venue)


def controls(venue: Venue) -> dict[str, Any]:
    state = venue.exchange.engine.state
    ids = [spec.instrument for spec in venue.catalog]
    statuses: list[int] = query.instrument_columns(state, ids)["status"].tolist() if ids else []
    names = {spec.instrument: spec.name for spec in venue.catalog}
    not_active = [
        {"instrument_name": names[i], "state": _state_name(s)}
        for i, s in zip(ids, statuses, strict=True)
        if s != InstrumentStatus.ACTIVE
    ]
    return {"instruments": not_active, "blocked_accounts": query.blocked_accounts(state)}
