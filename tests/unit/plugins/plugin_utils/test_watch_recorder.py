"""The watch's record without Ansible: which deploy run a watch attaches to, its options, passes and
gates journaled once, the summary merged (never rebuilt, decision kept), a killed invocation ended by
the watcher, and the watch table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _go_no_go_table as table
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_watcher as watcher
from ansible_collections.emp.deploy.plugins.plugin_utils import _watch_recorder as wr


def deploy_run(reports: Path, run_id: str, started: str, decision: str = R.GO, rollback_run: bool = False) -> Path:
    run_dir = reports / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "journal.jsonl").write_text(json.dumps({"type": R.RUN_START, "run_id": run_id}) + "\n"
                                           + json.dumps({"type": R.RUN_END, "run_id": run_id}) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({
        "run_id": run_id, "decision": decision, "rollback_run": rollback_run, "started": started,
        "gates": [{"id": "deploy-gate", "name": "g", "decision": R.GO}],
        "rollback": {"triggered": False, "why_not": "no enforced NO-GO"}}))
    return run_dir


def test_the_newest_go_deploy_run_by_its_start_is_attached(tmp_path):
    reports = tmp_path / "reports"
    deploy_run(reports, "zz-older", "2026-12-01T10:00:00.000Z")
    deploy_run(reports, "aa-newer", "2026-12-02T10:00:00.000Z")
    deploy_run(reports, "nogo", "2026-12-03T10:00:00.000Z", decision=R.NO_GO)
    deploy_run(reports, "rollback", "2026-12-03T11:00:00.000Z", rollback_run=True)
    (reports / "broken").mkdir()
    (reports / "broken" / "summary.json").write_text("{not json")
    assert wr.find_deploy_run(reports, None) == "aa-newer"
    assert wr.find_deploy_run(reports, "zz-older") == "zz-older"


def test_a_predeploy_run_is_never_attached_to(tmp_path):
    reports = tmp_path / "reports"
    deploy_run(reports, "deploy", "2026-12-01T10:00:00.000Z")
    predeploy = deploy_run(reports, "predeploy", "2026-12-02T10:00:00.000Z")
    summary = json.loads((predeploy / "summary.json").read_text())
    (predeploy / "summary.json").write_text(json.dumps(dict(summary, run_kind=R.RUN_KIND_PREDEPLOY)))
    assert wr.find_deploy_run(reports, None) == "deploy"  # the newer GO run is a predeploy: passed over
    with pytest.raises(rr.OptionError, match="that run is a predeploy run"):
        wr.find_deploy_run(reports, "predeploy")


@pytest.mark.parametrize("requested, message", [
    ("../x", "is not a valid run id"), ("missing", "no finished deploy run of that id"),
    ("nogo", "that run decided NO-GO"), ("rollback", "that run is a rollback run")])
def test_a_bad_run_id_to_attach_to_is_refused_with_a_reason(tmp_path, requested, message):
    reports = tmp_path / "reports"
    deploy_run(reports, "nogo", "2026-12-03T10:00:00.000Z", decision=R.NO_GO)
    deploy_run(reports, "rollback", "2026-12-03T11:00:00.000Z", rollback_run=True)
    with pytest.raises(rr.OptionError, match=message):
        wr.find_deploy_run(reports, requested)
    with pytest.raises(rr.OptionError, match="no deploy run to attach the watch to"):
        wr.find_deploy_run(reports, None)
    with pytest.raises(rr.OptionError, match="no deploy run to attach the watch to"):
        wr.find_deploy_run(tmp_path / "absent", None)


def test_attach_options_override_rollback_and_roll_back_only_failed_components():
    options = rr.validate_options({"rollback": "off", "rollback_scope": "run"})
    assert (wr.attach_options(options, "auto").rollback, wr.attach_options(options, None).rollback) == ("auto", "off")
    assert wr.attach_options(options, None).rollback_scope == "failed"
    with pytest.raises(rr.OptionError, match="emp_watch_rollback='never' is not one of auto, plan, off"):
        wr.attach_options(options, "never")


def test_only_a_literal_true_attaches():
    assert wr.attach_requested({"emp_watch_attach": True})
    assert not wr.attach_requested({"emp_watch_attach": "{{ true }}"}) and not wr.attach_requested(None)


def watch_result(number: int, alerts: list | None = None, gates: list | None = None) -> dict:
    return {R.WATCH_RESULT_KEY: {"passes": number, "verdict": R.FAILED if alerts else R.IN_PROGRESS, "window_s": 60,
                                 "started": "s", "ends": "e", "alerts": alerts or []},
            R.WATCH_PASS_RESULT_KEY: {"at": f"t{number}", "layers": ["alert"],
                                      "results": [{"check": "c", "decision": R.GO, "samples": ["dropped"]}]},
            R.GATES_RESULT_KEY: gates or []}


def attached(tmp_path: Path) -> wr.WatchRecorder:
    options = wr.attach_options(rr.validate_options({"report_dir": str(tmp_path / "reports")}), None)
    recorder = wr.WatchRecorder(options, "deploy-1")
    recorder.start(playbook="watch.yml", mode=None)
    return recorder


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "reports/deploy-1/journal.jsonl").read_text().splitlines()]


def test_passes_and_gates_from_items_and_their_loop_are_journaled_once_and_merged(tmp_path):
    deploy_run(tmp_path / "reports", "deploy-1", "2026-12-01T10:00:00.000Z")
    alert = {"check": "c", "component": "webhooks", "reason": "r", "at": "t2", "layer": "alert", "kind": "breach"}
    alert_gate = {"id": "alert-1", "name": "c", "phase": "watch", "component": "webhooks", "mode": R.ENFORCE,
                  "decision": R.NO_GO, "reason": "r", "samples": ["kept in the journal only"]}
    items = [watch_result(1), watch_result(2, [alert], [alert_gate])]
    recorder = attached(tmp_path)
    for item in items:
        recorder.add_watch_results(item, item=True)
        for gate in rr.gates_in(item):
            recorder.add_gate(gate, "sandbox")
    loop = {"results": items}
    recorder.add_watch_results(loop, item=False)
    for gate in rr.gates_in(loop):
        recorder.add_gate(gate, "sandbox")
    assert recorder.nogo_components() == ["webhooks"] and recorder.rollback_components() == ["webhooks"]
    summary = recorder.finish(R.NO_GO, ["ignored: an attached invocation keeps the deploy's decision"], {})

    kinds = [r["type"] for r in records(tmp_path)]
    assert kinds == [R.RUN_START, R.RUN_END, R.WATCH_START, R.WATCH_PASS, R.WATCH_PASS, R.GATE, R.WATCH_END]
    passes = [r for r in records(tmp_path) if r["type"] == R.WATCH_PASS]
    assert passes[0]["results"] == [{k: ({"check": "c", "decision": R.GO}).get(k) for k in R.WATCH_PASS_RESULT_KEYS}]
    assert passes[1]["watch"]["alerts"] == [alert] and passes[1]["mode"] == "follow"
    written = json.loads((tmp_path / "reports/deploy-1/summary.json").read_text())
    assert written["decision"] == R.GO == summary["decision"]
    assert [g["id"] for g in written["gates"]] == ["deploy-gate", "alert-1"] and "samples" not in written["gates"][1]
    assert written["watch"]["verdict"] == R.FAILED and written["watch"]["alerts"] == [alert]
    assert written["watch"]["invocations"][0]["mode"] == "follow" and written["watch"]["invocations"][0]["alerts"] == 1
    assert written["rollback"] == {"triggered": False, "why_not": "no enforced NO-GO"}  # nothing rolled back here
    text, color = table.render_watch(written, recorder.entry, recorder.gates, None, "/r/summary.json")
    assert "verdict FAILED  (deploy decision GO)" in text and "ALERT c [webhooks] at t2: r" in text
    assert color == "bright red"

    again = attached(tmp_path)  # a second invocation appends; the same gate is not recorded twice
    again.add_gate(dict(alert_gate), "sandbox")
    again.finish(R.GO, [], {})
    written = json.loads((tmp_path / "reports/deploy-1/summary.json").read_text())
    assert [g["id"] for g in written["gates"]] == ["deploy-gate", "alert-1"]
    assert len(written["watch"]["invocations"]) == 2 and written["watch"]["passes"] == 2


def test_the_watcher_ends_a_killed_invocation_and_merges_the_summary(tmp_path):
    deploy_run(tmp_path / "reports", "deploy-1", "2026-12-01T10:00:00.000Z")
    recorder = attached(tmp_path)
    recorder.add_watch_results(watch_result(1), item=False)
    recorder.step_started("Watch pass")
    # the process dies here: no watch_end, no summary merge
    step = {"task": "Watch pass", "phase": None, "component": None, "rollback": False}
    assert watcher.recover_watch(tmp_path / "reports/deploy-1", recorder.invocation, step)
    assert not watcher.recover_watch(tmp_path / "reports/deploy-1", recorder.invocation, step)  # once
    assert not watcher.recover_summary(tmp_path / "reports/deploy-1", step)  # the deploy's record is whole
    end = records(tmp_path)[-1]
    assert end["type"] == R.WATCH_END and end["interrupted"] == "killed" and end["running_step"] == step
    written = json.loads((tmp_path / "reports/deploy-1/summary.json").read_text())
    assert written["decision"] == R.GO and written["watch"]["passes"] == 1
    assert written["watch"]["invocations"][0]["interrupted"] == "killed"
    assert written["watch"]["invocations"][0]["mode"] == "once"


def test_a_watch_killed_during_its_rollback_leaves_a_cut_short_rollback_in_the_summary(tmp_path):
    deploy_run(tmp_path / "reports", "deploy-1", "2026-12-01T10:00:00.000Z")
    recorder = attached(tmp_path)
    alert_gate = {"id": "alert-1", "name": "c", "phase": "watch", "component": "webhooks", "mode": R.ENFORCE,
                  "decision": R.NO_GO, "reason": "r"}
    recorder.add_watch_results(watch_result(1, gates=[alert_gate]), item=True)
    recorder.add_gate(alert_gate, "sandbox")
    recorder.plan_rollback(recorder.rollback_components(), "ansible-playbook rollback.yml")
    recorder.rollback_started("in_process")
    recorder.rb_play_start("Rollback webhooks", "webhooks")
    # killed here, in the middle of the webhooks rollback
    assert watcher.recover_watch(tmp_path / "reports/deploy-1", recorder.invocation, None)
    written = json.loads((tmp_path / "reports/deploy-1/summary.json").read_text())
    assert written["rollback"]["state"] == R.ROLLBACK_CUT_SHORT and written["rollback"]["components"] == ["webhooks"]
    assert written["rollback"]["trigger"] == "watch" and written["decision"] == R.GO
    assert written["watch"]["invocations"][0]["rollback"] == R.ROLLBACK_CUT_SHORT
    assert [g["id"] for g in written["gates"]] == ["deploy-gate", "alert-1"]
