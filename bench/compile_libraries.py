"""Where a cold compile of the engine goes: CPU per compiled library.

Compiles the engine (``Engine().process``) and the per-command entry point
(``door.load_binding``) in this process, timing each library numba finalises (LLVM's
optimisation and machine code: ``CPUCodeLibrary.finalize``) by the process's CPU time, and
prints the marks (wall and CPU when each was ready) and the largest libraries as JSON. Run it
in a throwaway cache to measure a cold compile (a warm cache loads instead):

    NUMBA_CACHE_DIR=$(mktemp -d) nice -n 5 python bench/compile_libraries.py [OUT.json]

CPU (user + system) is the figure to compare on a shared machine; a library's time includes
the libraries it finalises inside its own (none in numba 0.68: callees are finalised first).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

STARTED = time.perf_counter()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    from numba.core import codegen

    libraries: list[tuple[str, float, float]] = []
    finalize = codegen.CPUCodeLibrary.finalize

    def timed(self: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return finalize(self)
        finally:
            libraries.append((self.name, time.process_time() - cpu, time.perf_counter() - wall))

    codegen.CPUCodeLibrary.finalize = timed  # type: ignore[method-assign]
    from derivex import Engine
    from derivex.core.records import command_array

    Engine().process(command_array(1))
    marks = {"engine_wall_s": time.perf_counter() - STARTED, "engine_cpu_s": _cpu()}
    from derivex.door import load_binding

    load_binding()
    marks.update(door_wall_s=time.perf_counter() - STARTED, door_cpu_s=_cpu())
    libraries.sort(key=lambda row: -row[1])
    out = {
        "marks": {key: round(value, 1) for key, value in marks.items()},
        "libraries": len(libraries),
        "finalize_cpu_s": round(sum(row[1] for row in libraries), 1),
        "largest": [(name, round(cpu, 1), round(wall, 1)) for name, cpu, wall in libraries[:25]],
    }
    text = json.dumps(out, indent=1)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
