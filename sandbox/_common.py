"""Helpers shared by the sandbox services (api, worker, monitor, webhook).

Stable, small API -- other sandbox services import it, so only add to it:

- ``service_parser(service, description)`` / ``parse_service_args(parser, argv)``:
  argparse with the common flags ``--host --port --redis-url --release-dir
  --otlp-endpoint --log-file``.
- ``load_release(release_dir, service)`` -> ``Release(service, version, faults)``;
  ``release.has_fault("no_reconnect")``.
- ``redis_client(url, client_name, ...)`` / ``async_redis_client(...)``: redis-py clients
  with an explicit retry policy (few retries, capped exponential backoff), explicit socket
  timeouts and the given CLIENT SETNAME (``None`` = anonymous, the ``no_redis_client`` fault).
- ``Backoff``: capped exponential delays for reconnect loops.
- ``setup_logging(service, log_file)`` -> logger.
- ``setup_telemetry(service_name, endpoint, version)`` -> ``Telemetry`` (tracer, meter,
  enabled, shutdown()); a no-op when endpoint is None.
- ``StopFlag``: SIGTERM/SIGINT -> threading.Event, for clean shutdowns.
- ``JsonHandler``: http.server handler base with ``send_json`` / ``read_json``.
- ``on_redis_failure(callback)``: called on every connection error a client of this module meets
  (retried or not), so a metric can count failures redis-py's retries would hide.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# Faults a release.json may carry (see SANDBOX_CONTRACT.md).
KNOWN_FAULTS = frozenset({"routes_404", "slow", "leak_memory", "no_redis_client", "no_reconnect", "no_telemetry"})


# --------------------------------------------------------------------------- arguments
def service_parser(service: str, description: str = "") -> argparse.ArgumentParser:
    """An ArgumentParser carrying the common flags every sandbox service accepts."""
    parser = argparse.ArgumentParser(prog=f"python -m sandbox.{service}", description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    parser.add_argument("--port", type=int, default=None,
                        help="port to listen on (0 = a free one); without it the api and webhook services read the "
                             "EMP services' environment variables instead (docs/emp-real-contracts.md)")
    parser.add_argument("--redis-url", default=os.environ.get("EMP_SANDBOX_REDIS_URL"),
                        help="Redis URL (required; default $EMP_SANDBOX_REDIS_URL)")
    parser.add_argument("--release-dir", default=None,
                        help="directory holding release.json (the release's 'current' symlink)")
    parser.add_argument("--otlp-endpoint", default=None,
                        help="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (telemetry off when absent)")
    parser.add_argument("--log-file", default=None, help="log file (stderr when absent)")
    parser.add_argument("--faults-file", default=None,
                        help="runtime faults written by `python -m sandbox fault` (polled; none when absent)")
    return parser


# The EMP services' own environment (docs/emp-real-contracts.md). Started without --port, the sandbox's API and
# webhook service read it and refuse to start without it, in the EMP services' order and words. Unlike the EMP
# services, a refusal never prints the values of other variables (the EMP API lists every *REDIS* one).
REAL_ENV: dict[str, tuple[tuple[str, str | None], ...]] = {
    "api": (("OTEL_COLLECTOR_ENDPOINT", "otlp_endpoint"), ("NODE_ENV", None), ("API_PORT", "port"),
            ("REDIS_URL", "redis_url"), ("CORS_ORIGINS", "cors_origins")),
    "webhook": (("WEBHOOK_SERVICE_PORT", "port"), ("HUB_REDIS_URL", "redis_url"),
                ("OTEL_COLLECTOR_ENDPOINT", "otlp_endpoint"), ("NODE_ENV", None)),
}
REAL_ENV_REFUSALS = {
    "REDIS_URL": "❌ FATAL ERROR: REDIS_URL environment variable is not set!",
    "HUB_REDIS_URL": "❌ FATAL ERROR: HUB_REDIS_URL environment variable is not set!",
    "WEBHOOK_SERVICE_PORT": "WEBHOOK_SERVICE_PORT environment variable is required",
}


def real_env_refusal(service: str, args: argparse.Namespace, environ: dict) -> str | None:
    """Fills args from the EMP variables of `service`; the EMP service's refusal for the first one missing."""
    for name, attribute in REAL_ENV.get(service, ()):
        value = environ.get(name, "")
        if not value:
            return REAL_ENV_REFUSALS.get(name, f"FATAL: {name} environment variable is required. No defaults allowed.")
        if attribute == "port":
            args.port = int(value)
        elif attribute == "cors_origins":
            args.cors_origins = [origin.strip() for origin in value.split(",")]
        elif attribute and not getattr(args, attribute, None):  # a flag, when given, wins
            setattr(args, attribute, value)
    return None


def parse_service_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    service = parser.prog.rsplit(".", 1)[-1]
    args.real_env = args.port is None and service in REAL_ENV
    if args.real_env:
        refusal = real_env_refusal(service, args, dict(os.environ))
        if refusal:
            print(refusal, file=sys.stderr)
            raise SystemExit(1)
    args.port = args.port or 0
    args.cors_origins = getattr(args, "cors_origins", None) or ["*"]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--host {args.host}: the sandbox binds loopback only")
    if hasattr(args, "redis_url") and not args.redis_url:
        # No silent default: 6379 is a shared Redis the sandbox must never touch.
        parser.error("--redis-url is required (or set EMP_SANDBOX_REDIS_URL)")
    return args


# --------------------------------------------------------------------------- releases
@dataclass(frozen=True)
class Release:
    service: str
    version: str
    faults: tuple[str, ...] = field(default_factory=tuple)

    def has_fault(self, name: str) -> bool:
        return name in self.faults

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "version": self.version, "faults": list(self.faults)}


def load_release(release_dir: str | os.PathLike | None, service: str) -> Release:
    """Reads <release_dir>/release.json; no directory means an unversioned dev run."""
    if not release_dir:
        return Release(service=service, version="0.0.0-dev")
    path = Path(release_dir) / "release.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ValueError(f"{path}: release.json needs a string 'version'")  # noqa: TRY004
    faults = data.get("faults") or []
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise ValueError(f"{path}: 'faults' must be a list of strings")
    unknown = sorted(set(faults) - KNOWN_FAULTS)
    if unknown:  # a misspelt fault would silently ship a "good" release
        raise ValueError(f"{path}: unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_FAULTS))}")
    return Release(service=str(data.get("service", service)), version=data["version"], faults=tuple(faults))


# --------------------------------------------------------------------------- redis
_REDIS_FAILURE_LISTENERS: list[Callable[[], Any]] = []


def on_redis_failure(callback: Callable[[], Any]) -> None:
    _REDIS_FAILURE_LISTENERS.append(callback)


def _redis_failed() -> None:
    for callback in _REDIS_FAILURE_LISTENERS:
        callback()


class _CountingRetry(Retry):
    """Retry that reports each failure it sees (redis-py's retries would hide them)."""

    def call_with_retry(self, do, fail, *args: Any, **kwargs: Any):
        def failed(*fail_args: Any) -> Any:
            _redis_failed()
            return fail(*fail_args)
        return super().call_with_retry(do, failed, *args, **kwargs)


# At most two connections per client, as an EMP service (ioredis) keeps: one for commands, one for its
# pub/sub subscriber. An unbounded pool grows under concurrency and, after a Redis restart, reconnects
# only the connections it uses again, so a service's connection count (what the Redis reconnect gate
# compares with the count before the release) would drift with load. Commands wait for the shared
# connection (ioredis queues them the same way); the wait is bounded.
SERVICE_CONNECTIONS = 2
POOL_WAIT_S = 30.0
# ioredis sets no command timeout and a 10 s connect timeout; a shorter bound here counted a busy CI
# machine's stalls as Redis connection failures (the watch's redis alert fired without any outage).
# Outages are seen at once all the same: a closed or refused connection fails immediately.
COMMAND_TIMEOUT_S = 10.0


def _retry_policy(retries: int, backoff_base: float, backoff_cap: float) -> Retry:
    # Explicit: redis-py 8 retries with backoff by default, which would hide outages.
    return _CountingRetry(ExponentialBackoff(cap=backoff_cap, base=backoff_base), retries)


def redis_client(url: str, client_name: str | None, *, retries: int = 2, backoff_base: float = 0.05,
                 backoff_cap: float = 0.5, socket_timeout: float = COMMAND_TIMEOUT_S, decode_responses: bool = True,
                 single_connection: bool = False) -> redis.Redis:
    """A sync redis-py client; connections are re-established (and re-named) on demand.

    ``single_connection=True`` with ``retries=0`` makes a lost connection visible as an error
    (a pool silently replaces connections the server closed): what the no_reconnect fault needs.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=SERVICE_CONNECTIONS, timeout=POOL_WAIT_S, client_name=client_name,
        decode_responses=decode_responses, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
        retry=_retry_policy(retries, backoff_base, backoff_cap), health_check_interval=0,
    )
    client = redis.Redis(connection_pool=pool, single_connection_client=single_connection)
    client.auto_close_connection_pool = True
    return client


def async_redis_client(url: str, client_name: str | None, *, retries: int = 2, backoff_base: float = 0.05,
                       backoff_cap: float = 0.5, socket_timeout: float = COMMAND_TIMEOUT_S, decode_responses: bool = True
                       ) -> redis.asyncio.Redis:
    """An asyncio redis-py client with the same explicit policy as redis_client()."""
    from redis.asyncio.retry import Retry as AsyncRetry

    class CountingAsyncRetry(AsyncRetry):
        async def call_with_retry(self, do, fail, *args: Any, **kwargs: Any):
            async def failed(*fail_args: Any) -> Any:
                _redis_failed()
                return await fail(*fail_args)
            return await super().call_with_retry(do, failed, *args, **kwargs)

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=SERVICE_CONNECTIONS, timeout=POOL_WAIT_S, client_name=client_name,
        decode_responses=decode_responses, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
        retry=CountingAsyncRetry(ExponentialBackoff(cap=backoff_cap, base=backoff_base), retries),
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


class Backoff:
    """Capped exponential delays for reconnect loops: first, first*factor, ... up to cap."""

    def __init__(self, first: float = 0.1, factor: float = 2.0, cap: float = 2.0):
        self.first, self.factor, self.cap = first, factor, cap
        self._next = first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next_delay()


# --------------------------------------------------------------------------- logging
def setup_logging(service: str, log_file: str | None, level: int = logging.INFO) -> logging.Logger:
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service}[%(process)d] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Exporter retries against a stopped collector are expected in the sandbox; keep them short.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    return logging.getLogger(service)


# --------------------------------------------------------------------------- telemetry
class Telemetry:
    """OpenTelemetry SDK tracer + meter exporting OTLP/HTTP to ``endpoint``; no-op without one."""

    def __init__(self, service_name: str, endpoint: str | None, version: str = "0.0.0",
                 span_delay_ms: int = 200, metric_interval_ms: int = 2000,
                 blocked: Callable[[], bool] | None = None, on_failure: Callable[[str], Any] | None = None):
        from opentelemetry import metrics, trace
        self.service_name = service_name
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.enabled = bool(self.endpoint)
        self._tracer_provider = None
        self._meter_provider = None
        if not self.enabled:
            self.tracer = trace.NoOpTracer()
            self.meter = metrics.NoOpMeter(service_name)
            return
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": service_name, "service.version": version,
                                    "deployment.environment": "sandbox"})
        # shutdown_on_exit=False: shutdown() below bounds the final flush; the SDK's own atexit
        # hook would wait out the exporter's retries when the collector is already gone.
        self._tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        span_exporter, metric_exporter = _guarded_exporters(OTLPSpanExporter, OTLPMetricExporter, blocked, on_failure)
        self._tracer_provider.add_span_processor(BatchSpanProcessor(
            span_exporter(endpoint=f"{self.endpoint}/v1/traces", timeout=3),
            schedule_delay_millis=span_delay_ms))
        reader = PeriodicExportingMetricReader(
            metric_exporter(endpoint=f"{self.endpoint}/v1/metrics", timeout=3),
            export_interval_millis=metric_interval_ms, export_timeout_millis=3000)
        self._meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        self.tracer = self._tracer_provider.get_tracer(service_name, version)
        self.meter = self._meter_provider.get_meter(service_name, version)

    def force_flush(self, timeout_ms: int = 2000) -> None:
        if self._tracer_provider:
            self._tracer_provider.force_flush(timeout_ms)
        if self._meter_provider:
            self._meter_provider.force_flush(timeout_ms)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Flushes and stops the exporters, waiting at most ``timeout`` seconds in total."""
        def stop() -> None:
            for provider in (self._tracer_provider, self._meter_provider):
                if provider is not None:
                    try:
                        provider.shutdown()
                    except Exception:  # noqa: BLE001, S110  # pylint: disable=broad-except  # never block a shutdown on export
                        pass
        if self._tracer_provider is None and self._meter_provider is None:
            return
        # A daemon thread: when the collector is gone, the exporter's retries are abandoned at exit.
        worker = threading.Thread(target=stop, name="otel-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)


def _guarded_exporters(span_base: Any, metric_base: Any, blocked: Callable[[], bool] | None,
                       on_failure: Callable[[str], Any] | None) -> tuple[Any, Any]:
    """OTLP exporters that report failed exports and refuse to send while ``blocked()`` (the
    telemetry-export fault: the export fails before anything leaves the process)."""
    from opentelemetry.sdk.metrics.export import MetricExportResult
    from opentelemetry.sdk.trace.export import SpanExportResult
    is_blocked = blocked or (lambda: False)
    failed = on_failure or (lambda signal: None)

    class Spans(span_base):
        def export(self, spans: Any) -> Any:
            if is_blocked():
                failed("traces")
                return SpanExportResult.FAILURE
            result = super().export(spans)
            if result != SpanExportResult.SUCCESS:
                failed("traces")
            return result

    class Metrics(metric_base):
        def export(self, metrics_data: Any, *args: Any, **kwargs: Any) -> Any:
            if is_blocked():
                failed("metrics")
                return MetricExportResult.FAILURE
            result = super().export(metrics_data, *args, **kwargs)
            if result != MetricExportResult.SUCCESS:
                failed("metrics")
            return result

    return Spans, Metrics


def setup_telemetry(service_name: str, endpoint: str | None, version: str = "0.0.0", **kwargs: Any) -> Telemetry:
    return Telemetry(service_name, endpoint, version, **kwargs)


# --------------------------------------------------------------------------- signals
class StopFlag:
    """Sets an Event on SIGTERM/SIGINT so loops and servers can end cleanly."""

    def __init__(self, install: bool = True):
        self.event = threading.Event()
        self._callbacks: list = []
        if install:
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def on_stop(self, callback) -> None:
        self._callbacks.append(callback)

    def _handle(self, signum, frame) -> None:
        self.set()

    def set(self) -> None:
        if self.event.is_set():
            return
        self.event.set()
        for callback in self._callbacks:
            # Callbacks like HTTPServer.shutdown() block until serve_forever returns: run aside.
            threading.Thread(target=callback, daemon=True).start()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


# --------------------------------------------------------------------------- http
class JsonHandler(BaseHTTPRequestHandler):
    """BaseHTTPRequestHandler with JSON helpers and logging through the logging module."""

    protocol_version = "HTTP/1.1"
    server_version = "emp-sandbox/0.1"
    # keep-alive answers are small writes: Nagle + delayed ACK would stall each one by ~40 ms
    disable_nagle_algorithm = True

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def read_json(self) -> Any:
        """The JSON body; raises ValueError for a malformed one."""
        raw = self.read_body()
        if not raw:
            return {}
        return json.loads(raw.decode("utf-8"))

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        if getattr(self, "path", "").split("?", 1)[0] == "/metrics":
            return  # a scrape a second would drown the log
        logging.getLogger("http").info("%s %s", self.address_string(), format % args)
