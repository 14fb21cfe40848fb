"""What the release records say, through real ansible-playbook runs of the emp.deploy.release role:

- the run id of a deploy run (from EMP_DEPLOY_RUN_ID, which the go_no_go callback exports) and of a
  rollback run (the extra var emp_run_id) lands in .emp-release.json and its history;
- the switching task returns emp_release_step at the top level of its result (the run-record contract);
- one entry per phase role is enough (release_spec), with the role's defaults for what it leaves out;
- two deployments writing the same release history at once never lose an entry.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import BIN, ROOT, run_playbook, write_playbook


def release_task(spec: dict, action: str = "deploy") -> str:
    return f"""
- name: Release {action} {spec.get('version', '')}
  ansible.builtin.include_role:
    name: emp.deploy.release
  vars:
    release_action: {action}
    release_spec: {json.dumps(spec)}
"""


def save(out: Path, expression: str = "release_result") -> str:
    return f"""
- name: Save the result
  ansible.builtin.copy:
    content: "{{{{ {expression} | to_json }}}}"
    dest: {out}
    mode: "0600"
"""


def state(base: Path) -> dict:
    return json.loads((base / ".emp-release.json").read_text())


def test_deploy_and_rollback_record_the_run_id_and_return_the_release_step(tmp_path):
    base = tmp_path / "svc"
    out = tmp_path / "out.json"
    spec = {"name": "svc", "base_dir": str(base)}
    deploy = write_playbook(tmp_path, "\n".join([
        release_task({**spec, "version": "1.0.0"}), release_task({**spec, "version": "1.1.0"}), save(out)]),
        name="deploy.yml")
    proc = run_playbook(deploy, extra_vars={"emp_component": "svc-component"},
                        env={"EMP_DEPLOY_RUN_ID": "run-deploy-42", "EMP_DEPLOY_REPORT_DIR": str(tmp_path / "r")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    recorded = state(base)
    assert recorded["run_id"] == "run-deploy-42"
    assert [(h["version"], h["run_id"]) for h in recorded["history"]] == [("1.0.0", "run-deploy-42"),
                                                                          ("1.1.0", "run-deploy-42")]
    # the task that switched the release returns the step at the top level of its result
    assert json.loads(out.read_text())["emp_release_step"] == {
        "component": "svc-component", "version": "1.1.0", "previous": "1.0.0", "changed": True,
        "run_id": "run-deploy-42", "host": "sandbox"}

    rollback = write_playbook(tmp_path, release_task({**spec, "version": "1.1.0"}, "rollback") + save(out),
                              name="rollback.yml")
    proc = run_playbook(rollback, extra_vars={"emp_run_id": "run-deploy-42-rollback"},
                        env={"EMP_DEPLOY_RUN_ID": "", "EMP_DEPLOY_REPORT_DIR": str(tmp_path / "r")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    recorded = state(base)
    assert recorded["current"] == "1.0.0" and recorded["rolled_back_from"] == "1.1.0"
    assert recorded["run_id"] == "run-deploy-42-rollback"
    assert recorded["history"][-1] == {**recorded["history"][-1], "action": "rollback", "from": "1.1.0",
                                       "version": "1.0.0", "run_id": "run-deploy-42-rollback"}
    step = json.loads(out.read_text())["emp_release_step"]
    assert step == {"component": "svc", "version": "1.0.0", "previous": "1.1.0", "changed": True,
                    "run_id": "run-deploy-42-rollback", "host": "sandbox"}


def test_release_spec_takes_the_role_defaults_and_unknown_keys_are_refused(tmp_path):
    base = tmp_path / "svc"
    out = tmp_path / "out.json"
    tasks = release_task({"name": "svc", "version": "1.0.0", "base_dir": str(base),
                          "manifest": {"service": "svc", "version": "1.0.0"}}) + save(out) + """
- name: An entry with an option the role does not have
  block:
    - name: Release with an unknown key
      ansible.builtin.include_role:
        name: emp.deploy.release
      vars:
        release_spec: {name: svc, version: 1.0.1, base_dir: /nonexistent/emp, restart_commmand: "true"}
  rescue:
    - name: Keep the message
      ansible.builtin.copy:
        content: "{{ ansible_failed_result.msg }}"
        dest: """ + str(tmp_path / "refused.txt") + """
        mode: "0600"
"""
    proc = run_playbook(write_playbook(tmp_path, tasks), env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "r")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = json.loads(out.read_text())
    assert (result["current"], result["changed"]) == ("1.0.0", True)
    assert json.loads((base / "releases/1.0.0/release.json").read_text()) == {"service": "svc", "version": "1.0.0"}
    assert "restart_commmand" in (tmp_path / "refused.txt").read_text()
    assert not Path("/nonexistent/emp").exists()


def writer_playbook(tmp_path: Path, name: str, base: Path, versions: list[str]) -> Path:
    # the release_* variables (not release_spec): the way the role was called before release_spec
    tasks = "".join(f"""
- name: Release {version}
  ansible.builtin.include_role:
    name: emp.deploy.release
  vars: {{release_name: svc, release_base_dir: "{base}", release_version: "{version}", release_keep: 100}}
""" for version in versions)
    return write_playbook(tmp_path, tasks, name=f"{name}.yml")


def test_two_deployments_at_once_never_lose_a_history_entry(tmp_path):
    base = tmp_path / "svc"
    # every version is new, so every step switches and records one entry; 2 x 8 fit the kept history
    writers = {name: [f"{name}-{n}" for n in range(8)] for name in ("a", "b")}
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}
    procs = {}
    for name, versions in writers.items():
        procs[name] = subprocess.Popen(
            [str(BIN / "ansible-playbook"), str(writer_playbook(tmp_path, name, base, versions)),
             "-i", str(ROOT / "inventories/sandbox/hosts.yml")],
            env={**env, "EMP_DEPLOY_RUN_ID": f"writer-{name}"}, cwd=str(ROOT), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
    outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, outputs[name][-3000:]

    history = state(base)["history"]
    recorded = sorted((entry["run_id"], entry["version"]) for entry in history)
    expected = sorted((f"writer-{name}", version) for name, versions in writers.items() for version in versions)
    assert recorded == expected
    # each writer's own entries are in its order
    for name, versions in writers.items():
        assert [e["version"] for e in history if e["run_id"] == f"writer-{name}"] == versions
    assert json.loads((base / ".emp-release.json").read_text())  # whole JSON, never half a file
