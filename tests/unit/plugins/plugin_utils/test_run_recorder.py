"""The run recorder on its own, without Ansible: options, decisions, the rollback's bookkeeping, an
unwritable report folder, interruptions, and the watcher that ends a killed run's record."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_watcher as watcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recorder(tmp_path: Path, **options) -> rr.RunRecorder:
    opts = rr.validate_options({"report_dir": str(tmp_path / "reports"), **options})
    rec = rr.RunRecorder(opts, "run-1", clock=Clock())
    rec.start(playbook="deploy.yml", check_mode=False, rollback_run=False)
    return rec


def gate(name, component, decision=R.GO, mode=R.ENFORCE, **extra):
    return {"id": f"{name}-id", "name": name, "component": component, "mode": mode, "decision": decision,
            "reason": f"{name}: value was 312", "duration_s": 1.0, "samples": [{"figures": {"x": 312}}], **extra}


def journal(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "reports/run-1/journal.jsonl").read_text().splitlines()]


def test_every_journal_line_and_the_summary_carry_the_schema_version(tmp_path):
    rec = recorder(tmp_path)
    rec.start_phase("infrastructure", "redis", "Phase redis")
    rec.add_gate(gate("g", "redis"), "sandbox")
    summary = rec.finish(R.GO, [], {})
    assert {line["schema_version"] for line in journal(tmp_path)} == {R.SCHEMA_VERSION}
    assert set(R.JOURNAL_TYPES) >= {line["type"] for line in journal(tmp_path)}
    written = json.loads((tmp_path / "reports/run-1/summary.json").read_text())
    assert written["schema_version"] == R.SCHEMA_VERSION == summary["schema_version"]
    assert set(written) == set(R.RunSummary.__annotations__)


@pytest.mark.parametrize("raw, expected", [(300, 300), ("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600),
                                           ("1.5m", 90), ("250ms", 0.25), (" 2 m ", 120)])
def test_durations(raw, expected):
    assert rr.parse_duration(raw, "x") == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "5 minutes", "1d", True, "", "m"])
def test_malformed_durations_name_the_option(raw):
    with pytest.raises(rr.OptionError, match="^budget x: .* is not a duration"):
        rr.parse_duration(raw, "budget x")


@pytest.mark.parametrize("raw, message", [({"rollback": "sometimes"}, "rollback: 'sometimes' is not one of"),
                                          ({"rollback_scope": "all"}, "rollback_scope"),
                                          ({"rollback_runner": "thread"}, "rollback_runner"),
                                          ({"rollback_default_budget": "never"}, "rollback_default_budget")])
def test_every_option_is_validated(raw, message):
    with pytest.raises(rr.OptionError, match=message):
        rr.validate_options(raw)


def test_run_ids_are_one_safe_path_segment():
    assert rr.resolve_run_id("deploy-42.a_b", None) == "deploy-42.a_b"
    assert rr.resolve_run_id(None, "from-env") == "from-env"
    assert rr.resolve_run_id("", None) != ""
    for bad in ("../../escape", "a/b", "..", ".x", "-x", "a b", "x" * 129):
        with pytest.raises(rr.OptionError, match="not a valid run id"):
            rr.resolve_run_id(bad, None)


def test_an_unwritable_report_dir_is_reported_and_nothing_else_stops(tmp_path):
    opts = rr.validate_options({"report_dir": "/dev/null/reports", "rollback_scope": "run"})
    rec = rr.RunRecorder(opts, "run-1")
    rec.start(playbook="deploy.yml")
    assert rec.journal is None
    assert rec.record_errors == ["cannot write the run record in /dev/null/reports/run-1 (Not a directory); this run "
                                 "keeps no journal or summary, but still decides and rolls back"]
    rec.start_phase("infrastructure", "redis", "p")
    rec.add_release({"component": "redis", "version": "2"}, "sandbox")
    rec.add_gate(gate("g", "redis", R.NO_GO), "sandbox")
    assert rec.rollback_components() == ["redis"]  # deciding goes on without a record
    rec.plan_rollback(["redis"], "cmd")
    rec.rollback_started(R.RUNNER_IN_PROCESS)
    rec.rb_play_start("rollback redis", "redis")
    problems = rec.rollback_finished(0, None)
    summary = rec.finish(R.NO_GO, rec.enforced_nogo(), {})
    assert problems == [] and summary["rollback"]["ok"] is True
    assert summary["record_errors"][0].startswith("cannot write the run record in /dev/null/reports/run-1")
    assert any("summary.json failed" in e for e in summary["record_errors"])


def test_decisions_no_gate_go_nogo_and_an_interrupted_phase(tmp_path):
    rec = recorder(tmp_path)
    rec.start_phase("infrastructure", "redis", "p")
    assert rec.decision(set()) == (R.NO_GATE, [])
    rec.end_phase()
    assert rec.phases[0]["decision"] == R.NO_GATE
    rec.start_phase("application", "webhooks", "q")
    summary = rec.finish(R.INTERRUPTED, [], {}, interrupted="SIGINT")
    assert [p["decision"] for p in summary["phases"]] == [R.NO_GATE, R.INTERRUPTED]
    rec2 = recorder(tmp_path / "b")
    rec2.add_gate(gate("g", "redis"), "h")
    assert rec2.decision(set())[0] == R.GO
    rec2.add_gate(gate("n", "redis", R.NO_GO), "h")
    assert rec2.decision(set())[0] == R.NO_GO


def test_a_redacted_gate_keeps_decision_name_and_timing_only(tmp_path):
    rec = recorder(tmp_path)
    # Markers that cannot turn up by chance inside a digest or a timestamp.
    rec.add_gate(gate("secret", "redis", R.NO_GO, redacted=True, reason="value was leaky-figure",
                      samples=[{"figures": {"leaky_metric": 312}}]), "sandbox")
    summary = rec.finish(R.NO_GO, rec.enforced_nogo(), {})
    assert summary["gates"][0]["redacted"] is True and summary["gates"][0]["decision"] == R.NO_GO
    assert summary["gates"][0]["duration_s"] == 1.0
    text = (tmp_path / "reports/run-1/journal.jsonl").read_text() + json.dumps(summary)
    assert "leaky" not in text


def test_rollback_bookkeeping_per_component_budgets_and_a_cut_short_rollback(tmp_path):
    rec = recorder(tmp_path, rollback_budgets=["redis=2s"])
    clock = rec.clock
    rec.start_phase("infrastructure", "redis", "p")
    rec.add_gate(gate("g", "redis", R.NO_GO), "h")
    rec.plan_rollback(["redis"], "cmd")
    rec.rollback_started(R.RUNNER_SUBPROCESS)
    rec.rb_play_start("rollback redis", "redis")
    clock.now += 5
    rec.rb_task("Restore")
    assert rec.running_step == {"task": "Restore", "phase": None, "component": "redis", "rollback": True}
    summary = rec.finish(R.NO_GO, rec.enforced_nogo(), {}, interrupted="SIGTERM")
    assert summary["rollback"]["state"] == R.ROLLBACK_CUT_SHORT and summary["rollback"]["runner"] == "subprocess"
    assert [r["type"] for r in journal(tmp_path)][-4:] == ["phase_end", "rollback_play_end", "run_interrupted",
                                                           "run_end"]

    rec = recorder(tmp_path / "b", rollback_budgets=["redis=2s"])
    rec.start_phase("infrastructure", "redis", "p")
    rec.add_gate(gate("g", "redis", R.NO_GO), "h")
    rec.plan_rollback(["redis", "database"], "cmd")
    rec.rollback_started(R.RUNNER_IN_PROCESS)
    rec.rb_play_start("rollback redis", "redis")
    rec.clock.now += 5
    problems = rec.rollback_finished(0, None)
    assert "no rollback play ran for database (does emp.deploy.rollback have one?)" in problems
    assert any("redis took 5.0 s > budget 2 s" in p for p in problems)


def test_the_watcher_ends_the_record_of_a_killed_run(tmp_path):
    """A real run process killed with SIGKILL: the watcher rebuilds summary.json from the journal."""
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(rr.__file__).parents[5])!r})
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_watcher as watcher
rec = rr.RunRecorder(rr.validate_options({{"report_dir": {str(tmp_path / 'reports')!r}}}), "run-1")
rec.start(playbook="deploy.yml")
rec.watch()
rec.start_phase("infrastructure", "redis", "Phase redis")
rec.add_gate({{"id": "g", "name": "g", "component": "redis", "decision": "NO-GO", "mode": "enforce",
              "reason": "r"}}, "h")
rec.plan_rollback(["redis"], "cmd")
rec.rollback_started("in_process")
rec.rb_task("Slow restore")
print("ready", flush=True)
time.sleep(120)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
    summary_path = tmp_path / "reports/run-1/summary.json"
    deadline = time.monotonic() + 60
    while not summary_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the watcher's own event: the file it writes
    summary = json.loads(summary_path.read_text())
    assert summary["interrupted"] == "killed" and summary["decision"] == R.NO_GO
    assert summary["running_step"]["task"] == "Slow restore"
    assert summary["rollback"]["state"] == R.ROLLBACK_CUT_SHORT and summary["rollback"]["components"] == ["redis"]
    assert [r["type"] for r in journal(tmp_path)][-2:] == ["run_interrupted", "run_end"]


def test_the_watcher_leaves_a_run_that_ended_its_record_alone(tmp_path):
    rec = recorder(tmp_path)
    rec.watch()
    assert rec.sentinel is not None
    process = rec.sentinel.process
    summary = rec.finish(R.NO_GATE, [], {})
    assert process.wait(timeout=30) == 0
    assert json.loads((tmp_path / "reports/run-1/summary.json").read_text())["decision"] == summary["decision"]
    assert [r["type"] for r in journal(tmp_path)].count("run_end") == 1
    assert not watcher.recover_summary(tmp_path / "reports/run-1", None)
    assert os.path.exists(tmp_path / "reports/run-1/journal.jsonl")


def test_a_release_step_reported_by_an_item_and_by_its_loop_is_recorded_once(tmp_path):
    rec = recorder(tmp_path)
    rec.start_phase("infrastructure", "redis", "p")
    step = {"component": "redis", "version": "2", "previous": "1", "changed": True, "run_id": "run-1"}
    rec.add_release(dict(step), "h")
    rec.add_release(dict(step), "h")
    rec.add_release(dict(step), "other-host")
    assert [r["host"] for r in rec.releases] == ["h", "other-host"]
    assert [r["type"] for r in journal(tmp_path)].count("release") == 2


def test_a_run_id_inherited_from_another_run_is_not_taken():
    from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import run_id_from_environment

    assert run_id_from_environment({R.RUN_ID_ENV: "awx-42"}, 100) == "awx-42"  # set by the user or AWX
    assert run_id_from_environment({R.RUN_ID_ENV: "r1", R.RUN_ID_OWNER_ENV: "100:r1"}, 100) == "r1"  # our own
    assert run_id_from_environment({R.RUN_ID_ENV: "r1", R.RUN_ID_OWNER_ENV: "99:r1"}, 100) is None  # a parent's
    # a task that starts a nested run with an id of its choosing is obeyed
    assert run_id_from_environment({R.RUN_ID_ENV: "inner", R.RUN_ID_OWNER_ENV: "99:r1"}, 100) == "inner"
    assert run_id_from_environment({}, 100) is None


def test_a_readiness_nogo_rolls_back_nothing_unless_the_component_changed(tmp_path):
    rec = recorder(tmp_path)
    rec.start_phase("application", "webhooks", "p")
    rec.add_gate(gate("rollback-ready-webhook", "webhooks", R.NO_GO), "h")
    assert rec.decision(set())[0] == R.NO_GO
    assert rec.rollback_components() == []
    assert rec.why_no_rollback() == "nothing changed: webhooks could not be rolled back, so it was not released"

    # a second service of the component was switched before the first one's readiness said NO-GO
    rec = recorder(tmp_path / "b")
    rec.start_phase("application", "webhooks", "p")
    rec.add_release({"component": "webhooks", "version": "2", "previous": "1", "changed": True}, "h")
    rec.add_gate(gate("rollback-ready-webhook", "webhooks", R.NO_GO), "h")
    assert rec.rollback_components() == ["webhooks"]

    # an ordinary gate's NO-GO still rolls its component back
    rec = recorder(tmp_path / "c")
    rec.start_phase("application", "webhooks", "p")
    rec.add_gate(gate("webhooks-processing", "webhooks", R.NO_GO), "h")
    assert rec.rollback_components() == ["webhooks"] and rec.why_no_rollback() == "no phase component to roll back"


def test_the_verification_gates_after_a_rollback_are_part_of_its_record(tmp_path):
    rec = recorder(tmp_path)
    rec.start_phase("application", "webhooks", "p")
    rec.add_gate(gate("webhooks-processing", "webhooks", R.NO_GO), "h")
    rec.plan_rollback(["webhooks", "redis"], "cmd")
    rec.rollback_started(R.RUNNER_IN_PROCESS)
    rec.rb_play_start("Rollback · webhooks", "webhooks")
    rec.rb_gate(gate("webhooks-processing", "webhooks", R.NO_GO, host="h"))
    rec.rb_play_start("Rollback · redis", "redis")
    rec.rb_gate(gate("redis-connections", "redis", R.GO, host="h"))
    problems = rec.rollback_finished(0, None)
    per = rec.rollback["per_component"]
    assert per["webhooks"]["verified"] is False and per["redis"]["verified"] is True
    assert per["webhooks"]["verification"] == [{"name": "webhooks-processing", "host": "h", "decision": R.NO_GO,
                                                "mode": R.ENFORCE, "reason": "webhooks-processing: value was 312"}]
    assert rec.rollback["ok"] is False
    assert "rollback of webhooks failed: gate webhooks-processing: webhooks-processing: value was 312" in problems
    end = [r for r in journal(tmp_path) if r["type"] == R.ROLLBACK_END][0]
    assert end["per_component"]["redis"]["verification"][0]["decision"] == R.GO

    rec = recorder(tmp_path / "b")
    rec.start_phase("application", "webhooks", "p")
    rec.add_gate(gate("webhooks-processing", "webhooks", R.NO_GO), "h")
    rec.plan_rollback(["webhooks"], "cmd")
    rec.rollback_started(R.RUNNER_IN_PROCESS)
    rec.rb_play_start("Rollback · webhooks", "webhooks")
    rec.rollback_finished(0, None)
    assert rec.rollback["per_component"]["webhooks"]["verified"] is None  # no gate ran: not proven either way


def test_a_resumed_run_links_the_earlier_steps_and_their_phases_say_go(tmp_path):
    opts = rr.validate_options({"report_dir": str(tmp_path / "reports")})
    rec = rr.RunRecorder(opts, "run-1", clock=Clock())
    rec.start(playbook="deploy.yml", check_mode=False, rollback_run=False, resumed_from="run-0")
    steps = [{"phase": "infrastructure", "component": "redis", "play": "Phase redis", "decision": R.GO,
              "gates": [{"id": "g0", "name": "redis-connections", "decision": R.GO, "host": "h"}], "releases": []}]
    rec.resume({"resumed_from": "run-0", "resume_at": "webhooks", "steps": steps})
    rec.start_phase("infrastructure", "redis", "Phase redis")
    rec.start_phase("application", "webhooks", "Phase webhooks")
    rec.add_gate(gate("webhooks-processing", "webhooks"), "sandbox")
    rec.end_phase()
    summary = rec.finish(R.GO, [], {})

    lines = journal(tmp_path)
    assert lines[0]["resumed_from"] == "run-0"
    assert [line["steps"] for line in lines if line["type"] == R.RESUME] == [steps]
    ends = [(line["component"], line["decision"], line.get("resumed_from")) for line in lines
            if line["type"] == R.PHASE_END]
    assert ends == [("redis", R.GO, "run-0"), ("webhooks", R.GO, None)]
    assert summary["resumed_from"] == "run-0" and summary["resumed"] == steps
    assert summary["phases"][0]["resumed_from"] == "run-0" and "resumed_from" not in summary["phases"][1]
