"""The method registry: every JSON-RPC method the gateway answers, with the scope it needs,
its rate-limit cost and the parameters it accepts. ``public_api`` and ``private_api``
register into it.

Every registration lists its parameters (``params``), and the dispatcher refuses any other
with -32602 naming it (``Method.check_params``): an ignored parameter would make the venue
do something other than asked (ccxt's ``stopPrice`` on a market order placed an order that
filled at once instead of a stop). ``access_token`` is accepted by every method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from derivex.gateway.errors import invalid_params

if TYPE_CHECKING:
    from derivex.gateway.auth import Authenticator, Session
    from derivex.gateway.channels import Hub
    from derivex.gateway.venue import Venue


@dataclass(slots=True)
class Context:
    """What a handler may use: the venue, the caller's session and, on a WebSocket, its
    connection (for subscriptions)."""

    venue: Venue
    auth: Authenticator
    session: Session
    hub: Hub | None = None
    connection: Any = None
    transport: str = "http"


Handler = Callable[[Context, dict[str, Any]], Any]
ACCESS_TOKEN = "access_token"  # authenticates a request to any method


@dataclass(frozen=True)
class Method:
    name: str
    handler: Handler
    scope: str | None  # None: public; "read" or "trade": needs a key with that scope
    cost: int  # rate-limit units (order entry weighs like the engine's gas_base)
    # batched order entry: ``prepare`` checks a request and returns a ``PlaceOrder``,
    # ``finish`` turns its placed result into the reply's ``result``
    prepare: Callable[[Context, dict[str, Any]], Any] | None = None
    finish: Callable[[Context, Any], Any] | None = None
    #: the parameter names the handler reads (``access_token`` included)
    accepts: frozenset[str] = frozenset({ACCESS_TOKEN})

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise -32602 naming the first parameter of ``params`` that this method does not
        implement. Cost: O(len(params))."""
        if params.keys() <= self.accepts:
            return
        for name in params:
            if name not in self.accepts:
                raise invalid_params(name[:64], f"not a parameter of {self.name}")


METHODS: dict[str, Method] = {}
#: cost of a request that reaches the matching engine (multiplied by the engine's gas_base)
ENGINE = -1


def method(
    name: str,
    params: tuple[str, ...],
    scope: str | None = None,
    cost: int = 1,
    prepare: Callable[[Context, dict[str, Any]], Any] | None = None,
    finish: Callable[[Context, Any], Any] | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` as ``name``, accepting exactly ``params`` (and
    ``access_token``): list every parameter the handler reads, and nothing it ignores."""

    def register(handler: Handler) -> Handler:
        if name in METHODS:
            raise ValueError(f"method {name} registered twice")
        METHODS[name] = Method(
            name, handler, scope, cost, prepare, finish, frozenset({*params, ACCESS_TOKEN})
        )
        return handler

    return register
