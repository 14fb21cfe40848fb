"""The webhook processor: turns Redis pub/sub events and test requests into signed deliveries.

Delivery contract (docs/emp-contracts.md): POST JSON {event_type, event_id, timestamp, webhook_id,
data, metadata?} with User-Agent, X-Webhook-Event, X-Webhook-ID, X-Event-ID and, with a secret,
X-Webhook-Signature. A 2xx answer is a success; anything else is retried per the webhook's
retry_config with the same body (same event id); after max_attempts the delivery has failed
permanently, and 10 consecutive permanent failures disconnect the webhook.
"""
from __future__ import annotations

import heapq
import http.client
import itertools
import json
import logging
import random
import secrets
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import redis

from sandbox._common import Backoff
from sandbox._metrics import RuntimeFaults, ServiceMetrics
from sandbox.webhook import (
    CHANNEL_EVENTS, DEFAULT_RETRY, EVENT_TYPES, MAX_CONSECUTIVE_FAILURES, USER_AGENT,
)
from sandbox.webhook.redis_link import RedisLink
from sandbox.webhook.signing import SIGNATURE_HEADER, sign
from sandbox.webhook.storage import WebhookStore, new_id, now_ms

LOG = logging.getLogger("webhook.processor")
JOB_EVENTS = frozenset({"job_submitted", "update_job_progress", "complete_job", "job_failed", "cancel_job"})
RESPONSE_BODY_KEPT = 500


class ValidationError(ValueError):
    """A webhook definition the routes answer with 400."""


# ---------------------------------------------------------------------------- definitions
def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ValidationError("URL is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Invalid URL format")
    try:
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError as exc:
        raise ValidationError("Invalid URL format") from exc
    return url


def _check_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events:
        raise ValidationError("Events array is required and must not be empty")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ValidationError(f"Unknown event type(s): {', '.join(map(str, unknown))}")
    return list(dict.fromkeys(events))


def _check_retry(config: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    if config is None:
        return dict(defaults)
    if not isinstance(config, dict):
        raise ValidationError("retry_config must be an object")
    merged = {**defaults, **config}
    rules = {"max_attempts": (1, int), "initial_delay_ms": (0, (int, float)),
             "backoff_multiplier": (1, (int, float)), "max_delay_ms": (0, (int, float))}
    for key, (minimum, kinds) in rules.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
            raise ValidationError(f"retry_config.{key} must be a number >= {minimum}")
    return merged


def _check_filters(filters: Any) -> dict[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError("filters must be an object")
    for key, value in filters.items():
        if key != "custom_filters" and not isinstance(value, list):
            raise ValidationError(f"filters.{key} must be a list")
    return filters


def _check_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValidationError("headers must be an object of strings")
    return headers


def new_definition(body: Any, default_retry: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("Request body must be a JSON object")
    url = _check_url(body.get("url"))
    events = _check_events(body.get("events"))
    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise ValidationError("secret must be a string")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise ValidationError("active must be a boolean")
    created = now_ms()
    webhook = {
        "id": new_id("wh"), "url": url, "events": events, "active": active,
        "filters": _check_filters(body.get("filters")),
        "retry_config": _check_retry(body.get("retry_config"), default_retry),
        "disconnected": False, "consecutive_failures": 0, "created_at": created, "updated_at": created,
    }
    headers = _check_headers(body.get("headers"))
    if headers:  # sandbox-only: extra delivery headers (the EMP service has none, its answer no such key)
        webhook["headers"] = headers
    if secret:
        webhook["secret"] = secret
    return webhook


def definition_changes(body: Any, current: dict[str, Any]) -> dict[str, Any]:
    """The validated subset of a PUT body; id and timestamps are not writable."""
    if not isinstance(body, dict):
        raise ValidationError("Request body must be a JSON object")
    changes: dict[str, Any] = {}
    if "url" in body:
        changes["url"] = _check_url(body["url"])
    if "events" in body:
        changes["events"] = _check_events(body["events"])
    if "secret" in body:
        if body["secret"] is not None and not isinstance(body["secret"], str):
            raise ValidationError("secret must be a string")
        changes["secret"] = body["secret"]
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise ValidationError("active must be a boolean")
        changes["active"] = body["active"]
    if "filters" in body:
        changes["filters"] = _check_filters(body["filters"])
    if "retry_config" in body:
        changes["retry_config"] = _check_retry(body["retry_config"], current.get("retry_config") or DEFAULT_RETRY)
    if "headers" in body:
        changes["headers"] = _check_headers(body["headers"])
    return changes


def retry_delay_ms(retry: dict[str, Any], failed_attempt: int) -> float:
    """Delay before the attempt after ``failed_attempt`` (1-based): initial x multiplier^(n-1), capped."""
    delay = retry["initial_delay_ms"] * retry["backoff_multiplier"] ** (failed_attempt - 1)
    return min(delay, retry["max_delay_ms"])


# ---------------------------------------------------------------------------- events
def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def event_data(event_type: str, message: Any) -> dict[str, Any]:
    """The delivery's ``data`` from a pub/sub message, with the contract's field names."""
    data = dict(message) if isinstance(message, dict) else {"message": message}
    job = data.get("job") if isinstance(data.get("job"), dict) else {}
    if event_type in JOB_EVENTS or event_type.startswith("workflow_"):
        data["job_id"] = _first(data, "job_id", "jobId") or job.get("id")
        data["workflow_id"] = _first(data, "workflow_id", "workflowId") or job.get("workflow_id")
    job_type = _first(data, "job_type", "service_required", "type") or job.get("service_required")
    if job_type:
        data["job_type"] = job_type
    return data


def matches_filters(webhook: dict[str, Any], data: dict[str, Any]) -> bool:
    """EMP semantics: a filter only excludes events that carry the filtered field."""
    filters = webhook.get("filters") or {}
    checks = (
        ("job_types", data.get("job_type")),
        ("priorities", data.get("priority")),
        ("job_priorities", data.get("priority")),
        ("machine_ids", data.get("machine_id")),
        ("worker_ids", data.get("worker_id")),
    )
    for key, value in checks:
        allowed = filters.get(key)
        if allowed and value not in (None, "") and str(value) not in {str(a) for a in allowed}:
            return False
    return True


def test_event_data(event_type: str, stamp: int) -> dict[str, Any]:
    """The data of a test event: per event type the fields the EMP service's test events carry
    (docs/emp-real-contracts.md), with sandbox values."""
    job_id = f"test_job_{stamp}"
    worker_id = f"test_worker_{secrets.token_hex(3)[:5]}"
    machine_id = f"test_machine_{secrets.token_hex(3)[:5]}"
    at = datetime.fromtimestamp(stamp / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    samples: dict[str, dict[str, Any]] = {
        "job_submitted": {"job_id": job_id, "job_type": "mock", "priority": 50,
                          "payload": {"test_data": "Sample job submission for webhook testing"},
                          "requirements": {}, "customer_id": "test_customer", "submitted_at": at, "status": "pending"},
        "update_job_progress": {"job_id": job_id, "worker_id": worker_id, "progress": 45,
                                "progress_message": "Processing test job...", "status": "in_progress",
                                "current_step": 1, "total_steps": 2, "estimated_completion": at},
        "complete_job": {"job_id": job_id, "worker_id": worker_id, "progress": 100,
                         "result": {"output": "Test job completed successfully", "files": [], "duration_ms": 0},
                         "completed_at": at, "status": "completed", "message": "Test job finished successfully"},
        "job_failed": {"job_id": job_id, "worker_id": worker_id, "error": "Test failure", "failed_at": at,
                       "status": "failed", "can_retry": False, "retry_count": 0},
        "cancel_job": {"job_id": job_id, "worker_id": worker_id, "cancelled_at": at, "reason": "Test cancellation",
                       "cancelled_by": "test_user"},
        "worker_status": {"worker_id": worker_id, "machine_id": machine_id, "status": "busy",
                          "previous_status": "idle", "capabilities": ["mock"], "current_job_id": job_id},
        "machine_status": {"machine_id": machine_id, "status": "ready", "health": "healthy", "worker_count": 1,
                           "services": ["mock"], "startup_time": 0},
    }
    return samples.get(event_type, {"job_id": job_id, "test_event_type": event_type,
                                    "message": f"Test event for {event_type}"})


# ---------------------------------------------------------------------------- delivery
@dataclass
class Outcome:
    status: int | None
    body: str = ""
    error: str | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """One POST without redirects or proxies: a webhook is delivered to exactly its URL."""
    started = time.perf_counter()
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")[:RESPONSE_BODY_KEPT]
        return Outcome(response.status, text, None if 200 <= response.status < 300 else f"HTTP {response.status}",
                       (time.perf_counter() - started) * 1000)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, "", f"{type(exc).__name__}: {exc}", (time.perf_counter() - started) * 1000)
    finally:
        conn.close()


class RetryScheduler:
    """Runs callables after a delay on one thread (a heap, not a Timer per retry)."""

    def __init__(self, submit: Callable[[Callable[[], None]], Any]):
        self._submit = submit
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="retry-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call_later(self, delay_s: float, job: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), job))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _seq, job = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._submit(job)


@dataclass
class ProcessorSettings:
    default_retry: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RETRY))
    delivery_timeout: float = 30.0
    workers: int = 8
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES


class Processor:
    def __init__(self, link: RedisLink, store: WebhookStore, telemetry: Any, settings: ProcessorSettings,
                 metrics: ServiceMetrics | None = None, faults: RuntimeFaults | None = None):
        self.link = link
        self.faults = faults
        self._deliveries = (metrics.counter("emp_webhook_deliveries", "Webhook deliveries by final outcome",
                                            {"outcome": ("success", "failure")}) if metrics else None)
        self.store = store
        self.settings = settings
        self.tracer = telemetry.tracer
        self._success_counter = telemetry.meter.create_counter("webhook.delivery.success")
        self._failure_counter = telemetry.meter.create_counter("webhook.delivery.failure")
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="delivery")
        self._retries = RetryScheduler(self._pool.submit)
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="pubsub", daemon=True)
        self._lock = threading.Lock()
        self._active_webhooks = 0
        self.figures = {"total_deliveries": 0, "successful_deliveries": 0, "failed_deliveries": 0,
                        "total_attempts": 0, "events_received": 0, "events_dispatched": 0}
        self.subscribed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._retries.start()
        self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        self._retries.stop()
        self._listener.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self.figures[key] += delta

    def health(self) -> dict[str, Any]:
        try:
            self._active_webhooks = self.store.active_count()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # keep the last figure while Redis is away
        with self._lock:
            return {"active_webhooks": self._active_webhooks,
                    "total_deliveries": self.figures["total_deliveries"],
                    "failed_deliveries": self.figures["failed_deliveries"]}

    def event_stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self.figures, "retry_queue_size": self._retries.pending(), "subscribed": self.subscribed}

    # ------------------------------------------------------------------ webhook operations
    def test(self, webhook_id: str) -> bool:
        """One test event per subscribed event type; the first attempt runs before answering."""
        webhook = self.store.get(webhook_id)
        if webhook is None:
            return False
        stamp = now_ms()
        base = f"test_wh_{stamp}_{secrets.token_hex(5)}"
        for event_type in webhook["events"]:
            payload = {"event_type": event_type, "event_id": f"{base}_{event_type}", "timestamp": stamp,
                       "webhook_id": webhook_id, "data": test_event_data(event_type, stamp),
                       "metadata": {"original_timestamp": stamp, "test_event": True}}
            self._attempt(webhook_id, payload, 1, stamp)
        return True

    def reconnect(self, webhook_id: str) -> bool:
        webhook = self.store.update(webhook_id, {"disconnected": False, "consecutive_failures": 0})
        if webhook is None:
            return False
        self.link.run(lambda r: r.hset(f"webhooks:stats:{webhook_id}", "consecutive_failures", 0))
        return True

    # ------------------------------------------------------------------ events
    def dispatch(self, event_type: str, data: dict[str, Any]) -> int:
        """Queues one delivery per active webhook that subscribes to the event and whose filters match."""
        self._count(events_received=1)
        if event_type in JOB_EVENTS and data.get("job_id") and not data.get("job_type"):
            job = self.store.job_fields(str(data["job_id"]), "service_required", "priority", "workflow_id")
            if job.get("service_required"):
                data["job_type"] = job["service_required"]
            if data.get("priority") is None and job.get("priority") is not None:
                data["priority"] = job["priority"]
            if not data.get("workflow_id") and job.get("workflow_id"):
                data["workflow_id"] = job["workflow_id"]
        stamp = now_ms()
        queued = 0
        for webhook in self.store.all():
            if not webhook.get("active") or webhook.get("disconnected"):
                continue
            if event_type not in webhook["events"] or not matches_filters(webhook, data):
                continue
            payload = {"event_type": event_type, "event_id": new_id("evt"), "timestamp": stamp,
                       "webhook_id": webhook["id"], "data": data}
            self._pool.submit(self._attempt, webhook["id"], payload, 1, stamp)
            queued += 1
        self._count(events_dispatched=queued)
        return queued

    def _on_channel_message(self, channel: str, raw: str) -> None:
        event_type = CHANNEL_EVENTS.get(channel)
        if event_type is None:
            return
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            message = raw
        self.dispatch(event_type, event_data(event_type, message))

    def _listen(self) -> None:
        """Subscribes to the job channels; resubscribes after Redis restarts (unless no_reconnect)."""
        backoff = Backoff(first=0.1, factor=2.0, cap=2.0)
        while not self._stop.is_set():
            pubsub = None
            try:
                with self.link.guard():
                    pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(*CHANNEL_EVENTS)
                self.subscribed = True
                backoff.reset()
                while not self._stop.is_set():
                    with self.link.guard():
                        message = pubsub.get_message(timeout=0.2)
                    if message and message.get("type") == "message":
                        try:
                            self._on_channel_message(message["channel"], message["data"])
                        except (redis.ConnectionError, redis.TimeoutError, OSError):
                            raise
                        except Exception:  # pylint: disable=broad-except  # one bad event never stops the listener
                            LOG.exception("could not process %s event", message.get("channel"))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.subscribed = False
                if self.link.dead:
                    LOG.error("pub/sub listener stopped: Redis connection ended (no_reconnect)")
                    return
                delay = backoff.next_delay()
                LOG.warning("pub/sub connection lost (%s); resubscribing in %.1fs", exc, delay)
                self._stop.wait(delay)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # pylint: disable=broad-except  # closing a dead socket may raise
                        pass

    # ------------------------------------------------------------------ delivery
    def _attempt(self, webhook_id: str, payload: dict[str, Any], attempt_number: int, first_at: int) -> None:
        try:
            self._attempt_once(webhook_id, payload, attempt_number, first_at)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            LOG.error("delivery %s to %s attempt %d lost: Redis unavailable (%s)",
                      payload["event_id"], webhook_id, attempt_number, exc)
        except Exception:  # pylint: disable=broad-except  # a worker thread must survive any delivery
            LOG.exception("delivery %s to %s attempt %d crashed", payload["event_id"], webhook_id, attempt_number)

    def _attempt_once(self, webhook_id: str, payload: dict[str, Any], attempt_number: int, first_at: int) -> None:
        webhook = self.store.get(webhook_id)
        if webhook is None or not webhook.get("active") or webhook.get("disconnected"):
            return  # deleted, paused or disconnected since the event was queued
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Webhook-Event": payload["event_type"], "X-Webhook-ID": webhook_id,
                   "X-Event-ID": payload["event_id"], **(webhook.get("headers") or {})}
        if webhook.get("secret"):
            headers[SIGNATURE_HEADER] = sign(body, webhook["secret"])
        retry = webhook.get("retry_config") or self.settings.default_retry
        with self.tracer.start_as_current_span("webhook.delivery", attributes={
                "webhook.id": webhook_id, "webhook.event_type": payload["event_type"],
                "webhook.event_id": payload["event_id"], "webhook.attempt": attempt_number}) as span:
            outcome = self._faulted() or post(webhook["url"], body, headers, self.settings.delivery_timeout)
            span.set_attribute("http.response.status_code", outcome.status or 0)
        self._count(total_attempts=1)
        final = outcome.ok or attempt_number >= int(retry["max_attempts"])
        next_delay = None if final else retry_delay_ms(retry, attempt_number)
        stamp = now_ms()
        attempt = {
            "id": new_id("wh"), "webhook_id": webhook_id, "event_id": payload["event_id"],
            "event_type": payload["event_type"], "attempt_number": attempt_number, "timestamp": stamp,
            "success": outcome.ok, "response_status": outcome.status, "response_body": outcome.body,
            "error_message": outcome.error,
            "next_retry_at": None if next_delay is None else stamp + int(next_delay),
        }
        # as the EMP service stores attempts: a field without a value is left out, not null
        self.store.record_attempt({key: value for key, value in attempt.items() if value is not None})
        if not final:
            LOG.info("delivery %s to %s attempt %d failed (%s); retry in %d ms", payload["event_id"],
                     webhook_id, attempt_number, outcome.error, next_delay)
            self._retries.call_later(next_delay / 1000.0, lambda: self._attempt(
                webhook_id, payload, attempt_number + 1, first_at))
            return
        self._finish(webhook, payload, attempt_number, outcome, first_at)

    def _faulted(self) -> Outcome | None:
        """The webhook-failures fault: that share of attempts fails before anything is sent."""
        fault = self.faults.get("webhook-failures") if self.faults else None
        if fault is None or random.random() >= float(fault.get("rate", 1.0)):  # noqa: S311  # not crypto
            return None
        return Outcome(None, "", "fault webhook-failures: delivery failed", 0.0)

    def _finish(self, webhook: dict[str, Any], payload: dict[str, Any], attempts: int, outcome: Outcome,
                first_at: int) -> None:
        webhook_id = webhook["id"]
        self.store.record_delivery({
            "id": new_id("del"), "webhook_id": webhook_id, "event_id": payload["event_id"],
            "event_type": payload["event_type"], "url": webhook["url"], "success": outcome.ok,
            "attempts": attempts, "response_status": outcome.status, "error_message": outcome.error,
            "response_time_ms": round(outcome.elapsed_ms, 1), "timestamp": now_ms(), "queued_at": first_at,
            "job_id": (payload.get("data") or {}).get("job_id"),
        })
        attributes = {"webhook_id": webhook_id, "event_type": payload["event_type"]}
        if self._deliveries is not None:
            self._deliveries.labels("success" if outcome.ok else "failure").inc()
        if outcome.ok:
            self._count(total_deliveries=1, successful_deliveries=1)
            self._success_counter.add(1, attributes)
            if webhook.get("consecutive_failures") or webhook.get("disconnected"):
                self.store.update(webhook_id, {"consecutive_failures": 0, "disconnected": False,
                                               "last_success_at": now_ms()})
            return
        self._count(total_deliveries=1, failed_deliveries=1)
        self._failure_counter.add(1, attributes)
        LOG.warning("delivery %s to %s failed permanently after %d attempts (%s)", payload["event_id"],
                    webhook_id, attempts, outcome.error)
        self._record_permanent_failure(webhook_id)

    def _record_permanent_failure(self, webhook_id: str) -> None:
        current = self.store.get(webhook_id)
        if current is None:
            return
        failures = int(current.get("consecutive_failures") or 0) + 1
        changes: dict[str, Any] = {"consecutive_failures": failures, "last_failure_at": now_ms()}
        if failures >= self.settings.max_consecutive_failures and not current.get("disconnected"):
            changes["disconnected"] = True
            LOG.warning("webhook %s disconnected after %d consecutive failures", webhook_id, failures)
        self.store.update(webhook_id, changes)
