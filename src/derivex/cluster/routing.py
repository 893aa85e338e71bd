"""Where the router (``derivex.cluster.router``) sends a request, and how it merges the
answers of several domains. Pure functions over JSON values: no I/O.

**Instruments.** Every domain of a venue lists the same catalogue (``serve`` lists the
default instruments in each); a domain *serves* the underlyings its name starts with
(``btc_usdc`` serves BTC, ``eth_usdc`` ETH); an underlying no domain names goes to the
first domain. A request naming ``instrument_name`` goes to its domain.

**Order ids.** Each domain numbers its orders from 1, so ids collide across domains. The
router shows ``id * 16 + index`` (``index``: the domain's position, < ``MAX_DOMAINS``):
still a decimal string, unique over the venue, and it names its domain. A request naming
``order_id`` goes to that domain with the domain's own id.

**Fan-out.** A request over an account or a currency (summaries, positions, open orders,
history, cancel-all) goes to every domain; lists are concatenated, counts summed, and an
account summary is the sum of the domains' amounts with each domain's own under
``domains``.

>>> table = RoutingTable(["btc_usdc", "eth_usdc"])
>>> table.instrument_domain("ETH_USDC-PERPETUAL"), table.instrument_domain("SOL_USDC-PERPETUAL")
(1, 0)
>>> venue_order_id(7, 1), domain_order_id("113")
('113', (1, 7))
>>> merge_summaries([{"id": 3, "balance": 1.5}, {"id": 3, "balance": 2.0}], ["a", "b"])["balance"]
3.5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from derivex.gateway.errors import RETRY, RpcError

__all__ = [
    "FAN_OUT",
    "MAX_DOMAINS",
    "Route",
    "RoutingTable",
    "domain_order_id",
    "merge",
    "merge_summaries",
    "venue_order_id",
]

MAX_DOMAINS = 16  # as the core's transfer table (``query.MAX_DOMAINS``)

#: methods answered by every domain and merged (see the module docstring)
FAN_OUT = frozenset(
    {
        "private/get_account_summary",
        "private/get_account_summaries",
        "private/get_positions",
        "private/get_open_orders",
        "private/get_open_orders_by_currency",
        "private/get_order_history_by_currency",
        "private/get_user_trades_by_currency",
        "private/get_order_state_by_label",
        "private/cancel_all",
        "private/cancel_all_by_currency",
        "private/cancel_by_label",
        "private/enable_cancel_on_disconnect",
        "private/disable_cancel_on_disconnect",
        "private/get_cancel_on_disconnect",
    }
)
SUMMARIES = frozenset({"private/get_account_summary", "private/get_account_summaries"})
TRANSFER = "private/submit_transfer_to_domain"


def venue_order_id(order_id: int, index: int) -> str:
    """The id the router shows for a domain's order ``order_id``."""
    return str(order_id * MAX_DOMAINS + index)


def domain_order_id(value: Any) -> tuple[int, int] | None:
    """``(domain index, the domain's id)`` of a router order id, None if it names none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) < 21:
        value = int(value)
    if not isinstance(value, int) or value < MAX_DOMAINS:
        return None
    return value % MAX_DOMAINS, value // MAX_DOMAINS


def show_order_ids(value: Any, index: int) -> Any:
    """``value`` (a domain's result) with every ``*order_id`` field shown as the router's
    id. Cost: O(size of ``value``)."""
    if isinstance(value, list):
        return [show_order_ids(item, index) for item in value]
    if not isinstance(value, dict):
        return value
    shown = {}
    for key, item in value.items():
        if key.endswith("order_id") and _decimal(item):
            number = int(item)
            shown[key] = venue_order_id(number, index) if number else item
        else:
            shown[key] = show_order_ids(item, index)
    return shown


def _decimal(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdecimal()


@dataclass
class Route:
    """Where a request goes: ``targets`` (domain indices) with the params each gets, or
    ``error`` (code, message, data) to answer at once."""

    targets: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    error: tuple[int, str, dict[str, Any]] | None = None


class RoutingTable:
    """The domains of a venue, in their id order (the ids ``cluster up`` gives)."""

    def __init__(self, domains: list[str]) -> None:
        if not domains or len(domains) > MAX_DOMAINS:
            raise ValueError(f"1 to {MAX_DOMAINS} domains")
        self.domains = list(domains)
        self.underlyings = {name.split("_")[0].upper(): i for i, name in enumerate(domains)}

    def instrument_domain(self, instrument: str) -> int:
        underlying = instrument.replace("-", "_").split("_")[0].upper()
        return self.underlyings.get(underlying, 0)

    def domain_index(self, value: Any) -> int | None:
        """A domain named by name or id, None if none."""
        if isinstance(value, str) and value in self.domains:
            return self.domains.index(value)
        if isinstance(value, str) and value.isdecimal():
            value = int(value)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value < len(self.domains)
        ):
            return value
        return None

    def route(self, method: str, params: dict[str, Any]) -> Route:
        """Where ``method`` with ``params`` goes. Cost: O(params)."""
        params = dict(params)
        if method == TRANSFER:
            return self._transfer(params)
        if "order_id" in params:
            found = domain_order_id(params["order_id"])
            if found is None or found[0] >= len(self.domains):
                return Route(error=(10004, "order_not_found", {"param": "order_id"}))
            params["order_id"] = str(found[1])
            return Route([found[0]], params)
        if isinstance(params.get("instrument_name"), str):
            return Route([self.instrument_domain(params["instrument_name"])], params)
        if method in FAN_OUT:
            return Route(list(range(len(self.domains))), params)
        return Route([0], params)

    def _transfer(self, params: dict[str, Any]) -> Route:
        """``submit_transfer_to_domain``: ``domain`` the destination and ``source`` (a
        router parameter) the source, each by name or id; with two domains the source
        may be left out (the other one)."""
        destination = self.domain_index(params.get("domain"))
        if destination is None:
            return Route(error=(-32602, "Invalid params", {"param": "domain"}))
        source_given = params.pop("source", None)
        if source_given is None and len(self.domains) == 2:
            source: int | None = 1 - destination
        else:
            source = self.domain_index(source_given)
        if source is None or source == destination:
            return Route(error=(-32602, "Invalid params", {"param": "source"}))
        params["domain"] = destination
        return Route([source], params)


def upstream_error(failure: dict[str, Any]) -> RpcError:
    """A leader's JSON-RPC ``error`` object as the ``RpcError`` the router answers with (a
    code that is not an integer reads as 10040 ``retry``; data only when it is an object)."""
    code = failure.get("code")
    data = failure.get("data")
    return RpcError(
        code if isinstance(code, int) else RETRY,
        str(failure.get("message", "")),
        data if isinstance(data, dict) else None,
    )


def merge(method: str, results: list[Any], names: list[str]) -> Any:
    """One answer from the domains' ``results`` (in ``names`` order)."""
    if method in SUMMARIES:
        return merge_summaries(results, names)
    if all(isinstance(result, list) for result in results):
        return [item for result in results for item in result]
    if all(isinstance(result, int) and not isinstance(result, bool) for result in results):
        return sum(results)
    return results[0]


def merge_summaries(results: list[Any], names: list[str]) -> Any:
    """The sum of the domains' summaries (floats are amounts and add up; ratios take the
    largest; everything else is the first domain's), each domain's under ``domains``."""
    merged = _add(results)
    if isinstance(merged, dict):
        merged["domains"] = dict(zip(names, results, strict=True))
    return merged


def _add(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict) and all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(key for value in values for key in value))
        merged = {}
        for key in keys:
            present = [value[key] for value in values if key in value]
            if key.endswith("ratio") and all(isinstance(v, float) for v in present):
                merged[key] = max(present)
            else:
                merged[key] = _add(present)
        return merged
    if isinstance(first, list) and all(isinstance(v, list) for v in values):
        items = [item for value in values for item in value]
        if items and all(isinstance(item, dict) and "currency" in item for item in items):
            currencies: dict[Any, list[Any]] = {}
            for item in items:
                currencies.setdefault(item["currency"], []).append(item)
            return [_add(group) for group in currencies.values()]
        return items
    if isinstance(first, float) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        return float(sum(values))
    return first
