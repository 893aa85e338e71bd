"""Authentication: Deribit's ``deri-hmac-sha256`` request signature, ``public/auth``
(client_credentials, client_signature, refresh_token) and bearer tokens.

REST signature (what ccxt sends on every private request)::

    Authorization: deri-hmac-sha256 id=<client_id>,ts=<ms>,sig=<hex>,nonce=<nonce>
    sig = HMAC_SHA256(secret, f"{ts}\\n{nonce}\\n{HTTP_METHOD}\\n{raw_target}\\n{body}\\n")

The signature covers the raw request target exactly as received (path and query, not
re-encoded). Only a timestamp window is checked: clients reuse the millisecond clock as the
nonce, so identical concurrent requests carry identical signatures (no replay cache).

Tokens are random, kept in memory, and expire; a refresh token yields a new pair. With a
``token_key`` (the gateway workers of ``derivex serve --workers N`` share one per run) a token
also carries its client id and expiry, signed with that key, so every worker holding the key
accepts it, not only the one that issued it.
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
                 clock_ms: Callable[[], int] | None = None,
                 token_key: bytes | None = None, spent: Any = None) -> None:
        self.keys = keys
        self.token_key = token_key
        # signed tokens logged out / refresh tokens used (``spent``: a set shared by the
        # workers of the run, ``derivex.gateway.spent_tokens``; else this process's)
        self._spent: Any = spent if spent is not None else set()
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
        try:
            stamp = int(ts)
        except (TypeError, ValueError):
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
            token = str(params.get("refresh_token", ""))
            entry = self._refresh.pop(token, None) or self._signed(token, "r")
            if entry is not None and self.token_key is not None:
                self._spent.add(token)
            key = self.keys.lookup(entry[0]) if entry and entry[1] > time.time() else None
            if key is None:
                raise _unauthorized("invalid or expired refresh token")
        else:
            raise invalid_params("grant_type", "must be client_credentials, client_signature "
                                 "or refresh_token")
        return key, self._issue(key)

    def _issue(self, key: ApiKey) -> dict[str, Any]:
        expires = time.time() + TOKEN_SECONDS
        if self.token_key is not None:  # self-contained: any worker with the key checks it
            return {"access_token": self._sign_token("a", key.client_id, expires),
                    "refresh_token": self._sign_token("r", key.client_id, expires),
                    "expires_in": TOKEN_SECONDS, "token_type": "bearer",
                    "scope": key.deribit_scope(), "enabled_features": []}
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._access[access] = (key.client_id, expires)
        self._refresh[refresh] = (key.client_id, expires)
        return {"access_token": access, "refresh_token": refresh, "expires_in": TOKEN_SECONDS,
                "token_type": "bearer", "scope": key.deribit_scope(), "enabled_features": []}

    def from_token(self, token: str) -> ApiKey:
        entry = self._access.get(token) or self._signed(token, "a")
        key = self.keys.lookup(entry[0]) if entry and entry[1] > time.time() else None
        if key is None:
            raise _unauthorized("invalid or expired token")
        return key

    def logout(self, token: str) -> None:
        self._access.pop(token, None)
        if self.token_key is not None:
            self._spent.add(token)

    def _sign_token(self, kind: str, client_id: str, expires: float) -> str:
        """``kind.client_id.expires.nonce.mac``: HMAC-SHA256 under ``token_key`` (hex,
        128 bits kept) of the rest."""
        assert self.token_key is not None
        body = f"{kind}.{client_id}.{int(expires)}.{secrets.token_urlsafe(12)}"
        mac = hmac.new(self.token_key, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{mac}"

    def _signed(self, token: str, kind: str) -> tuple[str, float] | None:
        """``(client_id, expires)`` of a signed token of ``kind`` (None: not one, a bad
        mac, or spent here). Cost: one HMAC over ~80 bytes."""
        if self.token_key is None or len(token) > 256 or token in self._spent:
            return None
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != kind or not parts[2].isdigit():
            return None
        expected = hmac.new(self.token_key, body.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(expected, mac):
            return None
        return parts[1], float(parts[2])
