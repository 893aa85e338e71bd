"""Order labels shared by the gateway workers of ``derivex serve --workers N``.

A Deribit label is a client string (up to 64 characters); the engine keeps a 64-bit
``label`` per order and echoes it in the order's events. A worker that places a labelled
order packs a key of the label into the command (``key``: 8 bytes of BLAKE2b, never 0) and
appends ``key label`` to its own file in the run's label directory before it submits
(``flush``); every other worker meets the key in the command of the batch and reads the
label from the files (``name``: a miss reads what the files gained since). So an order
carries its label on every worker, as it does in the one-process venue.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["SharedLabels"]


class SharedLabels:
    """The label directory as one worker sees it (``name``: its own file's stem).
    Cost: ``key`` one hash (and one line written per new label); ``name`` a dictionary
    look-up, plus reading the files' new lines on a miss."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._own = (directory / f"{name}.labels").open("a", encoding="utf-8")
        self._names: dict[int, str] = {}
        self._offsets: dict[Path, int] = {}

    def key(self, label: str) -> int:
        """The 64-bit key of ``label`` (0 for no label), recorded for the others."""
        if not label:
            return 0
        key = int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "little") or 1
        if key not in self._names:
            self._names[key] = label
            # JSON: a label may hold any character, the file one per line
            self._own.write(f"{key:016x} {json.dumps(label)}\n")
        return key

    def flush(self) -> None:
        """Make the labels recorded so far readable by the other workers (call before
        submitting the commands that carry their keys)."""
        self._own.flush()

    def name(self, key: int) -> str:
        """The label of ``key`` ("" for 0, or for a key nobody recorded)."""
        if not key:
            return ""
        label = self._names.get(key)
        if label is None:
            self._read()
            label = self._names.get(key, "")
        return label

    def _read(self) -> None:
        for path in sorted(self.directory.glob("*.labels")):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as file:
                    file.seek(offset)
                    data = file.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # whole lines only: a writer may be mid-line
            for line in data[:end].splitlines():
                key, _, label = line.partition(b" ")
                try:
                    text = json.loads(label)
                    if isinstance(text, str):
                        self._names[int(key, 16)] = text
                except ValueError:  # a damaged line names no label: its orders read ""
                    continue
            self._offsets[path] = offset + end

    def close(self) -> None:
        self._own.close()
