"""Sandbox monitor: HTTP UI stand-in plus a Redis manager with limited retries.

The real monitor's Redis manager tries 30 times, 1 s apart, then gives up for good; a lost
connection starts a new round of (limited) tries. Client name ``emp-monitor``.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from http.server import ThreadingHTTPServer

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox._common import (
    JsonHandler,
    StopFlag,
    load_release,
    parse_service_args,
    redis_client,
    service_parser,
    setup_logging,
)
from sandbox._metrics import RedisDropper, RuntimeFaults, ServiceMetrics, send_metrics

SERVICE = "emp-monitor"
CHANNELS = ("job_submitted", "update_job_progress", "complete_job", "job_failed", "job_cancelled", "job_claimed",
            "worker_status", "workflow_submitted", "workflow_completed", "workflow_failed")
REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
log = logging.getLogger(SERVICE)

PAGE = """<!doctype html><html><head><title>EMP monitor (sandbox)</title></head>
<body><h1>EMP monitor (sandbox)</h1><p>Redis: {state}</p><p>Events seen: {events}</p></body></html>"""


class RedisManager(threading.Thread):
    """Holds a subscribed connection; each outage gets ``max_tries`` tries ``interval`` apart."""

    def __init__(self, url: str, client_name: str | None, max_tries: int, interval: float, reconnect: bool,
                 stop: threading.Event):
        super().__init__(name="redis-manager", daemon=True)
        self.client = redis_client(url, client_name, retries=0)
        self.max_tries, self.interval, self.reconnect = max_tries, interval, reconnect
        self.stop = stop
        self.state = "connecting"  # connecting | connected | gave_up | stopped
        self.attempts = 0          # tries in the current round
        self.total_attempts = 0
        self.connections = 0
        self.events: collections.deque = collections.deque(maxlen=100)

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.connect_with_limited_retries():
                return
            self.listen()
            if not self.reconnect and not self.stop.is_set():
                log.error("redis connection lost; fault no_reconnect: not reconnecting")
                self.state = "gave_up"
                return
        self.state = "stopped"

    def connect_with_limited_retries(self) -> bool:
        self.attempts = 0
        self.state = "connecting"
        while not self.stop.is_set():
            self.attempts += 1
            self.total_attempts += 1
            try:
                self.client.ping()
                self.state = "connected"
                self.connections += 1
                log.info("redis connected (attempt %d/%d)", self.attempts, self.max_tries)
                return True
            except REDIS_DOWN_ERRORS as exc:
                if self.attempts >= self.max_tries:
                    log.error("redis unreachable after %d attempts (%s); giving up", self.attempts, exc)
                    self.state = "gave_up"
                    return False
                log.warning("redis unreachable (attempt %d/%d): %s", self.attempts, self.max_tries, exc)
                self.stop.wait(self.interval)
        return False

    def listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(*CHANNELS)
            while not self.stop.is_set():
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message:
                    self.events.append({"channel": message["channel"], "data": message["data"],
                                        "received_at": time.time()})
        except REDIS_DOWN_ERRORS as exc:
            log.warning("redis connection lost: %s", exc)
        finally:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001, S110  # pylint: disable=broad-except  # dead connection
                pass


def make_handler(manager: RedisManager, release, metrics: ServiceMetrics):
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                metrics.set_redis_connected(manager.state == "connected")
                send_metrics(self, metrics)
            elif path == "/":
                body = PAGE.format(state=manager.state, events=len(manager.events)).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif path == "/health":
                connected = manager.state == "connected"
                self.send_json(200 if connected else 503, {
                    "status": "ok" if connected else "degraded", "service": SERVICE, "version": release.version,
                    "redis": {"connected": connected, "state": manager.state, "attempts": manager.attempts,
                              "max_attempts": manager.max_tries, "total_attempts": manager.total_attempts,
                              "connections": manager.connections}})
            elif path == "/api/events":
                self.send_json(200, {"events": list(manager.events)})
            else:
                self.send_json(404, {"error": f"not found: {path}"})

    return Handler


def build_parser():
    parser = service_parser("monitor", "Sandbox EMP monitor (web UI stand-in, Redis manager with limited retries).")
    parser.add_argument("--redis-retries", type=int, default=30, help="tries per outage before giving up (30)")
    parser.add_argument("--redis-retry-interval", type=float, default=1.0, help="seconds between tries (1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_service_args(build_parser(), argv)
    setup_logging(SERVICE, args.log_file)
    metrics = ServiceMetrics("monitor")
    metrics.count_logs()
    faults = RuntimeFaults(args.faults_file, "monitor")
    release = load_release(args.release_dir, "monitor")
    stop = StopFlag()
    manager = RedisManager(args.redis_url, None if release.has_fault("no_redis_client") else SERVICE,
                           args.redis_retries, args.redis_retry_interval,
                           not release.has_fault("no_reconnect"), stop.event)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(manager, release, metrics))
    server.daemon_threads = True
    stop.on_stop(server.shutdown)
    log.info("%s %s listening on %s:%d", SERVICE, release.version, args.host, server.server_address[1])
    manager.start()
    RedisDropper(args.redis_url, faults, stop.event).start()
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    manager.join(timeout=2)
    manager.client.close()
    log.info("stopped")
    return 0
