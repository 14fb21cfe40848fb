"""Webhook definitions, counters and delivery history in the contract's Redis keys.

webhooks:registry (hash id -> definition JSON), webhooks:active (set), webhooks:stats:{id}
(hash of counters), webhooks:attempts:{id} (list, last 100 attempts),
webhooks:delivery_log (list, last 1000 deliveries).
"""
from __future__ import annotations

import json
import secrets
import string
import threading
import time
from typing import Any

from sandbox.webhook.redis_link import RedisLink

REGISTRY = "webhooks:registry"
ACTIVE = "webhooks:active"
STATS = "webhooks:stats:{id}"
ATTEMPTS = "webhooks:attempts:{id}"
DELIVERY_LOG = "webhooks:delivery_log"
MAX_ATTEMPTS_KEPT = 100
MAX_DELIVERIES_KEPT = 1000

_ALPHABET = string.ascii_lowercase + string.digits


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    """EMP-style ids: <prefix>_<epoch ms>_<9 random base36 chars>."""
    return f"{prefix}_{now_ms()}_{''.join(secrets.choice(_ALPHABET) for _position in range(9))}"


def _counter(value: str | None) -> int | float | str | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


class WebhookStore:
    def __init__(self, link: RedisLink):
        self.link = link
        # Read-modify-write of one definition (PUT, failure counters) must not interleave.
        self._write_lock = threading.Lock()

    # ------------------------------------------------------------------ definitions
    def save(self, webhook: dict[str, Any]) -> None:
        listed = bool(webhook.get("active")) and not webhook.get("disconnected")

        def write(r):
            pipe = r.pipeline()
            pipe.hset(REGISTRY, webhook["id"], json.dumps(webhook))
            if listed:
                pipe.sadd(ACTIVE, webhook["id"])
            else:
                pipe.srem(ACTIVE, webhook["id"])
            pipe.execute()
        self.link.run(write)

    def get(self, webhook_id: str) -> dict[str, Any] | None:
        raw = self.link.run(lambda r: r.hget(REGISTRY, webhook_id))
        return json.loads(raw) if raw else None

    def all(self) -> list[dict[str, Any]]:
        raw = self.link.run(lambda r: r.hgetall(REGISTRY))
        webhooks = [json.loads(value) for value in raw.values()]
        return sorted(webhooks, key=lambda w: (w.get("created_at") or 0, w["id"]))

    def update(self, webhook_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        with self._write_lock:
            webhook = self.get(webhook_id)
            if webhook is None:
                return None
            webhook.update(changes)
            webhook["id"] = webhook_id
            webhook["updated_at"] = now_ms()
            self.save(webhook)
            return webhook

    def delete(self, webhook_id: str) -> bool:
        def remove(r):
            pipe = r.pipeline()
            pipe.hdel(REGISTRY, webhook_id)
            pipe.srem(ACTIVE, webhook_id)
            pipe.delete(STATS.format(id=webhook_id), ATTEMPTS.format(id=webhook_id))
            return pipe.execute()[0]
        with self._write_lock:
            return bool(self.link.run(remove))

    def active_count(self) -> int:
        return int(self.link.run(lambda r: r.scard(ACTIVE)))

    # ------------------------------------------------------------------ delivery records
    def record_attempt(self, attempt: dict[str, Any]) -> None:
        key = ATTEMPTS.format(id=attempt["webhook_id"])
        stats = STATS.format(id=attempt["webhook_id"])

        def write(r):
            pipe = r.pipeline(transaction=False)
            pipe.lpush(key, json.dumps(attempt))
            pipe.ltrim(key, 0, MAX_ATTEMPTS_KEPT - 1)
            pipe.hincrby(stats, "total_attempts", 1)
            pipe.hset(stats, "last_attempt_at", attempt["timestamp"])
            pipe.execute()
        self.link.run(write)

    def record_delivery(self, delivery: dict[str, Any]) -> None:
        """One finished delivery (success or permanent failure) of one event to one webhook."""
        stats = STATS.format(id=delivery["webhook_id"])
        ok = delivery["success"]

        def write(r):
            pipe = r.pipeline(transaction=False)
            pipe.lpush(DELIVERY_LOG, json.dumps(delivery))
            pipe.ltrim(DELIVERY_LOG, 0, MAX_DELIVERIES_KEPT - 1)
            pipe.hincrby(stats, "total_deliveries", 1)
            pipe.hincrby(stats, "successful_deliveries" if ok else "failed_deliveries", 1)
            pipe.hincrby(stats, "total_response_time_ms", int(delivery.get("response_time_ms") or 0))
            pipe.hset(stats, mapping={"last_delivery_at": delivery["timestamp"],
                                      "last_success_at" if ok else "last_failure_at": delivery["timestamp"]})
            if ok:
                pipe.hset(stats, "consecutive_failures", 0)
            else:
                pipe.hincrby(stats, "consecutive_failures", 1)
            pipe.execute()
        self.link.run(write)

    def stats(self, webhook_id: str) -> dict[str, Any]:
        raw = self.link.run(lambda r: r.hgetall(STATS.format(id=webhook_id)))
        stats: dict[str, Any] = {key: _counter(value) for key, value in raw.items()}
        for key in ("total_deliveries", "successful_deliveries", "failed_deliveries", "total_attempts",
                    "consecutive_failures", "total_response_time_ms"):
            stats.setdefault(key, 0)
        total = stats["total_deliveries"]
        stats["success_rate"] = round(stats["successful_deliveries"] / total, 4) if total else None
        stats["average_response_time_ms"] = round(stats.pop("total_response_time_ms") / total, 1) if total else None
        return stats

    def attempts(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        raw = self.link.run(lambda r: r.lrange(ATTEMPTS.format(id=webhook_id), 0, max(limit, 1) - 1))
        return [json.loads(item) for item in raw]

    def recent_deliveries(self, limit: int) -> list[dict[str, Any]]:
        raw = self.link.run(lambda r: r.lrange(DELIVERY_LOG, 0, max(limit, 1) - 1))
        return [json.loads(item) for item in raw]

    def summary(self) -> dict[str, Any]:
        webhooks = self.all()
        totals = {"total_deliveries": 0, "successful_deliveries": 0, "failed_deliveries": 0, "total_attempts": 0}
        for webhook in webhooks:
            stats = self.stats(webhook["id"])
            for key in totals:
                totals[key] += int(stats.get(key) or 0)
        totals["success_rate"] = (round(totals["successful_deliveries"] / totals["total_deliveries"], 4)
                                  if totals["total_deliveries"] else None)
        return {
            "total_webhooks": len(webhooks),
            "active_webhooks": sum(1 for w in webhooks if w.get("active") and not w.get("disconnected")),
            "disconnected_webhooks": sum(1 for w in webhooks if w.get("disconnected")),
            **totals,
        }

    # ------------------------------------------------------------------ job lookups for filters
    def job_fields(self, job_id: str, *fields: str) -> dict[str, Any]:
        values = self.link.run(lambda r: r.hmget(f"job:{job_id}", list(fields)))
        return dict(zip(fields, values))
