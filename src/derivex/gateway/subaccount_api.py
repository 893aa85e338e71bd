"""Subaccounts and transfers over the API (Deribit's names; core/subaccounts.py does the work).

A *family* is a main account and its subaccounts (at most 20, one level). Every
subaccount is margined on its own; money moves between members only by transfer.

- ``private/create_subaccount``: a main account's key creates one (the CREATE_SUBACCOUNT
  command: journaled, replayed, in the state root); a subaccount's key is refused (13012).
- ``private/get_subaccounts`` (``with_portfolio``): the family, main account first; a
  subaccount's key sees only itself. ``private/get_subaccounts_details`` (``currency``,
  ``with_open_orders``): each subaccount's positions (and open orders).
- ``private/change_subaccount_name`` (``sid``, ``name``): ``gateway.subaccount_names``.
- ``private/submit_transfer_to_subaccount`` (``currency``, ``amount``, ``destination``):
  from the key's account to another member of its family (ccxt ``transfer``);
  ``private/submit_transfer_between_subaccounts`` (``source`` too): a main account's key
  moves money between any two members. One TRANSFER command each, refused by the engine
  (amount above the balance, the source's initial margin breached, a blocked or
  liquidating party) with its reason mapped in ``errors``. Reply: the transfer object.
- ``private/get_transfers`` (``currency``, ``count``, ``offset``): the key's account's
  transfers, newest first, from the venue's history (``history.History``, which every
  gateway worker walks from the same events and rebuilds from the journal on restart;
  bounded like it: among the account's latest 2,000 cash entries).
- ``private/create_api_key`` (``max_scope``, ``name``, ``subaccount_id``): a main account's
  key makes a key for itself or for one of its subaccounts, with at most the scopes the
  calling key has (``read`` / ``trade``; never ``admin``); the secret is in this reply only.
  The operator CLI does the same for any account: ``derivex keys create --account <id>``.
- ``readable_account``: the account a read method acts on when it is given
  ``subaccount_id`` (``get_account_summary``, ``get_positions``): a main account's key may
  name its subaccounts, a subaccount's key only itself.

Every parameter is checked (-32602 naming it). Ids of accounts outside the caller's family
are answered exactly as unknown ids (nothing about other accounts leaks). Cost: O(family)
per call, O(count + offset) for ``get_transfers``.
"""

from __future__ import annotations

from typing import Any

from derivex.core import query
from derivex.core.records import CommandKind, EventKind, command_array
from derivex.gateway import params as p
from derivex.gateway import shapes
from derivex.gateway.catalog import COLLATERAL, UNITS_PER_USDC
from derivex.gateway.errors import RpcError, invalid_params, rpc_error_for
from derivex.gateway.history import history_of
from derivex.gateway.methods import Context, method
from derivex.gateway.numbers import units
from derivex.gateway.subaccount_names import names_of

UNAVAILABLE_IN_SUBACCOUNT = 13012
ACCOUNT_LIMIT = 2**32 - 1  # the command record's account field is a u4
TRANSFERS_MAX_COUNT = 1_000


def main_of(ctx: Context, account: int) -> int:
    """The main account of ``account``'s family (itself for a main account)."""
    return query.parent_of(ctx.venue.exchange.engine.state, account) or account


def family(ctx: Context, account: int) -> list[int]:
    """The family of ``account``: its main account first, then the subaccounts ascending."""
    main = main_of(ctx, account)
    return [main, *query.subaccounts_of(ctx.venue.exchange.engine.state, main)]


def _member(ctx: Context, params: dict[str, Any], name: str, allowed: list[int]) -> int:
    account = p.integer(params, name, low=0, high=ACCOUNT_LIMIT)
    if account not in allowed:
        raise invalid_params(name, "not an account of this family")
    return int(account)


def readable_account(ctx: Context, params: dict[str, Any]) -> int:
    """The account a read method acts on: the key's, or ``subaccount_id`` (a subaccount of
    the key's main account, or the key's own account). -32602 naming it otherwise."""
    own = ctx.session.account
    if params.get("subaccount_id") is None:
        return own
    if query.parent_of(ctx.venue.exchange.engine.state, own):
        return _member(ctx, params, "subaccount_id", [own])
    return _member(ctx, params, "subaccount_id", family(ctx, own))


def _currency(params: dict[str, Any], required: bool = True) -> str:
    value = p.text(params, "currency") if required else p.text(params, "currency", COLLATERAL)
    if str(value).upper() != COLLATERAL:
        raise invalid_params("currency", f"transfers and subaccounts hold {COLLATERAL} only")
    return COLLATERAL


def _sequence(ctx: Context, kind: int, **fields: int) -> Any:
    """One command through the venue; its events, or the engine's reject as an error."""
    record = command_array(1)
    record["kind"] = kind
    for name, value in fields.items():
        record[name] = value
    events = ctx.venue.submit_inputs(record)
    if not len(events) or int(events["kind"][0]) != EventKind.ACCEPTED:
        raise rpc_error_for(int(events["reason"][0]) if len(events) else 0)
    return events


def _account_object(ctx: Context, account: int, portfolio: bool) -> dict[str, Any]:
    name = names_of(ctx.auth.keys).name(account)
    sub = bool(query.parent_of(ctx.venue.exchange.engine.state, account))
    item: dict[str, Any] = {
        "id": account,
        "username": name,
        "system_name": name,
        "type": "subaccount" if sub else "main",
        "email": "",
        "is_password": False,
        "login_enabled": False,
        "receive_notifications": False,
        "security_keys_enabled": False,
        "security_keys_assignments": [],
    }
    if portfolio:
        item["portfolio"] = {COLLATERAL.lower(): shapes.account_summary(ctx.venue, account)}
    return item


@method("private/create_subaccount", (), scope="trade", cost=10)
def create_subaccount(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """A new subaccount of the key's (main) account. Reply: its account object."""
    own = ctx.session.account
    if query.parent_of(ctx.venue.exchange.engine.state, own):
        raise RpcError(UNAVAILABLE_IN_SUBACCOUNT, "unavailable_in_subaccount")
    # the new member starts with the family's self-trade prevention (self_trading_api)
    stp = query.account_settings(ctx.venue.exchange.engine.state, own)[0]
    events = _sequence(ctx, CommandKind.CREATE_SUBACCOUNT, account=own, stp=stp)
    return _account_object(ctx, int(events["account"][0]), False)


@method("private/get_subaccounts", ("with_portfolio",), scope="read")
def get_subaccounts(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    portfolio = p.boolean(params, "with_portfolio", False)
    own = ctx.session.account
    members = [own] if query.parent_of(ctx.venue.exchange.engine.state, own) else family(ctx, own)
    return [_account_object(ctx, account, portfolio) for account in members]


@method("private/get_subaccounts_details", ("currency", "with_open_orders"), scope="read")
def get_subaccounts_details(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    currency = _currency(params)
    with_orders = p.boolean(params, "with_open_orders", False)
    own = ctx.session.account
    if query.parent_of(ctx.venue.exchange.engine.state, own):
        return []
    result = []
    for account in family(ctx, own)[1:]:
        item: dict[str, Any] = {
            "uid": account,
            "positions": shapes.positions(ctx.venue, account, currency, None),
        }
        if with_orders:
            item["open_orders"] = [
                shapes.order(record, ctx.venue.catalog) for record in ctx.venue.open_orders(account)
            ]
        result.append(item)
    return result


@method("private/change_subaccount_name", ("sid", "name"), scope="trade")
def change_subaccount_name(ctx: Context, params: dict[str, Any]) -> str:
    own = ctx.session.account
    allowed = [own] if query.parent_of(ctx.venue.exchange.engine.state, own) else family(ctx, own)
    account = _member(ctx, params, "sid", allowed)
    name = p.text(params, "name")
    try:
        names_of(ctx.auth.keys).set(account, name)
    except ValueError as error:
        raise invalid_params("name", str(error)) from None
    return "ok"


def _transfer(ctx: Context, params: dict[str, Any], source: int, target: int) -> dict[str, Any]:
    amount = units(p.number(params, "amount"), 1, UNITS_PER_USDC, "amount")
    if amount <= 0:
        raise invalid_params("amount", "must be positive")
    events = _sequence(
        ctx, CommandKind.TRANSFER, account=source, to_account=target, amount_units=amount
    )
    return transfer_object(ctx, int(events["seq"][0]), target, -amount, ctx.venue.now_ms())


def transfer_object(ctx: Context, seq: int, other: int, cash: int, ms: int) -> dict[str, Any]:
    """Deribit's transfer object of one side of the TRANSFER sequenced at ``seq`` (its id):
    paid to ``other`` when ``cash`` < 0, else received from it."""
    return {
        "id": seq,
        "amount": abs(cash) / UNITS_PER_USDC,
        "currency": COLLATERAL,
        "direction": "payment" if cash < 0 else "income",
        "other_side": names_of(ctx.auth.keys).name(other),
        "other_side_id": other,
        "state": "confirmed",
        "type": "subaccount",
        "created_timestamp": ms,
        "updated_timestamp": ms,
    }


@method(
    "private/submit_transfer_to_subaccount",
    ("currency", "amount", "destination"),
    scope="trade",
    cost=10,
)
def submit_transfer_to_subaccount(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _currency(params)
    own = ctx.session.account
    target = _member(ctx, params, "destination", family(ctx, own))
    return _transfer(ctx, params, own, target)


@method(
    "private/submit_transfer_between_subaccounts",
    ("currency", "amount", "destination", "source"),
    scope="trade",
    cost=10,
)
def submit_transfer_between_subaccounts(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _currency(params)
    own = ctx.session.account
    members = family(ctx, own)
    if query.parent_of(ctx.venue.exchange.engine.state, own):
        sources = [own]  # a subaccount's key moves only its own money
    else:
        sources = members
    source = own if params.get("source") is None else _member(ctx, params, "source", sources)
    target = _member(ctx, params, "destination", members)
    return _transfer(ctx, params, source, target)


@method("private/get_transfers", ("currency", "count", "offset"), scope="read")
def get_transfers(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _currency(params)
    count = p.integer(params, "count", 10, low=1, high=TRANSFERS_MAX_COUNT)
    offset = p.integer(params, "offset", 0, low=0, high=ACCOUNT_LIMIT)
    own = ctx.session.account
    moves = [e for e in history_of(ctx.venue).log_of(own) if e["type"] == "transfer"]
    moves.reverse()  # newest first
    data = [
        transfer_object(ctx, e["seq"], e["other"], e["cash"], e["timestamp"])
        for e in moves[offset : offset + count]
    ]
    return {"count": len(moves), "data": data}


@method("private/create_api_key", ("max_scope", "name", "subaccount_id"), scope="trade", cost=10)
def create_api_key(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """A key for the caller's account or, with ``subaccount_id``, one of its subaccounts.
    ``max_scope``: ``read`` or ``trade`` (Deribit's ``trade:read`` / ``trade:read_write``
    are accepted too), at most the calling key's."""
    scope = p.choice(
        params,
        "max_scope",
        ("read", "trade", "trade:read", "trade:read_write"),
        "read",
    )
    wanted = "trade" if scope in ("trade", "trade:read_write") else "read"
    key = ctx.session.key
    if key is None or not key.allows(wanted):
        raise invalid_params("max_scope", "wider than the calling key's")
    account = readable_account(ctx, params)
    name = p.text(params, "name", "")
    if name and not all(c.isalnum() or c in "_-" for c in name):
        raise invalid_params("name", "letters, digits, - and _ only")
    scopes = ("read", "trade") if wanted == "trade" else ("read",)
    made = ctx.auth.keys.create(account, scopes, name=name)
    return {
        "id": made.client_id,
        "client_id": made.client_id,
        "client_secret": made.client_secret,
        "max_scope": made.deribit_scope(),
        "name": made.name,
        "enabled": True,
        "default": False,
        "timestamp": made.created_ms,
        "subaccount_id": account,
    }
