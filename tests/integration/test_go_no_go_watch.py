"""The go_no_go callback's record of the watch after GO, in real ansible-playbook runs: attaching to a
deploy run (the latest GO one or one named), passes journaled as they happen, alerts that roll back
exactly their component (auto, plan, off), NO-DATA alerts that roll nothing back, a killed watch, and
a deploy run's own record left as it was.

The watch pass is tests/integration/files/watch_library/fake_watch_pass.py (the n-th call plays the
n-th scripted pass); the deploy and rollback playbooks are the test's own.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_playbook
from test_go_no_go_reliability import interrupt
from test_go_no_go_runs import REDIS_PHASE, test_library
from test_go_no_go_runs import ROLLBACK as RUNS_ROLLBACK

LIBRARY = Path(__file__).parent / "files" / "watch_library"

# the redis phase up to its release step (test_go_no_go_runs.py), then the gates
DEPLOY = REDIS_PHASE + """    - name: Redis gate
      emp.deploy.gate: {name: redis-gate, component: redis, evidence: {clients: __CLIENTS__}, criteria: [result.clients >= 1]}
- name: Phase webhooks
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: application, emp_component: webhooks}
  tasks:
    - name: Webhook gate
      emp.deploy.gate: {name: webhook-gate, component: webhooks, evidence: {ok: true}, criteria: [result.ok]}
    - name: Remember the run folder every task sees
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_DIR') }}"
        dest: "{{ marker }}.run_dir"
        mode: "0600"
"""

# a webhooks play in front of test_go_no_go_runs.py's rollback (redis, database): each appends to {{ marker }}
ROLLBACK = """
- name: Test rollback · webhooks
  hosts: "{{ 'sandbox' if 'webhooks' in emp_rollback_components else '!all' }}"
  gather_facts: false
  vars: {emp_component: webhooks}
  tasks:
    - name: Record the webhooks rollback
      ansible.builtin.shell: >-
        echo '{{ {'component': 'webhooks', 'components': emp_rollback_components, 'run_id': emp_run_id} | to_json }}'
        >> {{ marker }}
      changed_when: true
""" + RUNS_ROLLBACK

# once mode: one pass per invocation (cron, an AWX schedule)
ONCE = """
- name: Watch
  hosts: sandbox
  gather_facts: false
  vars: {emp_watch_attach: true}
  tasks:
    - name: Watch pass
      fake_watch_pass:
        script: __SCRIPT__
        sleep_marker: "{{ marker }}.sleeping"
"""

# follow mode as playbooks/watch.yml runs it: the pass task looped, break_when on the item's result
# (inside break_when the registered variable holds the result of the item that just ran)
FOLLOW = ONCE + """      register: watch_pass
      loop: "{{ range(10) | list }}"
      loop_control:
        break_when:
          - watch_pass.emp_watch.done or watch_pass.emp_watch.alerts | length > 0
"""

ALERT = {"check": "webhook_failures", "component": "webhooks", "reason": "webhook failures 40 % > 5 %"}


def play(template: str, script: list[dict]) -> str:
    return template.replace("__SCRIPT__", json.dumps(script))


def env_for(tmp_path: Path, extra: dict | None = None) -> dict:
    (tmp_path / "rollback.yml").write_text(ROLLBACK)
    return {"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"),
            "ANSIBLE_LIBRARY": f"{LIBRARY}{os.pathsep}{test_library(tmp_path)}",
            "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(tmp_path / "rollback.yml"), **(extra or {})}


def deploy(tmp_path: Path, run_id: str, go: bool = True) -> dict:
    (tmp_path / "deploy.yml").write_text(DEPLOY.replace("__CLIENTS__", "1" if go else "0"))
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"marker": str(tmp_path / run_id), "emp_run_id": run_id},
                        env=env_for(tmp_path, {"EMP_DEPLOY_ROLLBACK": "off"}))
    assert proc.returncode == (0 if go else 2), proc.stdout[-3000:]
    return summary_of(tmp_path, run_id)


def watch(tmp_path: Path, playbook: str, env: dict | None = None, **extra_vars) -> subprocess.CompletedProcess:
    (tmp_path / "watch.yml").write_text(playbook)
    return run_playbook(tmp_path / "watch.yml", extra_vars={"marker": str(tmp_path / "w"), **extra_vars},
                        env=env_for(tmp_path, env))


def summary_of(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / "reports" / run_id / "summary.json").read_text())


def journal_of(tmp_path: Path, run_id: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "reports" / run_id / "journal.jsonl").read_text().splitlines()]


def watch_records(tmp_path: Path, run_id: str) -> list[dict]:
    return [r for r in journal_of(tmp_path, run_id) if "invocation" in r]


def rollbacks(tmp_path: Path) -> list[dict]:
    marker = tmp_path / "w"
    return [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []


@pytest.mark.compat
def test_once_attaches_to_the_newest_go_run_and_resumes_there(tmp_path):
    first = deploy(tmp_path, "deploy-1")
    newest_go = deploy(tmp_path, "deploy-2")
    deploy(tmp_path, "deploy-3", go=False)  # newer, but NO-GO: never watched
    before = {name: (tmp_path / "reports" / name / "summary.json").read_text() for name in ("deploy-1", "deploy-3")}
    # every task of a run sees its absolute run folder
    assert (tmp_path / "deploy-2.run_dir").read_text() == str(tmp_path / "reports" / "deploy-2")

    for number in (1, 2):
        proc = watch(tmp_path, play(ONCE, [{}]))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "EMP WATCH  run deploy-2  verdict IN_PROGRESS  (deploy decision GO)" in proc.stdout
        assert f"passes: 1 in this invocation, {number} in all; mode once" in proc.stdout

    summary = summary_of(tmp_path, "deploy-2")
    assert {k: summary[k] for k in ("run_id", "decision", "started", "phases", "releases")} == {
        k: newest_go[k] for k in ("run_id", "decision", "started", "phases", "releases")}
    watch_section = summary["watch"]
    assert watch_section["verdict"] == "IN_PROGRESS" and watch_section["mode"] == "once"
    assert watch_section["passes"] == 2 and watch_section["alerts"] == [] and watch_section["window_s"] == 600
    assert [i["passes"] for i in watch_section["invocations"]] == [1, 1]
    assert all(i["interrupted"] is None and i["rollback"] is None for i in watch_section["invocations"])
    # the watch's state lives in the run folder the callback exported (EMP_DEPLOY_RUN_DIR)
    assert (tmp_path / "reports/deploy-2/fake-watch.json").exists()
    kinds = [r["type"] for r in journal_of(tmp_path, "deploy-2")]
    assert kinds.count("run_start") == 1 and kinds.count("run_end") == 1  # the deploy's, no second ones
    assert [r["type"] for r in watch_records(tmp_path, "deploy-2")] == ["watch_start", "watch_pass", "watch_end"] * 2
    assert {k: before[k] == (tmp_path / "reports" / k / "summary.json").read_text() for k in before} == {
        "deploy-1": True, "deploy-3": True}
    assert "watch" not in first and len([p for p in (tmp_path / "reports").iterdir() if p.is_dir()]) == 3  # no run folder of its own


def test_attach_by_id_and_clear_stops(tmp_path):
    proc = watch(tmp_path, play(ONCE, [{}]))
    assert proc.returncode == 5
    assert "no deploy run to attach the watch to" in proc.stderr and "emp_watch_run_id" in proc.stderr
    assert "The run stops before any task ran" in proc.stderr

    deploy(tmp_path, "deploy-old")
    deploy(tmp_path, "deploy-new")
    deploy(tmp_path, "deploy-nogo", go=False)
    for extra, message in [({"emp_watch_run_id": "../escape"}, "emp_watch_run_id='../escape' is not a valid run id"),
                           ({"emp_watch_run_id": "nothing-here"}, "no finished deploy run of that id"),
                           ({"emp_watch_run_id": "deploy-nogo"}, "that run decided NO-GO"),
                           ({"emp_watch_rollback": "sometimes"}, "emp_watch_rollback='sometimes' is not one of auto, "
                                                                 "plan, off")]:
        proc = watch(tmp_path, play(ONCE, [{}]), **extra)
        assert proc.returncode == 5, proc.stdout[-2000:]
        assert message in proc.stderr and "The run stops before any task ran" in proc.stderr
    assert not list((tmp_path / "reports").glob("*/fake-watch.json"))  # no pass ran

    proc = watch(tmp_path, play(ONCE, [{}]), emp_watch_run_id="deploy-old")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "watch" in summary_of(tmp_path, "deploy-old") and "watch" not in summary_of(tmp_path, "deploy-new")


@pytest.mark.compat
def test_a_follow_loop_journals_each_pass_as_it_happens(tmp_path):
    deploy(tmp_path, "deploy-1")
    final = [{"check": "job_rate", "component": "workers", "decision": "GO"},
             {"check": "webhook_success", "component": "webhooks", "decision": "GO"}]
    proc = watch(tmp_path, play(FOLLOW, [{}, {}, {"done": True, "final": final}, {}]))
    assert proc.returncode == 0, proc.stdout[-3000:]
    records = watch_records(tmp_path, "deploy-1")
    kinds = [r["type"] for r in records]
    # break_when stopped the loop at the done pass: three passes of the ten items
    assert kinds == ["watch_start", "watch_pass", "watch_pass", "watch_pass", "gate", "gate", "watch_end"]
    calls = [json.loads(line) for line in (tmp_path / "reports/deploy-1/calls.jsonl").read_text().splitlines()]
    assert [c["journal_passes"] for c in calls] == [0, 1, 2]  # each pass was in the journal before the next began
    assert [r["watch"]["passes"] for r in records if r["type"] == "watch_pass"] == [1, 2, 3]
    assert records[-1]["verdict"] == "SUCCESS" and records[-1]["mode"] == "follow"
    summary = summary_of(tmp_path, "deploy-1")
    assert summary["watch"]["verdict"] == "SUCCESS" and summary["watch"]["passes"] == 3
    watch_gates = [g for g in summary["gates"] if g["phase"] == "watch"]
    assert [(g["name"], g["decision"]) for g in watch_gates] == [("job_rate", "GO"), ("webhook_success", "GO")]
    assert summary["decision"] == "GO" and summary["rollback"]["triggered"] is False
    assert "EMP WATCH  run deploy-1  verdict SUCCESS" in proc.stdout and "no alerts" in proc.stdout


@pytest.mark.parametrize("policy", ["auto", "plan", "off"])
def test_an_enforced_alert_rolls_back_exactly_its_component(tmp_path, policy):
    deploy(tmp_path, "deploy-1")
    # the option says off; the watch's own extra var decides for the attached run
    proc = watch(tmp_path, play(FOLLOW, [{}, {"alerts": [ALERT]}, {}]), env={"EMP_DEPLOY_ROLLBACK": "off"},
                 emp_watch_rollback=policy)
    assert proc.returncode == 2, proc.stdout[-3000:]
    summary = summary_of(tmp_path, "deploy-1")
    assert summary["decision"] == "GO"  # the deploy's decision, as decided
    section = summary["watch"]
    assert section["verdict"] == "FAILED" and section["passes"] == 2
    assert [(a["check"], a["component"], a["reason"]) for a in section["alerts"]] == [
        ("webhook_failures", "webhooks", "webhook failures 40 % > 5 %")]
    rollback = summary["rollback"]
    assert rollback["components"] == ["webhooks"] and rollback["scope"] == "failed" and rollback["mode"] == policy
    assert rollback["trigger"] == "watch"
    kinds = [r["type"] for r in watch_records(tmp_path, "deploy-1")]
    table = proc.stdout[proc.stdout.index("EMP WATCH  run"):]
    assert "verdict FAILED" in table and "ALERT webhook_failures [webhooks]" in table
    if policy == "auto":
        assert rollbacks(tmp_path) == [{"component": "webhooks", "components": ["webhooks"], "run_id": "deploy-1"}]
        assert rollback["ok"] is True and set(rollback["per_component"]) == {"webhooks"}
        assert rollback["per_component"]["webhooks"]["ok"] is True
        assert kinds[-3:] == ["rollback_play_end", "rollback_end", "watch_end"]
        assert section["invocations"][-1]["rollback"] == "finished"
        assert "rollback [webhooks] (failed): ok" in table
    else:
        assert rollbacks(tmp_path) == []
        assert ("rollback_planned" if policy == "plan" else "rollback_skipped") in kinds
        assert "emp_rollback_components" in rollback["command"] and '"webhooks"' in rollback["command"]


def test_a_no_data_alert_in_warn_mode_is_recorded_and_rolls_nothing_back(tmp_path):
    deploy(tmp_path, "deploy-1")
    no_data = {"check": "otel_export", "component": "telemetry", "mode": "warn",
               "reason": "could not measure in 3 consecutive passes"}
    proc = watch(tmp_path, play(FOLLOW, [{}, {"alerts": [no_data]}, {}]))
    assert proc.returncode == 0, proc.stdout[-3000:]
    summary = summary_of(tmp_path, "deploy-1")
    assert summary["watch"]["verdict"] == "FAILED"
    assert [a["component"] for a in summary["watch"]["alerts"]] == ["telemetry"]
    (gate,) = [g for g in summary["gates"] if g["phase"] == "watch"]
    assert gate["mode"] == "warn" and gate["decision"] == "NO-GO"
    assert summary["rollback"]["triggered"] is False and "trigger" not in summary["rollback"]
    assert rollbacks(tmp_path) == []
    kinds = [r["type"] for r in watch_records(tmp_path, "deploy-1")]
    assert not [k for k in kinds if k.startswith("rollback")]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_watch_killed_mid_pass_ends_its_record_and_merges_the_summary(tmp_path, signum):
    deploy(tmp_path, "deploy-1")
    # interrupt() runs with tmp_path/library as ANSIBLE_LIBRARY (where deploy() put the release step)
    shutil.copy(LIBRARY / "fake_watch_pass.py", tmp_path / "library")
    rc, out = interrupt(tmp_path, play(FOLLOW, [{}, {"sleep": 120}]), ROLLBACK,
                        lambda out: (tmp_path / "m.sleeping").exists(), signum)
    assert rc != 0, out[-2000:]
    expected = "killed" if signum == signal.SIGKILL else "SIGTERM"
    deadline = time.monotonic() + 60
    while "watch" not in summary_of(tmp_path, "deploy-1") and time.monotonic() < deadline:
        time.sleep(0.1)  # a killed watch's record is ended by its watcher process
    summary = summary_of(tmp_path, "deploy-1")
    assert summary["decision"] == "GO" and summary["phases"] and summary["interrupted"] is None  # merged, not rebuilt
    (invocation,) = summary["watch"]["invocations"]
    assert invocation["interrupted"] == expected and invocation["passes"] == 1
    assert summary["watch"]["passes"] == 1 and summary["watch"]["verdict"] == "IN_PROGRESS"
    records = watch_records(tmp_path, "deploy-1")
    assert [r["type"] for r in records] == ["watch_start", "watch_pass", "watch_end"]
    assert records[-1]["interrupted"] == expected and records[-1]["running_step"]["task"] == "Watch pass"
    kinds = [r["type"] for r in journal_of(tmp_path, "deploy-1")]
    assert kinds.count("run_end") == 1 and "run_interrupted" not in kinds


def test_a_deploy_run_records_emp_gates_once_and_keeps_its_summary_shape(tmp_path):
    """emp_gates outside a watch (a loop returning gate lists) and the deploy summary untouched by the watch."""
    playbook = REDIS_PHASE + """    - name: Gates returned as lists, in a loop
      fake_watch_pass:
        script: [{final: [{check: a, component: redis}, {check: b, component: redis}]}]
      loop: [1, 2]
"""
    (tmp_path / "deploy.yml").write_text(playbook)
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"emp_run_id": "plain"}, env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    summary = summary_of(tmp_path, "plain")
    # two items, two gates each, each recorded once although the loop's result repeats them
    assert [(g["name"], g["phase"]) for g in summary["gates"]] == [("a", "watch"), ("b", "watch")] * 2
    assert len({g["id"] for g in summary["gates"]}) == 4
    kinds = [r["type"] for r in journal_of(tmp_path, "plain")]
    assert kinds.count("gate") == 4 and "watch_pass" not in kinds and "watch_start" not in kinds
    assert "watch" not in summary and summary["decision"] == "GO"
    assert "EMP GO/NO-GO  run plain  decision GO" in proc.stdout
