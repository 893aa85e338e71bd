"""Write-ahead journal, snapshots, crash recovery, replay and verifiable state roots.

- ``Journal``: append-only files of sequenced command batches, checksummed, with a
  durability policy (fsync per batch, or group commit every N ms). ``Exchange(journal=...)``
  appends each stamped batch before processing it.
- ``read``/``scan``: zero-copy batches back, every checksum verified, a torn tail reported.
- ``write_snapshot``/``load_snapshot``/``snapshot``: the whole state, atomically, loaded by
  mapping the file.
- ``recover``/``reopen``: latest snapshot + journal tail (the embedded venue reopens with
  ``Exchange.open``); ``verify_directory``: the audit behind ``derivex verify``.
- ``StateRoots``/``full_root``: a Merkle root over accounts, instruments and books, updated
  from the events of each batch; ``prove``/``verify_proof``: account inclusion proofs.

The formats are specified in docs/journal.md.
"""

from derivex.journal.format import CorruptionError, IncompatibleSnapshot, JournalError
from derivex.journal.proof import prove
from derivex.journal.reader import Batch, JournalReader, TornTail, read, scan
from derivex.journal.recovery import (
    Audit,
    Recovered,
    recover,
    reopen,
    snapshot,
    verify_directory,
)
from derivex.journal.replay import Checkpoint, Replayer
from derivex.journal.roots import StateRoots, full_root
from derivex.journal.snapshot import (
    Snapshot,
    list_snapshots,
    load_snapshot,
    restore_engine,
    write_snapshot,
)
from derivex.journal.verify import verify_proof
from derivex.journal.writer import Journal

__all__ = [
    "Audit",
    "Batch",
    "Checkpoint",
    "CorruptionError",
    "IncompatibleSnapshot",
    "Journal",
    "JournalError",
    "JournalReader",
    "Recovered",
    "Replayer",
    "Snapshot",
    "StateRoots",
    "TornTail",
    "full_root",
    "list_snapshots",
    "load_snapshot",
    "prove",
    "read",
    "recover",
    "reopen",
    "restore_engine",
    "scan",
    "snapshot",
    "verify_directory",
    "verify_proof",
    "write_snapshot",
]
