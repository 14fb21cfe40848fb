"""The emp.deploy.go_no_go callback in real ansible-playbook runs: journal, summary, rollback in the
same process, exit codes, plan mode, failed rollbacks, forced stdout callbacks (interruptions are in
test_go_no_go_reliability.py).

Each run gets its own report dir (EMP_DEPLOY_REPORT_DIR) and a small rollback playbook
(EMP_DEPLOY_ROLLBACK_PLAYBOOK) whose plays, one per component, append what they received to a file.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import free_port, run_playbook

# A test-local release step: returns emp_release_step as the real release step does, so the
# callback journals a release record (rollback_scope=run rolls back only components that have one).
RELEASE_MODULE = """#!/usr/bin/python
from __future__ import annotations
import os
from ansible.module_utils.basic import AnsibleModule

def main():
    module = AnsibleModule({"component": {"required": True}, "version": {"required": True}},
                           supports_check_mode=True)
    p = module.params
    module.exit_json(changed=True, emp_release_step={
        "component": p["component"], "version": p["version"], "previous": "1.0", "changed": True,
        "run_id": os.environ.get("EMP_DEPLOY_RUN_ID", ""), "host": "sandbox"})

main()
"""


def test_library(tmp_path: Path) -> Path:
    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    (library / "emp_test_release.py").write_text(RELEASE_MODULE)
    return library


test_library.__test__ = False  # a helper, not a test

# the redis phase up to its release step; tests add the gate they need
REDIS_PHASE = """
- name: Phase redis
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: redis}
  tasks:
    - name: Release redis
      emp_test_release: {component: redis, version: "7.2"}
"""

# the database phase's play header and its gate (GO); DEPLOY releases the database between them
DB_PHASE = """
- name: Phase db
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: database}
  tasks:
"""
DB_GATE = """    - name: Database gate
      emp.deploy.gate:
        name: db-gate
        component: database
        evidence: {rc: 0}
        criteria: [result.rc == 0]
"""

DEPLOY = DB_PHASE + """    - name: Release the database
      emp_test_release: {component: database, version: "2.0"}
""" + DB_GATE + """    - name: Delegated gates in a loop
      delegate_to: localhost
      loop: [1, 2]
      emp.deploy.gate:
        name: "db-loop-{{ item }}"
        component: database
        evidence: {n: "{{ item }}"}
        criteria: [result.n | int > 0]""" + REDIS_PHASE + """    - name: Redis gate
      emp.deploy.gate:
        name: redis-gate
        component: redis
        probe: {module: ansible.builtin.command, args: {argv: [echo, "312"]}, check_mode: false}
        samples: 2
        interval: 0.1
        criteria: ["result.stdout | int < 200"]
- name: Phase never reached
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: application, emp_component: webhooks}
  tasks:
    - name: Never runs
      ansible.builtin.debug: {msg: unreachable}
"""

ROLLBACK = """
- name: Test rollback · redis
  hosts: "{{ 'sandbox' if 'redis' in emp_rollback_components else '!all' }}"
  gather_facts: false
  vars: {emp_component: redis}
  tasks:
    - name: Record the redis rollback
      ansible.builtin.shell:
        cmd: >-
          echo '{{ {'component': 'redis', 'components': emp_rollback_components, 'reason': emp_rollback_reason,
          'run_id': emp_run_id, 'check_mode': ansible_check_mode} | to_json }}' >> {{ marker }}
      check_mode: false
      changed_when: true
- name: Test rollback · database
  hosts: "{{ 'sandbox' if 'database' in emp_rollback_components else '!all' }}"
  gather_facts: false
  vars: {emp_component: database}
  tasks:
    - name: Record the database rollback
      ansible.builtin.shell:
        cmd: >-
          echo '{{ {'component': 'database', 'components': emp_rollback_components, 'run_id': emp_run_id,
          'check_mode': ansible_check_mode} | to_json }}' >> {{ marker }}
      check_mode: false
      changed_when: true
"""

FAILING_ROLLBACK = """
- name: Broken rollback · redis
  hosts: sandbox
  gather_facts: false
  vars: {emp_component: redis, emp_phase: infrastructure}
  tasks:
    - name: Verify the restored release (fails)
      emp.deploy.gate:
        name: rollback-verify
        component: redis
        evidence: {current: "1.1.0"}
        criteria: ["result.current == '1.0.0'"]
"""


class Run:
    def __init__(self, tmp_path: Path, proc: subprocess.CompletedProcess):
        self.proc = proc
        self.stdout = proc.stdout
        (self.dir,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
        self.journal = [json.loads(line) for line in (self.dir / "journal.jsonl").read_text().splitlines()]
        self.summary = json.loads((self.dir / "summary.json").read_text())
        marker = tmp_path / "rollback.jsonl"
        self.rollbacks = [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []

    @property
    def kinds(self) -> list[str]:
        return [record["type"] for record in self.journal]


def deploy(tmp_path: Path, playbook: str = DEPLOY, rollback: str = ROLLBACK, env: dict | None = None,
           **kwargs) -> Run:
    (tmp_path / "deploy.yml").write_text(playbook)
    (tmp_path / "rollback.yml").write_text(rollback)
    full_env = {"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"),
                "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(tmp_path / "rollback.yml"),
                "ANSIBLE_LIBRARY": str(test_library(tmp_path))}
    full_env.update(env or {})
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"marker": str(tmp_path / "rollback.jsonl")},
                        env=full_env, **kwargs)
    return Run(tmp_path, proc)


@pytest.mark.compat
def test_nogo_rolls_back_in_the_same_process_and_records_everything(tmp_path):
    run = deploy(tmp_path, env={"EMP_DEPLOY_ROLLBACK_SCOPE": "run"})
    out = run.stdout
    assert run.proc.returncode == 2, out[-3000:]

    # the journal: JSON lines in the order things happened, gates found in loops and delegated tasks
    assert run.kinds == ["run_start", "phase_start", "release", "gate", "gate", "gate", "phase_end", "phase_start",
                         "release", "gate", "phase_end", "rollback_start", "rollback_play_start", "rollback_play_end",
                         "rollback_play_start", "rollback_play_end", "rollback_end", "run_end"]
    gates = [r for r in run.journal if r["type"] == "gate"]
    assert [g["name"] for g in gates] == ["db-gate", "db-loop-1", "db-loop-2", "redis-gate"]
    assert gates[1]["delegated_to"] == "localhost"
    assert len(gates[3]["samples"]) == 1 and gates[3]["samples"][0]["figures"] == {"result.stdout": "312"}

    summary = run.summary
    assert summary["decision"] == "NO-GO"
    assert summary["check_mode"] is False
    assert summary["run_id"] == run.dir.name
    redis_gate = summary["gates"][-1]
    assert {k: redis_gate[k] for k in ("name", "phase", "component", "mode", "decision")} == {
        "name": "redis-gate", "phase": "infrastructure", "component": "redis", "mode": "enforce", "decision": "NO-GO"}
    assert "result.stdout | int < 200 did not hold in 1 of 1 measured sample (result.stdout was 312)" in redis_gate["reason"]
    assert redis_gate["duration_s"] > 0
    assert [p["decision"] for p in summary["phases"]] == ["GO", "NO-GO"]

    rollback = summary["rollback"]
    assert rollback["triggered"] and rollback["mode"] == "auto" and rollback["scope"] == "run"
    assert rollback["runner"] == "in_process" and rollback["state"] == "finished"
    assert summary["schema_version"] == 1 and {r["schema_version"] for r in run.journal} == {1}
    released = [(r["component"], r["run_id"]) for r in summary["releases"]]
    assert released == [("database", summary["run_id"]), ("redis", summary["run_id"])]
    assert rollback["components"] == ["redis", "database"]  # reverse order of deployment
    assert rollback["ok"] is True and rollback["within_budget"] is True
    assert rollback["budget_s"] == 300 + 900 and rollback["per_component"]["database"]["budget_s"] == 900
    assert 0 < rollback["duration_s"] < 60

    # the rollback playbook received the extra vars, in this process, in the same output stream
    assert [r["component"] for r in run.rollbacks] == ["redis", "database"]
    assert run.rollbacks[0]["components"] == ["redis", "database"]
    assert run.rollbacks[0]["run_id"] == summary["run_id"]
    assert "redis-gate said NO-GO" in run.rollbacks[0]["reason"]
    assert out.index("EMP ROLLBACK [redis, database]") < out.index("PLAY [Test rollback · redis]") \
        < out.index("EMP GO/NO-GO  run")
    assert "PLAY [Phase never reached]" not in out
    table = out[out.index("EMP GO/NO-GO  run"):]
    assert "redis-gate" in table and "NO-GO" in table and "rollback [redis, database] (run): ok" in table


def test_a_rescued_nogo_still_rolls_back_and_exits_non_zero_in_check_mode(tmp_path):
    playbook = """
- name: Phase redis
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: redis}
  tasks:
    - name: Gate handled by rescue
      block:
        - name: Redis gate
          emp.deploy.gate:
            name: redis-gate
            component: redis
            evidence: {clients: 0}
            criteria: [result.clients >= 1]
      rescue:
        - name: Carry on
          ansible.builtin.debug: {msg: rescued}
"""
    run = deploy(tmp_path, playbook, check=True)
    assert "rescued=1" in run.stdout
    assert run.proc.returncode == 2, run.stdout[-2000:]  # the play succeeded, the NO-GO still fails the run
    assert run.summary["check_mode"] is True and run.summary["decision"] == "NO-GO"
    assert run.rollbacks == [{"component": "redis", "components": ["redis"], "reason": run.rollbacks[0]["reason"],
                              "run_id": run.summary["run_id"], "check_mode": True}]


def test_plan_mode_records_the_command_for_a_failed_step_and_an_unreachable_host(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    gone:\n      ansible_connection: ssh\n      ansible_host: 127.0.0.1\n"
                         f"      ansible_port: {free_port()}\n      ansible_ssh_common_args: -o ConnectTimeout=3\n")
    playbook = """
- name: Phase workers
  hosts: sandbox:gone
  gather_facts: false
  vars: {emp_phase: application, emp_component: workers}
  tasks:
    - name: Reach the worker machines
      ansible.builtin.ping:
- name: Phase database
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: database}
  tasks:
    - name: Apply the migrations
      ansible.builtin.command: {argv: ["false"]}
      changed_when: true
"""
    run = deploy(tmp_path, playbook, env={"EMP_DEPLOY_ROLLBACK": "plan"}, args=["-i", str(inventory)])
    assert run.proc.returncode != 0
    failures = run.summary["failures"]
    assert [(f["component"], f["host"], f["reason"]) for f in failures] == [
        ("workers", "gone", "host unreachable during deployment"), ("database", "sandbox", "deployment step failed")]
    rollback = run.summary["rollback"]
    assert rollback["mode"] == "plan" and rollback["components"] == ["database", "workers"]
    assert rollback["command"].startswith("ansible-playbook ")
    assert '"emp_rollback_components": ["database", "workers"]' in rollback["command"]
    assert run.rollbacks == []  # planned, not run
    assert "rollback planned, not run" in run.stdout


def test_a_failed_or_late_rollback_is_reported_loudly_and_never_recurses(tmp_path):
    run = deploy(tmp_path, rollback=FAILING_ROLLBACK, env={"EMP_DEPLOY_ROLLBACK_BUDGETS": "redis=0"})
    assert run.proc.returncode == 2
    assert run.kinds.count("rollback_start") == 1  # the NO-GO inside the rollback started no second rollback
    rollback = run.summary["rollback"]
    assert rollback["ok"] is False and rollback["within_budget"] is False
    assert any("rollback of redis failed: gate rollback-verify" in p for p in rollback["problems"])
    assert any("overran its budget" in p for p in rollback["problems"])
    assert "ROLLBACK PROBLEM" in run.stdout + run.proc.stderr
    assert "rollback_gate" in run.kinds


def test_works_beside_a_forced_stdout_callback_and_its_own_errors_never_break_the_run(tmp_path):
    playbook = """
- name: Phase redis
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: redis}
  tasks:
    - name: Gate in warn mode
      emp.deploy.gate: {name: warn-gate, component: redis, mode: warn, evidence: {n: 0}, criteria: [result.n > 0]}
"""
    run = deploy(tmp_path, playbook, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.oneline"})
    assert run.proc.returncode == 0
    assert run.summary["decision"] == "GO" and run.summary["gates"][0]["decision"] == "NO-GO"
    assert "EMP GO/NO-GO" in run.stdout and "PLAY [" not in run.stdout  # oneline prints no play banners

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the report dir should be")
    (tmp_path / "deploy.yml").write_text(playbook)
    proc = run_playbook(tmp_path / "deploy.yml", env={"EMP_DEPLOY_REPORT_DIR": str(blocked / "reports")})
    assert proc.returncode == 0, proc.stdout[-2000:]
    # told loudly, naming the folder; the run goes on and the table is still printed
    assert f"NO RUN RECORD: cannot write the run record in {blocked / 'reports'}" in proc.stderr
    assert "EMP GO/NO-GO" in proc.stdout and "NO RECORD:" in proc.stdout
