"""Built-in test receivers: a URL that records whatever is sent to it (at most 100 requests, 24 h)."""
from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from sandbox.webhook.storage import new_id, now_ms

MAX_RECEIVERS = 100
MAX_REQUESTS = 100
LIFETIME_MS = 24 * 3600 * 1000


class TestReceivers:
    __test__ = False  # not a pytest test class

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self._receivers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _expire(self) -> None:
        now = now_ms()
        for receiver_id in [r for r, v in self._receivers.items() if v["expires_at"] <= now]:
            del self._receivers[receiver_id]

    def _public(self, receiver: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in receiver.items() if key != "requests"}

    def create(self) -> dict[str, Any] | None:
        with self._lock:
            self._expire()
            if len(self._receivers) >= MAX_RECEIVERS:
                return None
            receiver_id = new_id("recv")
            created = now_ms()
            # url: the sandbox's own address; the EMP service writes http://localhost:3332 whatever its port
            receiver = {"id": receiver_id, "url": f"{self.base_url}/test-receivers/{receiver_id}/webhook",
                        "view_url": f"http://localhost:3000/webhook-test?receiver={receiver_id}",
                        "created_at": created, "expires_at": created + LIFETIME_MS, "expires_in_hours": 24,
                        "requests": deque(maxlen=MAX_REQUESTS)}
            self._receivers[receiver_id] = receiver
            return self._public(receiver)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            self._expire()
            return [{**self._public(r), "request_count": len(r["requests"])} for r in self._receivers.values()]

    def record(self, receiver_id: str, method: str, headers: dict[str, str], raw_body: bytes,
               query: dict[str, str], client_ip: str) -> dict[str, Any] | None:
        with self._lock:
            self._expire()
            receiver = self._receivers.get(receiver_id)
            if receiver is None:
                return None
            text = raw_body.decode("utf-8", "replace")
            body: Any = text or None
            if "json" in headers.get("content-type", "") and text:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = text
            request = {"id": new_id("req"), "timestamp": now_ms(), "method": method, "headers": headers, "body": body,
                       # The exact bytes, so a signature over the raw body can be checked later.
                       "raw_body": text, "query": query, "user_agent": headers.get("user-agent", ""),
                       "ip": client_ip}
            receiver["requests"].appendleft(request)  # newest first
            return request

    def requests(self, receiver_id: str, limit: int) -> dict[str, Any] | None:
        with self._lock:
            self._expire()
            receiver = self._receivers.get(receiver_id)
            if receiver is None:
                return None
            requests = list(receiver["requests"])[:limit]
            return {"receiver_id": receiver_id, "receiver_url": receiver["url"],
                    "created_at": receiver["created_at"], "expires_at": receiver["expires_at"],
                    "requests": requests, "total_requests": len(receiver["requests"]),
                    "returned_count": len(requests)}

    def clear(self, receiver_id: str) -> int | None:
        with self._lock:
            receiver = self._receivers.get(receiver_id)
            if receiver is None:
                return None
            cleared = len(receiver["requests"])
            receiver["requests"].clear()
            return cleared

    def delete(self, receiver_id: str) -> bool:
        with self._lock:
            return self._receivers.pop(receiver_id, None) is not None
