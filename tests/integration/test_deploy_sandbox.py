"""The whole deployment sequence end to end: the real `ansible-playbook deploy.yml` with the default
inventory (inventories/sandbox) against a sandbox in a temporary state directory.

1. GO: the 1.0.0 sandbox is deployed to 1.1.0 through all four phases; every gate of every phase says GO.
2. NO-GO: then the webhook release whose routes answer 404 is shipped; phases 1 and 2 say GO again
   (unchanged), the webhooks gate says NO-GO, the go_no_go callback rolls back only the webhooks (current
   back at 1.1.0, restarted), nothing later runs, and ansible-playbook exits 2.

Soak windows are the sandbox inventory's (a few samples seconds apart): about two minutes in all.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook

pytestmark = pytest.mark.timeout(420)

GATES = [("infrastructure", "database", "database-connections"), ("infrastructure", "redis", "redis-connections"),
         ("telemetry", "telemetry", "telemetry-flowing"), ("application", "webhooks", "webhooks-processing"),
         ("application", "workers", "workers-processing-mock"),
         ("application", "workers", "workers-processing-ollama-sim"),
         ("application", "workers", "workers-memory"), ("devtools", "ngrok", "ngrok-tunnels-api")]


def sandbox_cli(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", "--state-dir", str(state), *args], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def sandbox_state(tmp_path_factory):
    state = tmp_path_factory.mktemp("deploy-sandbox") / "state"
    sandbox_cli(state, "up")
    yield state
    sandbox_cli(state, "down")


def deploy(state: Path, run_id: str, **extra_vars: str) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    reports = state.parent / "reports"
    proc = run_playbook(ROOT / "deploy.yml", extra_vars=extra_vars or None, timeout=300,
                        env={"EMP_SANDBOX_STATE": str(state), "EMP_DEPLOY_REPORT_DIR": str(reports),
                             "EMP_DEPLOY_RUN_ID": run_id, "ANSIBLE_PIPELINING": "1"})
    summary = json.loads((reports / run_id / "summary.json").read_text())
    journal = [json.loads(line) for line in (reports / run_id / "journal.jsonl").read_text().splitlines()]
    return proc, summary, journal


def current(state: Path, service: str) -> str:
    return os.readlink(state / "releases" / service / "current")


def running_versions(state: Path) -> dict:
    return json.loads(sandbox_cli(state, "status", "--json").stdout)["versions"]


def test_go_through_every_phase(sandbox_state):
    assert running_versions(sandbox_state) == {"api": "1.0.0", "webhook": "1.0.0", "worker": "1.0.0",
                                               "monitor": "1.0.0"}

    # A one-second span lookback is outlasted by any soak, however fast: the telemetry gate must look for
    # the services' spans from the start of its traffic burst on, not a fixed window before each sample.
    proc, summary, journal = deploy(sandbox_state, "go", telemetry_lookback=1)

    assert proc.returncode == 0, proc.stdout[-6000:]
    assert summary["decision"] == "GO"
    assert [(g["phase"], g["component"], g["name"]) for g in summary["gates"]] == GATES
    assert {g["decision"] for g in summary["gates"]} == {"GO"}, summary["gates"]
    assert [r["decision"] for r in journal if r.get("type") == "gate"] == ["GO"] * len(GATES)
    assert not summary["rollback"]["triggered"]
    assert running_versions(sandbox_state) == {"api": "1.1.0", "webhook": "1.1.0", "worker": "1.1.0",
                                               "monitor": "1.1.0"}
    assert current(sandbox_state, "ngrok") == "releases/1.1.0"
    assert "EMP GO/NO-GO" in proc.stdout and "decision GO" in proc.stdout


def test_webhook_404_release_is_no_go_and_only_webhooks_roll_back(sandbox_state):
    if current(sandbox_state, "webhook") != "releases/1.1.0":
        pytest.skip("needs the GO deployment of the previous test")

    proc, summary, _journal = deploy(sandbox_state, "nogo", emp_sandbox_webhook_version="1.1.0-404")

    assert proc.returncode == 2, proc.stdout[-6000:]
    assert summary["decision"] == "NO-GO"
    decisions = [(g["component"], g["decision"]) for g in summary["gates"]]
    assert decisions == [("database", "GO"), ("redis", "GO"), ("telemetry", "GO"), ("webhooks", "NO-GO")]
    webhooks_gate = summary["gates"][-1]
    assert "404" in webhooks_gate["reason"] and "POST /webhooks" in webhooks_gate["reason"], webhooks_gate
    rollback = summary["rollback"]
    assert rollback["triggered"] and rollback["components"] == ["webhooks"], rollback
    assert rollback["ok"] and rollback["within_budget"] and rollback["budget_s"] == 300, rollback
    # only the webhook service went back; earlier phases (and the workers, never reached) are untouched
    assert current(sandbox_state, "webhook") == "releases/1.1.0"
    assert running_versions(sandbox_state) == {"api": "1.1.0", "webhook": "1.1.0", "worker": "1.1.0",
                                               "monitor": "1.1.0"}
    assert (sandbox_state / "releases/webhook/releases/1.1.0-404/release.json").is_file()
    assert "Rollback · webhooks" in proc.stdout
