"""Metrics (Prometheus, one registry per server) and structured logs (structlog, JSON lines).

Logs never carry secrets: the redaction processor drops every field whose name says it
holds one (secrets, signatures, tokens, authorization headers), whatever the call site
passes, and request parameters are never logged.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from derivex.gateway.methods import METHODS

SECRET_FIELDS = frozenset({"client_secret", "secret", "signature", "sig", "authorization",
                           "access_token", "refresh_token", "token", "password", "params"})


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for name in list(event):
        if name.lower() in SECRET_FIELDS:
            event[name] = "[redacted]"
    return event


class _MessageOnly(logging.Formatter):
    """The rendered structlog line only: exceptions are already in it (as a field), so the
    stdlib must not append its own traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def configure_logging(stream: IO[str] | None = None, level: int = logging.INFO,
                      json: bool = True) -> structlog.stdlib.BoundLogger:
    """JSON lines (or console lines) to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_MessageOnly())
    root = logging.getLogger("derivex")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), redact,
                    structlog.processors.format_exc_info, renderer],
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


class Metrics:
    """The gateway's Prometheus metrics. Label children are cached: observing a request
    costs a dictionary lookup and two increments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("derivex_gateway_requests", "JSON-RPC requests answered",
                                ["method", "transport", "outcome"], registry=r)
        self.latency = Histogram("derivex_gateway_request_seconds",
                                 "time to answer a request (parse to reply)", ["transport"],
                                 buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                          5e-2, 0.25, 1.0), registry=r)
        self.errors = Counter("derivex_gateway_errors", "error replies by code", ["code"],
                              registry=r)
        self.connections = Gauge("derivex_gateway_websockets", "open WebSocket connections",
                                 registry=r)
        self.notifications = Counter("derivex_gateway_notifications",
                                     "subscription frames queued to clients", registry=r)
        self.trades = Counter("derivex_trades", "trades matched", registry=r)
        self.orders_open = Gauge("derivex_orders_open", "open orders known to the gateway",
                                 registry=r)
        self.engine_seq = Gauge("derivex_engine_seq", "last sequenced command", registry=r)
        self._children: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def request(self, method: str, transport: str, ok: bool, seconds: float,
                code: int = 0) -> None:
        name = method if method in METHODS else "unknown"
        key = (name, transport, "ok" if ok else "error")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(*key)
        child.inc()
        hist = self._latency.get(transport)
        if hist is None:
            hist = self._latency[transport] = self.latency.labels(transport)
        hist.observe(seconds)
        if not ok:
            self.errors.labels(str(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
