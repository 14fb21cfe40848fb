"""emp.deploy.webhook_probe bad input, one test per class, through real ansible-playbook runs.

Each proves the failure message names what went wrong and that cleanup still ran: nothing left in
webhooks:registry, the receiver port free again.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys

from ansible_collections.emp.deploy.plugins.modules.webhook_probe import CLEANUP_S
from conftest import ROOT, free_port, wait_for_port
from servers import LOAD_MARGIN_S
from test_webhook_probe_support import port_is_free, probe, probe_many, registry

# Fixtures start_service, service and proxies.
pytest_plugins = ["test_webhook_probe_support"]


def test_unreachable_service(service, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    result, _run = probe(tmp_path, {"service_url": dead, "receiver_port": port})
    assert result["failed"] is True
    assert result["msg"] == f"webhook probe: cannot reach webhook service at {dead[7:]} (GET /health): " \
                            "[Errno 111] Connection refused"
    assert "success_rate" not in result  # nothing measured, no misleading zeros
    assert port_is_free(port) and registry(service) == {}


def test_html_answer_after_registration_still_cleans_up(service, proxies, tmp_path):
    page = b"<html><h1>502 Bad Gateway</h1></html>"
    front = proxies(service.url, [("GET", r"/webhooks/[^/]+", (502, "text/html", page))])
    port = free_port()
    result, _run = probe(tmp_path, {"service_url": front.url, "receiver_port": port})
    assert result["failed"] is True
    assert ("answered GET /webhooks/:id with HTTP 502 and HTML instead of JSON: <html><h1>502 Bad Gateway"
            in result["msg"])
    assert result["http_statuses"]["POST /webhooks"] == {"201": 1}  # it was registered ...
    assert result["http_statuses"]["DELETE /webhooks/:id"] == {"200": 1}  # ... and deleted again
    assert result["cleanup"]["webhook_deleted"] is True
    assert port_is_free(port) and registry(service) == {}


def test_500_answer_on_trigger_still_cleans_up(service, proxies, tmp_path):
    error = json.dumps({"success": False, "error": "Internal server error", "message": "processor crashed"}).encode()
    front = proxies(service.url, [("POST", r"/webhooks/[^/]+/test", (500, "application/json", error))])
    result, _run = probe(tmp_path, {"service_url": front.url})
    assert result["failed"] is True
    assert ("answered POST /webhooks/:id/test with HTTP 500: Internal server error: processor crashed"
            in result["msg"])
    assert result["cleanup"]["webhook_deleted"] is True and result["cleanup"]["receiver_stopped"] is True
    assert registry(service) == {}


def test_receiver_port_taken(service, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, _run = probe(tmp_path, {"service_url": service.url, "receiver_port": port})
    assert result["failed"] is True
    assert f"receiver port 127.0.0.1:{port} is taken by another process" in result["msg"]
    assert "POST /webhooks" not in result["http_statuses"]
    assert registry(service) == {}


def test_scheme_needing_a_secret_without_one(service, tmp_path):
    port = free_port()
    result, _run = probe(tmp_path, {"service_url": service.url, "secret": "", "receiver_port": port})
    assert result["failed"] is True
    assert result["msg"] == "webhook probe: bad input: signature_scheme=emp needs a secret, but secret is empty"
    assert result["http_statuses"] == {}
    assert port_is_free(port) and registry(service) == {}


def test_deliveries_that_never_arrive_time_out(service, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"  # the service's deliveries are refused there
    result, _run = probe(tmp_path, {"service_url": service.url, "public_url": nowhere, "timeout": 1.5,
                                    "retry_config": {"max_attempts": 2, "initial_delay_ms": 50}})
    assert result["failed"] is True
    assert "webhook delivery success rate 0.00 (0 of 1) < 0.95 within 2 s" in result["problems"]
    # The timeout bounds the whole probe now, waiting included; the cleanup gets its short budget after it.
    assert result["wait_s"] <= 1.5 <= result["elapsed_s"] < 1.5 + CLEANUP_S + LOAD_MARGIN_S
    assert result["cleanup"]["webhook_deleted"] is True
    assert registry(service) == {}


def test_wrong_types_and_unknown_options(service, tmp_path):
    (types, unknown, choice), _run = probe_many(tmp_path, [
        {"service_url": service.url, "count": "many"},
        {"service_url": service.url, "colour": "blue"},
        {"service_url": service.url, "events": ["job_done"]},
    ])
    assert types["failed"] is True and "count" in types["msg"] and "int" in types["msg"]
    assert unknown["failed"] is True and "Unsupported parameters" in unknown["msg"] and "colour" in unknown["msg"]
    assert choice["failed"] is True and "job_done" in choice["msg"]
    assert registry(service) == {}


def test_bad_api_token_for_job_trigger(service, tmp_path):
    api_port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "sandbox.api", "--host", "127.0.0.1", "--port", str(api_port),
                            "--redis-url", service.redis.url, "--auth-token", "the-right-token",
                            "--log-file", str(tmp_path / "api.log")], cwd=str(ROOT))
    try:
        wait_for_port(api_port)
        result, run = probe(tmp_path, {"service_url": service.url, "api_url": f"http://127.0.0.1:{api_port}",
                                       "api_token": "a-wrong-token-77", "trigger": "job"})
    finally:
        api.terminate()
        api.wait(timeout=10)
    assert result["failed"] is True
    assert f"EMP API at 127.0.0.1:{api_port} answered POST /api/jobs with HTTP 401" in result["msg"]
    assert result["http_statuses"]["POST /api/jobs"] == {"401": 1}
    assert result["cleanup"]["webhook_deleted"] is True
    assert "a-wrong-token-77" not in run.stdout
    assert registry(service) == {}
