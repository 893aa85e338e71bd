"""The data directory of ``derivex serve``: is it a new venue, a whole existing one, or a
damaged one? A damaged directory is refused, never re-initialised.

A directory is *new* when it does not exist or holds nothing (an empty ``journal/`` counts as
nothing). Anything else is an existing venue, which must have all of::

    journal/segments.json  journal/config.json  journal files or a snapshot
    serve.json  instruments.json  keys.json

each of them readable. Otherwise ``DataDirectoryError`` names every missing or damaged file;
the operator restores it from a backup (or, for journal damage, runs ``derivex repair``).
Creating a venue writes ``serve.json`` last, so an interrupted creation is recognisable:
the error says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REQUIRED = ("serve.json", "instruments.json", "keys.json")
JOURNAL_REQUIRED = ("segments.json", "config.json")


class DataDirectoryError(Exception):
    """The data directory is neither new nor a complete venue (or a file of it is
    damaged). The message names each file."""


def _present(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found: list[Path] = []
    for path in sorted(directory.iterdir()):
        if path.name == "journal" and path.is_dir():
            found.extend(p for p in sorted(path.iterdir()) if p.name != "LOCK")
        else:
            found.append(path)
    return found


def is_new(data: Path) -> bool:
    """True when ``data`` holds no venue yet; raises ``DataDirectoryError`` when it holds
    part of one. Read-only. Cost: a directory listing and the existence checks."""
    if not _present(data):
        return True
    journal = data / "journal"
    missing = [str(data / name) for name in REQUIRED if not (data / name).is_file()]
    missing += [str(journal / name) for name in JOURNAL_REQUIRED if not (journal / name).is_file()]
    has_log = journal.is_dir() and any(p.suffix in (".journal", ".dxs") for p in journal.iterdir())
    if not has_log:
        missing.append(f"{journal}/*.journal (the journal) or a snapshot")
    if missing:
        raise DataDirectoryError(
            f"{data} holds part of a venue but lacks: {', '.join(missing)}. Refusing to start "
            f"(a new venue would replace its accounts); restore the missing files, or point "
            f"--data-dir at an empty directory for a new venue"
        )
    return False


def load_json(path: Path, shape: type) -> Any:
    """Parse ``path`` as JSON of type ``shape`` (``dict`` or ``list``); raises
    ``DataDirectoryError`` naming the file otherwise."""
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataDirectoryError(f"{path}: missing") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise DataDirectoryError(f"{path}: damaged, not JSON ({error})") from None
    if not isinstance(value, shape):
        raise DataDirectoryError(f"{path}: damaged, expected a JSON {shape.__name__}")
    return value


def check_files(data: Path) -> None:
    """Parse every JSON file of an existing venue (serve.json, instruments.json, keys.json)
    and check the fields each needs; raises ``DataDirectoryError`` naming the file."""
    serve = load_json(data / "serve.json", dict)
    if not isinstance(serve.get("demo_account"), int):
        raise DataDirectoryError(f"{data / 'serve.json'}: damaged, no demo_account")
    for item in load_json(data / "instruments.json", list):
        if not isinstance(item, dict):
            raise DataDirectoryError(f"{data / 'instruments.json'}: damaged entry {item!r:.60}")
    for item in load_json(data / "keys.json", list):
        if not (
            isinstance(item, dict)
            and {"client_id", "client_secret", "account", "scopes"} <= item.keys()
        ):
            raise DataDirectoryError(f"{data / 'keys.json'}: damaged entry")
