"""Metrics (Prometheus, one registry per server) and structured logs (structlog, JSON lines).

Logs never carry secrets: the redaction processor drops every field whose name says it
holds one (secrets, signatures, tokens, authorization headers), whatever the call site
passes, and request parameters are never logged.
"""

from __future__ import annotations

import logging
import sys
from bisect import bisect_left
from collections.abc import Callable, MutableMapping
from typing import IO, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from derivex.gateway.methods import METHODS

SECRET_FIELDS = frozenset(
    {
        "client_secret",
        "secret",
        "signature",
        "sig",
        "authorization",
        "access_token",
        "refresh_token",
        "token",
        "password",
        "params",
    }
)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        if name.lower() in SECRET_FIELDS:
            event[name] = "[redacted]"
    return event


class _MessageOnly(logging.Formatter):
    """The rendered structlog line only: exceptions are already in it (as a field), so the
    stdlib must not append its own traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def configure_logging(
    stream: IO[str] | None = None, level: int = logging.INFO, json: bool = True
) -> structlog.stdlib.BoundLogger:
    """JSON lines (or console lines) to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_MessageOnly())
    root = logging.getLogger("derivex")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("derivex.gateway")


def logger(name: str = "derivex.gateway") -> Any:
    """A structlog logger; configures JSON logs to stderr first if nobody has (structlog's
    own default renders tracebacks with local variables, which could hold secrets)."""
    if not structlog.is_configured():
        configure_logging()
    return structlog.get_logger(name)


LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0)
#: the bounds in whole nanoseconds: for n >= 0 ns, ``bisect_left(LATENCY_BUCKETS_NS, n)`` is
#: ``bisect_left(LATENCY_BUCKETS, n / 1e9)`` (each bound is the float nearest its ns / 1e9,
#: and floats near them are far closer together than 1e-9)
LATENCY_BUCKETS_NS = tuple(round(bound * 1e9) for bound in LATENCY_BUCKETS)


class _RequestStats:
    """Per-request counts kept in plain dictionaries and turned into Prometheus families
    only when scraped (a ``prometheus_client`` child takes a lock per increment; at tens
    of thousands of requests a second that is measurable)."""

    def __init__(self, trades: Callable[[], int]) -> None:
        self.trades = trades
        self.counts: dict[tuple[str, str, str], int] = {}
        self.errors: dict[int, int] = {}
        # transport -> (count per bucket, [total nanoseconds]): an integer sum, exact in
        # any order of addition
        self.latency: dict[str, tuple[list[int], list[int]]] = {}

    def collect(self) -> Any:
        requests = CounterMetricFamily(
            "derivex_gateway_requests",
            "JSON-RPC requests answered",
            labels=["method", "transport", "outcome"],
        )
        for key, count in self.counts.items():
            requests.add_metric(list(key), count)
        yield requests
        latency = HistogramMetricFamily(
            "derivex_gateway_request_seconds",
            "time to answer a request (parse to reply)",
            labels=["transport"],
        )
        for transport, (counts, total) in self.latency.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            latency.add_metric([transport], buckets, total[0] / 1e9)
        yield latency
        errors = CounterMetricFamily(
            "derivex_gateway_errors", "error replies by code", labels=["code"]
        )
        for code, count in self.errors.items():
            errors.add_metric([str(code)], count)
        yield errors
        yield CounterMetricFamily("derivex_trades", "trades matched", value=self.trades())


class Metrics:
    """The gateway's Prometheus metrics. Observing a request costs two dictionary
    look-ups, a bisection over the latency buckets and three integer additions (a batch
    answered together: ``answered``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._stats = _RequestStats(lambda: self.trades_matched)
        r.register(self._stats)  # type: ignore[arg-type]
        self.connections = Gauge(
            "derivex_gateway_websockets", "open WebSocket connections", registry=r
        )
        self.notifications = Counter(
            "derivex_gateway_notifications", "subscription frames queued to clients", registry=r
        )
        self.trades_matched = 0  # exported as derivex_trades_total when scraped
        self.orders_open = Gauge(
            "derivex_orders_open", "open orders known to the gateway", registry=r
        )
        self.engine_seq = Gauge("derivex_engine_seq", "last sequenced command", registry=r)

    def request(self, method: str, transport: str, ok: bool, seconds: float, code: int = 0) -> None:
        stats = self._stats
        key = (method if method in METHODS else "unknown", transport, "ok" if ok else "error")
        counts = stats.counts
        counts[key] = counts.get(key, 0) + 1
        buckets, total = self._latency(transport)
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        total[0] += round(seconds * 1e9)
        if not ok:
            stats.errors[code] = stats.errors.get(code, 0) + 1

    def answered(
        self, transport: str, methods: list[str], started_ns: list[int], out_ns: int
    ) -> None:
        """``request(methods[i], transport, True, (out_ns - started_ns[i]) / 1e9)`` for a
        batch of successes answered together at ``out_ns`` (wall-clock ns). Cost: a C-level
        count per distinct method, then one bisection and one addition per request
        (``request`` costs ~0.4 us each)."""
        if len(started_ns) == 1:  # a batch of one: the plain path costs less
            self.request(methods[0], transport, True, max(0, out_ns - started_ns[0]) / 1e9)
            return
        counts = self._stats.counts
        # (a Counter would check its argument against the Mapping ABC every time)
        for method in dict.fromkeys(methods):  # distinct, in order of first appearance
            count = methods.count(method)
            key = (method if method in METHODS else "unknown", transport, "ok")
            counts[key] = counts.get(key, 0) + count
        buckets, total = self._latency(transport)
        spent = 0
        for started in started_ns:
            nanoseconds = out_ns - started if out_ns > started else 0
            buckets[bisect_left(LATENCY_BUCKETS_NS, nanoseconds)] += 1
            spent += nanoseconds
        total[0] += spent

    def _latency(self, transport: str) -> tuple[list[int], list[int]]:
        latency = self._stats.latency.get(transport)
        if latency is None:
            latency = self._stats.latency[transport] = ([0] * (len(LATENCY_BUCKETS) + 1), [0])
        return latency

    def render(self) -> bytes:
        return generate_latest(self.registry)
