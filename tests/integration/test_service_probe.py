"""emp.deploy.service_probe through real ansible-playbook runs against real servers:

- the sandbox API (python -m sandbox.api, private redis-server) with an auth token and WebSocket pings
  every 0.3 s: /health, /ws/monitor/{id} held open (the API drops a peer after 3 unanswered pings, so a
  hold of several ping intervals without a drop proves the probe answers them);
- a small HTTP server written here whose routes answer slowly, fail every other request, or return a
  degraded or non-JSON health body;
- tests/misbehaving_http.py for a body dripped one byte a second (the per-request deadline);
- a free port with nothing listening.
"""
from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ROOT, free_port, wait_for_port
from misbehaving_http import MisbehavingServer, drip
from redis_probe_runs import assert_gate_keeps_secret, gate_many, probe_many
from servers import RedisServer

SLOW_S = 0.15
HEALTHY = {"status": "ok", "services": [{"name": "api", "status": "ok"}, {"name": "redis", "status": "ok"}]}
DEGRADED = {"status": "degraded", "services": [{"name": "api", "status": "ok"}, {"name": "redis", "status": "down"}]}
NOT_OK = "services[?status!='ok'] | length(@)"
# pylint: disable=redefined-outer-name


class HealthServer:
    """Routes: /ok and /degraded (JSON health bodies), /slow (SLOW_S before answering), /flaky (503 on
    every other request), /text (a plain-text 200)."""

    def __init__(self) -> None:
        self.counter = 0
        self.lock = threading.Lock()
        self.authorizations: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.authorizations.append(self.headers.get("Authorization", ""))
                status, body, kind = 200, json.dumps(HEALTHY).encode(), "application/json"
                if self.path == "/degraded":
                    body = json.dumps(DEGRADED).encode()
                elif self.path == "/slow":
                    time.sleep(SLOW_S)
                elif self.path == "/flaky":
                    with outer.lock:
                        outer.counter += 1
                        status = 503 if outer.counter % 2 == 0 else 200
                elif self.path == "/text":
                    body, kind = b"all good", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def web():
    server = HealthServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The sandbox API on a private redis-server, with an auth token and fast WebSocket pings."""
    work = tmp_path_factory.mktemp("api")
    redis_server = RedisServer(work).start()
    port = free_port()
    token = f"tok-{secrets.token_hex(12)}"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.api", "--host", "127.0.0.1", "--port", str(port),
                             "--redis-url", redis_server.url, "--auth-token", token, "--ws-ping-interval", "0.3",
                             "--log-file", str(work / "api.log")], cwd=str(ROOT))
    try:
        wait_for_port(port)
        yield {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "token": token}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        redis_server.stop()


def run(tmp_path: Path, probes: dict, **kwargs) -> tuple[dict, subprocess.CompletedProcess]:
    return probe_many(tmp_path, probes, module="emp.deploy.service_probe", **kwargs)


@pytest.mark.compat
def test_healthy_api_and_websocket_hold_with_secrets_kept(api, tmp_path):
    args = {"url": api["url"] + "/health", "requests": 20, "concurrency": 4, "max_latency_p95_ms": 10000,
            "json_query": {"status": "status"}, "api_token": api["token"],
            "websocket_url": api["ws"] + "/ws/monitor/emp-deploy-probe-test", "websocket_hold_s": 2.0}
    results, proc = run(tmp_path, {"normal": args}, cli_args=["-vvv"])
    checked, _proc = run(tmp_path, {"checked": args}, check=True, name="check")  # read-only: it measures as well
    for result in (results["normal"], checked["checked"]):
        assert result["failed"] is False and result["healthy"] is True, result.get("problems")
        assert result["changed"] is False and result["reachable"] is True
        assert result["requests"] == {"sent": 20, "answered": 20, "succeeded": 20, "concurrency": 4}
        assert result["status"] == {"200": 20} and result["error_rate"] == 0.0
        latency = result["latency_ms"]
        assert latency["samples"] == 20 and latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"]
        assert result["json"] == {"status": "ok"}
        ws = result["websocket"]
        assert (ws["connections"], ws["opened"], ws["drops"], ws["errors"]) == (1, 1, 0, [])
        # the API pings every 0.3 s and drops a peer after 3 unanswered pings: kept for 2 s, so answered
        assert ws["pings"] >= 3 and ws["held_s"] >= 2.0
        assert ws["messages"] >= 1  # the API's "connected" message
        assert ws["target"] == api["ws"][5:] + "/ws/monitor/emp-deploy-probe-test"
    assert api["token"] not in proc.stdout + proc.stderr + json.dumps(results)


def test_each_failure_class_is_a_problem_with_its_figure(web, api, tmp_path):
    results, _proc = run(tmp_path, {
        "slow": {"url": web.url + "/slow", "requests": 4, "concurrency": 2, "max_latency_p95_ms": SLOW_S * 1000 / 3},
        "flaky": {"url": web.url + "/flaky", "requests": 10, "max_error_rate": 0.2},
        "degraded": {"url": web.url + "/degraded", "requests": 3, "json_query": {"not_ok": NOT_OK},
                     "expect_json": {"not_ok": 0}},
        "text": {"url": web.url + "/text", "requests": 2, "json_query": {"not_ok": NOT_OK}},
        "wrong_status": {"url": web.url + "/ok", "requests": 2, "expect_status": [204]},
        # the API replaces a monitor connection by a newer one with the same id: one of the two is dropped
        "ws_replaced": {"websocket_url": api["ws"] + "/ws/monitor/same-id?token=" + api["token"],
                        "websocket_connections": 2, "websocket_hold_s": 1.5},
        "ws_not_websocket": {"url": web.url + "/ok", "websocket_url": "ws" + web.url[4:] + "/ok",
                             "websocket_hold_s": 0.5},
    }, cli_args=["-vvv"])
    slow = results["slow"]
    assert slow["failed"] is True and slow["reachable"] is True
    assert slow["problems"] == [f"p95 {slow['latency_ms']['p95']:.0f} ms > {SLOW_S * 1000 / 3:g} ms over 4 requests"]
    flaky = results["flaky"]
    assert flaky["status"] == {"200": 5, "503": 5} and flaky["error_rate"] == 0.5
    assert flaky["problems"] == ["error rate 0.500 (5 of 10 requests: HTTP 503: 5) > 0.2"]
    degraded = results["degraded"]
    assert degraded["json"] == {"not_ok": 1}
    assert degraded["problems"] == ["json 'not_ok' was 1 in 3 of 3 answers, expected 0"]
    assert results["text"]["problems"] == ["2 of 2 successful answers had no JSON body for json_query"]
    assert results["wrong_status"]["problems"] == ["error rate 1.000 (2 of 2 requests: HTTP 200: 2) > 0"]
    replaced = results["ws_replaced"]["websocket"]
    assert (replaced["opened"], replaced["drops"]) == (2, 1)
    assert "closed the WebSocket" in replaced["errors"][0] and "replaced by a new connection" in replaced["errors"][0]
    assert results["ws_replaced"]["problems"][0].startswith("1 of 2 WebSocket connections to ")
    assert api["token"] not in json.dumps(results) + _proc.stdout + _proc.stderr
    refused = results["ws_not_websocket"]
    assert refused["websocket"]["opened"] == 0 and refused["websocket"]["drops"] == 1
    assert "refused the WebSocket upgrade with HTTP 200" in refused["problems"][0]


def test_nothing_answered_is_not_measured(tmp_path):
    dead = free_port()
    with MisbehavingServer([("GET", "/drip", drip(size=100, interval=1.0))]) as dripping:
        started = time.monotonic()
        results, _proc = run(tmp_path, {
            "dead": {"url": f"http://127.0.0.1:{dead}/health", "requests": 3},
            "drip": {"url": dripping.url + "/drip", "requests": 2, "concurrency": 2, "timeout": 1.0},
            "ws_dead": {"websocket_url": f"ws://127.0.0.1:{dead}/ws/monitor/x", "websocket_hold_s": 0.5},
        })
        elapsed = time.monotonic() - started
    dead_result = results["dead"]
    assert dead_result["failed"] is True and dead_result["reachable"] is False
    assert "latency_ms" not in dead_result and "error_rate" not in dead_result  # no misleading figures
    assert dead_result["msg"] == (f"the endpoint at 127.0.0.1:{dead}/health answered none of 3 requests: cannot reach "
                                  f"the endpoint at 127.0.0.1:{dead} (GET /health): [Errno 111] Connection refused")
    drip_result = results["drip"]
    assert drip_result["reachable"] is False
    # a byte a second against a 1 s deadline: none, or one when the machine is slow to start the clock
    assert re.search(r"did not answer GET /drip within 1\.0 s \([01] of 100 body bytes arrived in time\)",
                     drip_result["msg"]), drip_result["msg"]
    assert elapsed < 100  # the dripped bodies (100 s each) were cut at the deadline, not read to the end
    assert results["ws_dead"]["reachable"] is False
    assert results["ws_dead"]["msg"].startswith(f"no WebSocket connection to 127.0.0.1:{dead}/ws/monitor/x opened: ")


def test_bad_input_is_refused_before_sending(web, tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "jmespath.py").write_text("raise ImportError('jmespath hidden by the test')\n")
    url = web.url + "/ok"
    cases = {
        "nothing": ({}, "bad input: give url, websocket_url or both"),
        "scheme": ({"url": "ftp://127.0.0.1/x"},
                   "bad input: url 127.0.0.1:80/x: the URL scheme is 'ftp', not http:// or https://"),
        "concurrency": ({"url": url, "requests": 2, "concurrency": 3},
                        "bad input: concurrency must be between 1 and requests (2) and at most 64, got 3"),
        "rate": ({"url": url, "max_error_rate": 2}, "bad input: max_error_rate must be between 0 and 1, got 2.0"),
        "timeout": ({"url": url, "timeout": 0}, "bad input: timeout must be greater than 0, got 0.0"),
        "status": ({"url": url, "expect_status": [700]},
                   "bad input: expect_status must list HTTP statuses (100 to 599), got [700]"),
        "jmespath": ({"url": url, "json_query": {"x": "services[?"}}, "bad input: json_query 'x' is not valid JMESPath: "),
        "expect": ({"url": url, "json_query": {"x": "a"}, "expect_json": {"y": 1}},
                   "bad input: expect_json names y that json_query does not define"),
        "ws_scheme": ({"websocket_url": "http://127.0.0.1:1/ws?token=hunter2"},
                      "bad input: websocket_url 127.0.0.1:1/ws: the URL scheme is 'http', not ws:// or wss://"),
        "hold": ({"websocket_url": "ws://127.0.0.1:1/ws", "websocket_hold_s": 0},
                 "bad input: websocket_hold_s must be greater than 0, got 0.0"),
    }
    before = len(web.authorizations)
    results, _proc = run(tmp_path, {key: args for key, (args, _msg) in cases.items()})
    for key, (_args, message) in cases.items():
        assert results[key]["failed"] is True and results[key]["msg"].startswith(message), results[key]
        assert "hunter2" not in results[key]["msg"]
    assert len(web.authorizations) == before  # nothing was sent
    missing, _proc = run(tmp_path, {"missing": {"url": url, "json_query": {"x": "status"}}},
                         environment={"PYTHONPATH": str(stub)}, name="missing")
    assert "Failed to import the required Python library (jmespath)" in missing["missing"]["msg"]
    without, _proc = run(tmp_path, {"plain": {"url": url}}, environment={"PYTHONPATH": str(stub)}, name="plain")
    assert without["plain"]["healthy"] is True  # jmespath is only needed for json_query


@pytest.mark.compat
def test_gate_go_no_go_and_could_not_measure(web, tmp_path):
    dead = free_port()

    gates = gate_many(tmp_path, "emp.deploy.service_probe", "api", {
        "svc-go": ({"url": web.url + "/ok", "requests": 5, "json_query": {"not_ok": NOT_OK}},
                   ["result.json.not_ok == 0", "result.error_rate == 0"]),
        "svc-nogo": ({"url": web.url + "/degraded", "requests": 5, "json_query": {"not_ok": NOT_OK}},
                     ["result.json.not_ok == 0"]),
        "svc-dead": ({"url": f"http://127.0.0.1:{dead}/health", "requests": 2}, ["result.error_rate == 0"]),
    })
    assert gates["svc-go"]["decision"] == "GO", gates["svc-go"]
    assert gates["svc-nogo"]["decision"] == "NO-GO"
    # the first failed sample decides (failure_limit 0), with the figure it read
    assert gates["svc-nogo"]["reason"].startswith("result.json.not_ok == 0 did not hold in 1 of 1 measured sample "
                                                  "(result.json.not_ok was 1)")
    assert gates["svc-dead"]["decision"] == "NO-GO"
    assert "could not measure" in gates["svc-dead"]["reason"]
    assert "answered none of 2 requests" in gates["svc-dead"]["reason"]


def test_gate_never_prints_the_token(api, tmp_path):
    args = {"url": api["url"] + "/health", "requests": 3, "api_token": api["token"],
            "websocket_url": api["ws"] + "/ws/client/emp-deploy-gate-test", "websocket_hold_s": 0.5}
    assert_gate_keeps_secret(tmp_path, "emp.deploy.service_probe", "api", args,
                             ["result.websocket.drops == 0", "result.error_rate == 0"], api["token"])
