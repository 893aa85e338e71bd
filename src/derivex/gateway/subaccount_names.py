"""Subaccount names (``private/change_subaccount_name``): the one thing about a subaccount
that is not engine state. Kept in ``subaccount_names.json`` beside ``keys.json`` (written
atomically; every read first checks the file's (inode, size, mtime), so a name set through
one gateway worker is what every other worker answers), or in memory for a key store
without a directory. An account without a name is called ``account-<id>``.

>>> names = SubaccountNames(None)
>>> names.name(7), names.set(7, "hedge_1"), names.name(7)
('account-7', None, 'hedge_1')
>>> names.set(8, "hedge_1")
Traceback (most recent call last):
...
ValueError: name hedge_1 is taken
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import weakref
from pathlib import Path
from typing import Any

NAMES_FILE = "subaccount_names.json"
#: Deribit's subaccount names: letters, digits and underscores
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}", re.ASCII)


def default_name(account: int) -> str:
    return f"account-{account}"


class SubaccountNames:
    """Names by account id; see the module docstring. Cost: one ``stat`` per read, O(names)
    when the file changed or on a write."""

    def __init__(self, directory: Path | str | None) -> None:
        self.path = Path(directory) / NAMES_FILE if directory is not None else None
        self._names: dict[int, str] = {}
        self._signature: tuple[int, int, int] | None = None

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._names, self._signature = {}, None
            return
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature == self._signature:
            return
        try:
            raw = json.loads(self.path.read_bytes())
            self._names = {int(account): str(name) for account, name in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self._names = {}  # a damaged file: default names until it is rewritten
        self._signature = signature

    def name(self, account: int) -> str:
        self._reload()
        return self._names.get(account, default_name(account))

    def set(self, account: int, name: str) -> None:
        """Name ``account``. Raises ValueError for a name outside ``NAME_PATTERN`` or one
        another account has (names identify accounts to people)."""
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError("a name is 1 to 64 letters, digits or underscores")
        self._reload()
        # (a default name, ``account-<id>``, has a dash: never a name one can set)
        taken = {other for other, given in self._names.items() if given == name}
        if taken - {account}:
            raise ValueError(f"name {name} is taken")
        self._names[account] = name
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".names-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({str(a): n for a, n in sorted(self._names.items())}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        info = os.stat(self.path)
        self._signature = (info.st_ino, info.st_size, info.st_mtime_ns)


_STORES: weakref.WeakKeyDictionary[Any, SubaccountNames] = weakref.WeakKeyDictionary()


def names_of(keys: Any) -> SubaccountNames:
    """The names kept beside the key store ``keys`` (one per store: per process)."""
    store = _STORES.get(keys)
    if store is None:
        path = getattr(keys, "path", None)
        store = _STORES[keys] = SubaccountNames(path.parent if path is not None else None)
    return store
