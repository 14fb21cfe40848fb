"""The rollback runner: the child-process command line, the events a child rollback reports, and the
fallback to a real child ansible-playbook when the in-process runner is unavailable."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _executor_adapter as adapter
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _rollback_runner as runner
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr

ROOT = Path(__file__).resolve().parents[4]
VARS = {"emp_rollback_components": ["redis"], "emp_rollback_reason": "r", "emp_run_id": "run-1"}


def test_the_child_command_repeats_inventory_limit_check_vault_and_extra_vars():
    cli = {"inventory": ("inv/hosts.yml", "extra.yml"), "subset": "web:!db", "check": True, "diff": True,
           "vault_ids": ("prod@vault.txt",), "vault_password_files": ("pw.txt",), "extra_vars": ("@vars.yml", "a=1"),
           "forks": 7, "verbosity": 2, "become": True, "remote_user": "deploy", "tags": ("redis",)}
    argv = runner.rollback_argv(cli, "rollback.yml", VARS, "/bin/ansible-playbook")
    assert argv == ["/bin/ansible-playbook", "rollback.yml", "-i", "inv/hosts.yml", "-i", "extra.yml",
                    "--limit", "web:!db", "--check", "--diff", "--vault-id", "prod@vault.txt",
                    "--vault-password-file", "pw.txt", "-u", "deploy", "-f", "7", "--become", "-vv",
                    "-e", "@vars.yml", "-e", "a=1", "-e", json.dumps(VARS)]  # no tags: the rollback runs whole
    assert runner.prompted_passwords({"ask_vault_pass": True}) == ["vault password"]


def test_events_of_a_child_rollback_replay_into_the_recorder(tmp_path):
    events = tmp_path / "events.jsonl"
    writer = runner.EventWriter(str(events))
    writer.rb_play_start("rollback redis", "redis", 10.0)
    writer.rb_task("Restore")
    writer.rb_failure("Restore on h: boom", False)
    writer.rb_play_end(12.5)
    with open(events, "a", encoding="utf-8") as handle:
        handle.write('{"m": "rb_no_hosts"')  # a line cut by a killed child is left for later
    rec = rr.RunRecorder(rr.validate_options({"report_dir": str(tmp_path / "r")}), "run-1")
    offset = runner.replay_events(events, rec)
    assert offset < events.stat().st_size
    assert [(p.play, p.component, p.ended_mono - p.started_mono, p.failures) for p in rec.rb_plays] == [
        ("rollback redis", "redis", 2.5, ["Restore on h: boom"])]
    with open(events, "a", encoding="utf-8") as handle:
        handle.write('}\n{"m": "__class__", "a": []}\n')  # only the sink's methods are replayed
    runner.replay_events(events, rec, offset)
    assert rec.rb_plays[-1].hosts is False


def test_when_the_in_process_runner_fails_a_child_ansible_playbook_rolls_back(tmp_path, monkeypatch):
    marker = tmp_path / "rolled-back"
    (tmp_path / "rollback.yml").write_text(f"""
- name: Test rollback · redis
  hosts: sandbox
  gather_facts: false
  vars: {{emp_component: redis}}
  tasks:
    - name: Record the rollback
      ansible.builtin.copy: {{content: "{{{{ emp_rollback_components | join(',') }}}} {{{{ emp_run_id }}}}", dest: "{marker}", mode: "0600"}}
""")

    def unavailable(*args, **kwargs):
        raise adapter.InProcessUnavailable("forced by the test")

    monkeypatch.setattr(adapter, "run_in_process", unavailable)
    monkeypatch.setenv("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    monkeypatch.setenv("EMP_DEPLOY_REPORT_DIR", str(tmp_path / "child-reports"))
    monkeypatch.setattr(runner, "_ansible_playbook", lambda: str(Path(sys.executable).parent / "ansible-playbook"))
    rec = rr.RunRecorder(rr.validate_options({"report_dir": str(tmp_path / "reports")}), "run-1")
    rec.start(playbook="deploy.yml")
    rec.plan_rollback(["redis"], "cmd")
    warnings: list[str] = []
    rollback = runner.RollbackRunner(rec, {"inventory": (str(ROOT / "inventories/sandbox/hosts.yml"),)}, warnings.append)
    problems = rollback.run(str(tmp_path / "rollback.yml"), VARS, force_subprocess=False)
    assert problems == []
    assert marker.read_text() == "redis run-1"
    assert rec.rollback["runner"] == R.RUNNER_SUBPROCESS and rec.rollback["ok"] is True
    assert rec.rollback["per_component"]["redis"]["ran"] is True
    assert warnings and "forced by the test" in warnings[0]
    assert not (tmp_path / "child-reports").exists()  # the child reports to its parent, keeps no record of its own
