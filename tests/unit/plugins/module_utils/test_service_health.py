"""Services' own health endpoints as reconnect evidence (redis_health service_health), against real
answers on loopback: expected values at dotted paths; a missing path, another status, an answer that
is not JSON or a closed port is a problem, never a pass."""
from __future__ import annotations

import json

from ansible_collections.emp.deploy.plugins.module_utils import _service_health as health
from misbehaving_http import MisbehavingServer
from servers import free_port

WEBHOOK_HEALTH = {"status": "ok", "service": "webhook-service", "redis": {"connected": True, "status": "ready"}}
DOWN_HEALTH = {"status": "ok", "service": "webhook-service", "redis": {"connected": False, "status": "reconnecting"}}


def service(url: str, **expect) -> dict:
    return {"name": "webhook", "url": url, "expect": expect, "headers": {}}


def json_answer(document: dict, status: int = 200) -> tuple:
    return status, "application/json", json.dumps(document).encode()


def test_value_at_tells_missing_from_null():
    assert health.value_at({"redis": {"connected": True}}, "redis.connected") is True
    assert health.value_at({"redis": {"connected": None}}, "redis.connected") is None
    assert health.value_at({"redis": {}}, "redis.connected") is health._MISSING
    assert health.value_at({"redis": "up"}, "redis.connected") is health._MISSING


def test_a_connected_service_is_healthy_and_shows_what_was_seen():
    with MisbehavingServer([("GET", "/health", json_answer(WEBHOOK_HEALTH))]) as server:
        results, problems = health.check_services([service(server.url + "/health", **{"redis.connected": True})], 5)
    assert problems == []
    assert results["webhook"]["healthy"] and results["webhook"]["redis.connected"] is True
    assert results["webhook"]["status_code"] == 200


def test_status_ok_is_not_enough_when_redis_is_down():
    # the real webhook service answers status "ok" whatever its Redis does: only redis.connected tells
    with MisbehavingServer([("GET", "/health", json_answer(DOWN_HEALTH))]) as server:
        results, problems = health.check_services(
            [service(server.url + "/health", status="ok", **{"redis.connected": True})], 5)
    assert problems == ["service 'webhook' health has redis.connected=false, expected true"]
    assert not results["webhook"]["healthy"]


def test_missing_path_other_status_and_not_json_are_problems():
    rules = [("GET", "/bare", json_answer({"status": "ok"})), ("GET", "/down", json_answer(DOWN_HEALTH, 503)),
             ("GET", "/html", (200, "text/html", b"<html>"))]
    with MisbehavingServer(rules) as server:
        _results, problems = health.check_services([
            {**service(server.url + "/bare", **{"redis.connected": True}), "name": "bare"},
            {**service(server.url + "/down"), "name": "down"},
            {**service(server.url + "/html", status="ok"), "name": "html"}], 5)
    assert problems == ["service 'bare' health lacks 'redis.connected' (expected true)",
                        "service 'down' health answered HTTP 503",
                        "service 'html' health answer is not JSON"]


def test_an_unreachable_service_is_a_problem_naming_it():
    port = free_port()
    results, problems = health.check_services([service(f"http://127.0.0.1:{port}/health")], 2)
    assert len(problems) == 1 and problems[0].startswith(f"service 'webhook' health: cannot reach the service at 127.0.0.1:{port}")
    assert results["webhook"] == {"url": f"127.0.0.1:{port}/health", "healthy": False, "status_code": None}


def test_option_problems():
    assert health.service_health_problem([service("http://a/health"), service("http://b/health")]) == \
        "service_health names webhook more than once"
    assert health.service_health_problem([service("ftp://a/health")]).startswith("service_health 'webhook': the URL scheme")
    assert health.service_health_problem([service("http://a/health")]) is None
