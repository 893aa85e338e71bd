"""API keys: a client id and secret bound to one account, with scopes.

Keys live in ``keys.json`` in the data directory, written atomically with mode 0600 (the
server needs the secrets themselves to check HMAC signatures). A key only ever acts on its
own account. Scopes: ``read`` (account queries, private subscriptions), ``trade``
(order entry; implies ``read``) and ``admin`` (the read-only operator methods
``private/admin_*`` of the operator dashboard; implies neither, and neither implies it).

Secrets never appear in ``repr``, logs or error messages.

>>> store = KeyStore(None)
>>> key = store.create(account=3, scopes=("read", "trade"))
>>> store.lookup(key.client_id).account, key.allows("trade"), "secret" in repr(key)
(3, True, False)
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from derivex.gateway.telemetry import logger

SCOPES = ("read", "trade", "admin")
KEYS_FILE = "keys.json"
KEYS_POLL_S = 0.1  # how often a server checks the file for revocations by other processes


@dataclass(frozen=True)
class ApiKey:
    client_id: str
    client_secret: str = field(repr=False)
    account: int
    scopes: tuple[str, ...] = ("read", "trade")
    name: str = ""
    created_ms: int = 0

    def allows(self, scope: str) -> bool:
        """``trade`` implies ``read``."""
        return scope in self.scopes or (scope == "read" and "trade" in self.scopes)

    def deribit_scope(self) -> str:
        trade = "trade:read_write" if "trade" in self.scopes else "trade:read"
        return f"connection mainaccount account:read {trade} wallet:read"


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"read,trade"`` -> ``("read", "trade")``; raises ValueError on unknown scopes."""
    scopes = tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {text!r}")
    return scopes


class KeyStore:
    """Keys by client id, persisted in ``directory/keys.json`` (None: in memory only).

    Every ``lookup`` first checks whether the file changed (one ``stat``: inode, size and
    mtime in nanoseconds, so an atomic replace by ``derivex keys create``/``revoke`` in
    another process is always seen, even within one mtime tick) and re-reads it if so. A
    key that disappeared or changed is *revoked*: each callable in ``on_revoke`` gets the
    set of revoked client ids (the gateway drops their tokens and closes their sessions).
    A file that cannot be read or parsed leaves no key valid (fail closed) until it can.
    """

    def __init__(self, directory: Path | str | None) -> None:
        self.path = Path(directory) / KEYS_FILE if directory is not None else None
        self._keys: dict[str, ApiKey] = {}
        self._signature: tuple[int, int, int] | None = None
        self.on_revoke: list[Callable[[set[str]], None]] = []
        # called with each key made here or found new in the file (not with ``install``):
        # the cluster's shared store (cluster/shared_keys.py) publishes them venue-wide
        self.on_add: list[Callable[[ApiKey], None]] = []
        # the file is missing or unreadable now (every key refused here): the revocations
        # this causes are local, not decisions to spread venue-wide
        self.damaged = False
        self._reload(strict=True)

    def _reload(self, strict: bool = False) -> None:
        """Re-read the file if its (inode, size, mtime_ns) changed. Cost: one ``stat``;
        O(keys) when it changed. ``strict``: a damaged file raises ValueError naming it
        (at start) instead of leaving no key valid."""
        if self.path is None:
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if self._signature is not None:  # it existed: deleting it revokes every key
                self._signature = None
                self.damaged = True
                self._replace({})
            return
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature == self._signature:
            return
        try:
            items = json.loads(self.path.read_bytes())
            keys = {
                item["client_id"]: ApiKey(
                    item["client_id"],
                    item["client_secret"],
                    int(item["account"]),
                    tuple(item["scopes"]),
                    item.get("name", ""),
                    int(item.get("created_ms", 0)),
                )
                for item in items
            }
        except (OSError, ValueError, TypeError, KeyError) as error:
            problem = f"{self.path}: not a valid keys file ({type(error).__name__}: {error})"
            if strict:
                raise ValueError(problem) from None
            # fail closed: a key revoked by the edit that damaged the file must not live on
            logger().error(
                "keys file unreadable: no key is valid until it is fixed", problem=problem
            )
            keys = {}
            self.damaged = True
        else:
            self.damaged = False
        self._signature = signature
        self._replace(keys)

    def _replace(self, keys: dict[str, ApiKey]) -> None:
        gone = {client_id for client_id, key in self._keys.items() if keys.get(client_id) != key}
        added = [key for client_id, key in keys.items() if self._keys.get(client_id) != key]
        self._keys = keys
        if gone:
            self._notify(gone)
        for key in added:
            for listener in list(self.on_add):
                listener(key)

    def _notify(self, revoked: set[str]) -> None:
        for listener in list(self.on_revoke):
            listener(revoked)

    def refresh(self) -> None:
        """Pick up changes made by another process now (the gateway calls this on a short
        timer, so a revocation also reaches sessions that never look a key up again)."""
        self._reload()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        items = [
            {
                "client_id": k.client_id,
                "client_secret": k.client_secret,
                "account": k.account,
                "scopes": list(k.scopes),
                "name": k.name,
                "created_ms": k.created_ms,
            }
            for k in self._keys.values()
        ]
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(items, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        info = os.stat(self.path)
        self._signature = (info.st_ino, info.st_size, info.st_mtime_ns)

    def create(
        self, account: int, scopes: tuple[str, ...] = ("read", "trade"), name: str = ""
    ) -> ApiKey:
        """A new key for ``account``; the secret is shown once, by the caller."""
        self._reload()
        key = ApiKey(
            secrets.token_hex(8),
            secrets.token_urlsafe(32),
            int(account),
            tuple(scopes),
            name,
            time.time_ns() // 1_000_000,
        )
        self._keys[key.client_id] = key
        self._save()
        for listener in list(self.on_add):
            listener(key)
        return key

    def install(self, key: ApiKey) -> None:
        """Add or replace ``key`` as made elsewhere (a venue-wide store): saved, no
        ``on_add``; a replaced, different key of the same id is revoked first. O(keys)."""
        self._reload()
        if self._keys.get(key.client_id) == key:
            return
        replaced = key.client_id in self._keys
        self._keys[key.client_id] = key
        self._save()
        if replaced:
            self._notify({key.client_id})

    def revoke(self, client_id: str) -> bool:
        """Remove a key; its sessions and tokens in this process end now (``on_revoke``),
        in a server of another process at its next lookup or key poll."""
        self._reload()
        removed = self._keys.pop(client_id, None) is not None
        if removed:
            self._save()
            self._notify({client_id})
        return removed

    def lookup(self, client_id: str) -> ApiKey | None:
        """The current key of ``client_id`` (None: unknown or revoked). Cost: one ``stat``
        of the keys file, plus a re-read when it changed."""
        self._reload()
        return self._keys.get(client_id)

    def list_keys(self) -> list[ApiKey]:
        self._reload()
        return list(self._keys.values())
