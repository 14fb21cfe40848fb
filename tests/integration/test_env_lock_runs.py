"""The environment lock in real ansible-playbook runs (docs/lock-and-verify.md): two runs started at the same
instant (exactly one proceeds), a refused run changes nothing and says who holds the lock, a killed holder's
Redis lock expires by its TTL, the holder's own rollback proceeds, emp_lock=off is recorded, and the real
deploy.yml takes the lock before its first task.

The playbooks here hold the lock with a pause, under the same literal emp_environment_lock: true that
deploy.yml, watch.yml and rollback.yml carry; every run gets its own report folder (the file lock lives there)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import typing as t
from pathlib import Path

from conftest import BIN, ROOT, run_playbook
from servers import kill_processes_mentioning

HOLD = """---
- name: Hold the environment
  hosts: localhost
  gather_facts: false
  vars:
    emp_environment_lock: true
  tasks:
    - name: Leave a mark that this run proceeded
      ansible.builtin.copy:
        dest: "{{ mark_dir }}/{{ lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_ID') }}"
        content: proceeded
        mode: "0644"
    - name: Hold it a while
      ansible.builtin.pause:
        seconds: "{{ hold_s | default(4) }}"
"""

ROLLBACK = """---
- name: Rollback of the test
  hosts: localhost
  gather_facts: false
  vars:
    emp_environment_lock: true
    emp_phase: rollback
    emp_component: redis
  tasks:
    - name: Say it ran
      ansible.builtin.copy:
        dest: "{{ mark_dir }}/rolled-back-{{ emp_run_id | default('manual') }}"
        content: rolled back
        mode: "0644"
"""

NOGO = """---
- name: Phase redis
  hosts: localhost
  gather_facts: false
  vars: {emp_environment_lock: true, emp_phase: infrastructure, emp_component: redis}
  tasks:
    - name: Redis gate
      emp.deploy.gate:
        name: redis-gate
        component: redis
        evidence: {rc: 1}
        criteria: [result.rc == 0]
"""


def setup(tmp_path: Path) -> tuple[Path, Path, dict]:
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "hold.yml").write_text(HOLD)
    (tmp_path / "rollback.yml").write_text(ROLLBACK)
    env = {"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"), "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(tmp_path / "rollback.yml")}
    return tmp_path / "hold.yml", marks, env


def start(playbook: Path, extra_vars: dict, env: dict, log: Path) -> subprocess.Popen:
    cmd = [str(BIN / "ansible-playbook"), str(playbook), "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
           "-e", json.dumps(extra_vars)]
    full = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                PATH=f"{BIN}:{os.environ.get('PATH', '')}", **env)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full, cwd=str(ROOT),
                                start_new_session=True)


def journal(tmp_path: Path, run_id: str) -> list[dict]:
    path = tmp_path / "reports" / run_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def lock_outcomes(tmp_path: Path, run_id: str) -> list[str]:
    return [r["outcome"] for r in journal(tmp_path, run_id) if r["type"] == "lock"]


@contextlib.contextmanager
def holding(playbook: Path, marks: Path, env: dict, run_id: str, tmp_path: Path) -> t.Iterator[subprocess.Popen]:
    """A run that holds the lock until the block ends, then is ended by SIGTERM (its handler releases)."""
    proc = start(playbook, {"mark_dir": str(marks), "emp_run_id": run_id, "hold_s": 600}, env, tmp_path / f"{run_id}.log")
    try:
        wait_for(marks / run_id, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert lock_outcomes(tmp_path, run_id)[-1] == "released"


def wait_for(path: Path, proc: subprocess.Popen, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        assert proc.poll() is None, "the holding run ended before it took the lock"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_two_runs_started_at_the_same_instant_exactly_one_proceeds(tmp_path: Path) -> None:
    playbook, marks, env = setup(tmp_path)
    procs = {run_id: start(playbook, {"mark_dir": str(marks), "emp_run_id": run_id, "hold_s": 600}, env,
                           tmp_path / f"{run_id}.log") for run_id in ("race-a", "race-b")}
    deadline = time.monotonic() + 120
    while all(proc.poll() is None for proc in procs.values()):  # both holding a lock would hang here
        assert time.monotonic() < deadline, "neither run was refused: both proceed"
        time.sleep(0.05)
    loser = next(run_id for run_id, proc in procs.items() if proc.poll() is not None)
    winner = next(run_id for run_id in procs if run_id != loser)
    wait_for(marks / winner, procs[winner])
    procs[winner].send_signal(signal.SIGTERM)  # its handler ends the record and releases the lock
    procs[winner].wait(60)
    assert procs[loser].returncode == 5
    assert f"locked by run {winner}" in (tmp_path / f"{loser}.log").read_text()
    assert sorted(p.name for p in marks.iterdir()) == [winner]  # the refused run ran no task
    assert lock_outcomes(tmp_path, winner) == ["acquired", "released"]
    assert lock_outcomes(tmp_path, loser) == ["refused"]
    summary = json.loads((tmp_path / "reports" / loser / "summary.json").read_text())
    assert summary["decision"] == "refused" and summary["rollback"]["triggered"] is False
    assert summary["lock"]["holder"]["run_id"] == winner


def test_a_refused_run_names_the_holder_user_host_and_since(tmp_path: Path) -> None:
    playbook, marks, env = setup(tmp_path)
    with holding(playbook, marks, env, "holder", tmp_path):
        refused = run_playbook(playbook, extra_vars={"mark_dir": str(marks), "emp_run_id": "second"}, env=env)
        off = run_playbook(playbook, extra_vars={"mark_dir": str(marks), "emp_run_id": "unlocked", "emp_lock": "off",
                                                 "hold_s": 0}, env=env)
    assert refused.returncode == 5, refused.stdout[-2000:]
    text = refused.stdout + refused.stderr
    start_record = journal(tmp_path, "holder")[0]
    assert "locked by run holder" in text
    assert f"user {start_record['user']}" in text and f"on host {start_record['controller']}" in text
    since = next(r for r in journal(tmp_path, "holder") if r["type"] == "lock")["holder"]["since"]
    assert f"since {since}" in text
    assert not (marks / "second").exists()
    assert off.returncode == 0, off.stdout[-2000:]
    assert lock_outcomes(tmp_path, "unlocked") == ["off"]
    assert json.loads((tmp_path / "reports/unlocked/summary.json").read_text())["lock"]["outcome"] == "off"


def test_the_holders_rollback_proceeds_and_another_rollback_is_refused(tmp_path: Path) -> None:
    playbook, marks, env = setup(tmp_path)
    with holding(playbook, marks, env, "holder", tmp_path):
        own = run_playbook(tmp_path / "rollback.yml", env=env,
                           extra_vars={"mark_dir": str(marks), "emp_run_id": "holder", "emp_rollback_components": []})
        other = run_playbook(tmp_path / "rollback.yml", env=env,
                             extra_vars={"mark_dir": str(marks), "emp_run_id": "stranger", "emp_rollback_components": []})
    assert own.returncode == 0, own.stdout[-2000:]
    assert (marks / "rolled-back-holder").exists()
    assert other.returncode == 5 and "locked by run holder" in other.stdout + other.stderr
    assert not (marks / "rolled-back-stranger").exists()
    outcomes = lock_outcomes(tmp_path, "holder")  # the rollback wrote into the holder's folder (same run id)
    assert outcomes[0] == "acquired" and "joined" in outcomes and outcomes.count("released") == 1


def test_a_nogo_rollback_runs_under_the_runs_own_lock_in_process_and_as_a_child(tmp_path: Path) -> None:
    marks, env = setup(tmp_path)[1:]
    (tmp_path / "nogo.yml").write_text(NOGO)
    for runner in ("auto", "subprocess"):
        result = run_playbook(tmp_path / "nogo.yml", extra_vars={"mark_dir": str(marks), "emp_run_id": f"nogo-{runner}"},
                              env=dict(env, EMP_DEPLOY_ROLLBACK_RUNNER=runner))
        assert result.returncode != 0 and "locked by run" not in result.stdout + result.stderr, result.stdout[-2000:]
        assert (marks / f"rolled-back-nogo-{runner}").exists(), runner
        summary = json.loads((tmp_path / f"reports/nogo-{runner}/summary.json").read_text())
        assert summary["rollback"]["ok"] is True and summary["lock"]["outcome"] == "released"


def test_a_killed_holders_redis_lock_expires_by_its_ttl(tmp_path: Path, redis_server) -> None:
    playbook, marks, env = setup(tmp_path)
    env = dict(env, EMP_DEPLOY_LOCK_REDIS_URL=redis_server.url, EMP_DEPLOY_LOCK_TTL="1s")
    holder = start(playbook, {"mark_dir": str(marks), "emp_run_id": "doomed", "hold_s": 120}, env, tmp_path / "d.log")
    try:
        wait_for(marks / "doomed", holder)
        assert "doomed" in redis_server.cli("GET", "emp:deploy:lock:sandbox")
        time.sleep(1.5)  # past one TTL: alive only by its renewals
        refused = run_playbook(playbook, extra_vars={"mark_dir": str(marks), "emp_run_id": "early"}, env=env)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # no handler runs: nothing releases the key
        holder.wait(30)
        kill_processes_mentioning('"emp_run_id": "doomed"')  # 2.21's workers live in sessions of their own
    assert refused.returncode == 5 and "locked by run doomed" in refused.stdout + refused.stderr
    assert "within 1 s (its TTL)" in refused.stdout + refused.stderr
    time.sleep(1.2)
    late = run_playbook(playbook, extra_vars={"mark_dir": str(marks), "emp_run_id": "late", "hold_s": 0}, env=env)
    assert late.returncode == 0, late.stdout[-2000:]
    assert lock_outcomes(tmp_path, "late") == ["acquired", "released"]
    assert redis_server.cli("EXISTS", "emp:deploy:lock:sandbox").strip() == "0"
    assert redis_server.url not in late.stdout + late.stderr + refused.stdout + refused.stderr


def test_the_real_deploy_playbook_takes_the_lock_before_its_first_task(tmp_path: Path) -> None:
    playbook, marks, env = setup(tmp_path)
    with holding(playbook, marks, env, "holder", tmp_path):
        deploy = run_playbook(ROOT / "deploy.yml", extra_vars={"emp_run_id": "deploy-1"}, env=env)
    assert deploy.returncode == 5 and "locked by run holder" in deploy.stdout + deploy.stderr
    assert "TASK [" not in deploy.stdout
    assert lock_outcomes(tmp_path, "deploy-1") == ["refused"]
