"""HTTP side of the webhook service: /health, the webhook routes, test receivers, the 404 handler."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from sandbox._common import JsonHandler, Release
from sandbox._metrics import ServiceMetrics, send_metrics
from sandbox.webhook import SERVICE_NAME
from sandbox.webhook.processor import Processor, ValidationError, definition_changes, new_definition
from sandbox.webhook.receivers import TestReceivers
from sandbox.webhook.redis_link import RedisLink

LOG = logging.getLogger("webhook.http")
# /health processor.workflow_tracking: the EMP service's keys (its tracking is off: Redis events only)
WORKFLOW_TRACKING = {"total_tracked_workflows": 0, "workflows": [], "message": "workflow tracking is off"}
ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_body: bytes
    client_ip: str
    params: dict[str, str]

    def json(self) -> Any:
        if not self.raw_body:
            return {}
        return json.loads(self.raw_body.decode("utf-8"))

    def limit(self, default: int) -> int:
        try:
            value = int(self.query.get("limit", default))
        except ValueError:
            return default
        return value if value > 0 else default


Reply = tuple[int, Any]
Handler = Callable[[Request], Reply]


class BadRequest(Exception):
    pass


class App:
    """A tiny express-like router; unmatched method+path pairs fall through to the 404 handler."""

    def __init__(self, release: Release, link: RedisLink, receivers: TestReceivers, telemetry: Any,
                 metrics: ServiceMetrics | None = None):
        self.release = release
        self.metrics = metrics
        self.link = link
        self.receivers = receivers
        self.tracer = telemetry.tracer
        self.processor: Processor | None = None
        self._routes: list[tuple[tuple[str, ...], re.Pattern[str], str, Handler]] = []
        self.route("GET", "/health", self.health)  # before the 404 handler, independent of the processor

    def route(self, methods: str | tuple[str, ...], pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r":(\w+)", r"(?P<\1>[^/]+)", pattern) + "/?$")
        self._routes.append(((methods,) if isinstance(methods, str) else methods, regex, pattern, handler))

    def mount_webhook_routes(self, processor: Processor | None) -> None:
        """The routes need the processor; mounted without one (routes_404) they never exist."""
        if processor is None:
            LOG.error("webhook routes registered before the processor existed: they will answer 404")
            return
        routes: list[tuple[str | tuple[str, ...], str, Handler]] = [
            ("POST", "/webhooks", self.create_webhook),
            ("GET", "/webhooks", self.list_webhooks),
            ("GET", "/webhooks/:id", self.get_webhook),
            ("PUT", "/webhooks/:id", self.update_webhook),
            ("DELETE", "/webhooks/:id", self.delete_webhook),
            ("POST", "/webhooks/:id/test", self.test_webhook),
            ("GET", "/webhooks/:id/stats", self.webhook_stats),
            ("GET", "/webhooks/:id/deliveries", self.webhook_deliveries),
            ("POST", "/webhooks/:id/reconnect", self.reconnect_webhook),
            ("GET", "/stats/summary", self.stats_summary),
            ("GET", "/deliveries/recent", self.recent_deliveries),
            ("POST", "/test-receivers", self.create_receiver),
            ("GET", "/test-receivers", self.list_receivers),
            ("GET", "/test-receivers/:id/requests", self.receiver_requests),
            ("DELETE", "/test-receivers/:id/requests", self.clear_receiver),
            (ANY_METHOD, "/test-receivers/:id/webhook", self.receive),
        ]
        for methods, pattern, handler in routes:
            self.route(methods, pattern, handler)

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, method: str, target: str, headers: dict[str, str], raw_body: bytes,
                 client_ip: str) -> Reply:
        started = time.perf_counter()
        route, (status, body) = self._route(method, target, headers, raw_body, client_ip)
        if self.metrics is not None:
            self.metrics.observe_request(route, status, time.perf_counter() - started)
        return status, body

    def _route(self, method: str, target: str, headers: dict[str, str], raw_body: bytes,
               client_ip: str) -> tuple[str, Reply]:
        parts = urlsplit(target)
        path = parts.path or "/"
        query = dict(parse_qsl(parts.query))
        for methods, regex, pattern, handler in self._routes:
            match = regex.match(path)
            if match and method in methods:
                request = Request(method, path, query, headers, raw_body, client_ip, match.groupdict())
                with self.tracer.start_as_current_span(f"{method} {pattern}", attributes={
                        "http.request.method": method, "http.route": pattern}) as span:
                    status, body = self._call(handler, request)
                    span.set_attribute("http.response.status_code", status)
                return pattern, (status, body)
        return "unknown", (404, {"success": False, "error": "Endpoint not found", "path": target,
                                 "timestamp": iso_now()})

    def _call(self, handler: Handler, request: Request) -> Reply:
        try:
            return handler(request)
        except BadRequest as exc:
            return 400, {"success": False, "error": str(exc)}
        except ValidationError as exc:
            return 400, {"success": False, "error": str(exc)}
        except Exception as exc:  # pylint: disable=broad-except  # the contract's error answer
            LOG.exception("%s %s failed", request.method, request.path)
            return 500, {"success": False, "error": "Internal server error", "message": str(exc),
                         "timestamp": iso_now()}

    @staticmethod
    def _body(request: Request) -> Any:
        try:
            return request.json()
        except ValueError as exc:
            raise BadRequest("Invalid JSON body") from exc

    def _processor(self) -> Processor:
        assert self.processor is not None  # routes exist only with a processor
        return self.processor

    # ------------------------------------------------------------------ health
    def health(self, request: Request) -> Reply:
        self.link.ping()
        processor = (self.processor.health() if self.processor else
                     {"active_webhooks": 0, "total_deliveries": 0, "failed_deliveries": 0})
        # the EMP service answers status "ok" whatever Redis does: redis.connected is what tells
        return 200, {
            "status": "ok",
            "service": SERVICE_NAME,
            "timestamp": iso_now(),
            "version": self.release.version,
            "redis": self.link.info(),
            "processor": {**processor, "workflow_tracking": WORKFLOW_TRACKING},
            "request": {"method": request.method, "path": request.path,
                        "userAgent": request.headers.get("user-agent", "unknown")},
        }

    # ------------------------------------------------------------------ webhooks
    def create_webhook(self, request: Request) -> Reply:
        processor = self._processor()
        webhook = new_definition(self._body(request), processor.settings.default_retry)
        processor.store.save(webhook)
        LOG.info("webhook registered: %s -> %s %s", webhook["id"], webhook["url"], webhook["events"])
        return 201, {"success": True, "data": webhook}

    def list_webhooks(self, request: Request) -> Reply:  # noqa: ARG002
        webhooks = self._processor().store.all()
        return 200, {"success": True, "data": webhooks, "count": len(webhooks)}

    def get_webhook(self, request: Request) -> Reply:
        webhook = self._processor().store.get(request.params["id"])
        if webhook is None:
            return 404, {"success": False, "error": "Webhook not found"}
        return 200, {"success": True, "data": webhook}

    def update_webhook(self, request: Request) -> Reply:
        store = self._processor().store
        current = store.get(request.params["id"])
        if current is None:
            return 404, {"success": False, "error": "Webhook not found"}
        webhook = store.update(request.params["id"], definition_changes(self._body(request), current))
        if webhook is None:
            return 404, {"success": False, "error": "Webhook not found"}
        return 200, {"success": True, "data": webhook}

    def delete_webhook(self, request: Request) -> Reply:
        if not self._processor().store.delete(request.params["id"]):
            return 404, {"success": False, "error": "Webhook not found"}
        LOG.info("webhook deleted: %s", request.params["id"])
        return 200, {"success": True, "message": "Webhook deleted successfully"}

    def test_webhook(self, request: Request) -> Reply:
        if not self._processor().test(request.params["id"]):
            return 404, {"success": False, "error": "Webhook not found or test failed"}
        return 200, {"success": True, "message": "Test webhook sent successfully"}

    def webhook_stats(self, request: Request) -> Reply:
        store = self._processor().store
        if store.get(request.params["id"]) is None:
            return 404, {"success": False, "error": "Webhook not found"}
        stats = store.stats(request.params["id"])
        stats["retry_queue_size"] = self._processor().event_stats()["retry_queue_size"]
        return 200, {"success": True, "data": stats}

    def webhook_deliveries(self, request: Request) -> Reply:
        limit = min(request.limit(50), 100)
        attempts = self._processor().store.attempts(request.params["id"], limit)
        return 200, {"success": True, "data": {"webhook_id": request.params["id"], "attempts": attempts,
                                               "total_count": len(attempts)}, "limit": limit}

    def reconnect_webhook(self, request: Request) -> Reply:
        webhook_id = request.params["id"]
        if not self._processor().reconnect(webhook_id):
            return 404, {"success": False, "error": "Webhook not found"}
        return 200, {"success": True, "message": f"Webhook {webhook_id} reconnected successfully"}

    def stats_summary(self, request: Request) -> Reply:  # noqa: ARG002
        processor = self._processor()
        summary = processor.store.summary()
        return 200, {"success": True, "data": {
            "delivery_stats": {key: summary[key] for key in (
                "total_deliveries", "successful_deliveries", "failed_deliveries", "total_attempts", "success_rate")},
            "webhook_summary": {key: summary[key] for key in (
                "total_webhooks", "active_webhooks", "disconnected_webhooks")},
            "event_processing": processor.event_stats(),
        }}

    def recent_deliveries(self, request: Request) -> Reply:
        limit = min(request.limit(100), 1000)
        return 200, {"success": True, "data": self._processor().store.recent_deliveries(limit), "limit": limit}

    # ------------------------------------------------------------------ test receivers
    def create_receiver(self, request: Request) -> Reply:  # noqa: ARG002
        receiver = self.receivers.create()
        if receiver is None:
            return 429, {"success": False, "error": "Maximum number of test receivers reached. Try again later."}
        return 201, {"success": True, "data": receiver}

    def list_receivers(self, request: Request) -> Reply:  # noqa: ARG002
        receivers = self.receivers.list()
        return 200, {"success": True, "data": receivers, "total": len(receivers), "max_receivers": 100}

    def receiver_requests(self, request: Request) -> Reply:
        data = self.receivers.requests(request.params["id"], min(request.limit(50), 100))
        if data is None:
            return 404, {"success": False, "error": "Test receiver not found"}
        return 200, {"success": True, "data": data}

    def clear_receiver(self, request: Request) -> Reply:
        cleared = self.receivers.clear(request.params["id"])
        if cleared is None:
            return 404, {"success": False, "error": "Test receiver not found"}
        return 200, {"success": True, "message": f"Cleared {cleared} test receiver requests", "cleared_count": cleared}

    def receive(self, request: Request) -> Reply:
        recorded = self.receivers.record(request.params["id"], request.method, request.headers, request.raw_body,
                                         request.query, request.client_ip)
        if recorded is None:
            return 404, {"success": False, "error": "Test receiver not found",
                         "message": "This test receiver URL may have expired or been deleted"}
        return 200, {"success": True, "message": "Test webhook received successfully",
                     "receiver_id": request.params["id"], "request_id": recorded["id"],
                     "timestamp": recorded["timestamp"]}


class WebhookHandler(JsonHandler):
    server_version = "emp-webhook-sandbox/1.0"
    # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms
    # to every keep-alive request.
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        app: App = self.server.app  # type: ignore[attr-defined]
        raw_body = self.read_body()
        if self.path.split("?", 1)[0] == "/metrics" and self.command in ("GET", "HEAD") and app.metrics:
            app.metrics.set_redis_connected(app.link.connected)
            send_metrics(self, app.metrics)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, body = app.dispatch(self.command, self.path, headers, raw_body, self.client_address[0])
        self.send_json(status, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class WebhookHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App):
        super().__init__(address, WebhookHandler)
        self.app = app
