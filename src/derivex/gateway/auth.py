"""Authentication: Deribit's ``deri-hmac-sha256`` request signature, ``public/auth``
(client_credentials, client_signature, refresh_token) and bearer tokens.

REST signature (what ccxt sends on every private request)::

    Authorization: deri-hmac-sha256 id=<client_id>,ts=<ms>,sig=<hex>,nonce=<nonce>
    sig = HMAC_SHA256(secret, f"{ts}\\n{nonce}\\n{HTTP_METHOD}\\n{raw_target}\\n{body}\\n")

The signature covers the raw request target exactly as received (path and query, not
re-encoded). ``ts`` must be within ``window_ms`` (60 s) of the server clock, and each
signature is accepted ONCE, by all processes serving one data directory
(``SharedSignatureCache``; ``SignatureCache`` for an in-memory key store): a replayed
request, or a second identical request with the same timestamp and nonce, gets 13009
``replayed signature``; clients must send a nonce unique per request (ccxt's default is
the millisecond clock). The same holds for ``client_signature`` grants.

Failures say as little as possible: an unknown client id, a wrong secret and a wrong
signature give the same error (13009 ``invalid credentials`` on a signed request, 13004
``invalid_credentials`` from ``public/auth``) after the same work (an HMAC with a dummy
secret for an unknown id). Failed attempts back off per origin and per client id
(``AuthBackoff``): 10028 ``too_many_requests`` with ``retry_after_ms``, even for the right
secret, until the back-off ends.

Tokens are random, kept in memory, and expire; a refresh token yields a new pair (and is
spent). Every use of a credential looks its key up in the ``KeyStore`` (which notices a
changed keys file at once), so a revoked key's signatures, secrets and tokens fail from that
moment; ``forget`` drops its tokens, ``logout`` a session's.

With a ``token_key`` (the gateway workers of ``derivex serve --workers N`` share one per
run) a token is self-contained instead: ``kind.client_id.expires.pair.mac``, signed with that
key, so every worker holding the key accepts it, not only the one that issued it. Logging
out or refreshing spends the pair (``spent``: a set shared by the run's workers,
``derivex.gateway.spent_tokens``), which every worker checks before it accepts a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from derivex.gateway.auth_limits import AuthBackoff, AuthLimits, CacheFull, SignatureCache
from derivex.gateway.errors import (
    INVALID_CREDENTIALS,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    RpcError,
    invalid_params,
)
from derivex.gateway.keys import ApiKey, KeyStore
from derivex.gateway.numbers import whole_integer
from derivex.gateway.signatures import SIGNATURES_FILE, SharedSignatureCache

SCHEME = "deri-hmac-sha256"
DEFAULT_WINDOW_MS = 60_000
TOKEN_SECONDS = 31_536_000 // 12  # one month
# live token pairs per key (and per session, for its logout); issuing one more ends the
# oldest: memory stays bounded however often a client authenticates
MAX_TOKENS_PER_KEY = 256


def sign(secret: str, message: str) -> str:
    """Hex HMAC-SHA256 of ``message``; characters that stand for raw bytes of a header
    (aiohttp's surrogate escapes) sign as those bytes."""
    return hmac.new(secret.encode(), _raw(message), hashlib.sha256).hexdigest()


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison for any text a client sends (``hmac.compare_digest``
    refuses non-ASCII ``str``)."""
    try:
        return hmac.compare_digest(_raw(expected), _raw(given))
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte: no match
        return False


def _unauthorized(reason: str) -> RpcError:
    return RpcError(UNAUTHORIZED, "unauthorized", {"reason": reason})


_DUMMY_SECRET = secrets.token_urlsafe(32)  # an unknown id costs the same HMAC as a known one


def bearer_token(header: str) -> list[str]:
    """The token of a ``Bearer`` authorization header, as a list (empty for a signature)."""
    scheme, _, rest = header.strip().partition(" ")
    return [rest.strip()] if scheme.lower() == "bearer" else []


def _invalid_credentials() -> RpcError:
    return RpcError(INVALID_CREDENTIALS, "invalid_credentials")


@dataclass
class Session:
    """What a request or a WebSocket connection is authenticated as (None: public), where
    it comes from (``origin``: the peer address of its TCP connection, for the back-off)
    and the access tokens issued to it (``tokens``: what ``private/logout`` invalidates)."""

    key: ApiKey | None = None
    origin: str = ""
    tokens: list[str] = field(default_factory=list)

    @property
    def account(self) -> int:
        if self.key is None:
            raise _unauthorized("authorization required")
        return self.key.account


@dataclass
class _Token:
    client_id: str
    expires: float
    partner: str  # the other token of the pair (access <-> refresh)


class Authenticator:
    """Checks signatures and credentials against a ``KeyStore`` and issues tokens.
    ``limits``: the back-off on failures. Signatures already used are remembered in
    ``<data>/signatures`` (``SharedSignatureCache``, shared by every process serving the
    directory) for a file-backed store, else in memory (``SignatureCache`` of
    ``cache_capacity``)."""

    def __init__(
        self,
        keys: KeyStore,
        window_ms: int = DEFAULT_WINDOW_MS,
        clock_ms: Callable[[], int] | None = None,
        *,
        limits: AuthLimits | None = None,
        backoff_clock: Callable[[], float] = time.monotonic,
        cache_capacity: int = 200_000,
        token_key: bytes | None = None,
        spent: Any = None,
    ) -> None:
        self.keys = keys
        self.token_key = token_key
        # pairs of signed tokens logged out or refreshed (``spent``: shared by the workers
        # of the run, ``derivex.gateway.spent_tokens``; else this process's)
        self._spent: Any = spent if spent is not None else set()
        self.window_ms = window_ms
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.backoff = AuthBackoff(limits, backoff_clock)
        self.signatures: SignatureCache | SharedSignatureCache = (
            SignatureCache(window_ms, cache_capacity)
            if keys.path is None
            else SharedSignatureCache(keys.path.parent / SIGNATURES_FILE, window_ms)
        )
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        # client id -> its live access tokens, oldest first (each names its refresh token)
        self._by_client: dict[str, dict[str, None]] = {}
        keys.on_revoke.append(self.forget)

    # ---- the guards every credential check goes through ----

    def _names(self, client_id: str, origin: str) -> tuple[str, ...]:
        # (ids are 16 characters: a longer one is counted by its first 64, so a counter
        # costs bounded memory whatever a client sends)
        name = f"id:{client_id[:64]}"
        return (name, f"origin:{origin}") if origin else (name,)

    def _check_backoff(self, names: Iterable[str]) -> None:
        wait = self.backoff.blocked_for(names)
        if wait > 0:
            raise RpcError(
                TOO_MANY_REQUESTS,
                "too_many_requests",
                {
                    "reason": "too many failed authentication attempts",
                    "retry_after_ms": int(wait * 1000) + 1,
                },
            )

    def _verify(
        self,
        client_id: str,
        message: str,
        signature: str,
        ts_ms: int,
        names: tuple[str, ...],
        error: Callable[[], RpcError],
    ) -> ApiKey:
        """The key of ``client_id`` if ``signature`` signs ``message`` with its secret and
        was not used before; else ``error()`` (the same for an unknown id), counted as a
        failure against ``names``."""
        key = self.keys.lookup(client_id)
        expected = sign(key.client_secret if key is not None else _DUMMY_SECRET, message)
        if not _same(expected, signature) or key is None:
            self.backoff.failed(names)
            raise error()
        try:
            fresh = self.signatures.use(bytes.fromhex(expected), ts_ms, self._clock_ms())
        except CacheFull:
            raise RpcError(
                TOO_MANY_REQUESTS,
                "too_many_requests",
                {"reason": "too many signed requests in the window"},
            ) from None
        if not fresh:
            raise _unauthorized("replayed signature")
        self.backoff.succeeded(names)
        return key

    # ---- REST ----

    def from_header(
        self, header: str, http_method: str, target: str, body: str, origin: str = ""
    ) -> ApiKey:
        """The key of a signed (``deri-hmac-sha256``) or ``bearer`` request from
        ``origin``. Raises ``RpcError`` 13009 on any mismatch or replay, 10028 while
        backed off. Cost: a ``stat`` of the keys file and one HMAC."""
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
        names = self._names(client_id, origin)
        self._check_backoff(names)
        stamp = self._check_window(ts)
        return self._verify(
            client_id,
            f"{ts}\n{nonce}\n{http_method}\n{target}\n{body}\n",
            sig,
            stamp,
            names,
            lambda: _unauthorized("invalid credentials"),
        )

    def _check_window(self, ts: Any) -> int:
        try:  # the gateway's integer grammar (``int`` takes "1_0", " 1 ", other digits)
            stamp = whole_integer(ts, "timestamp")
        except RpcError:
            raise _unauthorized("bad timestamp") from None
        if abs(stamp - self._clock_ms()) > self.window_ms:
            raise _unauthorized("timestamp outside the window")
        return stamp

    # ---- public/auth ----

    def auth(self, params: dict[str, Any], origin: str = "") -> tuple[ApiKey, dict[str, Any]]:
        """Handle ``public/auth`` from ``origin``; returns the key and the Deribit result
        object. Raises ``RpcError``: 13004 for bad credentials (whatever was wrong), 13009
        for a stale, replayed or unknown signature timestamp or refresh token, 10028 while
        backed off."""
        grant = params.get("grant_type")
        if grant == "client_credentials":
            client_id = str(params.get("client_id", ""))
            names = self._names(client_id, origin)
            self._check_backoff(names)
            key = self.keys.lookup(client_id)
            secret = str(params.get("client_secret", ""))
            expected = key.client_secret if key is not None else _DUMMY_SECRET
            if not _same(expected, secret) or key is None:
                self.backoff.failed(names)
                raise _invalid_credentials()
            self.backoff.succeeded(names)
        elif grant == "client_signature":
            client_id = str(params.get("client_id", ""))
            names = self._names(client_id, origin)
            self._check_backoff(names)
            stamp = self._check_window(params.get("timestamp"))
            message = (
                f"{params.get('timestamp')}\n{params.get('nonce', '')}\n{params.get('data', '')}"
            )
            key = self._verify(
                client_id,
                message,
                str(params.get("signature", "")),
                stamp,
                names,
                _invalid_credentials,
            )
        elif grant == "refresh_token":
            text = str(params.get("refresh_token", ""))
            key = None
            if self.token_key is not None:
                signed = self._signed(text, "r")
                if signed is not None:
                    self._spent.add(signed[2])  # the pair ends on every worker
                    key = self.keys.lookup(signed[0]) if signed[1] > time.time() else None
            else:
                token = self._refresh.pop(text, None)
                if token is not None:
                    self._access.pop(token.partner, None)
                    owned = self._by_client.get(token.client_id)
                    if owned is not None:
                        owned.pop(token.partner, None)
                    if token.expires > time.time():
                        key = self.keys.lookup(token.client_id)
            if key is None:
                raise _unauthorized("invalid or expired refresh token")
        else:
            raise invalid_params(
                "grant_type", "must be client_credentials, client_signature or refresh_token"
            )
        return key, self._issue(key)

    def _issue(self, key: ApiKey) -> dict[str, Any]:
        expires = time.time() + TOKEN_SECONDS
        if self.token_key is not None:  # self-contained: any worker with the key checks it
            pair = secrets.token_urlsafe(12)
            return {
                "access_token": self._sign_token("a", key.client_id, expires, pair),
                "refresh_token": self._sign_token("r", key.client_id, expires, pair),
                "expires_in": TOKEN_SECONDS,
                "token_type": "bearer",
                "scope": key.deribit_scope(),
                "enabled_features": [],
            }
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._access[access] = _Token(key.client_id, expires, refresh)
        self._refresh[refresh] = _Token(key.client_id, expires, access)
        owned = self._by_client.setdefault(key.client_id, {})
        owned[access] = None
        if len(owned) > MAX_TOKENS_PER_KEY:
            self.logout([next(iter(owned))])
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": TOKEN_SECONDS,
            "token_type": "bearer",
            "scope": key.deribit_scope(),
            "enabled_features": [],
        }

    def from_token(self, token: str) -> ApiKey:
        """The key of an access token; 13009 if unknown, expired, logged out or its key
        revoked."""
        if self.token_key is not None:
            signed = self._signed(token, "a")
            key = (
                self.keys.lookup(signed[0])
                if signed is not None and signed[1] > time.time()
                else None
            )
        else:
            entry = self._access.get(token)
            key = (
                self.keys.lookup(entry.client_id)
                if entry is not None and entry.expires > time.time()
                else None
            )
        if key is None:
            raise _unauthorized("invalid or expired token")
        return key

    def logout(self, tokens: Iterable[str]) -> None:
        """Invalidate these access tokens and the refresh token issued with each."""
        for token in tokens:
            if self.token_key is not None:
                signed = self._signed(token, "a")
                if signed is not None:
                    self._spent.add(signed[2])
                continue
            entry = self._access.pop(token, None)
            if entry is None:
                continue
            self._refresh.pop(entry.partner, None)
            owned = self._by_client.get(entry.client_id)
            if owned is not None:
                owned.pop(token, None)

    def forget(self, client_ids: set[str]) -> None:
        """Drop every token of these (revoked) keys. O(their tokens)."""
        for client_id in client_ids:
            for token in self._by_client.pop(client_id, {}):
                entry = self._access.pop(token, None)
                if entry is not None:
                    self._refresh.pop(entry.partner, None)

    def _sign_token(self, kind: str, client_id: str, expires: float, pair: str) -> str:
        """``kind.client_id.expires.pair.mac``: HMAC-SHA256 under ``token_key`` (hex, 128
        bits kept) of the rest; the access and refresh token of a pair share ``pair``."""
        assert self.token_key is not None
        body = f"{kind}.{client_id}.{int(expires)}.{pair}"
        mac = hmac.new(self.token_key, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{mac}"

    def _signed(self, token: str, kind: str) -> tuple[str, float, str] | None:
        """``(client_id, expires, pair)`` of a signed token of ``kind``; None if it is not
        one, its mac is wrong or its pair was spent. Cost: one HMAC over ~80 bytes and a
        look at the spent set."""
        if self.token_key is None or len(token) > 256:
            return None
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != kind or not parts[2].isdigit():
            return None
        expected = hmac.new(self.token_key, body.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(expected, mac) or parts[3] in self._spent:
            return None
        return parts[1], float(parts[2]), parts[3]

    def close(self) -> None:
        """Stop listening to the key store (a gateway that stops)."""
        if self.forget in self.keys.on_revoke:
            self.keys.on_revoke.remove(self.forget)
        if isinstance(self.signatures, SharedSignatureCache):
            self.signatures.close()
