"""One EMP worker: registration, heartbeat, atomic claiming, job processing and completion."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox._common import Backoff, redis_client

REDIS_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
COMPLETED_TTL_S = 24 * 3600
FAILED_TTL_S = 7 * 24 * 3600
# Which job service_required values each connector type serves (job_service_required_map).
SERVICES_BY_TYPE = {"mock": ["mock", "simulation"], "ollama-sim": ["ollama", "ollama-sim"]}
MODELS_BY_TYPE = {"mock": [], "ollama-sim": ["llama3.2:1b", "sandbox-sim"]}


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class WorkerSettings:
    redis_url: str
    machine_id: str
    poll_interval: float = 0.25
    heartbeat_ttl: int = 60
    max_scan: int = 100
    job_duration_ms: int = 200
    asset_dir: Path | None = None
    client_named: bool = True      # False: the no_redis_client fault
    reconnect: bool = True         # False: the no_reconnect fault
    backoff_cap: float = 2.0
    stalled: Callable[[], bool] = lambda: False   # the jobs-stalled runtime fault
    on_job: Callable[[str, float], Any] | None = None  # (completed|failed, seconds) for /metrics
    attest: Callable[[], bool] = lambda: True  # False: the attestation-missing runtime fault
    asset_storage_down: Callable[[], bool] = lambda: False  # the asset-save-fails runtime fault
    ollama_url: str | None = None  # the machine's Ollama (stand-in): ollama-sim jobs generate there when set


@dataclass
class WorkerStats:
    jobs_completed: int = 0
    jobs_failed: int = 0
    last_heartbeat: str = ""
    current_job_id: str = ""
    connected_at: str = ""
    redis_connected: bool = False
    redis_errors: int = 0
    gave_up_redis: bool = False
    started: float = field(default_factory=time.time)


class Worker(threading.Thread):
    """A worker thread; pm2 would run it as app ``redis-worker-{type}-{index}``."""

    def __init__(self, worker_type: str, index: int, settings: WorkerSettings, stop: threading.Event,
                 telemetry, version: str):
        if worker_type not in SERVICES_BY_TYPE:
            raise ValueError(f"unknown worker type {worker_type!r}; known: {', '.join(SERVICES_BY_TYPE)}")
        self.worker_type = worker_type
        self.index = index
        self.worker_id = f"{settings.machine_id}-worker-{worker_type}-{index}"
        self.app_name = f"redis-worker-{worker_type}-{index}"
        super().__init__(name=self.app_name, daemon=True)
        self.settings = settings
        self.stop = stop
        self.telemetry = telemetry
        self.version = version
        self.log = logging.getLogger(self.worker_id)
        self.stats = WorkerStats()
        self.status = "starting"   # starting | idle | busy | reconnecting | disconnected | stopped | errored
        self.registered = False
        client_name = f"emp-worker:{self.worker_id}" if settings.client_named else None
        if settings.reconnect:
            self.redis = redis_client(settings.redis_url, client_name)
        else:  # no_reconnect fault: one connection, no retries, so the first loss is seen and final
            self.redis = redis_client(settings.redis_url, client_name, retries=0, single_connection=True)
        self.capabilities = {
            "worker_id": self.worker_id, "machine_id": settings.machine_id, "connector": worker_type,
            "job_service_required_map": SERVICES_BY_TYPE[worker_type],
            "models": MODELS_BY_TYPE[worker_type],
            "hardware": {"gpu_count": 0, "gpu_memory_gb": 0, "cpu_cores": os.cpu_count() or 1, "ram_gb": 4},
            "customer_access": {"isolation": "none"},
            "version": version,
        }
        meter = telemetry.meter
        self.jobs_counter = meter.create_counter("emp.worker.jobs", description="jobs processed by outcome")
        self.job_duration = meter.create_histogram("emp.worker.job.duration", unit="s",
                                                   description="job processing time")

    # ------------------------------------------------------------------ registration
    def register(self) -> None:
        now = iso_now()
        self.stats.connected_at = self.stats.connected_at or now
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"worker:{self.worker_id}", mapping={
                "worker_id": self.worker_id, "machine_id": self.settings.machine_id,
                "capabilities": json.dumps(self.capabilities), "status": "idle",
                "connected_at": self.stats.connected_at, "last_heartbeat": now,
                "current_job_id": self.stats.current_job_id, "version": self.version})
            pipe.sadd("workers:active", self.worker_id)
            pipe.set(f"worker:{self.worker_id}:heartbeat", now, ex=self.settings.heartbeat_ttl)
            pipe.publish("worker_status", json.dumps({"worker_id": self.worker_id, "status": "idle",
                                                      "machine_id": self.settings.machine_id, "timestamp": now}))
            pipe.execute()
        self.stats.last_heartbeat = now
        self.registered = True
        self.stats.redis_connected = True

    def heartbeat(self) -> None:
        """Refreshes worker:{id}:heartbeat (TTL) and last_heartbeat; called by the machine."""
        if not self.registered or self.stats.gave_up_redis or self.status == "stopped":
            return
        now = iso_now()
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(f"worker:{self.worker_id}:heartbeat", now, ex=self.settings.heartbeat_ttl)
                pipe.hset(f"worker:{self.worker_id}", mapping={"last_heartbeat": now,
                                                               "status": "busy" if self.stats.current_job_id else "idle"})
                pipe.sadd("workers:active", self.worker_id)
                pipe.execute()
            self.stats.last_heartbeat = now
        except REDIS_DOWN_ERRORS as exc:
            self.log.warning("heartbeat failed: %s", exc)

    def deregister(self) -> None:
        if not self.registered or self.stats.gave_up_redis:
            return
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.srem("workers:active", self.worker_id)
                pipe.delete(f"worker:{self.worker_id}:heartbeat")
                pipe.hset(f"worker:{self.worker_id}", mapping={"status": "offline", "current_job_id": ""})
                pipe.publish("worker_status", json.dumps({"worker_id": self.worker_id, "status": "offline",
                                                          "timestamp": iso_now()}))
                pipe.execute()
        except RedisError as exc:
            self.log.warning("could not deregister: %s", exc)
        self.redis.close()

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        backoff = Backoff(first=0.1, factor=2.0, cap=self.settings.backoff_cap)
        try:
            while not self.stop.is_set():
                try:
                    if not self.registered or not self.stats.redis_connected:
                        self.register()
                        self.log.info("registered (%s)", ", ".join(self.capabilities["job_service_required_map"]))
                        backoff.reset()
                    self.status = "idle"
                    if self.settings.stalled():  # the jobs-stalled fault: nothing is claimed
                        self.stop.wait(self.settings.poll_interval)
                        continue
                    claimed = self.claim()
                    if claimed is None:
                        self.stop.wait(self.settings.poll_interval)
                        continue
                    self.process(claimed["jobId"], claimed["job"])
                except ResponseError as exc:
                    if "function" not in str(exc).lower():
                        raise
                    # Redis came back without the jobMatching library (e.g. after a kill -9);
                    # whoever manages Redis reloads it: wait for it instead of crashing.
                    self.status = "waiting_for_library"
                    delay = backoff.next_delay()
                    self.log.warning("findMatchingJob unavailable (%s); retrying in %.1fs", exc, delay)
                    self.stop.wait(delay)
                except REDIS_DOWN_ERRORS as exc:
                    self.stats.redis_connected = False
                    self.stats.redis_errors += 1
                    if not self.settings.reconnect:
                        self.log.error("redis connection lost (%s); fault no_reconnect: giving Redis up", exc)
                        self.stats.gave_up_redis = True
                        self.status = "disconnected"
                        self.redis.connection_pool.disconnect()
                        self.stop.wait()
                        break
                    self.status = "reconnecting"
                    delay = backoff.next_delay()
                    self.log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
                    self.stop.wait(delay)
        except Exception:  # pylint: disable=broad-except  # a crashed worker shows as 'errored', like pm2
            self.log.exception("worker crashed")
            self.status = "errored"
            return
        self.deregister()
        self.status = "stopped"

    def claim(self) -> dict[str, Any] | None:
        raw = self.redis.fcall("findMatchingJob", 0, json.dumps(self.capabilities), str(self.settings.max_scan))
        if raw is None:
            return None
        claimed = json.loads(raw)
        self.log.info("claimed job %s (%s)", claimed["jobId"], claimed["job"].get("service_required"))
        return claimed

    # ------------------------------------------------------------------ processing
    def process(self, job_id: str, job: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.status = "busy"
        self.stats.current_job_id = job_id
        with self.telemetry.tracer.start_as_current_span(
                "worker.process_job", kind=SpanKind.CONSUMER,
                attributes={"emp.job.id": job_id, "emp.job.service_required": job.get("service_required", ""),
                            "emp.worker.id": self.worker_id, "emp.worker.type": self.worker_type}) as span:
            self.redis.hset(f"job:{job_id}", mapping={"status": "in_progress", "started_at": iso_now()})
            self.redis.hset(f"worker:{self.worker_id}", mapping={"status": "busy", "current_job_id": job_id})
            payload = _json_field(job.get("payload"), {})
            try:
                result = self.execute(job_id, job, payload)
            except JobFailure as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                self.fail(job_id, job, str(exc))
                self.jobs_counter.add(1, {"outcome": "failed", "connector": self.worker_type})
                outcome = "failed"
            else:
                self.complete(job_id, job, result)
                self.jobs_counter.add(1, {"outcome": "completed", "connector": self.worker_type})
                outcome = "completed"
            finally:
                self.stats.current_job_id = ""
                self.job_duration.record(time.perf_counter() - started, {"connector": self.worker_type})
            if self.settings.on_job is not None:
                self.settings.on_job(outcome, time.perf_counter() - started)

    def execute(self, job_id: str, job: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        duration_ms = payload.get("duration_ms", self.settings.job_duration_ms) if isinstance(payload, dict) else \
            self.settings.job_duration_ms
        steps = 4
        for step in range(1, steps + 1):
            if self.stop.wait(max(float(duration_ms), 0) / 1000 / steps):
                raise JobFailure("worker shutting down before the job finished")
            self.progress(job_id, int(step * 100 / steps))
        if isinstance(payload, dict) and payload.get("fail"):
            raise JobFailure(str(payload.get("error") or "simulated failure requested by payload.fail"))
        if self.worker_type == "ollama-sim":
            return self.execute_ollama(job_id, job, payload if isinstance(payload, dict) else {})
        return {"success": True, "data": {"message": "mock job completed", "echo": payload,
                                          "worker_id": self.worker_id},
                "metadata": {"connector": "mock", "processing_time_ms": duration_ms}}

    def execute_ollama(self, job_id: str, job: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        model = payload.get("model") or "sandbox-sim"
        prompt = str(payload.get("prompt") or "")
        text = (self.ollama_generate(str(model), prompt) if self.settings.ollama_url
                else f"[{model}] simulated answer to: {prompt}")
        metadata: dict[str, Any] = {"connector": "ollama", "model": model, "endpoint": "/api/generate"}
        # Like the Ollama connector: the text is saved as an asset; a storage failure does not fail the job.
        try:
            metadata["saved_asset"] = self.save_asset(job_id, text)
        except OSError as exc:
            metadata["saved_asset"] = None
            metadata["asset_error"] = str(exc)
            self.log.warning("job %s: could not save asset: %s", job_id, exc)
        return {"success": True, "data": {"response": text, "model": model, "done": True},
                "metadata": metadata}

    def ollama_generate(self, model: str, prompt: str) -> str:
        """POST /api/generate (stream false) to the machine's Ollama, as the connector does; errors fail the job."""
        body = json.dumps({"model": model, "prompt": prompt, "stream": False}).encode("utf-8")
        request = urllib.request.Request(f"{self.settings.ollama_url}/api/generate", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310  # the machine's own Ollama
                return str(json.loads(answer.read().decode("utf-8"))["response"])
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise JobFailure(f"Ollama answered HTTP {exc.code}: {detail}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise JobFailure(f"Ollama at {self.settings.ollama_url} failed: {exc}") from None

    def save_asset(self, job_id: str, text: str) -> dict[str, Any]:
        if self.settings.asset_dir is None:
            raise OSError("no asset directory configured")
        if self.settings.asset_storage_down():
            raise OSError("asset storage unavailable (sandbox fault asset-save-fails)")
        directory = Path(self.settings.asset_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{job_id}.txt"
        data = text.encode("utf-8")
        path.write_bytes(data)
        return {"path": str(path), "url": path.as_uri(), "content_type": "text/plain", "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}

    def progress(self, job_id: str, percent: int) -> None:
        event = {"job_id": job_id, "worker_id": self.worker_id, "progress": percent, "timestamp": iso_now()}
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(f"progress:{job_id}", {k: str(v) for k, v in event.items()}, maxlen=100, approximate=True)
            pipe.publish("update_job_progress", json.dumps(event))
            pipe.execute()

    def _attestation_key(self, kind: str, job_id: str, job: dict[str, Any], attempt: str) -> str:
        """worker:{kind}:[job-id:{workflow}:]step-id:{step}:attempt:{n} (or ...:permanent)."""
        workflow = job.get("workflow_id") or ""
        prefix = f"worker:{kind}:job-id:{workflow}:" if workflow else f"worker:{kind}:"
        suffix = "permanent" if attempt == "permanent" else f"attempt:{attempt}"
        return f"{prefix}step-id:{job_id}:{suffix}"

    def complete(self, job_id: str, job: dict[str, Any], result: dict[str, Any]) -> None:
        now = iso_now()
        attempt = int(job.get("retry_count") or 0) + 1
        attestation = {"job_id": job_id, "worker_id": self.worker_id, "machine_id": self.settings.machine_id,
                       "status": "completed", "completed_at": now, "workflow_id": job.get("workflow_id") or None,
                       "current_step": job.get("current_step") or None, "total_steps": job.get("total_steps") or None,
                       "attempt": attempt, "result": result}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"job:{job_id}", mapping={"status": "completed", "completed_at": now,
                                                "result": json.dumps(result)})
            pipe.hdel(f"jobs:active:{self.worker_id}", job_id)
            pipe.hset("jobs:completed", job_id, json.dumps({"job_id": job_id, "worker_id": self.worker_id,
                                                            "completed_at": now, "result": result}))
            pipe.expire("jobs:completed", COMPLETED_TTL_S)
            if self.settings.attest():
                pipe.set(self._attestation_key("completion", job_id, job, str(attempt)), json.dumps(attestation))
            pipe.hset(f"worker:{self.worker_id}", mapping={"status": "idle", "current_job_id": ""})
            pipe.publish("complete_job", json.dumps({
                "job_id": job_id, "worker_id": self.worker_id, "status": "completed", "result": result,
                "workflow_id": job.get("workflow_id") or None, "timestamp": now}))
            pipe.execute()
        self.stats.jobs_completed += 1
        self.log.info("completed job %s", job_id)

    def fail(self, job_id: str, job: dict[str, Any], error: str) -> None:
        now = iso_now()
        retry_count = int(job.get("retry_count") or 0)
        max_retries = int(job.get("max_retries") or 0)
        permanent = retry_count + 1 > max_retries
        attempt = "permanent" if permanent else str(retry_count + 1)
        record = {"job_id": job_id, "worker_id": self.worker_id, "error": error, "failed_at": now,
                  "attempt": retry_count + 1, "permanent": permanent}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(f"jobs:active:{self.worker_id}", job_id)
            pipe.set(self._attestation_key("failure", job_id, job, attempt), json.dumps(record))
            if permanent:
                pipe.hset(f"job:{job_id}", mapping={"status": "failed", "failed_at": now, "error": error})
                pipe.hset("jobs:failed", job_id, json.dumps(record))
                pipe.expire("jobs:failed", FAILED_TTL_S)
                if job.get("workflow_id"):
                    pipe.set(f"workflow:failure:{job['workflow_id']}:step-id:{job_id}", json.dumps(record))
            else:  # back to the queue with its original priority, one retry used
                pipe.hset(f"job:{job_id}", mapping={"status": "pending", "retry_count": str(retry_count + 1),
                                                    "worker_id": "", "error": error})
                pipe.zadd("jobs:pending", {job_id: float(job.get("priority") or 50) * 1e15 - int(time.time())})
            pipe.hset(f"worker:{self.worker_id}", mapping={"status": "idle", "current_job_id": ""})
            pipe.publish("job_failed", json.dumps({"job_id": job_id, "worker_id": self.worker_id, "error": error,
                                                   "permanent": permanent, "timestamp": now}))
            pipe.execute()
        self.stats.jobs_failed += 1
        self.log.warning("job %s failed (%s): %s", job_id, "permanent" if permanent else "will retry", error)


class JobFailure(Exception):
    """The job itself failed (not Redis)."""


def _json_field(value: Any, default: Any) -> Any:
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value if value is not None else default
