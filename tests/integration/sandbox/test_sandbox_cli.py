"""End to end: `python -m sandbox up` brings the whole stack up on loopback; a job goes through
API -> Redis -> worker, the webhook delivery arrives signed, the API's spans are found through
the query API, the API answers through an ngrok tunnel, every service reconnects after a Redis
restart, and `down` leaves no process behind."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import pytest
import redis
import requests
from sandbox_fixtures import (
    EVENT_DEADLINE,
    alive,
    cli,
    client_names,
    group_members,
    recorded_processes,
    status,
    wait_until,
)

# pylint: disable=redefined-outer-name
TIMEOUT = 5
STATUS_KEYS = {"redis", "api", "webhook", "otlp", "query", "collector_health", "collector_metrics", "ngrok_api",
               "ngrok_binary", "releases_dir", "versions", "prometheus", "prometheus_api"}
APP_CLIENTS = {"emp-api", "emp-webhook", "emp-monitor"}
# `up`, a second `up` and `down` take a few seconds; a command that instead waits out a service's
# Redis retries (30 x 1 s) or SIGKILL escalation (6 s per service) exceeds this. Generous for a
# loaded 2-core box running tests in parallel.
PROMPT_COMMAND = 25.0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    started = time.monotonic()
    proc = cli(state_dir, "up", check=False)
    elapsed = time.monotonic() - started
    yield {"state_dir": state_dir, "up": proc, "up_seconds": elapsed}
    cli(state_dir, "down", check=False)


def test_up_starts_everything_quickly(sandbox):
    assert sandbox["up"].returncode == 0, sandbox["up"].stderr
    assert sandbox["up_seconds"] < PROMPT_COMMAND, f"up took {sandbox['up_seconds']:.1f}s"
    current = status(sandbox["state_dir"])
    assert STATUS_KEYS <= set(current)
    assert current["redis"].startswith("redis://127.0.0.1:")
    for key in ("api", "webhook", "otlp", "query", "collector_health", "collector_metrics", "ngrok_api"):
        assert current[key] and current[key].startswith("http://127.0.0.1:"), key
    assert Path(current["ngrok_binary"]).is_file()
    assert Path(current["releases_dir"]).is_dir()
    assert current["versions"] == {"api": "1.0.0", "webhook": "1.0.0", "worker": "1.0.0", "monitor": "1.0.0"}
    assert all(s["status"] == "running" for s in current["services"].values()), current["services"]
    assert requests.get(current["collector_health"], timeout=TIMEOUT).status_code == 200
    assert requests.get(current["collector_metrics"], timeout=TIMEOUT).status_code == 200
    link = Path(current["releases_dir"]) / "api" / "current"
    assert link.is_symlink() and os.readlink(link) == "releases/1.0.0"


def test_up_is_idempotent(sandbox):
    before = {name: record["pid"] for name, record in recorded_processes(sandbox["state_dir"]).items()}
    started = time.monotonic()
    cli(sandbox["state_dir"], "up")
    assert time.monotonic() - started < PROMPT_COMMAND
    after = {name: record["pid"] for name, record in recorded_processes(sandbox["state_dir"]).items()}
    assert before == after, "a second up must not start anything"


def submit_and_complete(api: str, body: dict) -> tuple[str, str, dict]:
    answer = requests.post(f"{api}/api/jobs", json=body, timeout=TIMEOUT)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    job = wait_until(lambda: (j := requests.get(f"{api}/api/jobs/{job_id}", timeout=TIMEOUT).json()["job"])
                     ["status"] == "completed" and j, timeout=EVENT_DEADLINE, message=f"job {job_id} completed")
    return job_id, answer.headers["traceparent"], job


def test_job_flow_with_signed_webhook(sandbox):
    current = status(sandbox["state_dir"])
    webhook = current["webhook"]
    receiver = requests.post(f"{webhook}/test-receivers", timeout=TIMEOUT).json()["data"]
    secret = "e2e-secret"
    registered = requests.post(f"{webhook}/webhooks", json={"url": receiver["url"], "events": ["complete_job"],
                                                            "secret": secret}, timeout=TIMEOUT)
    assert registered.status_code == 201, registered.text
    body = {"service_required": "ollama", "priority": 60, "payload": {"prompt": "hello"}}
    job_id, _traceparent, job = submit_and_complete(current["api"], body)
    assert job["worker_id"].endswith("worker-ollama-sim-0")
    assert job["result"]["metadata"]["saved_asset"]["size"] > 0

    def delivery():
        requests_seen = requests.get(f"{webhook}/test-receivers/{receiver['id']}/requests",
                                     timeout=TIMEOUT).json()["data"]["requests"]
        return next((r for r in requests_seen if isinstance(r["body"], dict)
                     and r["body"].get("data", {}).get("job_id") == job_id), None)

    seen = wait_until(delivery, timeout=EVENT_DEADLINE, message="webhook delivery for the job")
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-webhook-event"] == "complete_job"
    # HMAC computed here, independently of the service's signing code
    expected = "sha256=" + hmac.new(secret.encode(), seen["raw_body"].encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-webhook-signature"], expected)


def test_api_spans_are_found_through_the_query_api(sandbox):
    current = status(sandbox["state_dir"])
    _job_id, traceparent, _job = submit_and_complete(current["api"], {"service_required": "mock"})
    trace_id = traceparent.split("-")[1]
    query = {"timeRange": {"from": "now-10m", "to": "now"},
             "filter": [{"key": "otel.trace.id", "operator": "is", "value": trace_id}]}

    def spans():
        answer = requests.post(f"{current['query']}/api/spans", json=query, timeout=TIMEOUT,
                               headers={"Authorization": f"Bearer {current['query_token']}"})
        assert answer.status_code == 200, answer.text
        found = []
        for resource_spans in answer.json().get("resourceSpans", []):
            attrs = {a["key"]: a["value"].get("stringValue") for a in resource_spans["resource"]["attributes"]}
            for scope in resource_spans["scopeSpans"]:
                found += [(attrs.get("service.name"), s["name"]) for s in scope["spans"]]
        return found

    # spans arrive in batches: wait for the request's own span, not just any
    wait_until(lambda: ("emp-api", "POST /api/jobs") in spans(), message="the API's request span in the query API")


def test_api_through_ngrok_tunnel(sandbox):
    current = status(sandbox["state_dir"])
    tunnels = requests.get(f"{current['ngrok_api']}/api/tunnels", timeout=TIMEOUT).json()["tunnels"]
    api_tunnel = next(t for t in tunnels if t["name"] == "api")
    assert api_tunnel["config"]["addr"].endswith(current["api"].rsplit(":", 1)[1])
    answer = requests.get(f"{api_tunnel['public_url']}/health", headers={"ngrok-skip-browser-warning": "1"},
                          timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


def test_pm2_jlist(sandbox):
    apps = json.loads(cli(sandbox["state_dir"], "pm2", "jlist").stdout)
    assert {"health-server", "redis-worker-mock-0", "redis-worker-ollama-sim-0"} <= {a["name"] for a in apps}
    assert all(a["pm2_env"]["status"] == "online" and a["monit"]["memory"] > 0 for a in apps)


def test_deploy_switches_the_symlink_and_restarts(sandbox):
    state_dir = sandbox["state_dir"]
    old_pid = recorded_processes(state_dir)["api"]["pid"]
    cli(state_dir, "deploy", "api", "1.1.0")
    current = status(state_dir)
    assert current["versions"]["api"] == "1.1.0"
    assert os.readlink(Path(current["releases_dir"]) / "api" / "current") == "releases/1.1.0"
    assert requests.get(f"{current['api']}/version", timeout=TIMEOUT).json()["api_version"] == "1.1.0"
    assert recorded_processes(state_dir)["api"]["pid"] != old_pid and not alive(old_pid)


def test_deploy_and_restart_refuse_unknown_things(sandbox):
    refused = cli(sandbox["state_dir"], "deploy", "api", "9.9.9", check=False)
    assert refused.returncode == 1 and "no release api 9.9.9" in refused.stderr
    assert cli(sandbox["state_dir"], "restart", "nginx", check=False).returncode == 2


def test_redis_restart_every_service_reconnects(sandbox):
    state_dir = sandbox["state_dir"]
    current = status(state_dir)
    port = int(current["redis"].rsplit(":", 1)[1].split("/")[0])
    old_pid = recorded_processes(state_dir)["redis"]["pid"]
    cli(state_dir, "restart", "redis")
    assert recorded_processes(state_dir)["redis"]["pid"] != old_pid
    assert status(state_dir)["redis"] == current["redis"], "same port after a restart"

    def everyone_back():
        names = set(client_names(port))
        workers = {n for n in names if n.startswith("emp-worker")}
        return APP_CLIENTS <= names and len(workers) >= 2 and names

    wait_until(everyone_back, timeout=EVENT_DEADLINE, interval=0.2, message="every service back in CLIENT LIST")
    r = redis.Redis(port=port, decode_responses=True)
    assert r.get("function:checksum:jobMatching")
    submit_and_complete(current["api"], {"service_required": "mock"})


def test_down_leaves_no_process(sandbox):
    state_dir = sandbox["state_dir"]
    records = recorded_processes(state_dir)
    assert set(records) == {"redis", "prometheus", "telemetry", "api", "webhook", "worker", "monitor", "traffic",
                            "ngrok"}
    ports = [port for record in records.values() for port in record["ports"].values()]
    started = time.monotonic()
    cli(state_dir, "down")
    assert time.monotonic() - started < PROMPT_COMMAND
    for name, record in records.items():
        assert not alive(record["pid"]), f"{name} pid {record['pid']} still alive"
        assert group_members(record["pgid"]) == [], f"{name} group {record['pgid']} not empty"
    for port in ports:
        with pytest.raises(OSError):
            import socket
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    after = status(state_dir)
    assert all(s["status"] == "stopped" for s in after["services"].values())
    assert after["api"] is None and after["versions"]["api"] is None
    assert cli(state_dir, "down").returncode == 0, "down twice is fine"


def test_missing_component_fails_up_clearly(tmp_path, monkeypatch):
    """A component whose entry point is missing stops `up` with a message naming it."""
    from sandbox import cli as sandbox_cli
    monkeypatch.setattr(sandbox_cli, "NGROK_BINARY", tmp_path / "no-such-ngrok")
    box = sandbox_cli.Sandbox(tmp_path / "state", out=lambda message: None)
    try:
        with pytest.raises(sandbox_cli.SandboxError, match="ngrok: entry point missing"):
            box.up(only=["redis", "ngrok"])
    finally:
        box.down()
    assert box.status()["services"]["redis"]["status"] == "stopped"
