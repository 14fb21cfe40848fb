"""HTTP surfaces of the telemetry backend.

One request handler serves three roles; each listener is given the roles it plays (ports may be
collapsed by giving two roles the same port):

- ``otlp``   POST /v1/traces, /v1/metrics, /v1/logs (the collector's OTLP/HTTP receiver)
- ``query``  the Dash0 query API (POST /api/spans, POST /api/logs,
             GET|POST /api/prometheus/api/v1/query and query_range, forwarded to the Prometheus engine),
             GET /dash0/metrics (the ingested metrics for that engine to scrape), Tempo (GET /api/traces/{id},
             GET /api/v2/traces/{id}, GET /api/search) and Jaeger api/v3
             (GET /api/v3/traces/{id}, GET /api/v3/traces?query.service_name=...)
- ``health`` GET / (health_check extension JSON) and GET /metrics (self-metrics)

Every listener also answers the control API: GET|POST /_control/faults, POST /_control/reset,
GET /_control/stats.

Paging of /api/spans and /api/logs: results are ordered newest first (item time descending,
then arrival descending). ``pagination: {limit, cursor}`` in the request (limit at most and by
default 200); when more items remain the answer carries ``cursors: {after: "<cursor>"}``, an
opaque base64url token naming the last item returned; passing it back as
``pagination.cursor`` continues strictly after that item, so pages never repeat or skip items
even while new data arrives.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from typing import Any, Callable

from sandbox._common import JsonHandler

from sandbox._metrics import ServiceMetrics

from . import EXPOSITION_PATH, codec, exposition
from .faults import FaultError, Faults
from .selfmetrics import SelfMetrics
from .store import Record, Store, group_otlp

log = logging.getLogger("telemetry")

MAX_BODY = 32 * 1024 * 1024
PAGE_LIMIT = 200
PROMETHEUS_PATHS = ("/api/prometheus/api/v1/query", "/api/prometheus/api/v1/query_range")
PROMETHEUS_TIMEOUT_S = 30.0
# loopback only: never through an http_proxy of the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_RELATIVE_TIME = re.compile(r"^now(?:([+-])(\d+(?:\.\d+)?)(ms|s|m|h|d|w))?$")
_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Backend:
    """All state of one telemetry backend process."""

    def __init__(self, token: str, datasets: list[str], max_items: int = 50000, metrics_suffix: str = "",
                 prometheus_url: str | None = None, service_metrics: ServiceMetrics | None = None):
        self.token = token
        self.prometheus_url = prometheus_url.rstrip("/") if prometheus_url else None
        self.service_metrics = service_metrics
        self.datasets = datasets or ["default"]
        self.store = Store(max_items)
        self.exposition = exposition.Exposition(self.store)
        self.faults = Faults()
        self.metrics = SelfMetrics(metrics_suffix)
        self.started = time.time()

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    # ------------------------------------------------------------------ ingest
    def ingest(self, signal: str, body: bytes, headers: Any) -> tuple[int, dict[str, str], bytes]:
        """One OTLP/HTTP export: (status, headers, body) per the OTLP specification."""
        spec = codec.SIGNAL_SPECS[signal]
        kind = codec.media_type(headers.get("Content-Type"))
        answer_kind = kind if kind in (codec.PROTOBUF, codec.JSON) else codec.JSON
        content_type = {"Content-Type": answer_kind}

        def status(code: int, rpc_code: int, message: str, extra: dict[str, str] | None = None):
            return code, dict(content_type, **(extra or {})), codec.encode_status(answer_kind, rpc_code, message)

        auth = headers.get("Authorization")
        if auth is not None and auth != f"Bearer {self.token}":
            return status(401, codec.CODE_UNAUTHENTICATED, "invalid authorization token")
        dataset = headers.get("Dash0-Dataset") or self.default_dataset
        if dataset not in self.datasets:
            return status(403, codec.CODE_PERMISSION_DENIED, f"dataset {dataset!r} does not exist")
        try:
            message = codec.decode_request(spec, codec.decompress(body, headers.get("Content-Encoding")),
                                           headers.get("Content-Type"))
        except codec.UnsupportedMediaType as exc:
            return status(415, codec.CODE_INVALID_ARGUMENT, str(exc))
        except codec.MalformedPayload as exc:
            return status(400, codec.CODE_INVALID_ARGUMENT, str(exc))

        count = codec.count_items(spec, message)
        fault = self.faults.take(signal)
        if fault.mode == "bad_request":
            self.metrics.add("otelcol_receiver_refused", signal, count)
            return status(400, codec.CODE_INVALID_ARGUMENT, "request rejected by the sandbox's bad_request fault")
        if fault.mode in ("unavailable", "throttle"):
            self.metrics.add("otelcol_receiver_refused", signal, count)
            code, rpc = (503, codec.CODE_UNAVAILABLE) if fault.mode == "unavailable" else (429, codec.CODE_RESOURCE_EXHAUSTED)
            reason = "backend unavailable" if code == 503 else "rate limited"
            return status(code, rpc, f"{reason}, retry after {fault.retry_after}s",
                          {"Retry-After": str(fault.retry_after)})
        rejected = min(fault.rejected, count) if fault.mode == "partial" else 0
        self.metrics.add("otelcol_receiver_refused", signal, rejected)
        self.metrics.add("otelcol_receiver_accepted", signal, count - rejected)
        if fault.mode == "drop":
            self.metrics.add("otelcol_exporter_send_failed", signal, count)
        elif fault.mode == "queue_full":
            self.metrics.add("otelcol_exporter_enqueue_failed", signal, count)
        else:
            visible_at = time.time() + fault.delay_s if fault.mode == "delay" else None
            stored = self.store.add(signal, dataset, message, skip=rejected, visible_at=visible_at)
            self.metrics.add("otelcol_exporter_sent", signal, stored)
        if rejected:
            unit = spec.unit.replace("_", " ")
            return 200, content_type, codec.encode_response(
                spec, answer_kind, rejected, f"{rejected} {unit} rejected by the sandbox's partial fault")
        return 200, content_type, codec.encode_response(spec, answer_kind)

    # ------------------------------------------------------------------ query API
    def authorize(self, headers: Any, body_dataset: Any = None) -> str:
        """Checks the Bearer token and the dataset; returns the dataset to read."""
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            raise ApiError(401, "missing Authorization: Bearer <token>")
        if self.faults.wrong_token or auth[len("Bearer "):] != self.token:
            raise ApiError(401, "the auth token is invalid or expired")
        dataset = headers.get("Dash0-Dataset") or body_dataset or self.default_dataset
        if not isinstance(dataset, str) or dataset not in self.datasets:
            raise ApiError(403, f"dataset {dataset!r} is not accessible with this token")
        return dataset

    def query_items(self, signal: str, request: Any, headers: Any) -> dict[str, Any]:
        """POST /api/spans and /api/logs."""
        if not isinstance(request, dict):
            raise ApiError(400, "the request body must be a JSON object")
        dataset = self.authorize(headers, request.get("dataset"))
        time_range = request.get("timeRange")
        if not isinstance(time_range, dict) or "from" not in time_range or "to" not in time_range:
            raise ApiError(400, "timeRange with 'from' and 'to' is required")
        start, end = parse_time_reference(time_range["from"]), parse_time_reference(time_range["to"])
        if start > end:
            raise ApiError(400, "timeRange 'from' is after 'to'")
        filters = parse_filters(request.get("filter", []))
        limit, cursor = parse_pagination(request.get("pagination"))
        start_ns, end_ns = int(start * 1e9), int(end * 1e9)

        def wanted(record: Record) -> bool:
            return (record.dataset == dataset and start_ns <= record.time_ns <= end_ns
                    and all(matches(record) for matches in filters))

        records = sorted(self.store.select(signal, wanted), key=lambda r: (r.time_ns, r.seq), reverse=True)
        if cursor is not None:
            records = [r for r in records if (r.time_ns, r.seq) < cursor]
        page = records[:limit]
        key = "resourceSpans" if signal == "traces" else "resourceLogs"
        answer: dict[str, Any] = {key: group_otlp(signal, page)}
        if len(records) > limit:
            answer["cursors"] = {"after": encode_cursor(page[-1])}
        return answer

    def prometheus_forward(self, method: str, path: str, params: dict[str, str], body: bytes,
                           headers: Any) -> tuple[int, bytes]:
        """/api/prometheus/api/v1/query[_range]: auth checked here, PromQL evaluated by the Prometheus engine
        that scrapes this stand-in's exposition (``--prometheus-url``). Its answer is passed on as is."""
        try:
            self.authorize(headers)
        except ApiError as exc:
            error_type = "unauthorized" if exc.status == 401 else "forbidden"
            return exc.status, json.dumps({"status": "error", "errorType": error_type, "error": exc.message}).encode()
        if not self.prometheus_url:
            return 503, json.dumps({"status": "error", "errorType": "unavailable",
                                    "error": "no Prometheus engine behind this stand-in (--prometheus-url)"}).encode()
        form = dict(params)
        if method == "POST":
            form.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        request = urllib.request.Request(self.prometheus_url + path[len("/api/prometheus"):],
                                         data=urllib.parse.urlencode(form).encode(), method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with _OPENER.open(request, timeout=PROMETHEUS_TIMEOUT_S) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:  # 400 bad_data, 422 execution, 503: the engine's own answer
            return exc.code, exc.read()
        except OSError as exc:
            return 503, json.dumps({"status": "error", "errorType": "unavailable",
                                    "error": f"the sandbox Prometheus at {self.prometheus_url} did not answer: "
                                             f"{exc}"}).encode()

    # ------------------------------------------------------------------ Tempo / Jaeger
    def trace_blocks(self, trace_id: str) -> list[dict[str, Any]]:
        trace_id = normalize_trace_id(trace_id)
        return group_otlp("traces", self.store.select("traces", lambda r: r.trace_id == trace_id))

    def spans_of_service(self, service: str, start: float, end: float) -> list[Record]:
        start_ns, end_ns = int(start * 1e9), int(end * 1e9)
        return self.store.select("traces", lambda r: r.service_name == service and start_ns <= r.time_ns <= end_ns)

    # ------------------------------------------------------------------ health
    def health(self) -> tuple[int, dict[str, Any]]:
        up_since = datetime.fromtimestamp(self.started, timezone.utc).isoformat().replace("+00:00", "Z")
        uptime = f"{time.time() - self.started:.3f}s"
        if self.faults.unhealthy:
            return 503, {"status": "Server not available", "upSince": up_since, "uptime": uptime}
        return 200, {"status": "Server available", "upSince": up_since, "uptime": uptime}

    def self_metrics(self) -> bytes:
        """The collector's self-metrics, then the process and log metrics every sandbox service exposes."""
        text = self.metrics.render().encode()
        if self.service_metrics is not None:
            text += self.service_metrics.render()[0]
        return text

    def reset(self) -> None:
        self.store.clear()
        self.metrics.reset()
        self.faults.apply({"mode": "none"})


def parse_time_reference(value: Any) -> float:
    """A Dash0 time reference: RFC 3339, or now / now-15m / now+1h. Epoch seconds."""
    if not isinstance(value, str):
        raise ApiError(400, f"time reference must be a string (RFC 3339 or now-15m), got {value!r}")
    match = _RELATIVE_TIME.match(value.strip())
    if match:
        sign, amount, unit = match.groups()
        offset = float(amount) * _TIME_UNITS[unit] if amount else 0.0
        return time.time() + (offset if sign == "+" else -offset)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(400, f"time reference {value!r} is neither RFC 3339 nor now-<duration>") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_filters(filters: Any) -> list[Callable[[Record], bool]]:
    if not isinstance(filters, list):
        raise ApiError(400, "filter must be a list of {key, operator, value}")
    out = []
    for item in filters:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ApiError(400, f"filter item {item!r} needs a string 'key'")
        operator = item.get("operator", "is")
        if operator not in ("is", "is_not"):
            raise ApiError(400, f"filter operator {operator!r} is not supported by the sandbox (is, is_not)")
        key, value = item["key"], item.get("value")
        if not isinstance(value, (str, int, float, bool)):
            raise ApiError(400, f"filter value for {key!r} must be a scalar")
        expected = str(value).lower() if key in ("otel.trace.id", "otel.span.id") else str(value)

        def matches(record: Record, key=key, expected=expected, negate=operator == "is_not") -> bool:
            actual = record.lookup(key)
            hit = actual is not None and str(actual) == expected
            return hit != negate
        out.append(matches)
    return out


def parse_pagination(pagination: Any) -> tuple[int, tuple[int, int] | None]:
    if pagination is None:
        return PAGE_LIMIT, None
    if not isinstance(pagination, dict):
        raise ApiError(400, "pagination must be an object {limit, cursor}")
    limit = pagination.get("limit", PAGE_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ApiError(400, f"pagination.limit must be a positive integer, got {limit!r}")
    cursor = pagination.get("cursor")
    return min(limit, PAGE_LIMIT), decode_cursor(cursor) if cursor else None


def encode_cursor(record: Record) -> str:
    raw = json.dumps({"t": record.time_ns, "s": record.seq}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any) -> tuple[int, int]:
    try:
        padded = str(cursor) + "=" * (-len(str(cursor)) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        return int(data["t"]), int(data["s"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ApiError(400, f"pagination.cursor {cursor!r} is not a cursor this API issued") from exc


def normalize_trace_id(trace_id: str) -> str:
    trace_id = trace_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,32}", trace_id):
        raise ApiError(400, f"trace id {trace_id!r} is not 1-32 hex digits")
    return trace_id.rjust(32, "0")


# ---------------------------------------------------------------------------- HTTP
class TelemetryServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend, roles: set[str]):
        super().__init__(address, Handler)
        self.backend = backend
        self.roles = roles


class Handler(JsonHandler):
    server: TelemetryServer
    server_version = "emp-sandbox-telemetry/0.1"
    _raw_body = b""

    # ------------------------------------------------------------------ plumbing
    @property
    def backend(self) -> Backend:
        return self.server.backend

    def send_bytes(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    def body(self) -> bytes:
        """The request body, read once up front by dispatch()."""
        return self._raw_body

    def _read_whole_body(self) -> bool:
        """Reads the body before routing, so no answer leaves bytes behind on a kept-alive connection."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.send_json(413 if length > MAX_BODY else 400,
                           {"error": f"Content-Length {self.headers.get('Content-Length')!r} not accepted "
                                     f"(at most {MAX_BODY} bytes)"}, {"Connection": "close"})
            return False
        self._raw_body = self.rfile.read(length) if length > 0 else b""
        return True

    def json_body(self) -> Any:
        raw = self.body()
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from exc

    def route(self) -> tuple[str, dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))

    def do_GET(self) -> None:  # noqa: N802
        self.dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self.dispatch("HEAD")

    def dispatch(self, method: str) -> None:
        path, params = self.route()
        roles = self.server.roles
        if not self._read_whole_body():
            return None
        try:
            if path.startswith("/_control/"):
                return self.control(method, path)
            if "otlp" in roles and path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
                return self.otlp(method, path[len("/v1/"):])
            if "query" in roles and path.startswith("/api/"):
                return self.query(method, path, params)
            if "query" in roles and path == EXPOSITION_PATH:
                text = exposition.render(self.backend.store, self.backend.default_dataset, self.backend.exposition)
                return self.send_bytes(200, text.encode(), {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
            if "health" in roles and path == "/metrics":
                return self.send_bytes(200, self.backend.self_metrics(),
                                       {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
            if "health" in roles and path == "/":
                status, body = self.backend.health()
                return self.send_json(status, body)
            return self.send_error_json(404, f"no route for {method} {path}")
        except ApiError as exc:
            return self.send_error_json(exc.status, exc.message)
        except Exception as exc:  # pylint: disable=broad-except  # a sandbox bug must answer, not hang
            log.exception("unhandled error on %s %s", method, path)
            return self.send_error_json(500, f"internal error: {exc}")

    # ------------------------------------------------------------------ OTLP
    def otlp(self, method: str, signal: str) -> None:
        if method != "POST":
            return self.send_error_json(405, f"OTLP export is POST only, not {method}")
        status, headers, payload = self.backend.ingest(signal, self.body(), self.headers)
        return self.send_bytes(status, payload, headers)

    # ------------------------------------------------------------------ query
    def query(self, method: str, path: str, params: dict[str, str]) -> None:
        backend = self.backend
        if path in ("/api/spans", "/api/logs"):
            if method != "POST":
                raise ApiError(405, f"{path} is POST only")
            request = self.json_body()
            return self.send_json(200, backend.query_items("traces" if path == "/api/spans" else "logs",
                                                           request, self.headers))
        if path in PROMETHEUS_PATHS:
            if method not in ("GET", "POST"):
                raise ApiError(405, f"{path} is GET or POST")
            status, payload = backend.prometheus_forward(method, path, params, self.body(), self.headers)
            return self.send_bytes(status, payload, {"Content-Type": "application/json"})
        self.optional_auth()
        if method not in ("GET", "HEAD"):
            raise ApiError(405, f"{path} is GET only")
        if match := re.fullmatch(r"/api/(v2/)?traces/([^/]+)", path):
            blocks = backend.trace_blocks(match.group(2))
            if not blocks:
                return self.send_bytes(404, b"trace not found", {"Content-Type": "text/plain"})
            return self.send_json(200, {"trace": {"resourceSpans": blocks}} if match.group(1) else {"batches": blocks})
        if path == "/api/search":
            return self.send_json(200, self.tempo_search(params))
        if match := re.fullmatch(r"/api/v3/traces/([^/]+)", path):
            blocks = backend.trace_blocks(match.group(1))
            if not blocks:
                return self.send_json(404, {"error": {"httpCode": 404, "message": "trace not found"}})
            return self.send_json(200, {"result": {"resourceSpans": blocks}})
        if path == "/api/v3/traces":
            return self.send_json(200, self.jaeger_find(params))
        raise ApiError(404, f"no route for {method} {path}")

    def optional_auth(self) -> None:
        """Tempo and Jaeger run without auth here, but a wrong token sent anyway is refused."""
        auth = self.headers.get("Authorization")
        if auth is not None and (auth != f"Bearer {self.backend.token}" or self.backend.faults.wrong_token):
            raise ApiError(401, "the auth token is invalid or expired")

    def tempo_search(self, params: dict[str, str]) -> dict[str, Any]:
        tags = dict(pair.split("=", 1) for pair in params.get("tags", "").split() if "=" in pair)
        service = tags.get("service.name")
        if not service:
            raise ApiError(400, "the sandbox's /api/search needs tags=service.name=<name>")
        now = time.time()
        start, end = float(params.get("start") or now - 3600), float(params.get("end") or now)
        limit = int(params.get("limit") or 20)
        traces: dict[str, dict[str, Any]] = {}
        for record in sorted(self.backend.spans_of_service(service, start, end), key=lambda r: -r.time_ns):
            if record.trace_id not in traces and len(traces) < limit:
                end_ns = int(record.item.get("endTimeUnixNano", record.time_ns))
                traces[record.trace_id] = {"traceID": record.trace_id, "rootServiceName": service,
                                           "rootTraceName": record.item.get("name", ""),
                                           "startTimeUnixNano": str(record.time_ns),
                                           "durationMs": max(0, (end_ns - record.time_ns) // 1_000_000)}
        return {"traces": list(traces.values()), "metrics": {"inspectedTraces": len(traces)}}

    def jaeger_find(self, params: dict[str, str]) -> dict[str, Any]:
        service = params.get("query.service_name")
        if not service:
            raise ApiError(400, "query.service_name is required")
        now = time.time()
        start = parse_time_reference(params["query.start_time_min"]) if params.get("query.start_time_min") else now - 3600
        end = parse_time_reference(params["query.start_time_max"]) if params.get("query.start_time_max") else now
        limit = int(params.get("query.num_traces") or params.get("query.search_depth") or 20)
        records = sorted(self.backend.spans_of_service(service, start, end), key=lambda r: -r.time_ns)
        trace_ids = list(dict.fromkeys(r.trace_id for r in records))[:limit]
        return {"result": {"resourceSpans": group_otlp("traces", [r for r in records if r.trace_id in trace_ids])}}

    # ------------------------------------------------------------------ control
    def control(self, method: str, path: str) -> None:
        backend = self.backend
        if path == "/_control/faults" and method == "GET":
            return self.send_json(200, backend.faults.snapshot())
        if path == "/_control/faults" and method == "POST":
            request = self.json_body()
            try:
                requests = request.get("faults", [request]) if isinstance(request, dict) else request
                snapshot = {}
                for one in requests if isinstance(requests, list) else [requests]:
                    snapshot = backend.faults.apply(one)
            except FaultError as exc:
                raise ApiError(400, str(exc)) from exc
            log.info("faults now %s", json.dumps(snapshot))
            return self.send_json(200, snapshot)
        if path == "/_control/reset" and method == "POST":
            backend.reset()
            return self.send_json(200, {"reset": True})
        if path == "/_control/stats" and method == "GET":
            return self.send_json(200, {"stored": backend.store.counts(), "faults": backend.faults.snapshot()})
        raise ApiError(404, f"no control route {method} {path}")


def serve(backend: Backend, host: str, ports: dict[str, int]) -> list[TelemetryServer]:
    """Starts one listener per distinct port (roles sharing a port share a listener)."""
    by_port: dict[int, set[str]] = {}
    servers: list[TelemetryServer] = []
    for role, port in ports.items():
        if port == 0:
            servers.append(TelemetryServer((host, 0), backend, {role}))
        else:
            by_port.setdefault(port, set()).add(role)
    servers += [TelemetryServer((host, port), backend, roles) for port, roles in by_port.items()]
    for server in servers:
        threading.Thread(target=server.serve_forever, name=f"telemetry-{'+'.join(sorted(server.roles))}",
                         daemon=True).start()
    return servers


def bound_ports(servers: list[TelemetryServer]) -> dict[str, int]:
    return {role: server.server_address[1] for server in servers for role in server.roles}
