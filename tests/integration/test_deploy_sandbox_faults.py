"""The other broken sandbox releases the deployment must refuse, through the real `ansible-playbook
deploy.yml` (default inventory, a sandbox in a temporary state directory), one run each:

- API 1.1.0-notelemetry (telemetry export switched off): the phase 2 gate says NO-GO because emp-api
  sent no spans; only the telemetry component (the API) is rolled back, within its 600 s budget.
- worker 1.1.0-leak (RSS grows steadily): the jobs still complete, but the workers-memory soak says
  NO-GO on the memory growth; only the workers are rolled back.

About two minutes in all; test_deploy_sandbox.py has the GO path and the webhook 404 NO-GO.
"""
from __future__ import annotations

import os

import pytest

from test_deploy_sandbox import deploy, running_versions, sandbox_cli

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def sandbox_state(tmp_path_factory):
    state = tmp_path_factory.mktemp("deploy-sandbox-faults") / "state"
    sandbox_cli(state, "up")
    yield state
    sandbox_cli(state, "down")


def test_api_without_telemetry_is_no_go_and_only_telemetry_rolls_back(sandbox_state):
    proc, summary, _journal = deploy(sandbox_state, "notelemetry", emp_sandbox_api_version="1.1.0-notelemetry")

    assert proc.returncode == 2, proc.stdout[-6000:]
    assert [(g["component"], g["decision"]) for g in summary["gates"]] == [
        ("database", "GO"), ("redis", "GO"), ("telemetry", "NO-GO")]
    assert summary["gates"][-1]["reason"].startswith("service 'emp-api' sent no spans"), summary["gates"][-1]
    rollback = summary["rollback"]
    assert rollback["components"] == ["telemetry"] and rollback["ok"] and rollback["within_budget"], rollback
    assert rollback["budget_s"] == 600
    assert os.readlink(sandbox_state / "releases/api/current") == "releases/1.0.0"
    assert running_versions(sandbox_state) == {"api": "1.0.0", "webhook": "1.0.0", "worker": "1.0.0",
                                               "monitor": "1.1.0"}


def test_leaking_worker_is_no_go_on_memory_and_only_workers_roll_back(sandbox_state):
    proc, summary, _journal = deploy(sandbox_state, "leak", emp_sandbox_worker_version="1.1.0-leak")

    assert proc.returncode == 2, proc.stdout[-6000:]
    decisions = {g["name"]: g["decision"] for g in summary["gates"]}
    assert decisions == {"database-connections": "GO", "redis-connections": "GO", "telemetry-flowing": "GO",
                         "webhooks-processing": "GO", "workers-processing-mock": "GO",
                         "workers-processing-ollama-sim": "GO", "workers-memory": "NO-GO"}
    assert "result.pm2.memory_max_bytes <= baseline.pm2.memory_max_bytes" in summary["gates"][-1]["reason"]
    rollback = summary["rollback"]
    assert rollback["components"] == ["workers"] and rollback["ok"] and rollback["within_budget"], rollback
    assert running_versions(sandbox_state) == {"api": "1.1.0", "webhook": "1.1.0", "worker": "1.0.0",
                                               "monitor": "1.1.0"}
