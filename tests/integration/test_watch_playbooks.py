"""emp.deploy.watch through real ansible-playbook runs of playbooks/watch.yml, against a real Prometheus
scraping an exporter the test controls (tests/watch_harness.py).

Each test passes its own checks (watch_checks), a short window and run_dir explicitly, so it depends
on neither the sandbox nor the callback's attach mode.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT, run_playbook
from watch_harness import Exporter, read_json, wait_for_series

from sandbox.prometheus import PrometheusEngine

ALIVE_POLL_S = 1.0  # plugins/action/watch.py

pytestmark = pytest.mark.skipif(PrometheusEngine.binary() is None, reason="the prometheus binary is missing")

PLAYBOOK = ROOT / "playbooks" / "watch.yml"
FAILURE_RATE = ('(sum(increase(emp_webhook_deliveries_total{outcome="failure"}[5s])) or vector(0))'
                ' / sum(increase(emp_webhook_deliveries_total[5s]))')
JOB_RATE = 'sum(rate(emp_jobs_completed_total{status="completed"}[5s]))'
TOKEN = "s3cr3t-watch-token-4711"


@pytest.fixture
def exporter():
    exp = Exporter().start()
    yield exp
    exp.stop()


@pytest.fixture
def prometheus(tmp_path, exporter):
    engine = PrometheusEngine(tmp_path / "prometheus", targets={"webhook": [exporter.target]})
    engine.start()
    yield engine
    engine.stop()


def failure_check(layer="alert", **extra):
    return {"name": "webhook_delivery_failures", "layer": layer, "component": "webhooks",
            "checklist_ref": "Post-deployment monitoring / Immediate alerts / Webhook delivery failures > 5%",
            "query": FAILURE_RATE, "criteria": ["result.value <= 0.05"], **extra}


def watch_vars(run_dir: Path, url: str, checks: list, **overrides) -> dict:
    return {"watch_run_dir": str(run_dir), "watch_prometheus_url": url, "watch_checks": checks,
            "watch_prometheus_token": TOKEN, "emp_watch_window": "20s", "emp_watch_alert_interval": "1s",
            "emp_watch_hourly_interval": "5s", "emp_watch_mode": "once", **overrides}


def watch_env(tmp_path: Path) -> dict:
    """The tree callback keeps each host's last task result (the watch pass) as JSON; the go_no_go callback
    is left out: these tests drive the engine with an explicit run_dir, not the callback's attach mode."""
    tree = tmp_path / "tree"
    return {"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
            "EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}


def last_result(tmp_path: Path) -> dict:
    return read_json(tmp_path / "tree" / "sandbox")


def run_watch(tmp_path: Path, extra_vars: dict, args: list | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    tree = tmp_path / "tree" / "sandbox"
    if tree.exists():
        tree.unlink()
    proc = run_playbook(PLAYBOOK, extra_vars=extra_vars, env=watch_env(tmp_path), args=args)
    return (last_result(tmp_path) if tree.exists() else {}), proc


def start_watch(tmp_path: Path, extra_vars: dict) -> subprocess.Popen:
    """A follow watch in the background, in a process group of its own (so kill -9 takes all of it)."""
    cmd = [str(BIN / "ansible-playbook"), str(PLAYBOOK), "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
           "-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}", **watch_env(tmp_path))
    log = open(tmp_path / "follow.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
                                start_new_session=True)
    finally:
        log.close()


def wait_for_passes(state_file: Path, passes: int, proc: subprocess.Popen, deadline_s: float = 60.0) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if state_file.exists():
            state = read_json(state_file)
            if state["passes"] >= passes:
                return state
        assert proc.poll() is None, f"the watch ended early: {proc.returncode}"
        time.sleep(0.2)
    raise AssertionError(f"{state_file} did not reach {passes} passes in {deadline_s:.0f} s")


def item_results(result: dict) -> list:
    return [item["emp_watch_pass"] for item in result.get("results", []) if "emp_watch_pass" in item]


def ready(prometheus, promql=FAILURE_RATE):
    wait_for_series(prometheus.url, promql)


def new_run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return run_dir


def test_breach_alert_is_an_enforced_nogo_gate(tmp_path, exporter, prometheus):
    exporter.rates.update(success=10.0, failure=5.0)
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    result, proc = run_watch(tmp_path, watch_vars(run_dir, prometheus.url, [failure_check()]), args=["-vvv"])
    assert proc.returncode != 0 and result["msg"].startswith("NO-GO: webhook_delivery_failures"), proc.stdout[-3000:]
    [gate] = result["emp_gates"]
    assert (gate["decision"], gate["mode"], gate["enforced"]) == ("NO-GO", "enforce", True)
    assert (gate["phase"], gate["component"], gate["source"], gate["probe_module"]) == (
        "watch", "webhooks", "probe", "emp.deploy.metric_query")
    assert gate["checklist_ref"].endswith("Webhook delivery failures > 5%")
    assert "result.value <= 0.05 did not hold" in gate["reason"]
    [outcome] = result["emp_watch_pass"]["results"]
    assert outcome["decision"] == "NO-GO" and outcome["value"] > 0.05
    state = read_json(run_dir / "watch.json")
    assert state["verdict"] == "FAILED" and state["done"] and result["emp_watch"]["next_due"] is None
    [alert] = state["alerts"]
    assert (alert["kind"], alert["component"], alert["check"], alert["enforced"]) == (
        "breach", "webhooks", "webhook_delivery_failures", True)
    everything = proc.stdout + proc.stderr + (run_dir / "watch.json").read_text() + json.dumps(result)
    assert TOKEN not in everything


def test_bad_promql_fails_in_validate_naming_the_check(tmp_path, exporter, prometheus):
    run_dir = new_run_dir(tmp_path)
    checks = [failure_check(), {"name": "typo_check", "component": "workers", "query": "sum(rate(x[5m]",
                                "criteria": ["result.value > 0"]}]
    result, proc = run_watch(tmp_path, watch_vars(run_dir, prometheus.url, checks))
    assert proc.returncode != 0
    assert "check 'typo_check'" in proc.stdout and "bad PromQL" in proc.stdout, proc.stdout[-2000:]
    assert "Watch · every query is valid" in proc.stdout.split("check 'typo_check'")[0].rsplit("TASK", 1)[1]
    assert not (run_dir / "watch.json").exists(), "a watch whose queries are bad must not start its window"
    assert "bad PromQL" in result["msg"]


def test_no_data_when_prometheus_stops_then_a_warn_alert_never_go(tmp_path, exporter, prometheus):
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    extra = watch_vars(run_dir, prometheus.url, [failure_check()], emp_watch_mode="follow",
                       emp_watch_window="60s", watch_max_passes=7, watch_consecutive_error_limit=1)
    proc = start_watch(tmp_path, extra)
    try:
        wait_for_passes(run_dir / "watch.json", 2, proc)
        prometheus.stop()
        assert proc.wait(120) == 0, (tmp_path / "follow.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = last_result(tmp_path)
    passes = item_results(result)
    assert len(passes) == 7, "a NO-DATA alert does not end the watch"
    decisions = [p["results"][0]["decision"] for p in passes]
    first_gap = decisions.index("NO-DATA")
    assert set(decisions[:first_gap]) == {"GO"} and set(decisions[first_gap:]) == {"NO-DATA"}, decisions
    assert all("could not measure" in p["results"][0]["reason"] for p in passes[first_gap:])
    gates = [g for item in result["results"] for g in item["emp_gates"]]
    [gate] = gates  # one alert per streak
    assert (gate["decision"], gate["mode"], gate["enforced"]) == ("NO-GO", "warn", False)
    assert "could not measure in 2 consecutive samples (consecutive_error_limit 1)" in gate["reason"]
    alert_pass = next(i for i, item in enumerate(result["results"]) if item["emp_gates"])
    assert alert_pass == first_gap + 1, "the alert comes after consecutive_error_limit + 1 passes without data"
    state = read_json(run_dir / "watch.json")
    assert state["verdict"] == "FAILED" and [a["kind"] for a in state["alerts"]] == ["no_data"]
    assert state["checks"]["webhook_delivery_failures"]["go"] == first_gap


def shift_window(state_file: Path, seconds: float) -> None:
    """Moves the recorded window into the past, as if `seconds` had elapsed (the watch reads only its state)."""
    state = read_json(state_file)
    for key in ("started_epoch", "ends_epoch"):
        state[key] -= seconds
    for layer, at in state["last_run"].items():
        if at is not None:
            state["last_run"][layer] = at - seconds
    state_file.write_text(json.dumps(state), encoding="utf-8")


def test_once_runs_only_what_is_due_from_the_recorded_state(tmp_path, exporter, prometheus):
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    state_file = run_dir / "watch.json"
    final = failure_check(layer="final", name="webhook_failures_final", range="window", reduce="max")
    hourly = failure_check(layer="hourly", name="webhook_failures_hourly")
    extra = watch_vars(run_dir, prometheus.url, [failure_check(), hourly, final], emp_watch_window="2h",
                       emp_watch_alert_interval="1h", emp_watch_hourly_interval="90m")
    first, proc = run_watch(tmp_path, extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert first["emp_watch_pass"]["layers"] == ["alert"] and first["emp_watch"]["passes"] == 1

    second, proc = run_watch(tmp_path, extra)
    assert proc.returncode == 0
    assert second["emp_watch_pass"] == {"at": second["emp_watch_pass"]["at"], "layers": [], "results": []}
    assert second["emp_watch"]["passes"] == 1 and second["emp_watch"]["verdict"] == "IN_PROGRESS"

    shift_window(state_file, 95 * 60)  # 1 h 35 min later: the alert slot of 1 h and the hourly slot of 90 min
    third, proc = run_watch(tmp_path, extra)
    assert third["emp_watch_pass"]["layers"] == ["alert", "hourly"], third["emp_watch_pass"]

    shift_window(state_file, 3 * 3600)  # past the end: only the final layer, once
    fourth, proc = run_watch(tmp_path, extra)
    assert fourth["emp_watch_pass"]["layers"] == ["final"]
    [gate] = fourth["emp_gates"]
    assert gate["decision"] == "GO" and gate["name"] == "webhook_failures_final"
    assert fourth["emp_watch"]["verdict"] == "SUCCESS" and fourth["emp_watch"]["done"]
    fifth, proc = run_watch(tmp_path, extra)
    assert fifth["emp_watch_pass"]["layers"] == [] and fifth["emp_watch"]["passes"] == 3
    assert fifth["emp_watch"]["verdict"] == "SUCCESS"


def test_resume_after_kill_keeps_the_window(tmp_path, exporter, prometheus):
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    state_file = run_dir / "watch.json"
    extra = watch_vars(run_dir, prometheus.url, [failure_check()], emp_watch_mode="follow", emp_watch_window="10m")
    proc = start_watch(tmp_path, extra)
    try:
        wait_for_passes(state_file, 3, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of ansible-playbook, not of its worker
        proc.wait(30)
    time.sleep(2 * ALIVE_POLL_S)  # the orphaned worker notices within ALIVE_POLL_S and records nothing more
    before = read_json(state_file)  # what the killed watch last recorded
    result, again = run_watch(tmp_path, dict(extra, watch_max_passes=2, emp_watch_window="1h"))
    assert again.returncode == 0, again.stdout[-3000:]
    after = read_json(state_file)
    assert (after["started"], after["ends"], after["window_s"]) == (before["started"], before["ends"], 600.0)
    assert len(item_results(result)) == 2, result
    assert after["passes"] == before["passes"] + 2, (before, after)
    assert after["checks"]["webhook_delivery_failures"]["go"] == before["checks"]["webhook_delivery_failures"]["go"] + 2


def test_healthy_short_window_ends_success(tmp_path, exporter, prometheus):
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    final = failure_check(layer="final", name="webhook_failures_window", range="window", reduce="max",
                          checklist_ref="Success criteria / Webhook delivery success rate > 95%")
    extra = watch_vars(run_dir, prometheus.url, [failure_check(), final], emp_watch_mode="follow",
                       emp_watch_window="4s", watch_max_passes=50)
    result, proc = run_watch(tmp_path, extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    passes = item_results(result)
    assert passes[-1]["layers"] == ["final"] and len(passes) < 50, "the loop ends with the window"
    [gate] = [g for item in result["results"] for g in item["emp_gates"]]
    assert (gate["decision"], gate["phase"], gate["component"], gate["probe_module"]) == (
        "GO", "watch", "webhooks", "emp.deploy.metric_query")
    assert gate["checklist_ref"] == "Success criteria / Webhook delivery success rate > 95%"
    state = read_json(run_dir / "watch.json")
    assert state["verdict"] == "SUCCESS" and state["done"] and not state["alerts"]
    assert all(r["decision"] == "GO" for p in passes for r in p["results"])


BASELINE_PLAY = """---
- name: Baseline
  hosts: sandbox
  gather_facts: false
  tasks:
    - name: Capture
      emp.deploy.watch:
        step: baseline
        run_dir: "{{ run_dir }}"
        prometheus: {url: "{{ url }}", bearer_token: "{{ token }}"}
        window: 5s
        baseline_queries: "{{ queries }}"
"""


def test_baseline_written_and_used_by_a_relative_criterion(tmp_path, exporter, prometheus):
    exporter.rates.update(jobs=20.0)
    ready(prometheus, JOB_RATE)
    time.sleep(3)  # a few seconds of the fast job rate in the baseline range
    run_dir = new_run_dir(tmp_path)
    playbook = tmp_path / "baseline.yml"
    playbook.write_text(BASELINE_PLAY, encoding="utf-8")
    queries = {"job_rate": {"query": JOB_RATE, "reduce": "avg"},
               "broken": {"query": "sum(rate(x[5m]", "reduce": "avg"}}
    proc = run_playbook(playbook, extra_vars={"run_dir": str(run_dir), "url": prometheus.url, "token": TOKEN,
                                              "queries": queries}, env=watch_env(tmp_path))
    assert proc.returncode == 0, "a baseline error is recorded, never fatal: " + proc.stdout[-2000:]
    baseline = read_json(run_dir / "baseline.json")
    fast = baseline["figures"]["job_rate"]["value"]
    assert fast > 0 and baseline["figures"]["job_rate"]["error"] is None
    assert "bad PromQL" in baseline["figures"]["broken"]["error"]
    assert TOKEN not in proc.stdout + (run_dir / "baseline.json").read_text()

    exporter.rates.update(jobs=fast / 10)  # the job rate falls far below the baseline
    time.sleep(7)  # the 5 s rate window holds only the slow rate
    checks = [{"name": "job_rate", "layer": "alert", "component": "workers", "query": JOB_RATE,
               "criteria": ["result.value >= baseline.value * 0.5"]},
              {"name": "job_rate_unknown", "layer": "alert", "component": "workers", "query": JOB_RATE,
               "baseline": "not_captured", "criteria": ["result.value >= baseline.value * 0.5"]}]
    result, proc = run_watch(tmp_path, watch_vars(run_dir, prometheus.url, checks))
    outcomes = {r["check"]: r for r in result["emp_watch_pass"]["results"]}
    assert outcomes["job_rate"]["decision"] == "NO-GO", outcomes
    assert "baseline.value was" in outcomes["job_rate"]["reason"]
    assert outcomes["job_rate_unknown"]["decision"] == "NO-DATA"
    assert "no baseline figure 'not_captured'" in outcomes["job_rate_unknown"]["reason"]


ROLE_BASELINE_PLAY = """---
- name: The baseline entry point deploy.yml's preflight includes
  hosts: sandbox
  gather_facts: false
  tasks:
    - name: Baseline
      ansible.builtin.include_role:
        name: emp.deploy.watch
        tasks_from: baseline
"""


@pytest.mark.parametrize("store_up", [True, False])
def test_role_baseline_entry_point_is_never_fatal(tmp_path, exporter, prometheus, store_up):
    ready(prometheus, JOB_RATE)
    run_dir = new_run_dir(tmp_path)
    playbook = tmp_path / "role_baseline.yml"
    playbook.write_text(ROLE_BASELINE_PLAY, encoding="utf-8")
    url = prometheus.url
    if not store_up:
        prometheus.stop()
    proc = run_playbook(playbook, extra_vars={"watch_prometheus_url": url, "watch_prometheus_token": TOKEN,
                                              "emp_watch_window": "10s"},
                        env=dict(watch_env(tmp_path), EMP_DEPLOY_RUN_DIR=str(run_dir)))
    assert proc.returncode == 0, proc.stdout[-3000:]
    figures = read_json(run_dir / "baseline.json")["figures"]
    assert set(figures) == {"job_rate", "error_rate_api", "error_rate_webhook", "error_patterns"}
    if store_up:
        assert figures["job_rate"]["value"] > 0 and figures["job_rate"]["error"] is None
    else:
        assert all(f["error"] and f["value"] is None for f in figures.values()), figures
        assert "emp.deploy.watch baseline job_rate: " in proc.stderr, proc.stderr[-2000:]
    assert TOKEN not in proc.stdout + proc.stderr + (run_dir / "baseline.json").read_text()


def test_default_checks_are_valid_promql_and_measure_what_is_there(tmp_path, exporter, prometheus):
    """The role's own checks (no emp_watch_checks given) pass validation on a real engine; the first pass
    judges the alert layer: what the exporter serves is measured, what it does not is NO-DATA, never GO."""
    exporter.rates.update(success=10.0, failure=0.0)
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    extra = {"watch_run_dir": str(run_dir), "watch_prometheus_url": prometheus.url, "emp_watch_mode": "once",
             "watch_alert_range": "10s", "watch_jobs_stalled_after": "10s"}
    result, proc = run_watch(tmp_path, extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    outcomes = {r["check"]: r["decision"] for r in result["emp_watch_pass"]["results"]}
    assert outcomes == {"redis_connection_failures": "GO", "database_query_errors": "NO-DATA",
                        "webhook_delivery_failures": "GO", "job_processing_stopped": "GO",
                        "otel_export_failures": "NO-DATA"}, result["emp_watch_pass"]
    assert result["emp_watch"]["checks"].keys() == outcomes.keys()
    components = {r["check"]: r["component"] for r in result["emp_watch_pass"]["results"]}
    assert components["redis_connection_failures"] == "redis" and components["database_query_errors"] == "database"


LIBRARY = Path(__file__).parent / "files" / "gate_library"


def test_probe_check_runs_its_module_and_cannot_pass_without_measuring(tmp_path, exporter, prometheus):
    """A check with a probe runs that module through Ansible (as the gate samples its probe): its figures
    are judged by the criteria; a probe that fails without figures is NO-DATA, never GO."""
    ready(prometheus)
    run_dir = new_run_dir(tmp_path)
    calls = tmp_path / "calls"
    probe = {"module": "ansible.legacy.sequence_probe",  # a library/ module, from a role of the collection
             "args": {"script": [{"ok": {"visible": True}}, {"error": "collector down"}], "calls": str(calls)}}
    checks = [{"name": "telemetry_flowing", "layer": "alert", "component": "telemetry", "probe": probe,
               "criteria": ["result.visible"]}]
    extra = watch_vars(run_dir, prometheus.url, checks, emp_watch_window="60s")
    env = dict(watch_env(tmp_path), ANSIBLE_LIBRARY=str(LIBRARY))
    proc = run_playbook(PLAYBOOK, extra_vars=extra, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    [first] = last_result(tmp_path)["emp_watch_pass"]["results"]
    assert first["decision"] == "GO", first
    time.sleep(1.1)  # the next alert slot
    proc = run_playbook(PLAYBOOK, extra_vars=extra, env=env)
    [second] = last_result(tmp_path)["emp_watch_pass"]["results"]
    assert second["decision"] == "NO-DATA" and "collector down" in second["reason"], second
    assert len(calls.read_text().splitlines()) == 2, "one module run per pass, none at validate"


def test_store_down_from_the_start_validates_with_a_warning_and_measures_nothing(tmp_path, exporter, prometheus):
    """A metric store that cannot answer at the start does not stop the watch (it may come back), and
    what the watch could not measure is NO-DATA: no GO, no breach."""
    run_dir = new_run_dir(tmp_path)
    url = prometheus.url
    prometheus.stop()
    result, proc = run_watch(tmp_path, watch_vars(run_dir, url, [failure_check()]))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "check 'webhook_delivery_failures' could not be validated now" in proc.stderr
    [outcome] = result["emp_watch_pass"]["results"]
    assert outcome["decision"] == "NO-DATA" and outcome["reason"].startswith("could not measure"), outcome
    assert result["emp_gates"] == [] and result["emp_watch"]["verdict"] == "IN_PROGRESS"
