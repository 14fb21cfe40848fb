"""Against the real EMP services (marker real_emp): the API and the webhook service built from a checkout of
stakeordie/emp-job-queue (EMP_SOURCE) by tools/real_emp.py, on loopback, against a redis-server of their own
with the functions installed by the repository's CLI. Skipped without EMP_SOURCE (CI has no sources).

    EMP_SOURCE=/path/to/emp-job-queue .venv/bin/python -m pytest tests/integration/test_real_emp.py -m real_emp

1. The same contract comparison as the sandbox's (tests/emp_contract.py): the real answers still have the
   recorded shapes, so the sandbox's contract test compares with what the services really do.
2. The services do not name their Redis connections.
3. The Redis role's default reconnect judgement: GO after a Redis restart (command strategy); NO-GO after a
   restart without persistence, naming the lost jobMatching functions.
4. webhook_probe (registration, signed deliveries, retries, no 404) and job_queue_probe (atomic claims with
   the real findMatchingJob, nothing left behind) against them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from conftest import ROOT, run_playbook, write_playbook
from emp_contract import check_api, check_webhook

pytestmark = [pytest.mark.real_emp, pytest.mark.timeout(900)]
SOURCE = os.environ.get("EMP_SOURCE", "")
CLI = [sys.executable, str(ROOT / "tools" / "real_emp.py")]

if not SOURCE:
    pytest.skip("EMP_SOURCE is not set: the real EMP services need a checkout of stakeordie/emp-job-queue "
                "(see README.md, 'Against the real EMP services')", allow_module_level=True)


def real_emp(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--state-dir", str(state), *args], capture_output=True, text=True, timeout=timeout,
                          check=True, cwd=str(ROOT))


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    state = tmp_path_factory.mktemp("real-emp") / "state"
    dist = Path(SOURCE) / "apps/webhook-service/dist/index.js"
    if not dist.is_file() or not (Path(SOURCE) / "apps/api/dist/src/index.js").is_file():
        real_emp(state, "build", "--source", SOURCE, timeout=1800)
    real_emp(state, "up", "--source", SOURCE)
    try:
        yield state, json.loads((state / "status.json").read_text())
    finally:
        real_emp(state, "down")


def client_names(url: str) -> list[str]:
    conn = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return [entry.get("name", "") for entry in conn.client_list() if entry.get("cmd") != "client|list"]
    finally:
        conn.close()


def test_the_real_answers_have_the_recorded_shapes(services):
    _state, status = services
    results = {**{f"api {k}": v for k, v in check_api(status["api"], status["redis"], sandbox=False).items()},
               **{f"webhook {k}": v for k, v in check_webhook(status["webhook"], sandbox=False).items()}}
    assert {endpoint: problems for endpoint, problems in results.items() if problems} == {}
    assert len(results) == 20


def test_the_real_services_do_not_name_their_connections(services):
    _state, status = services
    names = client_names(status["redis"])
    assert names and set(names) == {""}, names


PLAY = """
- name: Redis restart
  ansible.builtin.include_role:
    name: emp.deploy.redis
"""


def redis_role(state: Path, status: dict, tmp_path: Path, run_id: str, version: str):
    cli = " ".join([*CLI, "--state-dir", str(state)])
    playbook = write_playbook(tmp_path, PLAY)
    playbook.write_text(playbook.read_text().replace("  gather_facts: false\n",
                                                     "  gather_facts: false\n  vars: {emp_phase: infrastructure, emp_component: redis}\n"))
    reports = tmp_path / "reports"
    release = {"name": "redis", "version": version, "strategy": "command", "state_dir": str(state / "release-state"),
               "deploy_command": f"{cli} deploy redis", "rollback_command": f"{cli} rollback redis",
               "current_version_command": f"{cli} current-version redis"}
    health = [{"name": "api", "url": status["api"] + "/health", "expect": {"status": "ok"}},
              {"name": "webhook", "url": status["webhook"] + "/health", "expect": {"redis.connected": True}}]
    variables = {"redis_url": status["redis"], "redis_reconnect_timeout": 45, "redis_gate_duration": 4,
                 "redis_gate_interval": 2, "redis_expected_functions": {"jobMatching": ["findMatchingJob"]},
                 "redis_service_health": health, "redis_releases": [release]}
    proc = run_playbook(playbook, extra_vars=variables, timeout=600,
                        env={"EMP_DEPLOY_REPORT_DIR": str(reports), "EMP_DEPLOY_RUN_ID": run_id})
    return proc, json.loads((reports / run_id / "summary.json").read_text())


def test_redis_restart_go_then_lost_functions_no_go(services, tmp_path):
    state, status = services
    proc, summary = redis_role(state, status, tmp_path, "restart", "restart-1")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert summary["gates"][-1]["decision"] == "GO"
    assert set(client_names(status["redis"])) == {""}, "judged without names"

    proc, summary = redis_role(state, status, tmp_path, "nopersist", "restart-2-nopersist")
    assert proc.returncode == 2, proc.stdout[-6000:]
    gate = summary["gates"][-1]
    assert gate["decision"] == "NO-GO" and "function library 'jobMatching' is not loaded" in gate["reason"], gate
    assert summary["rollback"]["ok"], summary["rollback"]  # the rollback reinstalls them with the repository's CLI


PROBES = """
- name: Webhooks - registration, signed deliveries, retries, no 404
  emp.deploy.webhook_probe:
    service_url: "{{ webhook }}"
    trigger: test
    count: 2
    timeout: 30
    fail_first: 2
    signature_scheme: emp
    require_signature: true
    expect_no_404: true
  register: webhooks

- name: Job queue - atomic claims through the real findMatchingJob, nothing left behind
  emp.deploy.job_queue_probe:
    url: "{{ redis }}"
    api_url: "{{ api }}"
    claim_jobs: 20
    claimers: 4
    check_workers: false  # the API and webhook service only: no worker runs here
  register: queue

- name: Keep the results
  ansible.builtin.copy:
    content: "{{ {'webhooks': webhooks, 'queue': queue} | to_json }}"
    dest: "{{ out }}"
    mode: "0600"
"""


def test_probes_against_the_real_services(services, tmp_path):
    _state, status = services
    before = redis.Redis.from_url(status["redis"]).dbsize()
    out = tmp_path / "out.json"
    proc = run_playbook(write_playbook(tmp_path, PROBES), extra_vars={
        "webhook": status["webhook"], "redis": status["redis"], "api": status["api"], "out": str(out)}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    results = json.loads(out.read_text())
    webhooks, queue = results["webhooks"], results["queue"]
    assert webhooks["healthy"] and webhooks["success_rate"] == 1.0, webhooks["problems"]
    assert webhooks["signatures"]["invalid"] == 0
    assert queue["healthy"], queue["problems"]
    assert queue["claim"]["claimed_more_than_once"] == 0
    assert redis.Redis.from_url(status["redis"]).dbsize() <= before + 2, "the probes leave nothing behind"
