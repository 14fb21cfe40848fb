"""Contract tests of the sandbox webhook service (docs/emp-contracts.md, "Webhook service").

Real processes and sockets: a private redis-server, ``python -m sandbox.webhook``, receivers on
loopback. Signatures are checked with Python's hmac here, not with the service's signing code.
"""
from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest
import redis
import requests

from sandbox.webhook.launch import WebhookService, write_release
from sandbox_fixtures import EVENT_DEADLINE, wait_until

EVENT_FIELDS = {"event_type", "event_id", "timestamp", "webhook_id", "data"}


# ---------------------------------------------------------------------------- helpers
class Receiver:
    """Records every request; ``answer(event_id, attempt)`` decides the status (200 by default)."""

    def __init__(self, answer: Callable[[str, int], int] | None = None):
        self.answer = answer or (lambda event_id, attempt: 200)
        self.requests: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event_id = self.headers.get("X-Event-ID", "")
                with outer.lock:
                    outer.attempts[event_id] = outer.attempts.get(event_id, 0) + 1
                    status = outer.answer(event_id, outer.attempts[event_id])
                    outer.requests.append({"t": time.monotonic(), "path": self.path, "raw": raw,
                                           "headers": {k.lower(): v for k, v in self.headers.items()},
                                           "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait_for(self, count: int, timeout: float = EVENT_DEADLINE) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries, got {len(self.requests)}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OtlpSink:
    """Just enough of an OTLP/HTTP collector: records the span names of /v1/traces posts."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        self.spans: list[tuple[str, str]] = []  # (service.name, span name)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(raw)
                    for resource_spans in request.resource_spans:
                        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        for scope in resource_spans.scope_spans:
                            outer.spans += [(attrs.get("service.name", ""), s.name) for s in scope.spans]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # loopback only, never a proxy from the environment
    yield session
    session.close()


@pytest.fixture
def receiver():
    created: list[Receiver] = []

    def make(answer=None) -> Receiver:
        created.append(Receiver(answer))
        return created[-1]
    yield make
    for item in created:
        item.close()


@pytest.fixture
def start_service(redis_factory, tmp_path):
    services: list[WebhookService] = []

    def start(version: str = "1.1.0", faults: list[str] | None = None, redis_server=None, **kwargs) -> WebhookService:
        server = redis_server or redis_factory()
        release = write_release(tmp_path / f"release-{len(services)}", version, faults)
        service = WebhookService(server.url, release, log_file=tmp_path / f"webhook-{len(services)}.log", **kwargs)
        service.redis = server
        services.append(service.start(timeout=EVENT_DEADLINE))
        return service
    yield start
    for service in services:
        assert service.stop() == 0, "the service must exit cleanly on SIGTERM"


def rdb(service) -> redis.Redis:
    return redis.Redis.from_url(service.redis.url, decode_responses=True)


def register(http, service, **body) -> dict:
    answer = http.post(f"{service.url}/webhooks", json=body, timeout=5)
    assert answer.status_code == 201, answer.text
    payload = answer.json()
    assert payload["success"] is True
    return payload["data"]


def hmac_hex(secret: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- health
def test_health_matches_the_contract(start_service, http):
    service = start_service(version="1.2.3")
    health = http.get(f"{service.url}/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["service"] == "webhook-service"
    assert health["version"] == "1.2.3"  # from release.json
    assert health["redis"] == {"connected": True, "status": "ready"}
    assert set(health["processor"]) >= {"active_webhooks", "total_deliveries", "failed_deliveries"}


def test_unknown_route_answers_the_404_handler(start_service, http):
    service = start_service()
    answer = http.get(f"{service.url}/nope", timeout=5)
    assert answer.status_code == 404
    assert answer.json()["success"] is False and answer.json()["path"] == "/nope"


# ---------------------------------------------------------------------------- registry
def test_crud_round_trip_in_the_contract_keys(start_service, http, receiver):
    service = start_service()
    r = rdb(service)
    hook = register(http, service, url=receiver().url, events=["complete_job", "job_failed"], secret="s1",
                    filters={"job_types": ["mock"]}, retry_config={"max_attempts": 5, "initial_delay_ms": 10})
    wid = hook["id"]
    assert hook["events"] == ["complete_job", "job_failed"] and hook["active"] is True
    assert hook["retry_config"] == {"max_attempts": 5, "initial_delay_ms": 10, "backoff_multiplier": 2,
                                    "max_delay_ms": 30000}
    assert json.loads(r.hget("webhooks:registry", wid))["url"] == hook["url"]
    assert r.sismember("webhooks:active", wid)

    listed = http.get(f"{service.url}/webhooks", timeout=5).json()
    assert listed["success"] is True and listed["count"] == 1 and listed["data"][0]["id"] == wid
    assert http.get(f"{service.url}/webhooks/{wid}", timeout=5).json()["data"]["filters"] == {"job_types": ["mock"]}

    updated = http.put(f"{service.url}/webhooks/{wid}", json={"active": False, "events": ["job_submitted"]}, timeout=5)
    assert updated.status_code == 200 and updated.json()["data"]["events"] == ["job_submitted"]
    assert not r.sismember("webhooks:active", wid)

    deleted = http.delete(f"{service.url}/webhooks/{wid}", timeout=5)
    assert deleted.json() == {"success": True, "message": "Webhook deleted successfully"}
    assert r.hlen("webhooks:registry") == 0 and r.scard("webhooks:active") == 0
    missing = http.get(f"{service.url}/webhooks/{wid}", timeout=5)
    assert missing.status_code == 404 and missing.json() == {"success": False, "error": "Webhook not found"}


@pytest.mark.parametrize("body, error", [
    ({"events": ["complete_job"]}, "URL is required"),
    ({"url": "http://127.0.0.1:1/x", "events": []}, "Events array is required and must not be empty"),
    ({"url": "http://127.0.0.1:1/x"}, "Events array is required and must not be empty"),
    ({"url": "not a url", "events": ["complete_job"]}, "Invalid URL format"),
    ({"url": "http://127.0.0.1:1/x", "events": ["no_such_event"]}, "Unknown event type(s): no_such_event"),
    ({"url": "http://127.0.0.1:1/x", "events": ["complete_job"], "retry_config": {"max_attempts": 0}},
     "retry_config.max_attempts must be a number >= 1"),
])
def test_bad_registrations_answer_400(start_service, http, body, error):
    service = start_service()
    answer = http.post(f"{service.url}/webhooks", json=body, timeout=5)
    assert answer.status_code == 400
    assert answer.json() == {"success": False, "error": error}
    assert rdb(service).hlen("webhooks:registry") == 0


def test_malformed_json_and_unknown_ids(start_service, http):
    service = start_service()
    bad = http.post(f"{service.url}/webhooks", data=b"{nope", headers={"Content-Type": "application/json"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["success"] is False
    for method, path in (("DELETE", "/webhooks/wh_x"), ("POST", "/webhooks/wh_x/test"),
                         ("POST", "/webhooks/wh_x/reconnect"), ("GET", "/webhooks/wh_x/stats"),
                         ("PUT", "/webhooks/wh_x")):
        answer = http.request(method, f"{service.url}{path}", json={}, timeout=5)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["success"] is False


def test_default_retry_config_uses_the_flag(start_service, http):
    service = start_service(initial_delay_ms=7)
    hook = register(http, service, url="http://127.0.0.1:9/x", events=["complete_job"])
    assert hook["retry_config"] == {"max_attempts": 3, "initial_delay_ms": 7, "backoff_multiplier": 2,
                                    "max_delay_ms": 30000}
    # Without the flag the contract's default first delay is 1000 ms.
    default = start_service(initial_delay_ms=1000)
    assert register(http, default, url="http://127.0.0.1:9/x", events=["complete_job"])[
        "retry_config"]["initial_delay_ms"] == 1000


# ---------------------------------------------------------------------------- delivery
def test_signed_delivery_matches_the_contract(start_service, http, receiver):
    service = start_service()
    sink = receiver()
    hook = register(http, service, url=sink.url, events=["complete_job", "job_submitted"], secret="top-secret")
    answer = http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    assert answer.json() == {"success": True, "message": "Test webhook sent successfully"}
    deliveries = sink.wait_for(2)  # one test event per subscribed event type
    assert sorted(json.loads(d["raw"])["event_type"] for d in deliveries) == ["complete_job", "job_submitted"]
    for delivery in deliveries:
        body = json.loads(delivery["raw"])
        headers = delivery["headers"]
        assert EVENT_FIELDS <= set(body) and isinstance(body["timestamp"], int)
        assert body["webhook_id"] == hook["id"] and "job_id" in body["data"]
        assert headers["user-agent"] == "EMP-Job-Queue-Webhook/1.0"
        assert headers["content-type"] == "application/json"
        assert headers["x-webhook-event"] == body["event_type"]
        assert headers["x-webhook-id"] == hook["id"]
        assert headers["x-event-id"] == body["event_id"]
        assert headers["x-webhook-signature"] == "sha256=" + hmac_hex("top-secret", delivery["raw"])
        assert headers["x-webhook-signature"] != "sha256=" + hmac_hex("wrong-secret", delivery["raw"])


def test_no_secret_no_signature(start_service, http, receiver):
    service = start_service()
    sink = receiver()
    hook = register(http, service, url=sink.url, events=["complete_job"])
    http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    assert "x-webhook-signature" not in sink.wait_for(1)[0]["headers"]


def assert_backed_off(r, hook_id: str, received: list[dict], delays_ms: list[int]) -> None:
    """The service scheduled exactly these retry delays (its attempt records say so) and really waited
    them out between the requests the receiver got. Only lower bounds on the measured gaps: a loaded
    machine may add any delay, never remove one."""
    records = sorted((json.loads(raw) for raw in r.lrange(f"webhooks:attempts:{hook_id}", 0, -1)),
                     key=lambda record: record["attempt_number"])
    scheduled = [record["next_retry_at"] - record["timestamp"] for record in records[:-1]]
    # as the EMP service stores attempts, the last one (no retry) has no next_retry_at at all
    assert scheduled == delays_ms and "next_retry_at" not in records[-1], records
    gaps = [(b["t"] - a["t"]) * 1000 for a, b in zip(received, received[1:])]
    assert all(gap >= delay - 10 for gap, delay in zip(gaps, delays_ms, strict=True)), (gaps, delays_ms)


def test_retries_keep_the_event_id_and_back_off(start_service, http, receiver):
    service = start_service()
    sink = receiver(lambda event_id, attempt: 500 if attempt <= 2 else 200)
    hook = register(http, service, url=sink.url, events=["complete_job"],
                    retry_config={"max_attempts": 3, "initial_delay_ms": 150, "backoff_multiplier": 2})
    http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    attempts = sink.wait_for(3)
    assert len({a["headers"]["x-event-id"] for a in attempts}) == 1
    assert len({a["raw"] for a in attempts}) == 1  # the same body, so the same signature
    r = rdb(service)
    wait_until(lambda: r.llen("webhooks:delivery_log") == 1)
    assert_backed_off(r, hook["id"], attempts, [150, 300])
    stats = http.get(f"{service.url}/webhooks/{hook['id']}/stats", timeout=5).json()["data"]
    assert stats["total_attempts"] == 3 and stats["successful_deliveries"] == 1 and stats["failed_deliveries"] == 0
    answer = http.get(f"{service.url}/webhooks/{hook['id']}/deliveries?limit=10", timeout=5).json()
    assert (answer["data"]["webhook_id"], answer["data"]["total_count"], answer["limit"]) == (hook["id"], 3, 10)
    history = answer["data"]["attempts"]
    assert [a["attempt_number"] for a in history] == [3, 2, 1]  # newest first
    assert [a["response_status"] for a in history] == [200, 500, 500]
    assert r.llen(f"webhooks:attempts:{hook['id']}") == 3
    recent = http.get(f"{service.url}/deliveries/recent", timeout=5).json()["data"]
    assert recent[0]["attempts"] == 3 and recent[0]["success"] is True


def test_retry_delays_are_capped(start_service, http, receiver):
    service = start_service()
    sink = receiver(lambda event_id, attempt: 500)
    hook = register(http, service, url=sink.url, events=["complete_job"],
                    retry_config={"max_attempts": 4, "initial_delay_ms": 100, "backoff_multiplier": 3,
                                  "max_delay_ms": 150})
    http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    attempts = sink.wait_for(4)
    r = rdb(service)
    wait_until(lambda: r.llen("webhooks:delivery_log") == 1)
    assert_backed_off(r, hook["id"], attempts, [100, 150, 150])
    assert json.loads(r.lindex("webhooks:delivery_log", 0))["success"] is False


def test_ten_permanent_failures_disconnect_and_reconnect_restores(start_service, http, receiver):
    service = start_service()
    sink = receiver(lambda event_id, attempt: 503)
    hook = register(http, service, url=sink.url, events=["complete_job"], retry_config={"max_attempts": 1})
    r = rdb(service)
    for _attempt in range(10):
        http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    wait_until(lambda: json.loads(r.hget("webhooks:registry", hook["id"])).get("disconnected") is True)
    assert not r.sismember("webhooks:active", hook["id"])
    http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    time.sleep(0.2)
    assert len(sink.requests) == 10  # a disconnected webhook gets nothing
    answer = http.post(f"{service.url}/webhooks/{hook['id']}/reconnect", timeout=5)
    assert answer.json()["success"] is True
    assert r.sismember("webhooks:active", hook["id"])
    http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    sink.wait_for(11)


def test_pubsub_events_are_delivered_with_filters(start_service, http, receiver):
    service = start_service()
    r = rdb(service)
    mock_sink, other_sink = receiver(), receiver()
    mock_hook = register(http, service, url=mock_sink.url, events=["job_submitted", "complete_job", "cancel_job"],
                         filters={"job_types": ["mock"]}, secret="k")
    register(http, service, url=other_sink.url, events=["job_submitted"], filters={"job_types": ["comfyui"]})
    wait_until(lambda: any(c.get("name") == "emp-webhook" and c.get("cmd") == "subscribe"
                           for c in r.client_list()))
    r.hset("job:j-1", mapping={"id": "j-1", "service_required": "mock", "priority": 50})
    r.publish("job_submitted", json.dumps({"job_id": "j-1", "priority": 50}))  # no type: looked up in job:j-1
    r.publish("complete_job", json.dumps({"job_id": "j-1", "worker_id": "w-1", "result": {"ok": True}}))
    r.publish("job_cancelled", json.dumps({"job_id": "j-1"}))
    r.publish("worker_status", json.dumps({"worker_id": "w-1", "status": "idle"}))  # not subscribed
    deliveries = mock_sink.wait_for(3)
    bodies = [json.loads(d["raw"]) for d in deliveries]
    assert sorted(b["event_type"] for b in bodies) == ["cancel_job", "complete_job", "job_submitted"]
    assert all(b["data"]["job_id"] == "j-1" and b["webhook_id"] == mock_hook["id"] for b in bodies)
    assert all(d["headers"]["x-webhook-signature"] == "sha256=" + hmac_hex("k", d["raw"]) for d in deliveries)
    time.sleep(0.3)
    assert other_sink.requests == []  # filtered out: the job is of type mock
    assert len(mock_sink.requests) == 3


# ---------------------------------------------------------------------------- test receivers
def test_test_receivers_record_and_clear(start_service, http):
    service = start_service()
    created = http.post(f"{service.url}/test-receivers", timeout=5)
    assert created.status_code == 201
    receiver_data = created.json()["data"]
    assert receiver_data["url"] == f"{service.url}/test-receivers/{receiver_data['id']}/webhook"
    hook = register(http, service, url=receiver_data["url"], events=["complete_job"], secret="abc")
    http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
    http.put(receiver_data["url"] + "?x=1", data=b"plain", timeout=5)
    listing = http.get(f"{service.url}/test-receivers/{receiver_data['id']}/requests", timeout=5).json()["data"]
    assert listing["total_requests"] == 2
    put, post = listing["requests"]  # newest first
    assert put["method"] == "PUT" and put["query"] == {"x": "1"} and put["body"] == "plain"
    assert post["body"]["event_type"] == "complete_job"
    assert post["headers"]["x-webhook-signature"] == "sha256=" + hmac_hex("abc", post["raw_body"].encode())
    assert http.get(f"{service.url}/test-receivers", timeout=5).json()["data"][0]["request_count"] == 2
    cleared = http.delete(f"{service.url}/test-receivers/{receiver_data['id']}/requests", timeout=5).json()
    assert cleared["cleared_count"] == 2
    assert http.get(f"{service.url}/test-receivers/nope/requests", timeout=5).status_code == 404
    assert http.post(f"{service.url}/test-receivers/nope/webhook", json={}, timeout=5).status_code == 404


def test_test_receivers_keep_at_most_100_requests(start_service, http):
    service = start_service()
    receiver_data = http.post(f"{service.url}/test-receivers", timeout=5).json()["data"]
    for i in range(105):
        http.post(receiver_data["url"], json={"i": i}, timeout=5)
    listing = http.get(f"{service.url}/test-receivers/{receiver_data['id']}/requests?limit=100",
                       timeout=5).json()["data"]
    assert listing["total_requests"] == 100 and listing["requests"][0]["body"] == {"i": 104}


# ---------------------------------------------------------------------------- faults and Redis
def test_routes_404_fault(start_service, http):
    service = start_service(version="1.1.0-404", faults=["routes_404"])
    health = http.get(f"{service.url}/health", timeout=5)
    assert health.status_code == 200 and health.json()["version"] == "1.1.0-404"
    for method, path in (("POST", "/webhooks"), ("GET", "/webhooks"), ("GET", "/stats/summary"),
                         ("POST", "/test-receivers"), ("GET", "/deliveries/recent")):
        answer = http.request(method, f"{service.url}{path}", timeout=5,
                              json={"url": "http://127.0.0.1:9/", "events": ["complete_job"]})
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "Endpoint not found"
    assert rdb(service).hlen("webhooks:registry") == 0


def test_client_name_and_no_redis_client_fault(start_service, redis_factory):
    server = redis_factory()
    start_service(redis_server=server)
    start_service(redis_server=server, faults=["no_redis_client"])
    names = [c.get("name") for c in redis.Redis.from_url(server.url, decode_responses=True).client_list()]
    assert names.count("emp-webhook") == 2  # commands + pub/sub of the good release; none of the faulty one
    assert names.count("") >= 2


def test_reconnects_after_a_redis_restart(start_service, http, receiver):
    service = start_service()
    sink = receiver()
    register(http, service, url=sink.url, events=["job_failed"])
    service.redis.stop()
    wait_until(lambda: http.get(f"{service.url}/health", timeout=5).json()["redis"]["connected"] is False)
    service.redis.start()  # same port, empty data: the registry is gone with the old process
    wait_until(lambda: http.get(f"{service.url}/health", timeout=5).json()["redis"] == {
        "connected": True, "status": "ready"})
    hook = register(http, service, url=sink.url, events=["job_failed"])
    r = rdb(service)
    wait_until(lambda: any(c.get("name") == "emp-webhook" and c.get("cmd") == "subscribe"
                           for c in r.client_list()))
    r.publish("job_failed", json.dumps({"job_id": "j-9", "error": "boom"}))
    body = json.loads(sink.wait_for(1)[0]["raw"])
    assert body["webhook_id"] == hook["id"] and body["data"]["job_id"] == "j-9"


def test_no_reconnect_fault_stays_down(start_service, http):
    service = start_service(faults=["no_reconnect"])
    assert http.get(f"{service.url}/health", timeout=5).json()["redis"]["connected"] is True
    service.redis.stop()
    service.redis.start()
    wait_until(lambda: http.get(f"{service.url}/health", timeout=5).json()["redis"]["status"] == "end")
    time.sleep(0.5)
    health = http.get(f"{service.url}/health", timeout=5).json()
    # as the EMP service: status stays "ok", redis.connected tells the outage
    assert health["redis"] == {"connected": False, "status": "end"} and health["status"] == "ok"
    answer = http.get(f"{service.url}/webhooks", timeout=5)
    assert answer.status_code == 500 and answer.json()["error"] == "Internal server error"


@pytest.mark.parametrize("faults, expect_spans", [([], True), (["no_telemetry"], False)])
def test_telemetry_export(start_service, http, receiver, faults, expect_spans):
    sink = OtlpSink()
    service = None
    try:
        service = start_service(faults=faults, otlp_endpoint=sink.url)
        hook = register(http, service, url=receiver().url, events=["complete_job"])
        http.post(f"{service.url}/webhooks/{hook['id']}/test", timeout=5)
        if expect_spans:
            wait_until(lambda: ("emp-webhook", "webhook.delivery") in sink.spans, timeout=EVENT_DEADLINE)
            assert ("emp-webhook", "POST /webhooks") in sink.spans
        else:
            # a service flushes all its telemetry when it stops: after that, nothing can still come
            assert service.stop() == 0
            assert sink.spans == []
    finally:
        if service is not None:
            assert service.stop() == 0  # while the sink still listens: no export retries at exit
        sink.close()


def test_start_order_waits_for_redis(redis_factory, tmp_path, http):
    """Redis first: the port stays closed until Redis answers, then everything works."""
    server = redis_factory()
    server.stop()
    service = WebhookService(server.url, write_release(tmp_path / "rel"), log_file=tmp_path / "w.log")
    proc_holder = {}

    def start_later():
        time.sleep(0.8)
        server.start()
        proc_holder["started"] = True
    threading.Thread(target=start_later, daemon=True).start()
    try:
        service.start(timeout=15)
        assert proc_holder.get("started") is True  # it could not listen before Redis was up
        assert service.health()["redis"]["connected"] is True
        assert http.get(f"{service.url}/webhooks", timeout=5).json()["count"] == 0
    finally:
        assert service.stop() == 0
    assert "listening" in Path(tmp_path / "w.log").read_text()
