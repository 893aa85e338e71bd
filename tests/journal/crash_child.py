"""Child process of the crash test: journals a flow through an ``Exchange`` under load and
writes every acknowledged seq to an ack file right after ``submit`` returns, until killed.

    python crash_child.py DIRECTORY COMMANDS_FILE ACK_FILE SEED FSYNC
"""

from __future__ import annotations

import os
import sys

import numpy as np

from derivex.core.records import COMMAND_DTYPE, CommandKind, command_array
from derivex.exchange import open_exchange
from derivex.journal import snapshot


def main() -> None:
    directory, commands_file, ack_file, seed, fsync = sys.argv[1:6]
    with open(commands_file, "rb") as handle:
        commands = np.frombuffer(handle.read(), dtype=COMMAND_DTYPE).copy()
    rng = np.random.default_rng(int(seed))
    now = [1_798_761_600_000_000_000]

    def clock() -> int:
        now[0] += 1_000
        return now[0]

    exchange, _ = open_exchange(
        directory, clock=clock, fsync=fsync, interval_ms=2, roll_bytes=1 << 16
    )
    acks = os.open(ack_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start, batches = 0, 0
    while True:
        if start < len(commands):
            size = int(rng.integers(1, 40))
            part = commands[start : start + size].copy()
            start += size
        else:  # the flow is exhausted: keep the journal busy until the kill
            part = command_array(int(rng.integers(1, 50)))
            part["kind"] = CommandKind.TIME
        exchange.submit(part)
        # acknowledged: submit returned, so the batch is journaled per the fsync policy
        os.write(acks, b"%d\n" % int(part["seq"][-1]))
        batches += 1
        if batches == 1:  # kernels loaded, first batch through: the parent may start the clock
            os.write(acks, b"ready\n")
        if batches % 150 == 0:
            snapshot(exchange)


if __name__ == "__main__":
    main()
