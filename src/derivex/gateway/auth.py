"""Authentication: Deribit's ``deri-hmac-sha256`` request signature, ``public/auth``
(client_credentials, client_signature, refresh_token) and bearer tokens.

REST signature (what ccxt sends on every private request)::

    Authorization: deri-hmac-sha256 id=<client_id>,ts=<ms>,sig=<hex>,nonce=<nonce>
    sig = HMAC_SHA256(secret, f"{ts}\\n{nonce}\\n{HTTP_METHOD}\\n{raw_target}\\n{body}\\n")

The signature covers the raw request target exactly as received (path and query, not
re-encoded). Only a timestamp window is checked: clients reuse the millisecond clock as the
nonce, so identical concurrent requests carry identical signatures (no replay cache).

Tokens are random, kept in memory, and expire; a refresh token yields a new pair.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from derivex.gateway.errors import INVALID_CREDENTIALS, UNAUTHORIZED, RpcError, invalid_params
from derivex.gateway.keys import ApiKey, KeyStore
from derivex.gateway.numbers import whole_integer

SCHEME = "deri-hmac-sha256"
DEFAULT_WINDOW_MS = 60_000
TOKEN_SECONDS = 31_536_000 // 12  # one month


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _unauthorized(reason: str) -> RpcError:
    return RpcError(UNAUTHORIZED, "unauthorized", {"reason": reason})


@dataclass
class Session:
    """What a request or a WebSocket connection is authenticated as (None: public)."""

    key: ApiKey | None = None

    @property
    def account(self) -> int:
        if self.key is None:
            raise _unauthorized("authorization required")
        return self.key.account


class Authenticator:
    """Checks signatures and credentials against a ``KeyStore`` and issues tokens."""

    def __init__(self, keys: KeyStore, window_ms: int = DEFAULT_WINDOW_MS,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.keys = keys
        self.window_ms = window_ms
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._access: dict[str, tuple[str, float]] = {}  # token -> (client_id, expires)
        self._refresh: dict[str, tuple[str, float]] = {}

    # ---- REST ----

    def from_header(self, header: str, http_method: str, target: str, body: str) -> ApiKey:
        """The key of a signed (``deri-hmac-sha256``) or ``bearer`` request. Raises
        ``RpcError`` 13009 on any mismatch."""
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            return self.from_token(rest.strip())
        if scheme.lower() != SCHEME:
            raise _unauthorized("unsupported authorization scheme")
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value
        client_id, ts, sig = fields.get("id"), fields.get("ts"), fields.get("sig")
        nonce = fields.get("nonce", "")
        if not client_id or not ts or not sig:
            raise _unauthorized("incomplete signature header")
        key = self.keys.lookup(client_id)
        if key is None:
            raise _unauthorized("unknown client id")
        self._check_window(ts)
        expected = sign(key.client_secret, f"{ts}\n{nonce}\n{http_method}\n{target}\n{body}\n")
        if not hmac.compare_digest(expected, sig):
            raise _unauthorized("bad signature")
        return key

    def _check_window(self, ts: Any) -> None:
        try:  # the gateway's integer grammar (``int`` takes "1_0", " 1 ", other digits)
            stamp = whole_integer(ts, "timestamp")
        except RpcError:
            raise _unauthorized("bad timestamp") from None
        if abs(stamp - self._clock_ms()) > self.window_ms:
            raise _unauthorized("timestamp outside the window")

    # ---- public/auth ----

    def auth(self, params: dict[str, Any]) -> tuple[ApiKey, dict[str, Any]]:
        """Handle ``public/auth``; returns the key and the Deribit result object."""
        grant = params.get("grant_type")
        if grant == "client_credentials":
            key = self.keys.lookup(str(params.get("client_id", "")))
            secret = str(params.get("client_secret", ""))
            if key is None or not hmac.compare_digest(key.client_secret, secret):
                raise RpcError(INVALID_CREDENTIALS, "invalid_credentials")
        elif grant == "client_signature":
            key = self.keys.lookup(str(params.get("client_id", "")))
            if key is None:
                raise RpcError(INVALID_CREDENTIALS, "invalid_credentials")
            self._check_window(params.get("timestamp"))
            message = (f"{params.get('timestamp')}\n{params.get('nonce', '')}\n"
                       f"{params.get('data', '')}")
            if not hmac.compare_digest(sign(key.client_secret, message),
                                       str(params.get("signature", ""))):
                raise _unauthorized("bad signature")
        elif grant == "refresh_token":
            entry = self._refresh.pop(str(params.get("refresh_token", "")), None)
            key = self.keys.lookup(entry[0]) if entry and entry[1] > time.time() else None
            if key is None:
                raise _unauthorized("invalid or expired refresh token")
        else:
            raise invalid_params("grant_type", "must be client_credentials, client_signature "
                                 "or refresh_token")
        return key, self._issue(key)

    def _issue(self, key: ApiKey) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = time.time() + TOKEN_SECONDS
        self._access[access] = (key.client_id, expires)
        self._refresh[refresh] = (key.client_id, expires)
        return {"access_token": access, "refresh_token": refresh, "expires_in": TOKEN_SECONDS,
                "token_type": "bearer", "scope": key.deribit_scope(), "enabled_features": []}

    def from_token(self, token: str) -> ApiKey:
        entry = self._access.get(token)
        key = self.keys.lookup(entry[0]) if entry and entry[1] > time.time() else None
        if key is None:
            raise _unauthorized("invalid or expired token")
        return key

    def logout(self, token: str) -> None:
        self._access.pop(token, None)
