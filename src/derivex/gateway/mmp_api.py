"""Market-maker protection over the API (the engine's ``core/mmp.py``):
``private/set_mmp_config``, ``private/get_mmp_config``, ``private/get_mmp_status``,
``private/reset_mmp`` and the ``user.mmp_trigger.{index_name}`` channel.

A group is named by ``index_name`` (``btc_usdc``; ``btc_usd`` is read as the same index)
and an optional ``mmp_group`` (at most ``GROUP_CHARS`` characters of ``[A-Za-z0-9_]``,
packed into the engine's 64-bit group code; none: the default group, which ``mmp: true``
orders and mass quotes without ``mmp_group`` use). Units: ``interval`` and ``frozen_time``
in whole seconds (``frozen_time`` 0: frozen until ``reset_mmp``; ``interval`` 0 removes the
config), ``quantity_limit`` in the base currency (whole lots of the index's instruments),
``delta_limit`` in the base currency, ``vega_limit`` in USDC per volatility point. Every
parameter is checked here (-32602 naming it); the engine's own rejects map through
``errors``. Each method acts on the caller's account only; every worker of ``--workers N``
reads the same replicated state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from derivex.core.mmp_query import FOREVER, MmpGroup, mmp_groups
from derivex.core.records import CommandKind, EventKind, Underlying, command_array
from derivex.gateway import params as p
from derivex.gateway.catalog import InstrumentSpec
from derivex.gateway.errors import invalid_params, rpc_error_for
from derivex.gateway.methods import ENGINE, Context, method
from derivex.gateway.numbers import units
from derivex.gateway.venue import Update, Venue

__all__ = ["MmpTriggers", "group_code", "group_name"]

GROUP_CHARS = 10
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_CODES = {char: index + 1 for index, char in enumerate(_ALPHABET)}
_MAX_INTERVAL_S = (1 << 16) - 1
_MAX_FROZEN_S = (1 << 32) - 1
_NANOS_PER_MS = 1_000_000
_UNITS_PER_USDC = 1_000_000
_CONFIG_PARAMS = (
    "index_name",
    "interval",
    "frozen_time",
    "quantity_limit",
    "delta_limit",
    "vega_limit",
    "mmp_group",
)


def group_code(name: str | None, param: str = "mmp_group") -> int:
    """The engine's code of a group name (0: none). -32602 naming ``param`` for a name
    that is not 1 to ``GROUP_CHARS`` characters of ``[A-Za-z0-9_]``.

    >>> group_name(group_code("MassQuoteBot7"[:10]))
    'MassQuoteB'
    """
    if name is None:
        return 0
    if not 1 <= len(name) <= GROUP_CHARS or any(char not in _CODES for char in name):
        raise invalid_params(param, f"1 to {GROUP_CHARS} characters of A-Z, a-z, 0-9 and _")
    code = 0
    for index, char in enumerate(name):
        code |= _CODES[char] << (6 * (GROUP_CHARS - 1 - index))
    return code


def group_name(code: int) -> str:
    """The name of a group code ("" for the default group)."""
    code &= (1 << 64) - 1
    chars = []
    for index in range(GROUP_CHARS):
        value = (code >> (6 * (GROUP_CHARS - 1 - index))) & 63
        if value:
            chars.append(_ALPHABET[value - 1])
    return "".join(chars)


def _index(venue: Venue, params: dict[str, Any], default: Any = None) -> tuple[str, int] | None:
    """``(base, Underlying code)`` of ``index_name`` (None when absent and optional)."""
    name = p.text(params, "index_name", default)
    if name is None:
        return None
    base, _, quote = name.partition("_")
    base = base.upper()
    bases = [c for c in venue.catalog.currencies() if venue.catalog.matching(c)]
    if quote not in ("usd", "usdc") or base not in bases or base not in Underlying.__members__:
        raise invalid_params("index_name", f"an index of this venue: {_index_names(venue)}")
    return base, int(Underlying[base])


def _index_names(venue: Venue) -> str:
    names = [f"{c.lower()}_usdc" for c in venue.catalog.currencies() if c in Underlying.__members__]
    return ", ".join(names)


def _spec(venue: Venue, base: str) -> InstrumentSpec:
    """An instrument of ``base``: its lot size and price unit convert the limits (the
    venue lists every instrument of a base with the same two)."""
    return venue.catalog.matching(base)[0]


def _non_negative(params: dict[str, Any], name: str, numerator: int, denominator: int) -> int:
    value = p.number(params, name, 0)
    count = units(value, numerator, denominator, name)
    if count < 0:
        raise invalid_params(name, "must not be negative")
    return count


def _shape(venue: Venue, base: str, group: MmpGroup) -> dict[str, Any]:
    """Deribit's MMP config object of one group."""
    spec = _spec(venue, base)
    numerator, denominator = spec.price_unit.as_integer_ratio()
    delta_unit = numerator * 10**15 / denominator
    shaped: dict[str, Any] = {
        "index_name": f"{base.lower()}_usdc",
        "interval": group.interval_ns // 1_000_000_000,
        "frozen_time": group.frozen_time_ns // 1_000_000_000,
        "quantity_limit": spec.amount(group.qty_limit_lots),
        "delta_limit": group.delta_limit / delta_unit,
        "vega_limit": group.vega_limit / _UNITS_PER_USDC,
    }
    if group.group:
        shaped["mmp_group"] = group_name(group.group)
    return shaped


def _base_of(underlying: int) -> str:
    return Underlying(underlying).name


def _selected(ctx: Context, params: dict[str, Any]) -> list[tuple[str, MmpGroup]]:
    """The caller's configured groups, filtered by ``index_name`` / ``mmp_group``."""
    index = _index(ctx.venue, params)
    name = p.text(params, "mmp_group", None)
    code = group_code(name) if name is not None else None
    state = ctx.venue.exchange.engine.state
    out = []
    for group in mmp_groups(state, ctx.session.account):
        if group.interval_ns == 0 or group.underlying not in Underlying._value2member_map_:
            continue
        if index is not None and group.underlying != index[1]:
            continue
        if code is not None and group.group & ((1 << 64) - 1) != code:
            continue
        out.append((_base_of(group.underlying), group))
    return out


def _sequence(venue: Venue, record: np.ndarray) -> np.ndarray:
    events = venue.submit_inputs(record)
    if not len(events) or int(events["kind"][0]) != EventKind.ACCEPTED:
        raise rpc_error_for(int(events["reason"][0]) if len(events) else 0)
    return events


@method("private/set_mmp_config", _CONFIG_PARAMS, scope="trade", cost=ENGINE)
def set_mmp_config(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Set (or, ``interval`` 0, remove) the caller's MMP config of an index and group; it
    resets the group (unfrozen, a new window). Reply: the config as ``get_mmp_config``
    shows it. Cost: one engine command."""
    index = _index(ctx.venue, params, None)
    if index is None:
        raise invalid_params("index_name", "required")
    base, underlying = index
    interval = p.integer(params, "interval", low=0, high=_MAX_INTERVAL_S)
    frozen = p.integer(params, "frozen_time", low=0, high=_MAX_FROZEN_S)
    spec = _spec(ctx.venue, base)
    lot_num, lot_den = spec.lot_size.as_integer_ratio()
    qty_lots = _non_negative(params, "quantity_limit", lot_num, lot_den)
    price_num, price_den = spec.price_unit.as_integer_ratio()
    delta = _non_negative(params, "delta_limit", price_den, price_num * 10**15)
    vega = _non_negative(params, "vega_limit", 1, _UNITS_PER_USDC)
    if interval > 0 and not (qty_lots or delta or vega):
        raise invalid_params("quantity_limit", "at least one limit must be positive")
    code = group_code(p.text(params, "mmp_group", None))
    record = command_array(1)
    record["kind"] = CommandKind.SET_MMP_CONFIG
    record["account"] = ctx.session.account
    record["mmp_underlying"] = underlying
    record["mmp_group"] = code
    record["mmp_interval_s"] = interval
    record["mmp_frozen_s"] = frozen
    record["mmp_qty_limit_lots"] = qty_lots
    record["mmp_delta_limit"] = delta
    record["mmp_vega_limit"] = vega
    _sequence(ctx.venue, record)
    group = MmpGroup(0, underlying, code, interval * 10**9, frozen * 10**9, qty_lots, delta, vega,
                     0, 0, 0, 0, 0, False)  # fmt: skip
    return _shape(ctx.venue, base, group)


@method("private/get_mmp_config", ("index_name", "mmp_group"), scope="read")
def get_mmp_config(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The caller's MMP configs (of ``index_name`` / ``mmp_group`` when given)."""
    return [_shape(ctx.venue, base, group) for base, group in _selected(ctx, params)]


@method("private/get_mmp_status", ("index_name", "mmp_group"), scope="read")
def get_mmp_status(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The caller's frozen groups: ``index_name``, ``frozen_until`` (ms; 0: until
    ``reset_mmp``) and ``mmp_group`` for a named group."""
    out = []
    for base, group in _selected(ctx, params):
        if group.frozen:
            out.append(_status(base, group.group, group.frozen_until_ns))
    return out


def _status(base: str, code: int, frozen_until_ns: int) -> dict[str, Any]:
    until = 0 if frozen_until_ns >= FOREVER else frozen_until_ns // _NANOS_PER_MS
    shaped: dict[str, Any] = {"index_name": f"{base.lower()}_usdc", "frozen_until": until}
    if code:
        shaped["mmp_group"] = group_name(code)
    return shaped


@method("private/reset_mmp", ("index_name", "mmp_group"), scope="trade", cost=ENGINE)
def reset_mmp(ctx: Context, params: dict[str, Any]) -> str:
    """Unfreeze the caller's group of ``index_name`` (and ``mmp_group``) at once: "ok"."""
    index = _index(ctx.venue, params, None)
    if index is None:
        raise invalid_params("index_name", "required")
    record = command_array(1)
    record["kind"] = CommandKind.RESET_MMP
    record["account"] = ctx.session.account
    record["mmp_underlying"] = index[1]
    record["mmp_group"] = group_code(p.text(params, "mmp_group", None))
    _sequence(ctx.venue, record)
    return "ok"


class MmpTriggers:
    """The ``user.mmp_trigger.{index_name}`` channels of one hub: a notification to the
    account's subscribers when one of its groups on that index freezes."""

    def __init__(self, venue: Venue, send: Any) -> None:
        self.venue = venue
        self._send = send  # ``Hub._send(subscribers, channel, data)``
        self.channels: dict[tuple[int, str], set[Any]] = {}  # (account, name) -> connections

    def quiet(self) -> bool:
        return not self.channels

    def add(self, conn: Any, name: str) -> bool:
        key = conn.session.key
        parts = name.split(".")
        if key is None or not key.allows("read") or len(parts) != 3:
            return False
        try:
            _index(self.venue, {"index_name": parts[2]})
        except Exception:  # an index this venue does not list: left out, as other channels
            return False
        self.channels.setdefault((key.account, name), set()).add(conn)
        return True

    def remove(self, conn: Any, name: str) -> None:
        for account_name, subscribers in list(self.channels.items()):
            if account_name[1] == name:
                subscribers.discard(conn)
                if not subscribers:
                    del self.channels[account_name]

    def on_update(self, update: Update) -> None:
        for account, underlying, code, frozen_until_ns in update.mmp_triggers:
            if underlying not in Underlying._value2member_map_:
                continue
            base = _base_of(underlying)
            for name in (
                f"user.mmp_trigger.{base.lower()}_usdc",
                f"user.mmp_trigger.{base.lower()}_usd",
            ):
                subscribers = self.channels.get((account, name))
                if subscribers:
                    self._send(subscribers, name, _status(base, code, frozen_until_ns))
