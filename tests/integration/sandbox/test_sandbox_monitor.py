"""The sandbox monitor: Redis client emp-monitor with limited retries (30 x 1 s by default)."""
from __future__ import annotations

import json
import time

import redis
import requests
from conftest import free_port
from sandbox_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    client_names,
    sandbox_redis_server,
    start_service,
    wait_until,
)

# pylint: disable=redefined-outer-name
TIMEOUT = 5


def health(port: int) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT)


def test_connects_with_its_client_name_and_sees_events(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, port=port,
                  release={"service": "monitor", "version": "1.0.0", "faults": []})
    wait_until(lambda: health(port).status_code == 200, timeout=5, message="monitor connected")
    assert "emp-monitor" in client_names(sandbox_redis_server.port)
    answer = health(port).json()
    assert answer["redis"]["connected"] is True and answer["redis"]["max_attempts"] == 30
    assert answer["version"] == "1.0.0"
    redis.Redis(port=sandbox_redis_server.port).publish("complete_job", json.dumps({"job_id": "j1"}))
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/api/events", timeout=TIMEOUT).json()["events"],
               timeout=5, message="event seen")
    assert "EMP monitor" in requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text


def test_gives_up_after_limited_retries(start_service, redis_factory):  # noqa: F811
    redis_port, port = free_port(), free_port()
    service = start_service("sandbox.monitor", "--redis-url", f"redis://127.0.0.1:{redis_port}/0",
                            "--redis-retries", "4", "--redis-retry-interval", "0.15", port=port)
    answer = wait_until(lambda: (h := health(port).json())["redis"]["state"] == "gave_up" and h, timeout=10,
                        message="monitor gave up")
    assert answer["redis"]["attempts"] == 4
    assert health(port).status_code == 503
    server = redis_factory()
    server.stop()
    server.port = redis_port
    server.start()
    time.sleep(1.0)
    assert "emp-monitor" not in client_names(redis_port), "a monitor that gave up must stay away"
    assert service.output().count("redis unreachable (attempt") == 3
    assert "giving up" in service.output()


def test_reconnects_within_its_retries(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, "--redis-retries", "50",
                  "--redis-retry-interval", "0.1", port=port)
    wait_until(lambda: "emp-monitor" in client_names(sandbox_redis_server.port), timeout=5, message="connected")
    sandbox_redis_server.kill()
    sandbox_redis_server.start()
    wait_until(lambda: "emp-monitor" in client_names(sandbox_redis_server.port), timeout=10,
               message="monitor reconnected")
    wait_until(lambda: health(port).json()["redis"]["connections"] >= 2, timeout=5, message="second connection")


def test_fault_no_reconnect(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    service = start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, "--redis-retry-interval",
                            "0.1", port=port,
                            release={"service": "monitor", "version": "1.1.0-noreconnect", "faults": ["no_reconnect"]})
    wait_until(lambda: "emp-monitor" in client_names(sandbox_redis_server.port), timeout=5, message="connected")
    sandbox_redis_server.kill()
    sandbox_redis_server.start()
    wait_until(lambda: "not reconnecting" in service.output(), timeout=5, message="loss noticed")
    time.sleep(0.5)
    assert "emp-monitor" not in client_names(sandbox_redis_server.port)


def test_sigterm_exits_cleanly(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    service = start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, port=port)
    started = time.monotonic()
    assert service.terminate() == 0
    assert time.monotonic() - started < 3
