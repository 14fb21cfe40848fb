"""Prometheus metrics and runtime faults shared by the sandbox services.

- ``ServiceMetrics(job, redis_client=..., http=..., otel=...)``: a prometheus_client registry holding the
  metrics every service exposes on ``GET /metrics`` (process_*, ``emp_log_messages_total`` and, as
  asked, the Redis, HTTP server and OTLP export families). ``render()`` -> (body, content type);
  ``send_metrics(handler, metrics)`` answers an http.server request with it.
- ``RuntimeFaults`` (from ``sandbox._faults``): the faults ``python -m sandbox fault`` wrote.
- ``RedisDropper``: while ``redis-drop`` is active, kills the Redis server's client connections
  every second (what a flapping network or a Redis failover does to the services).

Every counter starts at 0 (labelled ones for their known label values), so ``increase()`` works
from the first scrape and an absent series means "not scraped", never "zero".
"""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from sandbox._common import on_redis_failure
from sandbox._faults import RuntimeFaults

__all__ = ["RedisDropper", "RuntimeFaults", "ServiceMetrics", "send_metrics"]

disable_created_metrics()  # no *_created series: only the figures the watch queries

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_LOG_TEMPLATES = 200  # a formatted (not templated) message must not explode the series count


class ServiceMetrics:
    """The registry of one service and the metric families shared by several services."""

    def __init__(self, job: str, *, redis_client: bool = True, http: bool = False, otel: bool = False) -> None:
        self.job = job
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.log_messages = Counter("emp_log_messages", "Log records by level and message template",
                                    ["level", "message"], registry=self.registry)
        self._templates: set[str] = set()
        self._lock = threading.Lock()
        self.redis_failures: Counter | None = None
        self.redis_connected: Gauge | None = None
        if redis_client:
            self.redis_failures = Counter("emp_redis_connection_failures", "Redis commands or connections that "
                                          "failed on a connection error", registry=self.registry)
            self.redis_connected = Gauge("emp_redis_connected", "1 while the service's Redis connection is up",
                                         registry=self.registry)
            on_redis_failure(self.redis_failures.inc)
        self.http_duration: Histogram | None = None
        if http:
            self.http_duration = Histogram("http_server_request_duration_seconds", "HTTP server request duration",
                                           ["http_route", "http_response_status_code"], buckets=HTTP_BUCKETS,
                                           registry=self.registry)
        self.otel_export_failures: Counter | None = None
        if otel:
            self.otel_export_failures = Counter("emp_otel_export_failures", "OTLP exports that failed (or were "
                                                "blocked by the telemetry-export fault)", registry=self.registry)

    # ------------------------------------------------------------------ helpers
    def counter(self, name: str, doc: str, labels: dict[str, tuple[str, ...]] | None = None) -> Counter:
        """A counter of this registry, every known label combination exposed from 0."""
        names = list(labels or {})
        counter = Counter(name, doc, names, registry=self.registry)
        if names:
            for values in _combinations([labels[n] for n in names] if labels else []):
                counter.labels(*values)
        return counter

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        if self.http_duration is not None:
            self.http_duration.labels(route, str(status)).observe(seconds)

    def set_redis_connected(self, connected: bool) -> None:
        if self.redis_connected is not None:
            self.redis_connected.set(1 if connected else 0)

    def export_failed(self, signal: str = "") -> None:
        del signal  # one counter for every signal
        if self.otel_export_failures is not None:
            self.otel_export_failures.inc()

    def count_logs(self) -> None:
        """Counts every record the root logger handles (level >= INFO), by its message template."""
        logging.getLogger().addHandler(_LogCounter(self))

    def count_log(self, record: logging.LogRecord) -> None:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        template = template[:120]
        with self._lock:
            if template not in self._templates:
                if len(self._templates) >= MAX_LOG_TEMPLATES:
                    template = "(other)"
                else:
                    self._templates.add(template)
        self.log_messages.labels(record.levelname.lower(), template).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def send_metrics(handler: BaseHTTPRequestHandler, metrics: ServiceMetrics) -> None:
    """Answers an http.server request with the exposition of ``metrics``."""
    body, content_type = metrics.render()
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


class _LogCounter(logging.Handler):
    def __init__(self, metrics: ServiceMetrics) -> None:
        super().__init__(logging.INFO)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        self.metrics.count_log(record)


def _combinations(values: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for options in values:
        combos = [combo + (option,) for combo in combos for option in options]
    return combos


class RedisDropper(threading.Thread):
    """The redis-drop fault: every ``interval`` seconds, kills the server's normal and pub/sub clients."""

    def __init__(self, redis_url: str, faults: RuntimeFaults, stop: threading.Event, interval: float = 1.0) -> None:
        super().__init__(name="redis-drop", daemon=True)
        self.redis_url, self.faults, self.stop, self.interval = redis_url, faults, stop, interval

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            if self.faults.active("redis-drop"):
                self.drop()

    def drop(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            for kind in ("normal", "pubsub"):
                client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
        except (redis.RedisError, OSError) as exc:
            logging.getLogger("faults").debug("redis-drop: %s", exc)
        finally:
            client.close()
