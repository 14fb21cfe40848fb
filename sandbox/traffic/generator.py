"""The sandbox traffic generator, so the services' rates are never zero in the demo and the tests.

Every ``--interval`` seconds (0.5): a job submitted to the API (``service_required: mock``, served by
the mock worker) and a GET /health; one webhook event (``POST /webhooks/:id/test`` of a webhook it
registers for ``machine_status``, an event nothing else in the sandbox emits, delivered to this
process's own ``POST /hook`` receiver with ``max_attempts: 1``). Its own port serves ``/health``,
``/metrics`` (``emp_traffic_requests_total{target, outcome}`` and the process metrics) and ``/hook``.

Webhook registrations persist in Redis across restarts of the webhook service: at start it deletes
the ones a previous run left (marked with the ``X-Sandbox-Traffic`` header) and registers one; a 404
on the test route (the registration is gone) registers again.
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from typing import Any

from sandbox._common import JsonHandler, StopFlag, setup_logging
from sandbox._metrics import ServiceMetrics, send_metrics

SERVICE = "emp-traffic"
MARKER = "X-Sandbox-Traffic"
REQUEST_TIMEOUT_S = 2.0
log = logging.getLogger(SERVICE)
# loopback only: never through an http_proxy of the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TrafficError(Exception):
    """A request that did not get a 2xx answer."""

    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=REQUEST_TIMEOUT_S) as answer:
            raw = answer.read()
    except urllib.error.HTTPError as exc:
        raise TrafficError(exc.code, f"{method} {url}: HTTP {exc.code}") from exc
    except OSError as exc:
        raise TrafficError(None, f"{method} {url}: {exc}") from exc
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class Traffic:
    def __init__(self, args: argparse.Namespace, metrics: ServiceMetrics, stop: StopFlag):
        self.args, self.metrics, self.stop = args, metrics, stop
        targets = {"target": ("api_jobs", "api_health", "webhook_event"), "outcome": ("ok", "error")}
        self.requests = metrics.counter("emp_traffic_requests",
                                        "Requests the traffic generator sent, by target and outcome", targets)
        self.hooks_received = metrics.counter("emp_traffic_webhooks_received", "Webhook deliveries received")
        self.webhook_id: str | None = None
        self.hook_url = ""

    def count(self, target: str, ok: bool) -> None:
        self.requests.labels(target, "ok" if ok else "error").inc()

    # ------------------------------------------------------------------ loops
    def api_loop(self) -> None:
        body = {"service_required": "mock", "payload": {"duration_ms": 50}, "ctx": {"source": "sandbox-traffic"}}
        while not self.stop.wait(self.args.interval):
            for target, method, path, sent in (("api_jobs", "POST", "/api/jobs", body),
                                               ("api_health", "GET", "/health", None)):
                try:
                    call(method, self.args.api + path, sent)
                    self.count(target, True)
                except TrafficError as exc:
                    self.count(target, False)
                    log.debug("%s", exc)

    def webhook_loop(self) -> None:
        while not self.stop.wait(self.args.interval):
            try:
                if self.webhook_id is None:
                    self.register()
                call("POST", f"{self.args.webhook}/webhooks/{self.webhook_id}/test")
                self.count("webhook_event", True)
            except TrafficError as exc:
                self.count("webhook_event", False)
                if exc.status == 404:  # registration gone (or routes missing): register again
                    self.webhook_id = None
                log.debug("%s", exc)

    def register(self) -> None:
        listing = call("GET", f"{self.args.webhook}/webhooks") or {}
        for webhook in listing.get("data") or []:
            if isinstance(webhook, dict) and MARKER in (webhook.get("headers") or {}):
                call("DELETE", f"{self.args.webhook}/webhooks/{webhook['id']}")
        created = call("POST", f"{self.args.webhook}/webhooks", {
            "url": self.hook_url, "events": ["machine_status"], "headers": {MARKER: "1"},
            "retry_config": {"max_attempts": 1}})
        self.webhook_id = str(created["data"]["id"])
        log.info("webhook %s registered -> %s", self.webhook_id, self.hook_url)

    # ------------------------------------------------------------------ http
    def handler(self) -> type[JsonHandler]:
        traffic = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    send_metrics(self, traffic.metrics)
                elif path == "/health":
                    self.send_json(200, {"status": "ok", "service": SERVICE, "webhook_id": traffic.webhook_id})
                else:
                    self.send_json(404, {"error": f"not found: {path}"})

            def do_POST(self) -> None:  # noqa: N802
                self.read_body()
                if self.path.split("?", 1)[0] == "/hook":
                    traffic.hooks_received.inc()
                    self.send_json(200, {"received": True})
                else:
                    self.send_json(404, {"error": f"not found: {self.path}"})

        return Handler

    def run(self) -> int:
        server = ThreadingHTTPServer((self.args.host, self.args.port), self.handler())
        server.daemon_threads = True
        self.hook_url = f"http://{self.args.host}:{server.server_address[1]}/hook"
        self.stop.on_stop(server.shutdown)
        for loop in (self.api_loop, self.webhook_loop):
            threading.Thread(target=loop, name=loop.__name__, daemon=True).start()
        log.info("%s on %s:%d: every %.2fs a job to %s and an event through %s", SERVICE, self.args.host,
                 server.server_address[1], self.args.interval, self.args.api, self.args.webhook)
        server.serve_forever(poll_interval=0.2)
        server.server_close()
        log.info("stopped")
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox.traffic", description="Sandbox traffic generator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port of /health, /metrics and /hook (0 = a free one)")
    parser.add_argument("--api", required=True, help="base URL of the EMP API")
    parser.add_argument("--webhook", required=True, help="base URL of the webhook service")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two rounds (0.5)")
    parser.add_argument("--log-file", default=None, help="log file (stderr when absent)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--host {args.host}: the sandbox binds loopback only")
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    setup_logging(SERVICE, args.log_file)
    metrics = ServiceMetrics("traffic", redis_client=False)
    return Traffic(args, metrics, StopFlag()).run()
