"""'All services reconnect' without client names: the Redis role's default judgement, through the real
ansible-playbook, a sandbox in a temporary state directory and a real Redis restart released with the
command strategy (`python -m sandbox restart redis`).

The public EMP services open their Redis connections without a name, so the role counts the service
connections before the release (the probe's own left out) and wants them back, and asks each service's
own health endpoint (the webhook service and the monitor report their Redis status).

1. GO: every sandbox service switched to its release without client names; a Redis restart; GO although
   no connection has a name.
2. NO-GO: the monitor release that gives Redis up after the first loss; the count alone (no health
   endpoint, no name) says NO-GO and names the figures.
3. Nothing to judge (an idle Redis, no health endpoint, no name): the role refuses before it changes anything.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import redis

from conftest import ROOT, run_playbook
from test_deploy_sandbox import sandbox_cli

pytestmark = pytest.mark.timeout(300)

PLAY = """---
- name: Phase 1 · Redis
  hosts: sandbox
  gather_facts: false
  vars:
    emp_phase: infrastructure
    emp_component: redis
  tasks:
    - name: Release and gate the Redis restart
      ansible.builtin.include_role:
        name: emp.deploy.redis
"""


@pytest.fixture(scope="module")
def sandbox_state(tmp_path_factory):
    state = tmp_path_factory.mktemp("redis-unnamed") / "state"
    sandbox_cli(state, "up")
    yield state
    sandbox_cli(state, "down")


def status(state: Path) -> dict:
    return json.loads(sandbox_cli(state, "status", "--json").stdout)


def client_names(state: Path) -> list[str]:
    conn = redis.Redis.from_url(status(state)["redis"], socket_timeout=5)
    try:
        return [entry.get("name", "") for entry in conn.client_list()]
    finally:
        conn.close()


def restart_redis_release(state: Path, version: str) -> dict:
    return {"name": "redis", "version": version, "base_dir": str(state.parent / "redis-release"),
            "restart_command": f"{sys.executable} -m sandbox --state-dir {state} restart redis",
            "restart_chdir": str(ROOT),
            "manifest": {"service": "redis", "version": version, "faults": []}}


def run_role(state: Path, run_id: str, **variables) -> tuple:
    playbook = state.parent / "redis.yml"
    playbook.write_text(PLAY)
    reports = state.parent / "reports"
    proc = run_playbook(playbook, extra_vars={"redis_url": status(state)["redis"], "redis_reconnect_timeout": 20,
                                              "redis_gate_duration": 2, "redis_gate_interval": 1, **variables},
                        env={"EMP_SANDBOX_STATE": str(state), "EMP_DEPLOY_REPORT_DIR": str(reports),
                             "EMP_DEPLOY_RUN_ID": run_id}, timeout=240)
    summary_path = reports / run_id / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return proc, summary


def test_unnamed_services_reconnect_go_after_a_redis_restart(sandbox_state):
    for service in ("api", "webhook", "monitor", "worker"):
        sandbox_cli(sandbox_state, "deploy", service, "1.1.0-noredis")
    assert set(client_names(sandbox_state)) == {""}, "every service connection is unnamed"
    urls = status(sandbox_state)
    health = [{"name": "api", "url": urls["api"] + "/health", "expect": {"status": "ok"}},
              {"name": "webhook", "url": urls["webhook"] + "/health", "expect": {"redis.connected": True}},
              {"name": "monitor", "url": urls["monitor"] + "/health", "expect": {"redis.connected": True}}]
    redis_pid = status(sandbox_state)["services"]["redis"]["pid"]

    proc, summary = run_role(sandbox_state, "unnamed-go", redis_service_health=health,
                             redis_expected_functions={"jobMatching": ["findMatchingJob"]},
                             redis_releases=[restart_redis_release(sandbox_state, "7.0.1")])

    assert proc.returncode == 0, proc.stdout[-6000:]
    gate = summary["gates"][-1]
    assert (gate["name"], gate["decision"]) == ("redis-connections", "GO"), gate
    assert status(sandbox_state)["services"]["redis"]["pid"] != redis_pid, "Redis was restarted"
    assert set(client_names(sandbox_state)) == {""}


def test_a_service_that_does_not_reconnect_is_no_go_by_the_count_alone(sandbox_state):
    sandbox_cli(sandbox_state, "deploy", "monitor", "1.1.0-noreconnect")

    proc, summary = run_role(sandbox_state, "unnamed-nogo", redis_reconnect_timeout=8,
                             redis_releases=[restart_redis_release(sandbox_state, "7.0.2")])

    assert proc.returncode == 2, proc.stdout[-6000:]
    gate = next(g for g in summary["gates"] if g["name"] == "redis-connections")
    assert gate["decision"] == "NO-GO", gate
    assert "connected clients <" in gate["reason"] and "not counting this probe" in gate["reason"], gate


def test_nothing_to_judge_refuses_before_any_change(redis_server, tmp_path):
    state = tmp_path / "state"
    playbook = tmp_path / "redis.yml"
    playbook.write_text(PLAY)
    proc = run_playbook(playbook, extra_vars={"redis_url": redis_server.url,
                                              "redis_releases": [restart_redis_release(state, "7.0.3")]},
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}, timeout=120)

    assert proc.returncode != 0
    assert "nothing would show that the services reconnect" in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "redis-release" / "releases").exists(), "nothing was released"
    assert not state.exists(), "the restart command never ran"
