"""The emp.deploy.release module on its own, in real ansible-playbook runs: check mode and diff change
nothing and say what would change, a release from a folder on the target, idempotence, clear errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import run_playbook, write_playbook


def release_tasks(out: Path, steps: list[dict]) -> str:
    tasks = []
    for n, step in enumerate(steps):
        step = dict(step)
        keywords = {key: step.pop(key) for key in ("check_mode", "diff") if key in step}
        lines = [f"- name: Step {n}", f"  emp.deploy.release: {json.dumps(step)}", f"  register: step_{n}",
                 "  ignore_errors: true"]
        lines += [f"  {key}: {json.dumps(value)}" for key, value in keywords.items()]
        tasks.append("\n".join(lines))
    registered = ", ".join(f"step_{n}" for n in range(len(steps)))
    tasks.append(f"""- name: Save the results
  ansible.builtin.copy:
    content: "{{{{ [{registered}] | to_json }}}}"
    dest: "{out}"
    mode: "0600\"""")
    return "\n\n".join(tasks)


def run(tmp_path: Path, steps: list[dict]) -> list[dict]:
    out = tmp_path / "out.json"
    proc = run_playbook(write_playbook(tmp_path, release_tasks(out, steps)),
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads(out.read_text())


def test_check_mode_diff_source_folder_idempotence_and_rollback(tmp_path):
    base, src = tmp_path / "svc", tmp_path / "catalogue/1.1.0"
    (src / "bin").mkdir(parents=True)
    (src / "bin/app").write_text("#!/bin/sh\necho 1.1.0\n")
    (src / "bin/app").chmod(0o755)
    common = {"name": "svc", "base_dir": str(base), "host": "h1"}
    first = {**common, "version": "1.0.0", "manifest": {"version": "1.0.0"}}
    second = {**common, "version": "1.1.0", "src": str(src), "manifest": {"version": "1.1.0"}}
    results = run(tmp_path, [
        {**first, "check_mode": True, "diff": True},   # 0: nothing there yet: would switch, writes nothing
        first,                                          # 1
        {**second, "check_mode": True, "diff": True},  # 2
        second,                                         # 3
        second,                                         # 4: idempotent
        {**common, "action": "rollback", "version": "1.1.0", "check_mode": True},  # 5
        {**common, "action": "rollback", "version": "1.1.0"},                      # 6
        {**common, "action": "rollback", "version": "1.1.0"},                      # 7: 1.1.0 not current
        {**common, "version": "../escape"},                                         # 8: refused
    ])
    assert [r.get("changed") for r in results[:8]] == [True, True, True, True, False, True, True, False]
    assert results[0]["diff"] == {"before": {"current": ""}, "after": {"current": "1.0.0"},
                                  "before_header": "svc current", "after_header": "svc current"}
    assert results[2]["diff"]["before"] == {"current": "1.0.0"}
    assert results[2]["emp_release_step"] == {"component": "svc", "version": "1.1.0", "previous": "1.0.0",
                                              "changed": True, "run_id": "", "host": "h1"}
    assert results[4]["emp_release_step"]["changed"] is False
    assert (results[6]["current"], results[6]["previous"]) == ("1.0.0", "1.1.0")
    assert results[7]["current"] == "1.0.0"
    assert results[8]["failed"] and "one folder name" in results[8]["msg"]
    # the check runs wrote nothing: the history has the two deploys and the one rollback
    state = json.loads((base / ".emp-release.json").read_text())
    assert [(h["action"], h["version"]) for h in state["history"]] == [
        ("deploy", "1.0.0"), ("deploy", "1.1.0"), ("rollback", "1.0.0")]
    assert os.readlink(base / "current") == "releases/1.0.0"
    copied = base / "releases/1.1.0/bin/app"
    assert copied.read_text() == "#!/bin/sh\necho 1.1.0\n" and os.access(copied, os.X_OK)
    assert json.loads((base / "releases/1.1.0/release.json").read_text()) == {"version": "1.1.0"}


def test_check_mode_on_a_missing_base_dir_creates_nothing(tmp_path):
    base = tmp_path / "missing"
    results = run(tmp_path, [{"name": "svc", "base_dir": str(base), "version": "1.0.0", "check_mode": True}])
    assert results[0]["changed"] and results[0]["emp_release_step"]["version"] == "1.0.0"
    assert not base.exists()
