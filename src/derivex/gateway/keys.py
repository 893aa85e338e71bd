"""API keys: a client id and secret bound to one account, with scopes.

Keys live in ``keys.json`` in the data directory, written atomically with mode 0600 (the
server needs the secrets themselves to check HMAC signatures). A key only ever acts on its
own account. Scopes: ``read`` (account queries, private subscriptions) and ``trade``
(order entry; implies ``read``).

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
from dataclasses import dataclass, field
from pathlib import Path

SCOPES = ("read", "trade")
KEYS_FILE = "keys.json"


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
    ``lookup`` re-reads the file when it changed, so keys created by ``derivex keys create``
    while the server runs work at once."""

    def __init__(self, directory: Path | str | None) -> None:
        self.path = Path(directory) / KEYS_FILE if directory is not None else None
        self._keys: dict[str, ApiKey] = {}
        self._mtime = 0.0
        self._reload()

    def _reload(self) -> None:
        if self.path is None or not self.path.exists():
            return
        mtime = self.path.stat().st_mtime
        if mtime == self._mtime:
            return
        items = json.loads(self.path.read_text())
        self._keys = {item["client_id"]: ApiKey(item["client_id"], item["client_secret"],
                                                int(item["account"]), tuple(item["scopes"]),
                                                item.get("name", ""),
                                                int(item.get("created_ms", 0)))
                      for item in items}
        self._mtime = mtime

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        items = [{"client_id": k.client_id, "client_secret": k.client_secret,
                  "account": k.account, "scopes": list(k.scopes), "name": k.name,
                  "created_ms": k.created_ms} for k in self._keys.values()]
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
        self._mtime = self.path.stat().st_mtime

    def create(self, account: int, scopes: tuple[str, ...] = ("read", "trade"),
               name: str = "") -> ApiKey:
        """A new key for ``account``; the secret is shown once, by the caller."""
        self._reload()
        key = ApiKey(secrets.token_hex(8), secrets.token_urlsafe(32), int(account),
                     tuple(scopes), name, time.time_ns() // 1_000_000)
        self._keys[key.client_id] = key
        self._save()
        return key

    def revoke(self, client_id: str) -> bool:
        self._reload()
        removed = self._keys.pop(client_id, None) is not None
        if removed:
            self._save()
        return removed

    def lookup(self, client_id: str) -> ApiKey | None:
        key = self._keys.get(client_id)
        if key is None:
            self._reload()
            key = self._keys.get(client_id)
        return key

    def list_keys(self) -> list[ApiKey]:
        self._reload()
        return list(self._keys.values())
