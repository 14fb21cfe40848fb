"""emp.deploy.webhook_probe against a webhook service behind a misbehaving front (real ansible-playbook
runs): a route that drips its answer, truncates it, breaks its gzip or does not speak HTTP.

Each run must end within the probe's timeout plus a small margin, say what the service did, and
still return its structured result and clean up (nothing left in webhooks:registry).
"""
from __future__ import annotations

import time

import pytest

from misbehaving_http import MisbehavingServer, bad_gzip, drip, not_http, truncated, truncated_chunked
from test_webhook_probe_support import port_is_free, probe, probe_many, registry

from ansible_collections.emp.deploy.plugins.modules.webhook_probe import CLEANUP_S
from conftest import free_port
from servers import LOAD_MARGIN_S

# Fixtures start_service, service and proxies.
pytest_plugins = ["test_webhook_probe_support"]

# Thread start-up and scheduling on a loaded machine; a drip of the old kind would take two minutes.
MARGIN_S = LOAD_MARGIN_S


def test_a_dripping_service_is_bounded_by_the_probe_timeout(service, tmp_path):
    rules = [("GET", r"/webhooks/[^/]+", drip()), ("GET", r"/drip-everything/health", drip())]
    with MisbehavingServer(rules, upstream=service.url) as front:
        port = free_port()
        started = time.monotonic()
        (read_back, health), run = probe_many(tmp_path, [
            {"service_url": front.url, "receiver_port": port, "timeout": 4, "request_timeout": 60},
            {"service_url": f"{front.url}/drip-everything", "timeout": 3, "request_timeout": 60},
        ])
        wall = time.monotonic() - started
    assert read_back["failed"] is True and read_back["healthy"] is False
    # The timeout, then the cleanup's own short budget (its read-back after DELETE drips too).
    assert read_back["elapsed_s"] < 4 + CLEANUP_S + MARGIN_S
    assert f"webhook service at {front.where} did not answer GET /webhooks/:id within" in read_back["msg"]
    assert "200" not in read_back["http_statuses"]["GET /webhooks/:id"]
    assert read_back["cleanup"]["webhook_deleted"] is True and read_back["cleanup"]["receiver_stopped"] is True
    assert port_is_free(port) and registry(service) == {}
    # GET /health itself drips under this prefix: nothing was registered, nothing to clean.
    assert health["failed"] is True and health["elapsed_s"] < 3 + MARGIN_S
    assert "did not answer GET /health within 3.0 s" in health["msg"]
    assert "webhook_id" not in health and health["cleanup"]["webhook_deleted"] is None
    assert wall < 4 + CLEANUP_S + 3 + 60, run.stdout  # both tasks, ansible included, far from a drip's two minutes


@pytest.mark.compat
def test_broken_answers_are_named_with_the_structured_result(service, tmp_path):
    rules = [
        ("GET", r"/truncated/webhooks/[^/]+", truncated()),
        ("GET", r"/chunked/health", truncated_chunked()),
        ("POST", r"/gzip/webhooks/[^/]+/test", bad_gzip()),
        ("GET", r"/nothttp/health", not_http()),
    ]
    names = ("truncated", "chunked", "gzip", "nothttp")
    with MisbehavingServer(rules, upstream=service.url, prefixes=names) as front:
        # One front, one path prefix per case; everything else reaches the real service.
        fronts = {name: f"{front.url}/{name}" for name in names}
        results, _run = probe_many(tmp_path, [{"service_url": url, "timeout": 10} for url in fronts.values()])
    cut, chunked, gzipped, other = results
    for result in results:
        assert result["failed"] is True and result["healthy"] is False, result
        assert result["problems"] and "Traceback" not in result.get("module_stderr", "")
    where = front.where
    assert f"webhook service at {where} sent a truncated body to GET /webhooks/:id (13 of 100 bytes" in cut["msg"]
    assert f"webhook service at {where} sent a truncated body to GET /health" in chunked["msg"]
    assert f"webhook service at {where} sent a broken gzip body to POST /webhooks/:id/test" in gzipped["msg"]
    assert f"webhook service at {where} did not answer GET /health with HTTP" in other["msg"]
    assert registry(service) == {}


def test_a_url_that_is_not_http_is_bad_input(service, tmp_path):
    port = free_port()
    (ftp, bare), _run = probe_many(tmp_path, [
        {"service_url": "ftp://127.0.0.1:21/", "receiver_port": port},
        {"service_url": service.url, "public_url": "webhook.example.com:443/in", "receiver_port": port},
    ])
    assert ftp["failed"] is True
    assert ftp["msg"] == ("webhook probe: bad input: service_url 'ftp://127.0.0.1:21/' cannot be used: "
                          "the URL scheme is 'ftp', not http:// or https://")
    assert ftp["http_statuses"] == {} and ftp["healthy"] is False
    assert bare["failed"] is True and "public_url 'webhook.example.com:443/in' cannot be used" in bare["msg"]
    assert port_is_free(port) and registry(service) == {}


def test_use_test_receiver_false_with_public_url_is_accepted(service, proxies, tmp_path):
    receiver_port = free_port()
    tunnel = proxies(f"http://127.0.0.1:{receiver_port}")  # stands in for an ngrok tunnel
    accepted, _run = probe(tmp_path, {"service_url": service.url, "receiver_port": receiver_port,
                                      "public_url": tunnel.url, "use_test_receiver": False})
    assert accepted["failed"] is False and accepted["healthy"] is True, accepted.get("msg")
    assert accepted["receiver"]["kind"] == "public_url" and accepted["success_rate"] == 1.0
    checked, _run = probe(tmp_path, {"service_url": service.url, "public_url": tunnel.url,
                                     "use_test_receiver": False, "trigger": "test", "api_url": None},
                          check=True, name="check")
    assert checked["failed"] is False and "reached through" in checked["plan"][0]
    assert registry(service) == {}


def test_refused_combinations_are_judged_by_the_module(service, tmp_path):
    (both, job), _run = probe_many(tmp_path, [
        {"service_url": service.url, "use_test_receiver": True, "public_url": "http://127.0.0.1:9/"},
        {"service_url": service.url, "trigger": "job"},
    ])
    assert both["failed"] is True
    assert both["msg"] == "webhook probe: bad input: use_test_receiver and public_url exclude each other"
    assert job["failed"] is True and "trigger=job needs api_url to submit probe jobs" in job["msg"]
    for result in (both, job):
        assert result["http_statuses"] == {} and result["cleanup"]["receiver_stopped"] is None
    assert registry(service) == {}
