"""The sandbox API against the EMP contract, with real clients (requests, websockets, redis-py)
and a real OpenTelemetry SDK exporter feeding a test-owned OTLP receiver."""
from __future__ import annotations

import json
import math
import socket
import time

import pytest
import redis
import requests
import websockets.sync.client
from conftest import free_port
from sandbox_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    EVENT_DEADLINE,
    PROMPT_EXIT,
    client_names,
    module_otlp_sink,
    module_redis,
    otlp_sink,
    sandbox_redis_server,
    start_module_service,
    start_service,
    subscribed,
    wait_until,
)
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri

TIMEOUT = 5
# pylint: disable=redefined-outer-name


def _start_api(starter, redis_server, sink):
    port = free_port()
    service = starter("sandbox.api", "--redis-url", redis_server.url, "--otlp-endpoint",
                      sink.endpoint, "--ws-ping-interval", "0.3", "--redis-backoff-cap", "0.3",
                      port=port, release={"service": "api", "version": "1.0.0", "faults": []})
    service.url = f"http://127.0.0.1:{port}"
    service.redis = redis_server
    return service


@pytest.fixture(scope="module")
def shared_api(start_module_service, module_redis, module_otlp_sink):  # noqa: F811
    """One API for the tests that leave Redis and the process alone."""
    service = _start_api(start_module_service, module_redis, module_otlp_sink)
    yield service
    service.stop()  # before the sink goes away, so the last export does not wait on it


@pytest.fixture
def api(shared_api):
    redis.Redis(port=shared_api.redis.port).flushdb()
    assert shared_api.proc.poll() is None, shared_api.output()
    return shared_api


@pytest.fixture
def own_api(start_service, sandbox_redis_server, otlp_sink):  # noqa: F811
    """A private API for tests that kill Redis or the API."""
    service = _start_api(start_service, sandbox_redis_server, otlp_sink)
    yield service
    service.stop()


def test_health_is_exactly_the_contract(api):
    answer = requests.get(f"{api.url}/health", timeout=TIMEOUT)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"status", "timestamp", "cors", "connections"}
    assert body["status"] == "ok"
    assert set(body["cors"]) == {"origin", "allowedOrigins", "userAgent"} and body["cors"]["origin"] == "no-origin"
    assert set(body["connections"]) == {"monitors", "workers"}
    assert time.time() - time.mktime(time.strptime(body["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) < 3600 * 24


def test_version_reads_release_json(api):
    version = requests.get(f"{api.url}/version", timeout=TIMEOUT).json()
    # the EMP API's shape; faults is sandbox-only (docs/emp-real-contracts.md)
    assert (version["api_version"], version["name"], version["faults"]) == ("1.0.0", "api", [])
    assert set(version) == {"api_version", "name", "description", "node_version", "platform", "arch",
                            "uptime_seconds", "timestamp", "environment", "build_date", "faults"}


def test_submit_job_writes_hash_queue_and_score(api):
    r = redis.Redis(port=api.redis.port, decode_responses=True)
    pubsub = r.pubsub()
    pubsub.subscribe("job_submitted")
    pubsub.get_message(timeout=1)
    before_ms = time.time() * 1000
    answer = requests.post(f"{api.url}/api/jobs", json={
        "service_required": "mock", "priority": 70, "payload": {"prompt": "x"}, "requirements": {"models": []},
        "customer_id": "acme", "max_retries": 2, "ctx": {"k": 1}}, timeout=TIMEOUT)
    after_ms = time.time() * 1000
    assert answer.status_code == 201
    body = answer.json()
    assert body["success"] is True and body["job_id"] and body["message"] and body["timestamp"]
    job = r.hgetall(f"job:{body['job_id']}")
    for field in ("id", "service_required", "priority", "payload", "requirements", "customer_id", "created_at",
                  "status", "retry_count", "max_retries", "workflow_id", "workflow_priority", "workflow_datetime",
                  "current_step", "total_steps", "ctx"):
        assert field in job, field
    assert job["status"] == "pending" and job["priority"] == "70" and json.loads(job["payload"]) == {"prompt": "x"}
    assert job["retry_count"] == "0" and job["max_retries"] == "2" and json.loads(job["ctx"]) == {"k": 1}
    score = r.zscore("jobs:pending", body["job_id"])
    # priority * 1e15 - floor(epoch_ms / 1000), computed here independently
    assert 70 * 1e15 - math.floor(after_ms / 1000) <= score <= 70 * 1e15 - math.floor(before_ms / 1000)
    message = pubsub.get_message(timeout=2)
    assert message and json.loads(message["data"])["job_id"] == body["job_id"]
    pubsub.close()


def test_job_type_alias_and_workflow_score(api):
    r = redis.Redis(port=api.redis.port, decode_responses=True)
    wf_ms = 1_700_000_000_000
    body = {"job_type": "ollama", "priority": 10, "workflow_id": "wf1", "workflow_priority": 80,
            "workflow_datetime": wf_ms}
    answer = requests.post(f"{api.url}/api/jobs", json=body, timeout=TIMEOUT)
    job_id = answer.json()["job_id"]
    assert r.hget(f"job:{job_id}", "service_required") == "ollama"
    assert r.zscore("jobs:pending", job_id) == 80 * 1e15 - math.floor(wf_ms / 1000)


def test_priority_orders_the_queue(api):
    r = redis.Redis(port=api.redis.port, decode_responses=True)
    ids = {p: requests.post(f"{api.url}/api/jobs", json={"service_required": "mock", "priority": p},
                            timeout=TIMEOUT).json()["job_id"] for p in (10, 90, 50)}
    assert r.zrevrange("jobs:pending", 0, -1) == [ids[90], ids[50], ids[10]]


@pytest.mark.parametrize("body, fragment", [
    ("{not json", "Invalid JSON"),
    (json.dumps([1, 2]), "JSON object"),
    (json.dumps({"priority": 5}), "service_required"),
    (json.dumps({"service_required": "mock", "priority": "high"}), "priority"),
    (json.dumps({"service_required": "mock", "priority": True}), "priority"),
    (json.dumps({"service_required": "mock", "payload": "text"}), "payload"),
    (json.dumps({"service_required": "mock", "workflow_datetime": "yesterday"}), "workflow_datetime"),
])
def test_bad_job_bodies_are_400(api, body, fragment):
    answer = requests.post(f"{api.url}/api/jobs", data=body, headers={"Content-Type": "application/json"},
                           timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json()["success"] is False and fragment in answer.json()["error"]


def test_get_job_and_404(api):
    job_id = requests.post(f"{api.url}/api/jobs", json={"service_required": "mock", "payload": {"a": 1}},
                           timeout=TIMEOUT).json()["job_id"]
    answer = requests.get(f"{api.url}/api/jobs/{job_id}", timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.json()["success"] is True and answer.json()["job"]["payload"] == {"a": 1}
    missing = requests.get(f"{api.url}/api/jobs/does-not-exist", timeout=TIMEOUT)
    assert missing.status_code == 404 and {k: v for k, v in missing.json().items() if k != "timestamp"} == {"success": False, "error": "Job not found"}


def test_list_jobs_paging_and_status(api):
    ids = [requests.post(f"{api.url}/api/jobs", json={"service_required": "mock"}, timeout=TIMEOUT).json()["job_id"]
           for _index in range(5)]
    page = requests.get(f"{api.url}/api/jobs", params={"status": "pending", "limit": 2, "offset": 1},
                        timeout=TIMEOUT).json()
    assert page["total"] == 5 and len(page["jobs"]) == 2
    assert {job["id"] for job in page["jobs"]} <= set(ids)
    assert requests.get(f"{api.url}/api/jobs", params={"status": "completed"}, timeout=TIMEOUT).json()["total"] == 0
    everything = requests.get(f"{api.url}/api/jobs", timeout=TIMEOUT).json()
    assert everything["total"] == 5


@pytest.mark.parametrize("params", [{"status": "bogus"}, {"limit": "ten"}, {"limit": 0}, {"offset": -1}])
def test_list_jobs_bad_parameters(api, params):
    assert requests.get(f"{api.url}/api/jobs", params=params, timeout=TIMEOUT).status_code == 400


def test_unknown_route_and_method(api):
    # as the EMP API (Express): an HTML 404 naming the method and path, for an unknown method too (no 405)
    missing = requests.get(f"{api.url}/nope", timeout=TIMEOUT)
    assert missing.status_code == 404 and "<pre>Cannot GET /nope</pre>" in missing.text
    wrong = requests.delete(f"{api.url}/api/jobs", timeout=TIMEOUT)
    assert wrong.status_code == 404 and "<pre>Cannot DELETE /api/jobs</pre>" in wrong.text


def test_malformed_http_is_400(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def test_redis_client_name_and_reconnect_after_restart(own_api):
    api = own_api
    assert "emp-api" in client_names(api.redis.port)
    api.redis.kill()
    api.redis.start()
    wait_until(lambda: "emp-api" in client_names(api.redis.port), timeout=EVENT_DEADLINE, message="emp-api back in CLIENT LIST")
    # and the API serves Redis-backed requests again (the library is not needed for submission)
    wait_until(lambda: requests.post(f"{api.url}/api/jobs", json={"service_required": "mock"},
                                     timeout=TIMEOUT).status_code == 201, timeout=EVENT_DEADLINE, message="submission works")


def test_health_does_not_touch_redis(own_api):
    api = own_api
    api.redis.kill()
    assert requests.get(f"{api.url}/health", timeout=TIMEOUT).status_code == 200
    answer = requests.post(f"{api.url}/api/jobs", json={"service_required": "mock"}, timeout=TIMEOUT)
    assert answer.status_code == 503 and answer.json()["success"] is False


def test_waits_for_redis_before_listening(start_service, redis_factory, tmp_path):  # noqa: F811
    redis_port = free_port()
    api_port = free_port()
    service = start_service("sandbox.api", "--redis-url", f"redis://127.0.0.1:{redis_port}/0",
                            port=api_port, wait=False)
    wait_until(lambda: service.output().count("retrying") >= 2, timeout=EVENT_DEADLINE, message="API retrying Redis")
    assert service.proc.poll() is None, service.output()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", api_port), timeout=0.2).close()
    server = redis_factory()
    server.stop()
    server.port = redis_port
    server.start()
    service.wait_listening()
    assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=TIMEOUT).status_code == 200


def test_traces_and_metrics_reach_otlp(api, module_otlp_sink):  # noqa: F811
    answer = requests.post(f"{api.url}/api/jobs", json={"service_required": "mock"}, timeout=TIMEOUT)
    trace_id = answer.headers["traceparent"].split("-")[1]

    def span_names() -> set[str]:
        return {s.name for name, s in module_otlp_sink.spans() if name == "emp-api" and s.trace_id.hex() == trace_id}

    # the child span may be exported in an earlier batch than its parent: wait for both
    wait_until(lambda: span_names() >= {"POST /api/jobs", "redis submit_job"}, message="API spans exported")
    wait_until(lambda: ("emp-api", "http.server.request.duration") in module_otlp_sink.metric_names(),
               message="API metrics exported")


def test_incoming_traceparent_is_continued(api):
    parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    answer = requests.get(f"{api.url}/health", headers={"traceparent": f"00-{parent_trace}-00f067aa0ba902b7-01"},
                          timeout=TIMEOUT)
    assert answer.headers["traceparent"].split("-")[1] == parent_trace


def test_websocket_monitor_receives_events_and_counts(api):
    with websockets.sync.client.connect(f"ws://127.0.0.1:{api.port}/ws/monitor/m1", open_timeout=TIMEOUT) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"
        assert requests.get(f"{api.url}/health", timeout=TIMEOUT).json()["connections"]["monitors"] == 1
        job_id = requests.post(f"{api.url}/api/jobs", json={"service_required": "mock"},
                               timeout=TIMEOUT).json()["job_id"]
        event = json.loads(ws.recv(timeout=TIMEOUT))
        assert event["type"] == "job_submitted" and event["data"]["job_id"] == job_id
    wait_until(lambda: requests.get(f"{api.url}/health", timeout=TIMEOUT).json()["connections"]["monitors"] == 0,
               timeout=EVENT_DEADLINE, message="monitor count back to 0")


def test_websocket_client_messages(api):
    r = redis.Redis(port=api.redis.port, decode_responses=True)
    with websockets.sync.client.connect(f"ws://127.0.0.1:{api.port}/ws/client/c1", open_timeout=TIMEOUT) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"
        ws.send(json.dumps({"type": "submit_job", "service_required": "mock", "priority": 60}))
        submitted = json.loads(ws.recv(timeout=TIMEOUT))
        assert submitted["type"] == "job_submitted"
        job_id = submitted["job_id"]
        assert r.hget(f"job:{job_id}", "priority") == "60"
        ws.send(json.dumps({"type": "subscribe_progress", "job_id": job_id}))
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"type": "subscribed", "job_id": job_id}
        r.publish("update_job_progress", json.dumps({"job_id": job_id, "progress": 50}))
        progress = json.loads(ws.recv(timeout=TIMEOUT))
        assert progress["type"] == "update_job_progress" and progress["data"]["progress"] == 50
        ws.send(json.dumps({"type": "cancel_job", "job_id": job_id}))
        messages = [json.loads(ws.recv(timeout=TIMEOUT)) for _index in range(2)]  # answer + job_cancelled event
        answer = next(m for m in messages if m["type"] == "job_cancelled" and "success" in m)
        assert answer["success"] is True
        assert r.hget(f"job:{job_id}", "status") == "cancelled" and r.zscore("jobs:pending", job_id) is None
        ws.send("not json")
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "error"
        ws.send(json.dumps({"type": "warp_drive"}))
        assert "unknown message type" in json.loads(ws.recv(timeout=TIMEOUT))["error"]


def test_websocket_unknown_path_is_404(api):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        websockets.sync.client.connect(f"ws://127.0.0.1:{api.port}/ws/nothing/x", open_timeout=TIMEOUT)
    assert info.value.response.status_code == 404


def raw_ws(port: int, path: str) -> tuple[socket.socket, ClientProtocol]:
    """A WebSocket client that never answers pings on its own (websockets' sans-I/O protocol)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
    protocol.send_request(protocol.connect())
    for data in protocol.data_to_send():
        sock.sendall(data)
    while protocol.handshake_exc is None and not protocol.events_received():
        protocol.receive_data(sock.recv(65536))
    return sock, protocol


def test_server_pings_and_drops_silent_peers(api):
    # the fixture runs the API with --ws-ping-interval 0.3 (default 5 s, as the contract says)
    sock, protocol = raw_ws(api.port, "/ws/monitor/silent")
    pings, closed_at, started = 0, None, time.monotonic()
    while time.monotonic() - started < EVENT_DEADLINE and closed_at is None:
        data = sock.recv(65536)
        if not data:
            closed_at = time.monotonic()
            break
        protocol.receive_data(data)
        for frame in protocol.events_received():
            if getattr(frame, "opcode", None) is Opcode.PING:
                pings += 1
            elif getattr(frame, "opcode", None) is Opcode.CLOSE:
                closed_at = time.monotonic()
        protocol.data_to_send()  # deliberately never sent: no pongs
    sock.close()
    assert pings == 3, f"expected 3 unanswered pings before the drop, saw {pings}"
    # three 0.3 s ping intervals at least; a loaded box may only make the drop later
    assert closed_at is not None and closed_at - started >= 0.9


def test_websocket_auth_token(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    start_service("sandbox.api", "--redis-url", sandbox_redis_server.url, "--auth-token", "s3cret", port=port)
    url = f"http://127.0.0.1:{port}"
    assert requests.post(f"{url}/api/jobs", json={"service_required": "mock"}, timeout=TIMEOUT).status_code == 401
    assert requests.post(f"{url}/api/jobs", json={"service_required": "mock"}, timeout=TIMEOUT,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.post(f"{url}/api/jobs", json={"service_required": "mock"}, timeout=TIMEOUT,
                         headers={"Authorization": "Bearer s3cret"}).status_code == 201
    assert requests.get(f"{url}/api/jobs", timeout=TIMEOUT, headers={"auth-token": "s3cret"}).status_code == 200
    assert requests.get(f"{url}/health", timeout=TIMEOUT).status_code == 200
    with pytest.raises(websockets.exceptions.InvalidStatus):
        websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws/client/c1", open_timeout=TIMEOUT)
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws/client/c1?token=s3cret",
                                        open_timeout=TIMEOUT) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"


def test_sigterm_exits_cleanly(own_api):
    api = own_api
    with websockets.sync.client.connect(f"ws://127.0.0.1:{api.port}/ws/monitor/m1", open_timeout=TIMEOUT) as ws:
        ws.recv(timeout=TIMEOUT)
        # terminate() waits PROMPT_EXIT at most: a server stuck on its open websocket fails here
        assert api.terminate(timeout=PROMPT_EXIT) == 0
    assert "Traceback" not in api.output()


# ---------------------------------------------------------------------- faults
def test_fault_slow(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    start_service("sandbox.api", "--redis-url", sandbox_redis_server.url, port=port,
                  release={"service": "api", "version": "1.1.0-slow", "faults": ["slow"]})
    started = time.perf_counter()
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_fault_no_redis_client(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    start_service("sandbox.api", "--redis-url", sandbox_redis_server.url, port=port,
                  release={"service": "api", "version": "1.1.0-noredis", "faults": ["no_redis_client"]})
    assert requests.post(f"http://127.0.0.1:{port}/api/jobs", json={"service_required": "mock"},
                         timeout=TIMEOUT).status_code == 201
    assert "emp-api" not in client_names(sandbox_redis_server.port)


def test_fault_no_reconnect(start_service, sandbox_redis_server):  # noqa: F811
    port = free_port()
    service = start_service("sandbox.api", "--redis-url", sandbox_redis_server.url, port=port,
                            release={"service": "api", "version": "1.1.0-noreconnect", "faults": ["no_reconnect"]})
    assert "emp-api" in client_names(sandbox_redis_server.port)
    # the loss to notice is that of the pub/sub connection: kill Redis only once it is up
    wait_until(lambda: subscribed(sandbox_redis_server.port), message="the API subscribed")
    sandbox_redis_server.kill()
    sandbox_redis_server.start()
    wait_until(lambda: "not reconnecting" in service.output(), timeout=EVENT_DEADLINE, message="the API noticed the loss")
    time.sleep(1.0)
    assert "emp-api" not in client_names(sandbox_redis_server.port)
    assert requests.post(f"http://127.0.0.1:{port}/api/jobs", json={"service_required": "mock"},
                         timeout=TIMEOUT).status_code == 503


def test_fault_no_telemetry(start_service, sandbox_redis_server, otlp_sink):  # noqa: F811
    port = free_port()
    service = start_service("sandbox.api", "--redis-url", sandbox_redis_server.url, "--otlp-endpoint",
                            otlp_sink.endpoint, port=port,
                            release={"service": "api", "version": "1.1.0-notelemetry", "faults": ["no_telemetry"]})
    answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT)
    assert "traceparent" not in answer.headers
    # the API flushes all its telemetry when it stops: after that, nothing can still come
    assert service.terminate() == 0
    assert otlp_sink.requests == []


def test_bad_release_json_fails_start(start_service, sandbox_redis_server, tmp_path):  # noqa: F811
    release_dir = tmp_path / "bad-release"
    release_dir.mkdir()
    (release_dir / "release.json").write_text('{"faults": "slow"}')
    service = start_service("sandbox.api", "--redis-url", sandbox_redis_server.url, "--release-dir",
                            str(release_dir), port=free_port(), wait=False)
    assert service.proc.wait(timeout=10) != 0
    assert "release.json" in service.output()


def test_refuses_non_loopback_and_missing_redis_url(start_service):  # noqa: F811
    # with --port (the sandbox's own flags); without it the EMP variables apply (test_sandbox_contract.py)
    bad_host = start_service("sandbox.api", "--port", "0", "--host", "0.0.0.0", "--redis-url", "redis://127.0.0.1:1/0",
                             wait=False)
    assert bad_host.proc.wait(timeout=10) == 2 and "loopback" in bad_host.output()
    no_url = start_service("sandbox.api", "--port", "0", wait=False)
    assert no_url.proc.wait(timeout=10) == 2 and "--redis-url" in no_url.output()
