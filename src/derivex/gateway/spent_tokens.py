"""Tokens spent on any gateway worker of ``derivex serve --workers N``: logged out access
tokens and used refresh tokens. Signed tokens are accepted by every worker holding the
run's key (``derivex.gateway.auth``), so spending one must reach every worker: each worker
appends the SHA-256 of what it spends to its own file in the run's token directory, and
reads what the others appended before it accepts a signed token (only files that grew are
read). Cost of a check: a directory scan and one ``stat`` per worker file, plus reading
the new lines.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["SpentTokens"]


class SpentTokens:
    """A set of spent tokens shared through ``directory`` (``name``: this worker's file
    stem); ``add`` and ``in`` as a set. Tokens are kept as digests, never as written."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._path = directory / f"{name}.spent"
        self._own = self._path.open("a", encoding="ascii")
        self._digests: set[str] = set()
        self._offsets: dict[str, int] = {}

    def add(self, token: str) -> None:
        digest = _digest(token)
        self._digests.add(digest)
        self._own.write(digest + "\n")
        self._own.flush()  # before the reply that says it is spent

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str):
            return False
        digest = _digest(token)
        if digest in self._digests:
            return True
        self._read()
        return digest in self._digests

    def _read(self) -> None:
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if not entry.name.endswith(".spent"):
                    continue
                offset = self._offsets.get(entry.name, 0)
                if entry.stat().st_size <= offset:
                    continue
                with open(entry.path, "rb") as file:
                    file.seek(offset)
                    data = file.read()
                end = data.rfind(b"\n") + 1  # whole lines only: a writer may be mid-line
                self._digests.update(data[:end].decode("ascii").split())
                self._offsets[entry.name] = offset + end

    def close(self) -> None:
        self._own.close()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
