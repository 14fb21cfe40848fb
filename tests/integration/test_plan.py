"""`ansible-playbook deploy.yml -e emp_plan=true` (make plan) and emp.deploy.plan: the plan of the sandbox
inventory lists every phase, component and gate in order, with hosts, releases, rollback plays and budgets;
no host is touched (release symlinks and state files unchanged, no run record); and what is unsafe is
flagged: a soak longer than the rollback budget (deploy.yml with other variables), a component without a
gate and one without a rollback play (a test playbook, role and rollback playbook of their own)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook
from test_deploy_sandbox import sandbox_state  # noqa: F401  # pylint: disable=unused-import  # the module-scoped sandbox fixture

pytestmark = pytest.mark.timeout(300)

SANDBOX_GATES = [("infrastructure", "database", "database-connections"),
                 ("infrastructure", "redis", "redis-connections"),
                 ("telemetry", "telemetry", "telemetry-flowing"),
                 ("application", "webhooks", "webhooks-processing"),
                 ("application", "workers", "workers-processing-mock"),
                 ("application", "workers", "workers-processing-ollama-sim"),
                 ("application", "workers", "workers-memory"),
                 ("devtools", "ngrok", "ngrok-tunnels-api")]


def plan_run(tmp_path: Path, *extra: str, env: dict | None = None):
    reports = tmp_path / "reports"
    proc = run_playbook(ROOT / "deploy.yml", extra_vars={"emp_plan": True}, args=list(extra),
                        env={"EMP_DEPLOY_REPORT_DIR": str(reports), **(env or {})})
    return proc, reports


def snapshot(state: Path) -> dict:
    """Every release symlink and state file of the sandbox, with its target or content and mtime."""
    seen = {}
    for path in sorted((state / "releases").rglob("*")):
        if path.is_symlink():
            seen[str(path)] = ("link", os.readlink(path), path.lstat().st_mtime_ns)
        elif path.is_file():
            seen[str(path)] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return seen


def test_sandbox_plan_lists_every_phase_component_and_gate_and_touches_nothing(sandbox_state, tmp_path):
    before = snapshot(sandbox_state)

    proc, reports = plan_run(tmp_path, env={"EMP_SANDBOX_STATE": str(sandbox_state)})

    assert proc.returncode == 0, proc.stdout[-4000:]
    text = proc.stdout
    assert "EMP DEPLOYMENT PLAN" in text and "Safe: every component has a gate" in text, text[-4000:]
    # phases in order, each component with its gates, in the order deploy.yml runs them
    positions = [text.index(f"Phase {phase}") for phase in ("infrastructure", "telemetry", "application", "devtools")]
    assert positions == sorted(positions)
    gate_positions = [text.index(f"gate {name} · enforce") for _phase, _component, name in SANDBOX_GATES]
    assert gate_positions == sorted(gate_positions), text
    for component, budget in (("database", 900), ("redis", 300), ("telemetry", 600), ("webhooks", 300)):
        assert f"rollback: Rollback · {component} · " in text and f"budget {budget} s" in text
    assert "release: webhook 1.1.0 (symlink); rollback readiness checked before each release" in text
    assert "probe emp.deploy.webhook_probe · soak 2 s (3 samples)" in text  # the inventory's soak
    assert "- result.not_found_routes | default([]) | length == 0" in text
    # nothing ran on any host: no run record, no release switched, no state file written
    assert not reports.exists()
    assert snapshot(sandbox_state) == before
    assert "changed=0" in text and "failed=0" in text


def test_soak_longer_than_the_rollback_budget_is_flagged(tmp_path):
    proc, reports = plan_run(tmp_path, "-e", "webhooks_gate_interval=200",
                             env={"EMP_DEPLOY_ROLLBACK_BUDGETS": "webhooks=5m"})

    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "webhooks  UNSAFE" in proc.stdout
    assert ("webhooks: gate webhooks-processing soaks 400 s, longer than its rollback budget 300 s"
            in proc.stdout), proc.stdout[-3000:]
    assert "UNSAFE: 1 problem" in proc.stdout
    assert not reports.exists()


def test_component_without_gate_and_without_rollback_play_are_flagged(tmp_path):
    roles = tmp_path / "roles"
    (roles / "assets" / "tasks").mkdir(parents=True)
    (roles / "assets" / "tasks" / "main.yml").write_text(
        "---\n- name: Copy the assets\n  ansible.builtin.copy:\n    src: a\n    dest: /tmp/never\n    mode: '0644'\n")
    (roles / "search" / "tasks").mkdir(parents=True)
    (roles / "search" / "tasks" / "main.yml").write_text(
        "---\n- name: GO/NO-GO · search answers\n  emp.deploy.gate:\n    name: search-up\n"
        "    probe: {module: emp.deploy.service_probe, args: {url: 'http://127.0.0.1:9'}}\n"
        "    samples: 2\n    interval: 1\n    criteria: [result.healthy]\n")
    play = ("- name: {name}\n  hosts: all\n  gather_facts: false\n  vars: {{emp_phase: {phase}, emp_component: {c}}}\n"
            "  tasks:\n    - name: Run it\n      ansible.builtin.include_role:\n        name: {c}\n")
    deploy, rollback = tmp_path / "deploy.yml", tmp_path / "rollback.yml"
    deploy.write_text("---\n" + play.format(name="Assets", phase="web", c="assets")
                      + play.format(name="Search", phase="web", c="search"))
    rollback.write_text("---\n" + play.format(name="Rollback · assets", phase="rollback", c="assets"))
    playbook = tmp_path / "plan.yml"
    playbook.write_text(f"""---
- name: Plan a test deployment
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan
      emp.deploy.plan:
        playbook: {deploy}
        rollback_playbook: {rollback}
        roles_dir: {roles}
      register: planned
    - name: Keep it
      ansible.builtin.copy:
        content: "{{{{ planned | to_json }}}}"
        dest: {tmp_path / 'plan.json'}
        mode: "0644"
""")
    proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")})

    assert proc.returncode == 0, proc.stdout[-4000:]
    result = json.loads((tmp_path / "plan.json").read_text())
    assert result["safe"] is False
    assert result["unsafe"] == ["assets has no GO/NO-GO gate: nothing would stop a bad release",
                                "search has no rollback play: a NO-GO could not be rolled back"]
    (phase,) = result["plan"]["phases"]
    assert [c["component"] for c in phase["components"]] == ["assets", "search"]
    assert phase["components"][1]["gates"][0]["soak_window_s"] == 1
    assert "gate: none" in result["msg"] and "rollback: none" in result["msg"]
    assert not Path("/tmp/never").exists()


def fleet_inventory(tmp_path: Path, count: int) -> Path:
    """A second inventory source beside the sandbox's: `count` more hosts, local connections."""
    hosts = "".join(f"    fleet{n:03d}:\n      ansible_connection: local\n" for n in range(1, count + 1))
    path = tmp_path / "fleet.yml"
    path.write_text("all:\n  hosts:\n" + hosts, encoding="utf-8")
    return path


def test_plan_shows_the_batches_of_a_fleet_rollout(tmp_path):
    inventory = fleet_inventory(tmp_path, 19)  # with the sandbox host: 20 hosts per component
    proc, reports = plan_run(tmp_path, "-i", str(inventory), "-e", '{"emp_batch": [1, "10%", "100%"]}',
                             "-e", "emp_max_fail_percentage=5")

    assert proc.returncode == 0, proc.stdout[-4000:]
    line = ("batches: 3 of 1, 2, 17 hosts (emp_batch [1, '10%', '100%']), each judged before the next starts; "
            "up to 5 % of a batch's hosts may say NO-GO before the run stops")
    # every component of the four phases, each with its 20 hosts
    assert proc.stdout.count(line) == 6, proc.stdout[-4000:]
    assert not reports.exists()


def test_plan_without_emp_batch_shows_no_batches(tmp_path):
    proc, _reports = plan_run(tmp_path, "-i", str(fleet_inventory(tmp_path, 3)))

    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "batches:" not in proc.stdout


def test_plan_refuses_a_malformed_batch(tmp_path):
    playbook = tmp_path / "plan.yml"
    playbook.write_text("""---
- name: Plan with a bad batch
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan
      emp.deploy.plan:
        batch: [1, "150%"]
""")
    proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")})

    assert proc.returncode == 2, proc.stdout[-4000:]
    assert "emp.deploy.plan: emp_batch[1]: '150%' is not a percentage of hosts between 1% and 100%" in proc.stdout
