"""The method registry: every JSON-RPC method the gateway answers, with the scope it needs
and its rate-limit cost. ``public_api`` and ``private_api`` register into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


METHODS: dict[str, Method] = {}
#: cost of a request that reaches the matching engine (multiplied by the engine's gas_base)
ENGINE = -1


def method(name: str, scope: str | None = None, cost: int = 1,
           prepare: Callable[[Context, dict[str, Any]], Any] | None = None,
           finish: Callable[[Context, Any], Any] | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in METHODS:
            raise ValueError(f"method {name} registered twice")
        METHODS[name] = Method(name, handler, scope, cost, prepare, finish)
        return handler

    return register
