"""Cancel on disconnect: ``private/enable_cancel_on_disconnect``,
``private/disable_cancel_on_disconnect`` and ``private/get_cancel_on_disconnect``, and the
hook the WebSocket route calls when a connection ends (``on_disconnect``).

Two scopes, as on Deribit: ``connection`` (the default; WebSocket only) marks this
connection, ``account`` marks the account for every connection it authenticates. When a
marked connection ends while authenticated (the client dropped the socket, or missed a
heartbeat: ``public/set_heartbeat``), every open order of its account is cancelled with one
CANCEL_ALL command. ``private/logout`` ends the session first, so a logout never cancels.

The account scope lives in an ``AccountScope``: in memory for one gateway process, or
shared by the gateway workers of ``derivex serve --workers N`` through a directory (one
empty file per marked account), so a setting made on one worker holds for connections on
every worker.
"""

from __future__ import annotations

import contextlib
import weakref
from pathlib import Path
from typing import Any

from derivex.gateway import params as p
from derivex.gateway.errors import RpcError
from derivex.gateway.methods import Context, method
from derivex.gateway.telemetry import logger

__all__ = ["AccountScope", "account_scope", "on_disconnect", "share"]

SCOPES = ("connection", "account")
MUST_BE_WEBSOCKET = 10030


class AccountScope:
    """The accounts whose cancel-on-disconnect holds for all their connections. With a
    ``directory``, one empty file per account (shared by processes); else a set. Cost:
    ``enabled`` one ``stat`` (directory) or a set look-up."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._accounts: set[int] = set()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def enabled(self, account: int) -> bool:
        if self.directory is None:
            return account in self._accounts
        return (self.directory / str(account)).exists()

    def set(self, account: int, on: bool) -> None:
        if self.directory is None:
            if on:
                self._accounts.add(account)
            else:
                self._accounts.discard(account)
        elif on:
            (self.directory / str(account)).touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / str(account)).unlink()


# the account scope of each venue (a gateway process serves one venue)
_SCOPES: weakref.WeakKeyDictionary[Any, AccountScope] = weakref.WeakKeyDictionary()


def account_scope(venue: Any) -> AccountScope:
    """The venue's account scope (an in-memory one unless ``share`` set one)."""
    scope = _SCOPES.get(venue)
    if scope is None:
        scope = _SCOPES[venue] = AccountScope()
    return scope


def share(venue: Any, directory: Path) -> None:
    """Keep ``venue``'s account scope in ``directory`` (every worker of a run names the
    same one)."""
    _SCOPES[venue] = AccountScope(directory)


def _scope(ctx: Context, params: dict[str, Any]) -> str:
    scope: str = p.choice(params, "scope", SCOPES, "connection")
    if scope == "connection" and ctx.connection is None:
        raise RpcError(
            MUST_BE_WEBSOCKET,
            "must_be_websocket_request",
            {"param": "scope", "reason": "connection scope needs a WebSocket"},
        )
    return scope


def _set(ctx: Context, params: dict[str, Any], on: bool) -> str:
    scope = _scope(ctx, params)
    account = ctx.session.account
    if scope == "connection":
        ctx.connection.cancel_on_disconnect = on
    else:
        account_scope(ctx.venue).set(account, on)
    return "ok"


@method("private/enable_cancel_on_disconnect", ("scope",), scope="trade")
def enable_cancel_on_disconnect(ctx: Context, params: dict[str, Any]) -> str:
    return _set(ctx, params, True)


@method("private/disable_cancel_on_disconnect", ("scope",), scope="trade")
def disable_cancel_on_disconnect(ctx: Context, params: dict[str, Any]) -> str:
    return _set(ctx, params, False)


@method("private/get_cancel_on_disconnect", ("scope",), scope="read")
def get_cancel_on_disconnect(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    scope = _scope(ctx, params)
    if scope == "connection":
        enabled = bool(ctx.connection.cancel_on_disconnect)
    else:
        enabled = account_scope(ctx.venue).enabled(ctx.session.account)
    return {"scope": scope, "enabled": enabled}


def on_disconnect(venue: Any, connection: Any, flush: Any = None) -> int:
    """``connection`` ended: if it is authenticated and cancel-on-disconnect holds for it
    (its own mark or its account's), cancel every open order of the account. ``flush``
    first places orders still queued for the tick (they would otherwise rest after the
    cancel). Returns the orders cancelled (0 when nothing applied). Never raises: a failure
    is logged (the connection is gone; nobody is waiting for an answer)."""
    key = connection.session.key
    if key is None:
        return 0
    if not (
        getattr(connection, "cancel_on_disconnect", False)
        or account_scope(venue).enabled(key.account)
    ):
        return 0
    log = logger()
    try:
        if flush is not None:
            flush()
        cancelled = int(venue.cancel_all(key.account))
    except Exception as error:  # the client is gone: log, never raise into the route
        log.error("cancel on disconnect failed", account=key.account, exc_info=error)
        return 0
    log.info("cancelled on disconnect", account=key.account, orders=cancelled)
    return cancelled
