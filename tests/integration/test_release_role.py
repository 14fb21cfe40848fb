"""The emp.deploy.release role in real runs: symlink and command strategies, idempotence, keep,
restart, rollback and its verification, check mode, bad variables."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_playbook


def step(version: str, action: str = "deploy", **extra) -> str:
    """One include of the role, then its release_result appended to the results list."""
    variables = {"release_action": action, "release_version": version, **extra}
    body = "\n".join(f"        {key}: {json.dumps(value)}" for key, value in variables.items())
    return f"""
    - name: Release {action} {version}
      ansible.builtin.include_role:
        name: emp.deploy.release
      vars:
{body}
    - name: Keep the result
      ansible.builtin.set_fact:
        results: "{{{{ results + [release_result] }}}}"
"""


def play(steps: str, out: Path, **role_vars) -> str:
    variables = "\n".join(f"    {key}: {json.dumps(value)}" for key, value in role_vars.items())
    return f"""
- name: Release role test
  hosts: sandbox
  gather_facts: false
  vars:
    results: []
{variables}
  tasks:
{steps}
    - name: Write the results
      ansible.builtin.copy:
        content: "{{{{ results | to_json }}}}"
        dest: {out}
        mode: "0644"
"""


def run(tmp_path: Path, text: str, **kwargs):
    path = tmp_path / "release.yml"
    path.write_text(text)
    proc = run_playbook(path, env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}, **kwargs)
    out = tmp_path / "out.json"
    results = json.loads(out.read_text()) if out.exists() else None
    return proc, results


def current(base: Path) -> str:
    return Path(base, "current").readlink().as_posix()


def test_symlink_strategy_deploys_switches_keeps_and_rolls_back(tmp_path):
    base, src, restarts = tmp_path / "svc", tmp_path / "src", tmp_path / "restarts"
    src.mkdir()
    (src / "app.py").write_text("print('hello')\n")
    steps = "".join([
        step("1.0.0", release_src=str(src)),
        step("2.0.0", release_manifest={"service": "svc", "version": "2.0.0", "faults": []}),
        step("2.0.0"),                                             # idempotent: nothing changes
        step("3.0.0"),                                             # 3 releases with release_keep 2
        step("3.0.0", action="rollback"),                          # back to 2.0.0, verified
        step("3.0.0", action="rollback"),                          # 3.0.0 is not current: nothing to do
    ])
    proc, results = run(tmp_path, play(steps, tmp_path / "out.json", release_name="svc", release_base_dir=str(base),
                                       release_keep=2,
                                       release_restart_command=f'echo "$EMP_RELEASE_VERSION" >> {restarts}'))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [(r["action"], r["current"], r["changed"]) for r in results] == [
        ("deploy", "1.0.0", True), ("deploy", "2.0.0", True), ("deploy", "2.0.0", False),
        ("deploy", "3.0.0", True), ("rollback", "2.0.0", True), ("rollback", "2.0.0", False)]
    assert results[1]["previous"] == "1.0.0"
    assert current(base) == "releases/2.0.0"
    assert sorted(p.name for p in (base / "releases").iterdir()) == ["2.0.0", "3.0.0"]  # release_keep 2
    assert json.loads((base / "releases/2.0.0/release.json").read_text())["version"] == "2.0.0"
    state = json.loads((base / ".emp-release.json").read_text())
    assert state["current"] == "2.0.0" and state["previous"] is None and state["rolled_back_from"] == "3.0.0"
    assert [h["action"] for h in state["history"]][-1] == "rollback"
    # one restart per change, told which version is now current
    assert restarts.read_text().split() == ["1.0.0", "2.0.0", "3.0.0", "2.0.0"]


def test_symlink_rollback_without_a_previous_release_fails_clearly_and_check_mode_changes_nothing(tmp_path):
    base = tmp_path / "svc"
    steps = step("1.0.0") + step("", action="rollback")
    proc, dummy = run(tmp_path, play(steps, tmp_path / "out.json", release_name="svc", release_base_dir=str(base)))
    assert proc.returncode == 2
    assert "no previous release recorded in" in proc.stdout and ".emp-release.json" in proc.stdout

    proc, results = run(tmp_path, play(step("2.0.0"), tmp_path / "out.json", release_name="svc",
                                       release_base_dir=str(base)), check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert current(base) == "releases/1.0.0"  # the check run switched nothing
    assert not (base / "releases/2.0.0").exists()


def test_command_strategy_deploys_verifies_and_rolls_back(tmp_path):
    running = tmp_path / "running"
    commands = {
        "release_strategy": "command",
        "release_name": "api",
        "release_state_dir": str(tmp_path / "state"),
        "release_deploy_command": f'echo "$EMP_RELEASE_VERSION (was $EMP_RELEASE_CURRENT_VERSION)" > {running}',
        "release_rollback_command": f'echo "$EMP_RELEASE_VERSION (was $EMP_RELEASE_CURRENT_VERSION)" > {running}',
        "release_current_version_command": f"cut -d' ' -f1 {running} 2>/dev/null || echo none",
        "release_verify_retries": 2,
    }
    steps = step("1.0.0") + step("1.1.0") + step("1.1.0") + step("1.1.0", action="rollback") + \
        step("1.1.0", action="rollback")
    proc, results = run(tmp_path, play(steps, tmp_path / "out.json", **commands))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [(r["action"], r["current"], r["changed"]) for r in results] == [
        ("deploy", "1.0.0", True), ("deploy", "1.1.0", True), ("deploy", "1.1.0", False),
        ("rollback", "1.0.0", True), ("rollback", "1.0.0", False)]
    assert running.read_text().strip() == "1.0.0 (was 1.1.0)"
    state = json.loads((tmp_path / "state/api.json").read_text())
    assert state["current"] == "1.0.0" and state["rolled_back_from"] == "1.1.0"


def test_command_strategy_fails_when_the_new_version_never_runs(tmp_path):
    commands = {
        "release_strategy": "command", "release_name": "api", "release_state_dir": str(tmp_path / "state"),
        "release_deploy_command": "true", "release_current_version_command": "echo 0.9.0",
        "release_rollback_command": "true",  # rollback readiness needs one (docs/safety.md)
        "release_verify_retries": 1, "release_verify_delay": 0,
    }
    proc, dummy = run(tmp_path, play(step("1.0.0"), tmp_path / "out.json", **commands))
    assert proc.returncode == 2
    assert "Verify the service runs the expected version | api 1.0.0" in proc.stdout
    assert "FAILED - RETRYING" in proc.stdout or "attempts" in proc.stdout


BAD_VARIABLES = [
    ({"release_name": "x", "release_strategy": "ftp", "release_base_dir": "/tmp/x"}, "release_strategy"),
    ({"release_name": "x", "release_base_dir": "/tmp/x", "release_keep": "many"}, "release_keep"),
    ({"release_name": "x"}, "needs release_base_dir"),
    ({"release_name": "x", "release_strategy": "command"}, "needs release_current_version_command"),
    ({"release_base_dir": "/tmp/x"}, "release_name"),
]


def test_bad_variables_are_refused_before_anything_changes(tmp_path):
    tasks = "".join(f"""
    - name: Bad variables {n}
      block:
        - name: Release with bad variables {n}
          ansible.builtin.include_role:
            name: emp.deploy.release
          vars: {json.dumps({"release_version": "1.0.0", **variables})}
      rescue:
        - name: Keep the message
          ansible.builtin.set_fact:
            results: "{{{{ results + [ansible_failed_result.msg] }}}}"
""" for n, (variables, dummy) in enumerate(BAD_VARIABLES))
    proc, messages = run(tmp_path, play(tasks, tmp_path / "out.json"))
    assert len(messages) == len(BAD_VARIABLES), proc.stdout[-3000:]
    for message, (dummy, expected) in zip(messages, BAD_VARIABLES):
        assert expected in message
    assert not Path("/tmp/x").exists()
