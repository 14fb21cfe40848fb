"""emp.deploy.verify on the record of a real ansible-playbook run: intact verifies, a changed, removed or
reordered line fails naming it, a cut last line is truncated (not tampered), and the head's HMAC checks with
the key from EMP_DEPLOY_RECORD_KEY only (never printed). A run killed outright verifies after its watcher
ended the record."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import BIN, ROOT, run_playbook
from servers import kill_processes_mentioning

KEY = "verify-test-key-7f3a"

RUN = """---
- name: Phase db
  hosts: localhost
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: database}
  tasks:
    - name: Database gate
      emp.deploy.gate:
        name: db-gate
        component: database
        evidence: {rc: 0}
        criteria: [result.rc == 0]
    - name: Second gate
      emp.deploy.gate:
        name: db-gate-2
        component: database
        evidence: {rc: 0}
        criteria: [result.rc == 0]
    - name: Hold
      ansible.builtin.pause:
        seconds: "{{ hold_s | default(0) }}"
"""


def recorded_run(tmp_path: Path, run_id: str, env: dict | None = None) -> Path:
    (tmp_path / "run.yml").write_text(RUN)
    result = run_playbook(tmp_path / "run.yml", extra_vars={"emp_run_id": run_id}, env=env)
    assert result.returncode == 0, result.stdout[-2000:]
    return tmp_path / "deploy-reports" / run_id


def verify(run_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_playbook(Path("emp.deploy.verify"), extra_vars={"emp_run_dir": str(run_dir)}, env=env)


def rewrite_lines(run_dir: Path, change) -> None:
    path = run_dir / "journal.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"\n".join(change(lines)) + b"\n")


def test_a_real_run_verifies_and_each_kind_of_tampering_names_its_line(tmp_path: Path) -> None:
    run_dir = recorded_run(tmp_path, "real-1")
    intact = verify(run_dir)
    assert intact.returncode == 0, intact.stdout[-2000:]
    assert "intact:" in intact.stdout
    original = (run_dir / "journal.jsonl").read_bytes()
    count = original.count(b"\n")
    assert count >= 5

    def changed(lines):
        lines[2] = lines[2].replace(b'"db-gate"', b'"db-gatE"')
        return lines

    cases = {"changed": (changed, "line 3 was changed"),
             "removed": (lambda lines: lines[:1] + lines[2:], "line 2 was removed"),
             "reordered": (lambda lines: lines[:2] + [lines[3], lines[2]] + lines[4:], "line 3 was reordered")}
    for name, (change, message) in cases.items():
        (run_dir / "journal.jsonl").write_bytes(original)
        rewrite_lines(run_dir, change)
        result = verify(run_dir)
        assert result.returncode != 0, name
        assert message in result.stdout, (name, result.stdout[-2000:])
    (run_dir / "journal.jsonl").write_bytes(original[:-40])  # a partial last line: cut while written
    (run_dir / "summary.json").unlink()  # and the run never ended
    cut = verify(run_dir)
    assert cut.returncode == 0, cut.stdout[-2000:]
    assert f"truncated after line {count - 1}" in cut.stdout


def test_the_head_signature_checks_with_the_right_key_only_and_is_never_printed(tmp_path: Path) -> None:
    run_dir = recorded_run(tmp_path, "signed-1", env={"EMP_DEPLOY_RECORD_KEY": KEY})
    head = json.loads((run_dir / "summary.json").read_text())["journal_head"]
    assert len(head["hmac_sha256"]) == 64
    right = verify(run_dir, env={"EMP_DEPLOY_RECORD_KEY": KEY})
    assert right.returncode == 0 and "head signature valid" in right.stdout, right.stdout[-2000:]
    wrong = verify(run_dir, env={"EMP_DEPLOY_RECORD_KEY": "not-the-key"})
    assert wrong.returncode != 0 and "signature does not match" in wrong.stdout
    for result in (right, wrong):
        assert KEY not in result.stdout + result.stderr and "not-the-key" not in result.stdout + result.stderr
    assert KEY not in (run_dir / "journal.jsonl").read_text() + (run_dir / "summary.json").read_text()


def test_a_run_killed_outright_verifies_once_its_watcher_ended_the_record(tmp_path: Path) -> None:
    (tmp_path / "run.yml").write_text(RUN)
    cmd = [str(BIN / "ansible-playbook"), str(tmp_path / "run.yml"), "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
           "-e", json.dumps({"emp_run_id": "killed-1", "hold_s": 600})]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{BIN}:{os.environ.get('PATH', '')}",
               EMP_DEPLOY_REPORT_DIR=str(tmp_path / "deploy-reports"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT),
                            start_new_session=True)
    run_dir = tmp_path / "deploy-reports" / "killed-1"
    deadline = time.monotonic() + 120
    while b"db-gate-2" not in ((run_dir / "journal.jsonl").read_bytes() if (run_dir / "journal.jsonl").exists() else b""):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    kill_processes_mentioning(str(tmp_path / "run.yml"))  # 2.21's workers live in sessions of their own
    while not (run_dir / "summary.json").exists():  # the watcher process writes it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = verify(run_dir)
    assert result.returncode == 0 and "intact:" in result.stdout, result.stdout[-2000:]
