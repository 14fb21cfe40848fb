"""emp.deploy.webhook_probe through real ansible-playbook runs against the sandbox webhook service:
what it measures (deliveries, retries, signatures, payloads, 404 routes, tunnels, job triggers).

Every run is followed by a look into the service's Redis: the probe must leave nothing in
webhooks:registry and must free its receiver port.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, free_port, wait_for_port
from test_webhook_probe_support import port_is_free, probe, registry

# Fixtures start_service, service and proxies.
pytest_plugins = ["test_webhook_probe_support"]


@pytest.mark.compat
def test_retries_signatures_and_payloads_are_measured(service, tmp_path):
    secret = "user-given-secret-4c1d9e"
    result, run = probe(tmp_path, {"service_url": service.url, "count": 3, "fail_first": 2, "secret": secret,
                                   "events": ["complete_job", "job_submitted"], "max_latency_p95_ms": 2000,
                                   "max_duplicates": 0})
    assert result["failed"] is False and result["healthy"] is True, result["problems"]
    assert result["changed"] is False
    assert (result["deliveries_expected"], result["deliveries_succeeded"], result["success_rate"]) == (6, 6, 1.0)
    assert result["attempts_received"] == 18 and result["duplicates"] == 0
    assert result["signatures"] == {"scheme": "emp", "checked": 18, "valid": 18, "invalid": 0, "missing": 0,
                                    "reasons": []}
    assert result["payload"]["invalid"] == 0 and result["payload"]["checked"] == 18
    retries = result["retries"]
    assert retries["same_event_id"] is True and retries["events_recovered"] == 6 and retries["growing"] is True
    assert retries["expected_gaps_ms"] == [200.0, 400.0]
    assert 160 <= retries["gaps_ms"][0] < 400 and 320 <= retries["gaps_ms"][1] < 800
    assert result["registration"]["roundtrip_ok"] is True and result["registration"]["listed"] is True
    assert result["http_statuses"]["POST /webhooks/:id/test"] == {"200": 3}
    assert result["http_statuses"]["GET /webhooks/:id"] == {"200": 1, "404": 1}  # read back, then gone
    assert result["service_stats"]["total_attempts"] == 18
    assert result["cleanup"] == {"webhook_deleted": True, "webhook_gone": True, "receiver_stopped": True,
                                 "test_receiver_cleared": None}
    assert registry(service) == {}
    assert secret not in run.stdout and secret not in json.dumps(result)


def test_check_mode_registers_nothing(service, tmp_path):
    result, _run = probe(tmp_path, {"service_url": service.url, "fail_first": 1}, check=True)
    assert result["failed"] is False and result["healthy"] is True
    assert len(result["plan"]) == 6 and "refusing the first 1 attempt(s)" in result["plan"][3]
    assert set(result["http_statuses"]) == {"GET /health", "GET /webhooks"}
    assert "receiver" not in result and "success_rate" not in result
    assert registry(service) == {}
    assert "webhook registered" not in service.log_file.read_text()


@pytest.mark.compat
def test_routes_404_release_is_caught(start_service, tmp_path):
    broken = start_service(faults=["routes_404"], version="1.1.0-404")
    port = free_port()
    result, _run = probe(tmp_path, {"service_url": broken.url, "receiver_port": port})
    assert result["failed"] is True and result["healthy"] is False
    assert result["not_found_routes"] == ["POST /webhooks"]
    assert "initialization-order bug" in result["msg"] and "127.0.0.1:%d" % broken.port in result["msg"]
    assert result["service"]["version"] == "1.1.0-404"
    assert result["cleanup"]["receiver_stopped"] is True and port_is_free(port)
    assert registry(broken) == {}


def test_service_test_receivers(service, tmp_path):
    result, _run = probe(tmp_path, {"service_url": service.url, "use_test_receiver": True, "count": 3})
    assert result["healthy"] is True, result["problems"]
    assert result["receiver"]["kind"] == "test_receiver" and "/test-receivers/" in result["receiver"]["url"]
    assert result["signatures"]["valid"] == 3 and result["latency_ms"]["samples"] == 3
    assert result["cleanup"]["test_receiver_cleared"] is True
    assert registry(service) == {}


def test_deliveries_through_a_public_url(service, proxies, tmp_path):
    receiver_port = free_port()
    tunnel = proxies(f"http://127.0.0.1:{receiver_port}")  # stands in for an ngrok tunnel
    result, _run = probe(tmp_path, {"service_url": service.url, "receiver_port": receiver_port,
                                    "public_url": tunnel.url + "/", "count": 2})
    assert result["healthy"] is True, result["problems"]
    assert result["receiver"]["url"] == f"{tunnel.url}/emp-webhook-probe/{result['run_id']}"
    assert result["receiver"]["listen"] == f"127.0.0.1:{receiver_port}"
    assert tunnel.paths.count(f"/emp-webhook-probe/{result['run_id']}") == 2
    assert registry(service) == {}


def test_job_trigger_with_the_sandbox_api_and_worker(service, tmp_path):
    import redis as redis_py

    from sandbox.redis import load_library
    load_library(redis_py.Redis.from_url(service.redis.url))
    api_port, worker_port = free_port(), free_port()
    common = ["--host", "127.0.0.1", "--redis-url", service.redis.url]
    procs = [
        subprocess.Popen([sys.executable, "-m", "sandbox.api", "--port", str(api_port), *common,
                          "--log-file", str(tmp_path / "api.log")], cwd=str(ROOT)),
        subprocess.Popen([sys.executable, "-m", "sandbox.worker", "--port", str(worker_port), *common,
                          "--workers", "mock:1", "--job-duration-ms", "50", "--poll-interval", "0.05",
                          "--asset-dir", str(tmp_path / "assets"), "--log-file", str(tmp_path / "worker.log")],
                         cwd=str(ROOT)),
    ]
    try:
        wait_for_port(api_port)
        result, _run = probe(tmp_path, {"service_url": service.url, "api_url": f"http://127.0.0.1:{api_port}",
                                        "trigger": "job", "count": 2, "events": ["job_submitted", "complete_job"],
                                        "timeout": 20})
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    assert result["healthy"] is True, result["problems"]
    assert len(result["trigger"]["job_ids"]) == 2
    assert (result["deliveries_expected"], result["deliveries_succeeded"]) == (4, 4)
    assert result["http_statuses"]["POST /api/jobs"] == {"201": 2}
    assert result["registration"]["filters"] == {"job_types": ["mock"]}
    assert registry(service) == {}


def test_a_scheme_the_service_does_not_sign_with_is_a_problem(service, tmp_path):
    result, _run = probe(tmp_path, {"service_url": service.url, "signature_scheme": "github"})
    assert result["failed"] is True
    assert "1 of 1 deliveries carried no X-Hub-Signature-256 signature (signature_scheme=github)" in result["problems"]
    assert registry(service) == {}
