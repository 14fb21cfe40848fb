"""The go_no_go safety net in real ansible-playbook runs when other things break: an unwritable report
folder, malformed options, a hostile run id, interruptions by signals, partial runs (tags,
--start-at-task), several hosts, runs without gates, and the child-process rollback runner."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import typing as t
from pathlib import Path

import pytest

from conftest import BIN, ROOT, run_playbook
from servers import kill_processes_mentioning
from test_go_no_go_runs import DEPLOY, REDIS_PHASE, ROLLBACK, deploy, test_library

NOGO = REDIS_PHASE + """    - name: Redis gate
      emp.deploy.gate: {name: redis-gate, component: redis, evidence: {clients: 0}, criteria: [result.clients >= 1]}
"""


def rollback_marker(tmp_path: Path) -> list[dict]:
    marker = tmp_path / "rollback.jsonl"
    return [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []


def test_an_unwritable_report_dir_never_skips_the_rollback(tmp_path):
    (tmp_path / "deploy.yml").write_text(NOGO)
    (tmp_path / "rollback.yml").write_text(ROLLBACK)
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"marker": str(tmp_path / "rollback.jsonl")},
                        env={"EMP_DEPLOY_REPORT_DIR": "/dev/null/reports",
                             "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(tmp_path / "rollback.yml"),
                             "ANSIBLE_LIBRARY": str(test_library(tmp_path))})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert [r["component"] for r in rollback_marker(tmp_path)] == ["redis"]  # the rollback ran
    assert "NO RUN RECORD: cannot write the run record in /dev/null/reports/" in proc.stderr
    table = proc.stdout[proc.stdout.index("EMP GO/NO-GO  run"):]
    assert "decision NO-GO" in table and "rollback [redis] (failed): ok" in table
    assert "NO RECORD: cannot write the run record in /dev/null/reports/" in table


def test_budgets_accept_duration_units(tmp_path):
    env = {"EMP_DEPLOY_ROLLBACK_BUDGETS": "redis=5m,toy=90s", "EMP_DEPLOY_ROLLBACK_DEFAULT_BUDGET": "1h"}
    run = deploy(tmp_path, NOGO, env=env)
    assert run.proc.returncode == 2
    assert run.summary["rollback"]["budgets"] == {"redis": 300} and run.summary["rollback"]["ok"] is True
    assert [r["component"] for r in run.rollbacks] == ["redis"]


@pytest.mark.parametrize("env, named", [
    ({"EMP_DEPLOY_ROLLBACK_BUDGETS": "redis=soon"}, "rollback_budgets item 'redis=soon'"),
    ({"EMP_DEPLOY_ROLLBACK_BUDGETS": "toy"}, "rollback_budgets: 'toy' is not component=duration"),
    ({"EMP_DEPLOY_ROLLBACK_DEFAULT_BUDGET": "-5"}, "rollback_default_budget: '-5' is not a duration"),
    # ansible-core would refuse a value outside documented choices by not loading the callback at all
    ({"EMP_DEPLOY_ROLLBACK": "sometimes"}, "rollback: 'sometimes' is not one of auto, plan, off"),
    ({"EMP_DEPLOY_ROLLBACK_SCOPE": "everything"}, "rollback_scope: 'everything' is not one of failed, run"),
])
def test_a_malformed_option_stops_the_run_before_any_task(tmp_path, env, named):
    (tmp_path / "deploy.yml").write_text(NOGO.replace("    - name: Release redis", """    - name: A change
      ansible.builtin.file: {path: "{{ marker }}.changed", state: touch}
    - name: Release redis"""))
    (tmp_path / "rollback.yml").write_text(ROLLBACK)  # never the real rollback, whatever happens
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"marker": str(tmp_path / "m")},
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"),
                             "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(tmp_path / "rollback.yml"),
                             "ANSIBLE_LIBRARY": str(test_library(tmp_path)), **env})
    assert proc.returncode == 5, proc.stdout[-2000:]
    assert named in proc.stderr and "The run stops before any task ran" in proc.stderr
    assert not (tmp_path / "m.changed").exists()
    assert not (tmp_path / "reports").exists()


def test_a_run_id_that_is_not_one_safe_path_segment_is_refused(tmp_path):
    reports = tmp_path / "deep" / "reports"
    (tmp_path / "deploy.yml").write_text(NOGO)
    (tmp_path / "rollback.yml").write_text(ROLLBACK)  # never the real rollback, whatever happens
    proc = run_playbook(tmp_path / "deploy.yml", args=["-e", "emp_run_id=../../escape", "-e", f"marker={tmp_path / 'm'}"],
                        env={"EMP_DEPLOY_REPORT_DIR": str(reports), "ANSIBLE_LIBRARY": str(test_library(tmp_path)),
                             "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(tmp_path / "rollback.yml")})
    assert proc.returncode == 5
    assert "-e emp_run_id='../../escape' is not a valid run id" in proc.stderr
    assert not list(tmp_path.rglob("escape*")) and not reports.exists()


def test_every_task_of_a_deploy_run_sees_the_run_id(tmp_path):
    playbook = NOGO.replace("component: redis, evidence: {clients: 0}", "component: redis, evidence: {clients: 1}")
    playbook += """    - name: Read the run id
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_ID') }}"
        dest: "{{ marker }}.run_id"
        mode: "0600"
"""
    run = deploy(tmp_path, playbook)
    assert run.proc.returncode == 0, run.stdout[-2000:]
    run_id = run.summary["run_id"]
    assert (tmp_path / "rollback.jsonl.run_id").read_text() == run_id
    assert [r["run_id"] for r in run.summary["releases"]] == [run_id]  # the release step saw it too


@pytest.mark.parametrize("how", [["--start-at-task", "Release redis"], ["--tags", "redis"]])
def test_scope_run_rolls_back_only_components_whose_release_ran(tmp_path, how):
    playbook = DEPLOY.replace("    - name: Release redis\n", "    - name: Release redis\n      tags: [redis]\n") \
        .replace("    - name: Redis gate\n", "    - name: Redis gate\n      tags: [redis]\n")
    run = deploy(tmp_path, playbook, env={"EMP_DEPLOY_ROLLBACK_SCOPE": "run"}, args=how)
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert [r["component"] for r in run.summary["releases"]] == ["redis"]
    assert run.summary["rollback"]["components"] == ["redis"]  # the database phase's release never ran
    assert [r["component"] for r in run.rollbacks] == ["redis"]


def test_a_run_in_which_no_gate_ran_is_no_gate_not_go(tmp_path):
    run = deploy(tmp_path, DEPLOY, args=["--tags", "nothing"])
    assert run.proc.returncode == 0
    assert run.summary["decision"] == "no gate"
    assert "decision no gate" in run.stdout and "no gate ran in this run" in run.stdout
    assert "decision GO" not in run.stdout


def test_the_table_has_a_host_column_when_several_hosts_ran(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    ansible_connection: local\n"
                         "    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
                         "  hosts:\n    web-a:\n    web-b:\n")
    playbook = """
- name: Phase web
  hosts: web-a:web-b
  gather_facts: false
  vars: {emp_phase: application, emp_component: web}
  tasks:
    - name: Web gate
      emp.deploy.gate: {name: web-gate, component: web, evidence: {ok: true}, criteria: [result.ok]}
"""
    run = deploy(tmp_path, playbook, args=["-i", str(inventory)])
    table = run.stdout[run.stdout.index("EMP GO/NO-GO  run"):]
    header = next(line for line in table.splitlines() if "PHASE" in line)
    assert "HOST" in header
    rows = [line for line in table.splitlines() if "web-gate" in line]
    assert len(rows) == 2 and "web-a" in rows[0] + rows[1] and "web-b" in rows[0] + rows[1]


def test_a_no_log_gate_keeps_its_decision_name_and_timing_but_shows_no_values(tmp_path):
    playbook = """
- name: Phase redis
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: redis}
  tasks:
    - name: Secret gate
      no_log: true
      emp.deploy.gate:
        name: secret-gate
        component: redis
        probe: {module: ansible.builtin.command, args: {argv: [echo, "S3CRET-{{ 41 + 1 }}"]}, check_mode: false}
        criteria: ["result.stdout == 'nope'"]
"""
    run = deploy(tmp_path, playbook)
    assert run.proc.returncode == 2
    (gate,) = run.summary["gates"]
    assert gate["decision"] == "NO-GO" and gate["redacted"] is True
    table = run.stdout[run.stdout.index("EMP GO/NO-GO  run"):]
    assert "redacted (no_log)" in table and "S3CRET-42" not in table
    assert "S3CRET-42" not in (run.dir / "journal.jsonl").read_text() + (run.dir / "summary.json").read_text()


@pytest.mark.compat
def test_the_child_process_runner_rolls_back_the_same_way(tmp_path):
    run = deploy(tmp_path, env={"EMP_DEPLOY_ROLLBACK_SCOPE": "run", "EMP_DEPLOY_ROLLBACK_RUNNER": "subprocess"},
                 check=True, args=["--limit", "sandbox"])
    assert run.proc.returncode == 2, run.stdout[-3000:]
    rollback = run.summary["rollback"]
    assert rollback["runner"] == "subprocess" and rollback["ok"] is True
    assert rollback["components"] == ["redis", "database"]
    assert set(rollback["per_component"]) == {"redis", "database"}
    assert all(p["ran"] for p in rollback["per_component"].values())
    # same extra vars, same check mode, the rollback's output in the same stream, recorded the same way
    assert [r["component"] for r in run.rollbacks] == ["redis", "database"]
    assert run.rollbacks[0]["run_id"] == run.summary["run_id"] and run.rollbacks[0]["check_mode"] is True
    assert "PLAY [Test rollback · redis]" in run.stdout
    assert run.kinds.count("rollback_play_start") == 2 and run.kinds[-2:] == ["rollback_end", "run_end"]


# --- interruptions ---------------------------------------------------------------------------------

SOAK = REDIS_PHASE + """    - name: A long soak
      emp.deploy.gate:
        name: soak
        component: redis
        probe: {module: ansible.builtin.command, args: {argv: [echo, "1"]}, check_mode: false}
        samples: 240
        interval: 0.5
        criteria: ["result.stdout == '__FAIL_OR_PASS__'"]
"""

SLOW_ROLLBACK = """
- name: Slow rollback · redis
  hosts: sandbox
  gather_facts: false
  vars: {emp_component: redis}
  tasks:
    - name: Slow rollback step
      ansible.builtin.shell: {cmd: "touch '{{ marker }}.rollback-started' && sleep 120"}
      changed_when: true
"""


def interrupt(tmp_path: Path, playbook: str, rollback: str, ready: t.Callable[[str], bool], signum: int,
              extra_env: dict | None = None) -> tuple[int, str]:
    """Runs the playbook, sends ``signum`` once ``ready(output so far)`` holds, returns rc and output."""
    (tmp_path / "run.yml").write_text(playbook)
    (tmp_path / "rollback.yml").write_text(rollback)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               EMP_DEPLOY_REPORT_DIR=str(tmp_path / "reports"), PATH=f"{BIN}:{os.environ.get('PATH', '')}",
               EMP_DEPLOY_ROLLBACK_PLAYBOOK=str(tmp_path / "rollback.yml"), PYTHONUNBUFFERED="1",
               ANSIBLE_LIBRARY=str(test_library(tmp_path)), **(extra_env or {}))
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), str(tmp_path / "run.yml"),
                             "-i", str(ROOT / "inventories/sandbox/hosts.yml"), "-e", f"marker={tmp_path / 'm'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT),
                            start_new_session=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not ready("".join(seen)):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the awaited moment never came: " + "".join(seen[-30:]))
            time.sleep(0.05)  # polling the event itself, with a generous deadline
        proc.send_signal(signum)
        proc.wait(timeout=60)
        reader.join(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers and sleeps a killed controller may leave behind
        except ProcessLookupError:
            pass
        kill_processes_mentioning(str(tmp_path / "run.yml"))  # 2.21's workers live in sessions of their own
    return proc.returncode, "".join(seen)


def read_record(tmp_path: Path) -> tuple[list[dict], dict]:
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    return journal, json.loads((run_dir / "summary.json").read_text())


@pytest.mark.compat
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_soak_leaves_an_interrupted_summary(tmp_path, signum):
    soak = SOAK.replace("__FAIL_OR_PASS__", "1")
    rc, out = interrupt(tmp_path, soak, SLOW_ROLLBACK, lambda out: "sample 3/240: ok" in out, signum)
    assert rc != 0
    journal, summary = read_record(tmp_path)
    assert summary["decision"] == "interrupted" and summary["interrupted"] == signum.name
    assert summary["running_step"]["task"] == "A long soak" and summary["running_step"]["rollback"] is False
    assert summary["rollback"]["state"] == "not_started"
    assert summary["phases"][0]["decision"] == "interrupted"  # not "no gate"
    assert [r["type"] for r in journal][-3:] == ["phase_end", "run_interrupted", "run_end"]
    assert all(r["schema_version"] == 1 for r in journal) and summary["schema_version"] == 1
    report = (Path(summary["journal"]).parent / "report.html").read_text()  # written by the signal's finish too
    assert 'data-decision="interrupted"' in report and summary["record_errors"] == []


@pytest.mark.compat
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("runner", ["auto", "subprocess"])
def test_a_signal_during_the_rollback_leaves_a_cut_short_summary(tmp_path, signum, runner):
    soak = SOAK.replace("samples: 240", "samples: 1")
    started = tmp_path / "m.rollback-started"  # the rollback's slow task is running
    rc, out = interrupt(tmp_path, soak, SLOW_ROLLBACK, lambda out: started.exists(), signum,
                        {"EMP_DEPLOY_ROLLBACK_RUNNER": runner})
    assert rc != 0
    journal, summary = read_record(tmp_path)
    assert summary["decision"] == "NO-GO" and summary["interrupted"] == signum.name
    assert summary["rollback"]["state"] == "cut_short" and summary["rollback"]["components"] == ["redis"]
    assert summary["running_step"]["task"] == "Slow rollback step" and summary["running_step"]["rollback"] is True
    assert "rollback_start" in [r["type"] for r in journal] and journal[-1]["type"] == "run_end"


def test_an_ansible_playbook_started_by_a_task_is_a_run_of_its_own(tmp_path):
    """The run id exported for the tasks must not make a nested ansible-playbook write into this run's folder."""
    nested = tmp_path / "nested.yml"
    nested.write_text("- name: Nested\n  hosts: sandbox\n  gather_facts: false\n  tasks:\n"
                      "    - name: Nothing\n      ansible.builtin.debug:\n        msg: nested\n")
    playbook = NOGO.replace("component: redis, evidence: {clients: 0}", "component: redis, evidence: {clients: 1}")
    playbook += f"""    - name: Run another playbook
      ansible.builtin.command:
        argv: ["{BIN / 'ansible-playbook'}", "{nested}", "-i", "{ROOT / 'inventories/sandbox/hosts.yml'}"]
      changed_when: false
"""
    (tmp_path / "deploy.yml").write_text(playbook)
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"marker": str(tmp_path / "marker")},
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"),
                             "ANSIBLE_LIBRARY": str(test_library(tmp_path))})
    assert proc.returncode == 0, proc.stdout[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "reports").glob("*/summary.json"))]
    assert sorted(Path(s["playbook"]).name for s in summaries) == ["deploy.yml", "nested.yml"]
    assert summaries[0]["run_id"] != summaries[1]["run_id"]
