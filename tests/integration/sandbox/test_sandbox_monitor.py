"""The sandbox monitor: Redis client emp-monitor with limited retries (30 x 1 s by default)."""
from __future__ import annotations

import json
import time

import redis
import requests
from conftest import free_port
from sandbox_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    EVENT_DEADLINE,
    PROMPT_EXIT,
    client_names,
    sandbox_redis_server,
    start_service,
    subscribed,
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
    wait_until(lambda: health(port).status_code == 200, timeout=EVENT_DEADLINE, message="monitor connected")
    assert "emp-monitor" in client_names(sandbox_redis_server.port)
    answer = health(port).json()
    assert answer["redis"]["connected"] is True and answer["redis"]["max_attempts"] == 30
    assert answer["version"] == "1.0.0"
    wait_until(lambda: subscribed(sandbox_redis_server.port), timeout=EVENT_DEADLINE, message="monitor subscribed")
    redis.Redis(port=sandbox_redis_server.port).publish("complete_job", json.dumps({"job_id": "j1"}))
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/api/events", timeout=TIMEOUT).json()["events"],
               timeout=EVENT_DEADLINE, message="event seen")
    assert "EMP monitor" in requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text


def test_gives_up_after_limited_retries(start_service, redis_factory):  # noqa: F811
    redis_port, port = free_port(), free_port()
    service = start_service("sandbox.monitor", "--redis-url", f"redis://127.0.0.1:{redis_port}/0",
                            "--redis-retries", "4", "--redis-retry-interval", "0.15", port=port)
    answer = wait_until(lambda: (h := health(port).json())["redis"]["state"] == "gave_up" and h,
                        timeout=EVENT_DEADLINE, message="monitor gave up")
    assert answer["redis"]["attempts"] == 4
    assert health(port).status_code == 503
    server = redis_factory()
    server.stop()
    server.port = redis_port
    server.start()
    # its Redis thread has ended: a second later (many retry intervals) it has still not come back
    time.sleep(1.0)
    assert "emp-monitor" not in client_names(redis_port), "a monitor that gave up must stay away"
    assert health(port).json()["redis"]["total_attempts"] == 4
    assert service.output().count("redis unreachable (attempt") == 3
    assert "giving up" in service.output()


def test_reconnects_within_its_retries(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, "--redis-retries", "50",
                  "--redis-retry-interval", "0.1", port=port)
    wait_until(lambda: subscribed(sandbox_redis_server.port), timeout=EVENT_DEADLINE, message="subscribed")
    sandbox_redis_server.kill()
    sandbox_redis_server.start()
    wait_until(lambda: subscribed(sandbox_redis_server.port), timeout=EVENT_DEADLINE, message="monitor resubscribed")
    assert "emp-monitor" in client_names(sandbox_redis_server.port)
    wait_until(lambda: health(port).json()["redis"]["connections"] >= 2, timeout=EVENT_DEADLINE,
               message="second connection")


def test_fault_no_reconnect(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    service = start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, "--redis-retry-interval",
                            "0.1", port=port,
                            release={"service": "monitor", "version": "1.1.0-noreconnect", "faults": ["no_reconnect"]})
    # wait for the subscription itself: a kill between the monitor's PING and its SUBSCRIBE is no loss
    # to notice (it subscribes to the restarted server), which made this test fail on a loaded box
    wait_until(lambda: subscribed(sandbox_redis_server.port), timeout=EVENT_DEADLINE, message="subscribed")
    sandbox_redis_server.kill()
    sandbox_redis_server.start()
    wait_until(lambda: "not reconnecting" in service.output(), timeout=EVENT_DEADLINE, message="loss noticed")
    wait_until(lambda: health(port).json()["redis"]["state"] == "gave_up", timeout=EVENT_DEADLINE,
               message="monitor gave up")
    # its Redis thread has ended; a connection it held while giving up is closed by then
    wait_until(lambda: "emp-monitor" not in client_names(sandbox_redis_server.port), timeout=EVENT_DEADLINE,
               message="monitor gone from CLIENT LIST")
    answer = health(port).json()["redis"]
    assert answer["connections"] == 1 and answer["state"] == "gave_up"
    assert not subscribed(sandbox_redis_server.port)


def test_sigterm_exits_cleanly(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    service = start_service("sandbox.monitor", "--redis-url", sandbox_redis_server.url, port=port)
    wait_until(lambda: subscribed(sandbox_redis_server.port), timeout=EVENT_DEADLINE, message="subscribed")
    assert service.terminate(timeout=PROMPT_EXIT) == 0
