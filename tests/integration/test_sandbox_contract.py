"""The sandbox plays the EMP API and webhook service exactly: every answer compared with the shapes
recorded from the real services (tests/contract/emp_shapes.json, docs/emp-real-contracts.md), the job hash
and the findMatchingJob claim, and the services' environment variables and refusals.

The same comparison runs against the real services in tests/integration/test_real_emp.py (marked real_emp).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from conftest import ROOT
from emp_contract import check_api, check_webhook, mismatches
from servers import free_port, wait_for_port
from test_deploy_sandbox import sandbox_cli

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state = tmp_path_factory.mktemp("contract") / "state"
    sandbox_cli(state, "up")
    yield json.loads(sandbox_cli(state, "status", "--json").stdout)
    sandbox_cli(state, "down")


def test_the_api_answers_as_the_emp_api(sandbox):
    results = check_api(sandbox["api"], sandbox["redis"], sandbox=True)
    assert {endpoint: problems for endpoint, problems in results.items() if problems} == {}
    assert len(results) == 8


def test_the_webhook_service_answers_as_the_emp_webhook_service(sandbox):
    results = check_webhook(sandbox["webhook"], sandbox=True)
    assert {endpoint: problems for endpoint, problems in results.items() if problems} == {}
    assert len(results) == 12


def test_the_comparison_finds_differences():
    # the check itself can fail: a missing key, an extra key, a wrong type, a wrong fixed value
    shape = {"status": {"=": "ok"}, "redis": {"connected": "bool"}, "faults": ["str"]}
    real = {"sandbox_only": ("faults",), "sandbox": False}
    assert mismatches(shape, {"status": "degraded", "redis": {"connected": "yes"}, "extra": 1}, **real) \
        == ["$.extra: not in the EMP contract", '$.redis.connected: expected bool, got "yes"',
            '$.status: expected "ok", got "degraded"']
    assert mismatches(shape, {"status": "ok", "redis": {"connected": True}}, **real) == []
    # a sandbox-only key is optional for the real services, not for the sandbox
    assert mismatches(shape, {"status": "ok", "redis": {"connected": True}}, sandbox_only=("faults",)) == \
        ["$.faults: missing"]


API_ENV = {"OTEL_COLLECTOR_ENDPOINT": "", "NODE_ENV": "production", "API_PORT": "", "REDIS_URL": "",
           "CORS_ORIGINS": "http://127.0.0.1:3333, http://example.test"}
WEBHOOK_ENV = {"WEBHOOK_SERVICE_PORT": "", "HUB_REDIS_URL": "", "OTEL_COLLECTOR_ENDPOINT": "", "NODE_ENV": "production",
               "CORS_ORIGINS": "http://127.0.0.1:3333", "EMPROPS_API_URL": "http://127.0.0.1:9"}


def run_service(module: str, env: dict) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items()
             if key not in API_ENV and key not in WEBHOOK_ENV and not key.startswith("EMP_SANDBOX")}
    return subprocess.run([sys.executable, "-m", module], cwd=str(ROOT), env={**clean, **env}, capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.mark.parametrize("module, env, missing, refusal", [
    ("sandbox.api", API_ENV, "OTEL_COLLECTOR_ENDPOINT",
     "FATAL: OTEL_COLLECTOR_ENDPOINT environment variable is required. No defaults allowed."),
    ("sandbox.api", API_ENV, "NODE_ENV", "FATAL: NODE_ENV environment variable is required. No defaults allowed."),
    ("sandbox.api", API_ENV, "API_PORT", "FATAL: API_PORT environment variable is required. No defaults allowed."),
    ("sandbox.api", API_ENV, "REDIS_URL", "FATAL ERROR: REDIS_URL environment variable is not set!"),
    ("sandbox.api", API_ENV, "CORS_ORIGINS", "FATAL: CORS_ORIGINS environment variable is required. No defaults allowed."),
    ("sandbox.webhook", WEBHOOK_ENV, "WEBHOOK_SERVICE_PORT", "WEBHOOK_SERVICE_PORT environment variable is required"),
    ("sandbox.webhook", WEBHOOK_ENV, "HUB_REDIS_URL", "FATAL ERROR: HUB_REDIS_URL environment variable is not set!"),
    ("sandbox.webhook", WEBHOOK_ENV, "OTEL_COLLECTOR_ENDPOINT",
     "FATAL: OTEL_COLLECTOR_ENDPOINT environment variable is required. No defaults allowed."),
    ("sandbox.webhook", WEBHOOK_ENV, "NODE_ENV", "FATAL: NODE_ENV environment variable is required. No defaults allowed."),
])
def test_started_like_the_emp_service_it_refuses_without_its_variables(module, env, missing, refusal):
    filled = {key: value or {"API_PORT": "1", "WEBHOOK_SERVICE_PORT": "1", "REDIS_URL": "redis://127.0.0.1:1/0",
                             "HUB_REDIS_URL": "redis://127.0.0.1:1/0",
                             "OTEL_COLLECTOR_ENDPOINT": "http://127.0.0.1:1"}.get(key, "x")
              for key, value in env.items()}
    filled.pop(missing)
    done = run_service(module, filled)
    assert done.returncode == 1, done.stderr[-2000:]
    assert refusal in done.stderr
    assert "redis://127.0.0.1:1" not in done.stderr  # unlike the EMP services, no variable's value is printed


def test_started_with_the_emp_variables_it_serves(sandbox, tmp_path):
    port = free_port()
    env = {**API_ENV, "API_PORT": str(port), "REDIS_URL": sandbox["redis"],
           "OTEL_COLLECTOR_ENDPOINT": f"http://127.0.0.1:{free_port()}", "AUTH_TOKEN": "t0ken"}
    clean = {key: value for key, value in os.environ.items() if not key.startswith("EMP_SANDBOX")}
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115  # closed below
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.api"], cwd=str(ROOT), env={**clean, **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=30)
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["cors"]["allowedOrigins"] == ["http://127.0.0.1:3333", "http://example.test"]
        # as the EMP API: AUTH_TOKEN guards WebSockets only, POST /api/jobs takes no token
        created = requests.post(f"http://127.0.0.1:{port}/api/jobs", json={"service_required": "emp-contract-env"},
                                timeout=5)
        assert created.status_code == 201
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        job_id = created.json()["job_id"] if "created" in locals() else None
        if job_id:
            import redis  # cleanup of the job this test submitted

            conn = redis.Redis.from_url(sandbox["redis"])
            conn.delete(f"job:{job_id}")
            conn.zrem("jobs:pending", job_id)
            conn.close()
