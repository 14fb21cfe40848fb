"""The webhook service's Redis connection: status tracking in ioredis terms, and the faults.

``connecting`` until the first command succeeds, ``ready`` while commands succeed,
``reconnecting`` after a connection error (redis-py opens a fresh connection on the next
command), ``end`` once the ``no_reconnect`` fault has given up for good.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Iterator, TypeVar

import redis

from sandbox._common import COMMAND_TIMEOUT_S, Backoff, redis_client

T = TypeVar("T")
LOG = logging.getLogger("webhook.redis")


class RedisGone(redis.ConnectionError):
    """Raised for every command once a no_reconnect client has lost its connection."""


class RedisLink:
    def __init__(self, url: str, client_name: str | None, *, reconnect: bool = True,
                 socket_timeout: float = COMMAND_TIMEOUT_S):
        # One retry at most: outages must show in /health, not hide behind backoff. A release
        # that never reconnects must not get a silent reconnect from redis-py's retry either.
        self.client = redis_client(url, client_name, retries=1 if reconnect else 0, socket_timeout=socket_timeout)
        self.url = url
        self.client_name = client_name
        self.reconnect = reconnect
        self.status = "connecting"
        self._lock = threading.Lock()

    @property
    def dead(self) -> bool:
        return self.status == "end"

    @property
    def connected(self) -> bool:
        return self.status == "ready"

    def run(self, command: Callable[[redis.Redis], T]) -> T:
        """Runs ``command(client)``, keeping the status in step with what happened."""
        with self.guard():
            return command(self.client)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        if self.dead:
            raise RedisGone("Redis connection ended and this release never reconnects (no_reconnect)")
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.connection_lost()
            raise
        self.connection_ok()

    def connection_ok(self) -> None:
        if self.status != "ready" and not self.dead:
            with self._lock:
                if self.status != "ready":
                    LOG.info("redis ready (%s)", self.status)
                    self.status = "ready"

    def connection_lost(self) -> None:
        with self._lock:
            if self.dead:
                return
            if not self.reconnect and self.status == "ready":
                LOG.error("redis connection lost; no_reconnect fault: giving up for good")
                self.status = "end"
                with contextlib.suppress(Exception):
                    self.client.close()
                return
            if self.status == "ready":
                LOG.warning("redis connection lost; reconnecting on demand")
                self.status = "reconnecting"

    def ping(self) -> bool:
        try:
            return bool(self.run(lambda r: r.ping()))
        except (redis.ConnectionError, redis.TimeoutError, OSError):  # RedisGone included
            return False

    def wait_until_ready(self, stopped: Callable[[], bool]) -> bool:
        """Start order step 1: Redis before anything else; retries forever with backoff."""
        backoff = Backoff(first=0.1, factor=2.0, cap=2.0)
        while not stopped():
            if self.ping():
                return True
            delay = backoff.next_delay()
            LOG.warning("redis not reachable yet; retrying in %.1fs", delay)
            threading.Event().wait(delay)
        return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def info(self) -> dict[str, Any]:
        return {"connected": self.connected, "status": self.status}
