"""``/metrics`` of ``derivex serve --workers N``: every worker's series, labelled ``worker``.

A scrape reaches one worker (the kernel spreads connections over the workers sharing the
port), so each worker answers for all: it renders its own registry, adds the label
``worker="<index>"`` to every sample, and merges in the latest exposition each other worker
published into the run's metrics directory (``publish``, every second: at most that old).
A worker's file is replaced atomically; files are removed when the runtime starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from derivex.gateway.telemetry import Metrics

__all__ = ["PUBLISH_INTERVAL_S", "WorkerMetrics"]

PUBLISH_INTERVAL_S = 1.0


class WorkerMetrics(Metrics):
    """``Metrics`` of gateway worker ``worker`` whose ``render`` covers every worker whose
    exposition is in ``directory``. Cost of a scrape: parsing the other workers' texts
    (a few kB each)."""

    def __init__(self, worker: int, directory: Path) -> None:
        super().__init__()
        self.worker = worker
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def own(self) -> bytes:
        """This worker's series, each sample labelled with the worker."""
        return generate_latest(_Families(list(self._labelled(super().render()))))  # type: ignore[arg-type]

    def publish(self) -> None:
        """Write this worker's labelled exposition for the others (atomic replace)."""
        path = self.directory / f"worker.{self.worker}.prom"
        temp = path.with_suffix(f".tmp.{os.getpid()}")
        temp.write_bytes(self.own())
        temp.replace(path)

    def render(self) -> bytes:
        families: dict[str, Metric] = {}
        texts = [self.own()]
        for path in sorted(self.directory.glob("worker.*.prom")):
            if path.name != f"worker.{self.worker}.prom":
                try:
                    texts.append(path.read_bytes())
                except OSError:  # replaced or removed meanwhile: skip this round
                    continue
        for text in texts:
            try:  # a worker's file that does not parse (damaged) is left out, not fatal
                parsed = list(text_string_to_metric_families(text.decode()))
            except (ValueError, UnicodeDecodeError):
                continue
            for family in parsed:
                merged = families.get(family.name)
                if merged is None:
                    families[family.name] = family
                else:
                    merged.samples.extend(family.samples)
        return generate_latest(_Families(list(families.values())))  # type: ignore[arg-type]

    def _labelled(self, text: bytes) -> Iterator[Metric]:
        label = str(self.worker)
        for family in text_string_to_metric_families(text.decode()):
            family.samples = [
                sample._replace(labels={**sample.labels, "worker": label})
                for sample in family.samples
            ]
            yield family


class _Families(CollectorRegistry):
    """A registry that collects fixed metric families (for ``generate_latest``)."""

    def __init__(self, families: list[Metric]) -> None:
        super().__init__(auto_describe=False)
        self._families = families

    def collect(self) -> Iterator[Any]:
        yield from self._families
