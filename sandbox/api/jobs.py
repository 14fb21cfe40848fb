"""Job submission and lookup on the EMP Redis key schema (docs/emp-contracts.md)."""
from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

JSON_FIELDS = ("payload", "requirements", "ctx")
STATUSES = ("pending", "queued", "assigned", "accepted", "in_progress", "completed", "failed",
            "cancelled", "timeout", "unworkable")
PRIORITY_FACTOR = 1e15


class JobError(ValueError):
    """A job request that does not satisfy the contract (answered with 400)."""


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch_ms(value: Any, name: str) -> float:
    """workflow_datetime: epoch milliseconds (number or numeric string) or ISO 8601."""
    if isinstance(value, bool):
        raise JobError(f"{name} must be epoch milliseconds or an ISO 8601 date")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value).timestamp() * 1000
        except ValueError as exc:
            raise JobError(f"{name} must be epoch milliseconds or an ISO 8601 date") from exc
    raise JobError(f"{name} must be epoch milliseconds or an ISO 8601 date")


def _int_field(body: dict, name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise JobError(f"{name} must be an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise JobError(f"{name} must be an integer") from exc


def job_score(priority: int, epoch_ms: float) -> float:
    """EMP score: priority x 1e15 - floor(epoch_ms / 1000); higher is served first."""
    return priority * PRIORITY_FACTOR - math.floor(epoch_ms / 1000)


def build_job(body: Any, now_ms: float | None = None) -> tuple[dict[str, str], float]:
    """Validates a POST /api/jobs body; returns the job hash (all strings) and its score."""
    if not isinstance(body, dict):
        raise JobError("request body must be a JSON object")
    service = body.get("service_required") or body.get("job_type") or body.get("type")
    if not isinstance(service, str) or not service.strip():
        raise JobError("service_required (or job_type/type) is required and must be a string")
    priority = _int_field(body, "priority", 50)
    max_retries = _int_field(body, "max_retries", 3)
    workflow_priority = _int_field(body, "workflow_priority", None)
    current_step = _int_field(body, "current_step", None)
    total_steps = _int_field(body, "total_steps", None)
    for name in ("payload", "requirements", "ctx"):
        if name in body and body[name] is not None and not isinstance(body[name], (dict, list)):
            raise JobError(f"{name} must be a JSON object")
    for name in ("customer_id", "workflow_id"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise JobError(f"{name} must be a string")
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    score_ms = now_ms
    if body.get("workflow_datetime") is not None:
        score_ms = _epoch_ms(body["workflow_datetime"], "workflow_datetime")
    score = job_score(workflow_priority if workflow_priority is not None else priority, score_ms)
    job_id = str(uuid.uuid4())
    job = {
        "id": job_id,
        "service_required": service.strip(),
        "priority": str(priority),
        "payload": _compact(body.get("payload") or {}),
        # absent requirements and ctx are stored empty, as the EMP API does (not "{}")
        "requirements": _compact(body["requirements"]) if body.get("requirements") else "",
        "customer_id": body.get("customer_id") or "",
        "created_at": iso_now(),
        "status": "pending",
        "retry_count": "0",
        "max_retries": str(max_retries),
        "workflow_id": body.get("workflow_id") or "",
        "workflow_priority": "" if workflow_priority is None else str(workflow_priority),
        "workflow_datetime": "" if body.get("workflow_datetime") is None else str(body["workflow_datetime"]),
        "current_step": "" if current_step is None else str(current_step),
        "total_steps": "" if total_steps is None else str(total_steps),
        # the EMP API's placeholders while the submit span's ids are not carried through
        "job_trace_id": "temp-trace-id",
        "job_span_id": "temp-span-id",
        "workflow_trace_id": "",
        "workflow_span_id": "",
        "ctx": _compact(body["ctx"]) if body.get("ctx") else "",
    }
    return job, score


def _compact(value: Any) -> str:
    """JSON as JavaScript's JSON.stringify writes it (no spaces), as the EMP API stores it."""
    return json.dumps(value, separators=(",", ":"))


def decode_job(raw: dict[str, str]) -> dict[str, Any]:
    """A job hash with its JSON fields decoded and numbers as numbers, for API answers."""
    job: dict[str, Any] = dict(raw)
    for name in JSON_FIELDS + ("result",):
        if isinstance(job.get(name), str) and job[name]:
            try:
                job[name] = json.loads(job[name])
            except ValueError:
                pass
    for name in ("priority", "retry_count", "max_retries", "workflow_priority", "current_step", "total_steps"):
        value = job.get(name)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            job[name] = int(value)
    return job


async def submit_job(redis, job: dict[str, str], score: float) -> None:
    """Job hash + jobs:pending + job_submitted, in one MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(f"job:{job['id']}", mapping=job)
        pipe.zadd("jobs:pending", {job["id"]: score})
        pipe.publish("job_submitted", json.dumps({
            "job_id": job["id"], "service_required": job["service_required"],
            "priority": int(job["priority"]), "workflow_id": job["workflow_id"] or None,
            "timestamp": job["created_at"]}))
        await pipe.execute()


async def get_job(redis, job_id: str) -> dict[str, Any] | None:
    raw = await redis.hgetall(f"job:{job_id}")
    return decode_job(raw) if raw else None


async def list_jobs(redis, status: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Pending jobs come from jobs:pending in queue order; other statuses from a SCAN of job:*
    (fine at sandbox scale), newest first."""
    if status == "pending":
        total = await redis.zcard("jobs:pending")
        ids = await redis.zrevrange("jobs:pending", offset, offset + limit - 1)
        jobs = [job for job in [await get_job(redis, job_id) for job_id in ids] if job]
        return jobs, total
    found: list[dict[str, Any]] = []
    async for key in redis.scan_iter(match="job:*", count=500, _type="HASH"):
        raw = await redis.hgetall(key)
        if raw and "id" in raw and (status is None or raw.get("status") == status):
            found.append(decode_job(raw))
    found.sort(key=lambda job: job.get("created_at", ""), reverse=True)
    return found[offset:offset + limit], len(found)


async def cancel_job(redis, job_id: str) -> bool:
    """Cancels a job still pending; False when it is gone or already claimed."""
    removed = await redis.zrem("jobs:pending", job_id)
    if not removed:
        return False
    await redis.hset(f"job:{job_id}", mapping={"status": "cancelled", "cancelled_at": iso_now()})
    await redis.publish("job_cancelled", json.dumps({"job_id": job_id, "timestamp": iso_now()}))
    return True
