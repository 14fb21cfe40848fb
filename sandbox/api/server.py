"""Sandbox EMP API: /health, /version, jobs, WebSockets for monitors and clients.

Behaviour that the deployment gates rely on (docs/emp-contracts.md):
- while Redis is unreachable at start it retries forever *before* listening (port closed);
- /health never touches Redis;
- Redis client name ``emp-api``; a long-lived pub/sub connection re-established with capped
  exponential backoff after a Redis restart;
- OTLP/HTTP traces and metrics, service name ``emp-api``; every answer carries ``traceparent``;
- release faults: ``slow`` (every request delayed past the 200 ms SLA), ``no_redis_client``
  (anonymous Redis connections), ``no_reconnect`` (gives Redis up after the first loss),
  ``no_telemetry`` (no export).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any
from urllib.parse import unquote

from opentelemetry.propagate import extract
from prometheus_client import Gauge
from opentelemetry.trace import NoOpTracer, SpanKind, Status, StatusCode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox._common import (
    Backoff,
    async_redis_client,
    load_release,
    parse_service_args,
    service_parser,
    setup_logging,
    setup_telemetry,
)
from sandbox._metrics import RedisDropper, RuntimeFaults, ServiceMetrics
from sandbox.api import jobs as jobs_mod
from sandbox.api.http11 import MAX_HEAD, BadRequest, Request, Response, read_request
from sandbox.api.ws import WebSocketSession

SERVICE = "emp-api"
# the telemetry-off runtime switch (python -m sandbox fault telemetry-off): requests traced by nothing
_NO_OP_TRACER = NoOpTracer()
EVENT_CHANNELS = ("job_submitted", "update_job_progress", "complete_job", "job_failed", "job_cancelled",
                  "job_claimed", "worker_status", "workflow_submitted", "workflow_completed", "workflow_failed")
REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
WS_PATH = re.compile(r"^/ws/(monitor|client)/([^/]+)$")
JOB_PATH = re.compile(r"^/api/jobs/([^/]+)$")

log = logging.getLogger(SERVICE)
Handler = Callable[..., Awaitable[Response]]


def express_not_found(method: str, path: str) -> Response:
    """What the EMP API (Express) answers for a route it does not have, whatever the method: an HTML 404."""
    text = escape(f"Cannot {method} {path}")
    body = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n'
            f"<body>\n<pre>{text}</pre>\n</body>\n</html>\n")
    return Response(404, body.encode("utf-8"), "text/html; charset=utf-8")


class RedisGone(Exception):
    """Raised by handlers once the no_reconnect fault has given Redis up."""


class ApiServer:
    def __init__(self, args, release, telemetry, metrics: ServiceMetrics, faults: RuntimeFaults):
        self.args = args
        self.metrics = metrics
        self.faults = faults
        self.jobs_submitted_total = metrics.counter("emp_jobs_submitted", "Jobs accepted by the API")
        self.jobs_pending = Gauge("emp_jobs_pending", "Jobs waiting in jobs:pending (ZCARD)",
                                  registry=metrics.registry)
        self.db_query_errors = metrics.counter("emp_db_query_errors", "Redis commands that failed with an error "
                                               "answer (not a lost connection)")
        self.release = release
        self.telemetry = telemetry
        self.cors_origins = args.cors_origins
        self.started = time.monotonic()
        self.build_date = jobs_mod.iso_now()
        client_name = None if release.has_fault("no_redis_client") else SERVICE
        # no_reconnect: no transparent redis-py retries either, so the first loss is final.
        retries = 0 if release.has_fault("no_reconnect") else 2
        self.redis = async_redis_client(args.redis_url, client_name, retries=retries)
        self.redis_connected = False
        self.redis_dead = False  # no_reconnect fault: set after the first connection loss
        self.workers_count = 0
        self.monitors: dict[str, WebSocketSession] = {}
        self.clients: dict[str, WebSocketSession] = {}
        self.stop = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.slow_s = args.slow_delay_ms / 1000 if release.has_fault("slow") else 0.0
        meter = telemetry.meter
        self.request_duration = meter.create_histogram(
            "http.server.request.duration", unit="s", description="API request duration")
        self.jobs_submitted = meter.create_counter("emp.api.jobs.submitted", description="jobs accepted")
        self.ws_connections = meter.create_up_down_counter(
            "emp.api.websocket.connections", description="open WebSocket connections")

    # ------------------------------------------------------------------ lifecycle
    async def wait_for_redis(self) -> bool:
        """PING until Redis answers; the port stays closed meanwhile, as the real API does."""
        backoff = Backoff(first=0.1, factor=2.0, cap=self.args.redis_backoff_cap)
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            try:
                await self.redis.ping()
                log.info("redis reachable after %d attempt(s)", attempt)
                self.redis_connected = True
                return True
            except REDIS_DOWN_ERRORS as exc:
                delay = backoff.next_delay()
                log.warning("redis %s unreachable (attempt %d: %s); retrying in %.1fs before listening",
                            self.args.redis_url, attempt, exc, delay)
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    pass
        return False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        if not await self.wait_for_redis():
            await self.shutdown()
            return 0
        self.server = await asyncio.start_server(self.handle_connection, self.args.host, self.args.port,
                                                 limit=MAX_HEAD, reuse_address=True)
        port = self.args.port = self.server.sockets[0].getsockname()[1]
        log.info("%s %s listening on %s:%d (faults: %s)", SERVICE, self.release.version, self.args.host, port,
                 ",".join(self.release.faults) or "none")
        self._spawn(self.redis_events())
        self._spawn(self.queue_depth())
        dropper_stop = threading.Event()
        RedisDropper(self.args.redis_url, self.faults, dropper_stop).start()
        await self.stop.wait()
        dropper_stop.set()
        await self.shutdown()
        return 0

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def shutdown(self) -> None:
        log.info("shutting down")
        if self.server is not None:
            self.server.close()
        for session in list(self.monitors.values()) + list(self.clients.values()):
            await session.close(1001, "server shutting down")
            session.writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await self.redis.aclose()
        except Exception:  # noqa: BLE001, S110  # pylint: disable=broad-except  # closing a dead connection may fail
            pass
        # Flush telemetry, but never let a dead collector hold the shutdown.
        await asyncio.to_thread(self.telemetry.shutdown, 2.0)

    # ------------------------------------------------------------------ redis events
    async def redis_events(self) -> None:
        """Long-lived pub/sub connection: forwards events to WebSockets and notices outages."""
        backoff = Backoff(first=0.1, factor=2.0, cap=self.args.redis_backoff_cap)
        while not self.stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(*EVENT_CHANNELS)
                if not self.redis_connected:
                    log.info("redis connection re-established")
                self.redis_connected = True
                backoff.reset()
                next_refresh = 0.0
                while not self.stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None:
                        await self.forward_event(message["channel"], message["data"])
                    if time.monotonic() >= next_refresh:
                        self.workers_count = int(await self.redis.scard("workers:active"))
                        next_refresh = time.monotonic() + 2.0
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN_ERRORS as exc:
                self.redis_connected = False
                if self.release.has_fault("no_reconnect"):
                    log.error("redis connection lost (%s); fault no_reconnect: not reconnecting", exc)
                    self.redis_dead = True
                    await self.redis.connection_pool.disconnect()
                    return
                delay = backoff.next_delay()
                log.warning("redis connection lost (%s); reconnecting in %.1fs", exc, delay)
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    pass
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001, S110  # pylint: disable=broad-except  # the connection may be dead already
                    pass

    async def forward_event(self, channel: str, data: str) -> None:
        try:
            payload: Any = json.loads(data)
        except ValueError:
            payload = data
        message = {"type": channel, "data": payload, "timestamp": jobs_mod.iso_now()}
        for session in list(self.monitors.values()):
            await session.send_json(message)
        job_id = payload.get("job_id") if isinstance(payload, dict) else None
        if job_id:
            for session in list(self.clients.values()):
                if job_id in session.subscriptions:
                    await session.send_json(message)

    async def queue_depth(self) -> None:
        """emp_jobs_pending once a second; the last figure stays while Redis is away."""
        while not self.stop.is_set():
            try:
                self.jobs_pending.set(int(await self.redis_or_raise().zcard("jobs:pending")))
            except (RedisGone, RedisError, OSError):
                pass
            try:
                await asyncio.wait_for(self.stop.wait(), 1.0)
            except TimeoutError:
                pass

    def redis_or_raise(self):
        if self.redis_dead:
            raise RedisGone()
        return self.redis

    # ------------------------------------------------------------------ http
    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.stop.is_set():
                try:
                    request = await read_request(reader)
                except BadRequest as exc:
                    writer.write(Response.json(400, {"success": False, "error": str(exc)}).encode(False))
                    await writer.drain()
                    return
                if request is None:
                    return
                if request.is_websocket_upgrade:
                    await self.handle_websocket(request, reader, writer)
                    return
                response = await self.dispatch(request)
                keep_alive = request.keep_alive and not self.stop.is_set()
                writer.write(response.encode(keep_alive, head_only=request.method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # idle keep-alive connection at shutdown; returning quietly avoids asyncio noise
        finally:
            writer.close()

    def route(self, request: Request) -> tuple[str, Handler | None, dict[str, str], bool]:
        """(route template, handler, path params, method allowed)."""
        method, path = request.method, request.path
        if method == "HEAD":
            method = "GET"
        table: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self.health,
            ("GET", "/version"): self.version,
            ("GET", "/metrics"): self.version,  # answered by dispatch() itself
            ("GET", "/api/jobs"): self.list_jobs,
            ("POST", "/api/jobs"): self.submit_job,
        }
        if (method, path) in table:
            return path, table[(method, path)], {}, True
        if path in ("/health", "/version", "/metrics", "/api/jobs"):
            return path, None, {}, False
        match = JOB_PATH.match(path)
        if match:
            if method == "GET":
                return "/api/jobs/:id", self.get_job, {"job_id": unquote(match.group(1))}, True
            return "/api/jobs/:id", None, {}, False
        return "unknown", None, {}, True

    async def dispatch(self, request: Request) -> Response:
        route, handler, params, _allowed = self.route(request)
        if route == "/metrics" and handler is not None:  # scrapes: neither traced, slowed nor counted as traffic
            self.metrics.set_redis_connected(self.redis_connected and not self.redis_dead)
            body, content_type = self.metrics.render()
            return Response(200, body, content_type)
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
                f"{request.method} {route}", context=extract(request.headers), kind=SpanKind.SERVER,
                attributes={"http.request.method": request.method, "url.path": request.path,
                            "http.route": route, "server.port": self.args.port}) as span:
            delay_s = self.slow_s + float((self.faults.get("api-latency") or {}).get("ms", 0)) / 1000
            if delay_s:
                await asyncio.sleep(delay_s)
            try:
                if handler is None:
                    response = express_not_found(request.method, request.path)
                elif not self.authorized(request, route):
                    response = Response.json(401, {"success": False, "error": "Unauthorized"})
                else:
                    response = await handler(request, **params)
            except RedisGone:
                response = Response.json(503, {"success": False, "error": "Redis unavailable",
                                               "message": "the API gave Redis up (no reconnect)"})
            except REDIS_DOWN_ERRORS as exc:
                response = Response.json(503, {"success": False, "error": "Redis unavailable", "message": str(exc)})
            except RedisError as exc:
                self.db_query_errors.inc()
                log.exception("redis error on %s %s", request.method, request.path)
                response = Response.json(500, {"success": False, "error": "Internal server error",
                                               "message": str(exc)})
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            context = span.get_span_context()
            if context.is_valid:
                response.headers["traceparent"] = f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
        elapsed = time.perf_counter() - started
        self.request_duration.record(elapsed, {
            "http.request.method": request.method, "http.route": route,
            "http.response.status_code": response.status})
        self.metrics.observe_request(route, response.status, elapsed)
        return response

    def authorized(self, request: Request, route: str) -> bool:
        if not self.args.auth_token or not route.startswith("/api/"):
            return True
        bearer = request.header("authorization")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else request.header("auth-token")
        return token == self.args.auth_token

    # ------------------------------------------------------------------ handlers
    async def health(self, request: Request) -> Response:
        return Response.json(200, {"status": "ok", "timestamp": jobs_mod.iso_now(),
                                   "cors": {"origin": request.header("origin") or "no-origin",
                                            "allowedOrigins": self.cors_origins,
                                            "userAgent": request.header("user-agent") or "unknown"},
                                   "connections": {"monitors": len(self.monitors), "workers": self.workers_count}})

    async def version(self, request: Request) -> Response:
        return Response.json(200, {
            "api_version": self.release.version, "name": "api",
            "description": "Lightweight API server for emp-ai-backend",
            "node_version": "sandbox-python-" + platform.python_version(), "platform": sys.platform,
            "arch": "x64" if platform.machine() in ("x86_64", "AMD64") else platform.machine(),
            "uptime_seconds": int(time.monotonic() - self.started), "timestamp": jobs_mod.iso_now(),
            "environment": os.environ.get("NODE_ENV", "production"),
            "build_date": os.environ.get("BUILD_DATE") or self.build_date,
            "faults": list(self.release.faults)})  # faults: sandbox-only

    async def submit_job(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response.json(400, {"success": False, "error": "Invalid JSON body"})
        try:
            job_id = await self._submit(body)
        except jobs_mod.JobError as exc:
            return Response.json(400, {"success": False, "error": str(exc)})
        return Response.json(201, {"success": True, "job_id": job_id, "message": "Job submitted successfully",
                                   "timestamp": jobs_mod.iso_now()})

    @property
    def tracer(self) -> Any:
        """The request tracer; a no-op one while the telemetry-off switch is set (nothing recorded or exported)."""
        return _NO_OP_TRACER if self.faults.active("telemetry-off") else self.telemetry.tracer

    async def _submit(self, body: Any) -> str:
        job, score = jobs_mod.build_job(body)
        redis = self.redis_or_raise()
        with self.tracer.start_as_current_span(
                "redis submit_job", kind=SpanKind.CLIENT,
                attributes={"db.system": "redis", "emp.job.id": job["id"],
                            "emp.job.service_required": job["service_required"]}):
            await jobs_mod.submit_job(redis, job, score)
        self.jobs_submitted.add(1, {"service_required": job["service_required"]})
        self.jobs_submitted_total.inc()
        log.info("job %s submitted (%s, priority %s)", job["id"], job["service_required"], job["priority"])
        return job["id"]

    async def get_job(self, request: Request, job_id: str) -> Response:
        job = await jobs_mod.get_job(self.redis_or_raise(), job_id)
        if job is None:
            return Response.json(404, {"success": False, "error": "Job not found", "timestamp": jobs_mod.iso_now()})
        return Response.json(200, {"success": True, "job": job, "timestamp": jobs_mod.iso_now()})

    async def list_jobs(self, request: Request) -> Response:
        status = request.query_value("status") or None
        if status is not None and status not in jobs_mod.STATUSES:
            return Response.json(400, {"success": False, "error": f"unknown status {status!r}"})
        try:
            limit = int(request.query_value("limit", "50"))
            offset = int(request.query_value("offset", "0"))
        except ValueError:
            return Response.json(400, {"success": False, "error": "limit and offset must be integers"})
        if not 1 <= limit <= 1000 or offset < 0:
            return Response.json(400, {"success": False, "error": "limit must be 1..1000 and offset >= 0"})
        found, total = await jobs_mod.list_jobs(self.redis_or_raise(), status, limit, offset)
        return Response.json(200, {"success": True, "jobs": found, "total": total, "limit": limit,
                                   "offset": offset})

    # ------------------------------------------------------------------ websockets
    async def handle_websocket(self, request: Request, reader, writer) -> None:
        match = WS_PATH.match(request.path)
        if not match:
            writer.write(Response.json(404, {"success": False, "error": "Not found"}).encode(False))
            await writer.drain()
            return
        kind, ident = match.group(1), unquote(match.group(2))
        if self.args.auth_token:
            token = request.query_value("token") or request.header("auth-token")
            if token != self.args.auth_token:
                writer.write(Response.json(401, {"success": False, "error": "Unauthorized"}).encode(False))
                await writer.drain()
                return
        session = WebSocketSession(kind, ident, reader, writer, self.args.ws_ping_interval)
        if not await session.handshake(request.raw_head):
            return
        env_token = os.environ.get("AUTH_TOKEN") if self.args.real_env else None
        given = request.query_value("token")
        if env_token is not None and given and given != env_token:
            # as the EMP API: only a token that is given and wrong is refused, after the upgrade
            await session.close(1008, "Invalid authentication token")
            return
        registry = self.monitors if kind == "monitor" else self.clients
        previous = registry.pop(ident, None)
        if previous is not None:
            await previous.close(1000, "replaced by a new connection")
        registry[ident] = session
        self.ws_connections.add(1, {"kind": kind})
        log.info("%s %s connected", kind, ident)
        pinger = asyncio.create_task(session.ping_loop())
        try:
            await session.send_json({"type": "connected", f"{kind}_id": ident, "timestamp": jobs_mod.iso_now()})
            async for message in session.messages():
                await self.on_ws_message(session, message)
        finally:
            pinger.cancel()
            if registry.get(ident) is session:
                del registry[ident]
            self.ws_connections.add(-1, {"kind": kind})
            log.info("%s %s disconnected", kind, ident)

    async def on_ws_message(self, session: WebSocketSession, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        try:
            if kind == "submit_job":
                body = message.get("job") if isinstance(message.get("job"), dict) else {
                    k: v for k, v in message.items() if k not in ("type", "message_id")}
                job_id = await self._submit(body)
                session.subscriptions.add(job_id)
                await session.send_json({"type": "job_submitted", "job_id": job_id,
                                         "message_id": message.get("message_id")})
            elif kind == "subscribe_progress":
                job_id = str(message.get("job_id") or "")
                if not job_id:
                    raise jobs_mod.JobError("subscribe_progress needs job_id")
                session.subscriptions.add(job_id)
                await session.send_json({"type": "subscribed", "job_id": job_id})
            elif kind == "cancel_job":
                job_id = str(message.get("job_id") or "")
                if not job_id:
                    raise jobs_mod.JobError("cancel_job needs job_id")
                cancelled = await jobs_mod.cancel_job(self.redis_or_raise(), job_id)
                await session.send_json({"type": "job_cancelled", "job_id": job_id, "success": cancelled})
            else:
                await session.send_json({"type": "error", "error": f"unknown message type {kind!r}"})
        except jobs_mod.JobError as exc:
            await session.send_json({"type": "error", "error": str(exc)})
        except (RedisGone, *REDIS_DOWN_ERRORS):
            await session.send_json({"type": "error", "error": "Redis unavailable"})


def build_parser():
    parser = service_parser("api", "Sandbox EMP API (jobs, health, WebSockets).")
    parser.add_argument("--auth-token", default=None,
                        help="require this token on /api/* (Bearer or auth-token header) and WebSockets (?token=)")
    parser.add_argument("--ws-ping-interval", type=float, default=5.0,
                        help="seconds between WebSocket pings; peers missing 3 pongs are dropped (default 5)")
    parser.add_argument("--slow-delay-ms", type=int, default=350,
                        help="delay added to every request by the 'slow' fault (default 350)")
    parser.add_argument("--redis-backoff-cap", type=float, default=2.0,
                        help="cap in seconds of the Redis reconnect backoff (default 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_service_args(build_parser(), argv)
    setup_logging(SERVICE, args.log_file)
    metrics = ServiceMetrics("api", http=True, otel=True)
    metrics.count_logs()
    faults = RuntimeFaults(args.faults_file, "api")
    release = load_release(args.release_dir, "api")
    endpoint = None if release.has_fault("no_telemetry") else args.otlp_endpoint
    telemetry = setup_telemetry(SERVICE, endpoint, release.version,
                                blocked=lambda: faults.active("telemetry-export"), on_failure=metrics.export_failed)
    log.info("release %s, telemetry %s", release.version, endpoint or "off")
    return asyncio.run(ApiServer(args, release, telemetry, metrics, faults).run())
