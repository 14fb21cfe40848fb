"""The checklist coverage report from journals written by the real run recorder, with gate records decided and
worded by the gate's own logic: GO, NO-GO, observe mode, could-not-measure, a skipped gate task, a GO without
a measured sample, a line no gate named, a checklist_ref no line knows; and the bad input that must stop it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _checklist as C
from ansible_collections.emp.deploy.plugins.plugin_utils import _coverage as cov
from ansible_collections.emp.deploy.plugins.plugin_utils import _gate as G
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr
from ansible_collections.emp.deploy.plugins.plugin_utils._reports import write_reports

LIMIT = 200


def gate_record(name: str, ref: str | None, figures: list[float], *, mode: str = R.ENFORCE, errors: int = 0,
                no_data: int = 0, on_no_data: str = "fail", module: str = "emp.deploy.service_probe") -> dict:
    """A gate record as emp.deploy.gate builds it: tallied, decided and worded by plugin_utils/_gate.py."""
    outcome = G.CriterionOutcome(G.parse_criterion(f"result.p95 < {LIMIT}"))
    tally = G.Tally(planned=len(figures) + errors + no_data)
    for value in figures:
        held = value < LIMIT
        tally.add(G.PASSED if held else G.FAILED)
        outcome.held += held
        outcome.failed += not held
        if not held:
            outcome.failing_figures.append({"result.p95": value})
    for outcome_kind, why in [(G.ERROR, "connection refused (127.0.0.1:1)")] * errors + \
            [(G.NO_DATA, "probe skipped in check mode")] * no_data:
        tally.add(outcome_kind, why)
    limits = G.Limits(on_no_data=on_no_data)
    decision = G.final_decision(tally, limits)
    return {"id": f"{name}-id", "name": name, "phase": "predeploy", "component": "api", "checklist_ref": ref,
            "mode": mode, "enforced": mode == R.ENFORCE, "decision": decision,
            "reason": G.build_reason(decision, tally, limits, [outcome], [], False, False),
            "source": "probe", "probe_module": module, "criteria": [outcome.as_dict()], "samples": [],
            "counts": {"planned": tally.planned, "taken": tally.taken, "passed": tally.passed, "failed": tally.failed,
                       "errors": tally.errors, "no_data": tally.no_data},
            "limits": {"failure_limit": 0, "consecutive_error_limit": 3, "on_no_data": on_no_data},
            "interval_s": 1, "stopped_early": False, "started": "t0", "ended": "t1", "duration_s": 1.0,
            "redacted": False}


class Run:
    """A run recorded by the real RunRecorder (journal.jsonl in the formats of docs/records.md)."""

    def __init__(self, tmp_path: Path, run_id: str = "20261203T120000Z-cov001") -> None:
        options = rr.validate_options({"report_dir": str(tmp_path / "reports")})
        self.rec = rr.RunRecorder(options, run_id)
        self.rec.start(playbook="predeploy.yml", check_mode=False, rollback_run=False)
        self.rec.start_phase("predeploy", "api", "Telemetry & monitoring")

    @property
    def run_dir(self) -> Path:
        return self.rec.run_dir

    def gate(self, *args, **kwargs) -> dict:
        record = gate_record(*args, **kwargs)
        self.rec.add_gate(record, "sandbox")
        return record

    def skipped(self, name: str, ref: str, condition: str = "emp_predeploy_disruptive | bool") -> None:
        self.rec.add_skipped_gate({"name": name, "checklist_ref": ref, "mode": "enforce", "task": f"Gate · {name}",
                                   "reason": f"condition false: {condition}"}, "sandbox")

    def finish(self) -> Path:
        decision, reasons = self.rec.decision(set())
        self.rec.finish(decision, reasons, {})
        return self.run_dir

    def coverage(self, **kwargs) -> cov.Coverage:
        return cov.load(self.run_dir, **kwargs)


def entry(coverage: cov.Coverage, line_id: str) -> dict:
    return next(e for e in coverage.entries if e["id"] == line_id)


def test_every_line_once_in_checklist_order_with_the_checklist_words(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120, 130, 125])
    run.finish()
    coverage = run.coverage()
    assert [e["id"] for e in coverage.entries] == [line.id for line in C.LINES]
    for found, line in zip(coverage.entries, C.LINES):
        assert (found["line"], found["section"], found["group"]) == (line.text, line.section, line.group)
        assert found["status"] in cov.STATUSES
    assert coverage.run_id == "20261203T120000Z-cov001" and coverage.decision == R.GO


def test_go_with_measured_samples_passes_and_quotes_the_figures(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120, 130, 125])
    run.gate("api-sla-second-host", "testing/health/api-sla", [90, 95])
    run.finish()
    found = entry(run.coverage(), "testing/health/api-sla")
    assert found["status"] == cov.PASSED
    assert found["covered_by"] == ["api-sla (emp.deploy.service_probe)", "api-sla-second-host (emp.deploy.service_probe)"]
    assert "api-sla on sandbox: GO: all 1 criterion held in 3 of 3 samples [3 samples: 3 passed]" in found["evidence"]
    assert "[2 samples: 2 passed]" in found["evidence"]
    assert [g["decision"] for g in found["gates"]] == [R.GO, R.GO]


def test_one_nogo_among_gos_fails_the_line_with_its_figures(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120, 130])
    run.gate("api-sla-slow-host", "testing/health/api-sla", [150, 312, 290])
    run.finish()
    found = entry(run.coverage(), "testing/health/api-sla")
    assert found["status"] == cov.FAILED
    assert "api-sla-slow-host on sandbox: NO-GO: result.p95 < 200 did not hold in 2 of 3 measured samples " \
           "(result.p95 was 312, 290)" in found["evidence"]
    assert "[3 samples: 1 passed, 2 failed]" in found["evidence"]


def test_observe_mode_nogo_fails_the_line_and_says_it_was_not_enforced(tmp_path):
    run = Run(tmp_path)
    run.gate("otel-overhead", "testing/otel/performance", [250, 260], mode=R.OBSERVE)
    run.gate("otel-overhead-ok", "testing/otel/metrics", [20], mode=R.OBSERVE)
    run.finish()
    coverage = run.coverage()
    found = entry(coverage, "testing/otel/performance")
    assert found["status"] == cov.FAILED
    assert "NO-GO (observe mode: recorded, not enforced)" in found["evidence"]
    assert "result.p95 was 250, 260" in found["evidence"]
    # an observe-mode GO is a GO: the mode is in the evidence
    passed = entry(coverage, "testing/otel/metrics")
    assert passed["status"] == cov.PASSED and "GO (observe)" in passed["evidence"]
    assert coverage.decision == R.GO  # the run itself went on: observe mode decides nothing


def test_could_not_measure_fails_the_line_never_passes_it(tmp_path):
    run = Run(tmp_path)
    run.gate("db-migrations", "testing/db/migrations", [], errors=4, module="emp.deploy.db_probe")
    run.finish()
    found = entry(run.coverage(), "testing/db/migrations")
    assert found["status"] == cov.FAILED
    assert "NO-GO (could not measure)" in found["evidence"]
    assert "connection refused (127.0.0.1:1)" in found["evidence"]
    assert "[4 samples: 4 could not measure]" in found["evidence"]


def test_a_skipped_gate_task_leaves_its_line_manual_with_the_condition(tmp_path):
    run = Run(tmp_path)
    run.skipped("redis-restart", "testing/redis/reconnect")
    run.gate("redis-down-start", "testing/redis/graceful-degradation", [10, 12])
    run.skipped("redis-down-start-disruptive", "testing/redis/graceful-degradation")
    run.finish()
    coverage = run.coverage()
    skipped = entry(coverage, "testing/redis/reconnect")
    assert skipped["status"] == cov.MANUAL
    assert skipped["evidence"] == "redis-restart: skipped: condition false: emp_predeploy_disruptive | bool"
    assert skipped["gates"][0]["decision"] == "skipped"
    # a line with one GO and one skipped gate is not passed either
    partly = entry(coverage, "testing/redis/graceful-degradation")
    assert partly["status"] == cov.MANUAL
    assert "GO" in partly["evidence"] and "skipped: condition false" in partly["evidence"]


def test_a_check_skipped_on_purpose_leaves_its_line_manual_and_alone_makes_a_report(tmp_path):
    # predeploy's disruptive checks on a target not marked disposable: emp_check_skipped -> check_skipped
    run = Run(tmp_path)
    run.rec.add_skipped_check({"name": "redis-restart", "checklist_ref": "testing/redis/reconnect",
                               "reason": "emp_allow_disruptive_checks is false"}, "sandbox")
    run.finish()
    assert cov.wanted(cov.read_journal(run.run_dir)[0])
    skipped = entry(run.coverage(), "testing/redis/reconnect")
    assert skipped["status"] == cov.MANUAL
    assert skipped["evidence"] == "redis-restart: skipped: emp_allow_disruptive_checks is false"
    assert skipped["gates"][0]["decision"] == "skipped"


def test_a_go_without_one_measured_sample_is_never_passed(tmp_path):
    run = Run(tmp_path)
    gate = run.gate("queue-submit", "testing/queue/submit-storage", [], no_data=3, on_no_data="pass",
                    module="emp.deploy.job_queue_probe")
    assert gate["decision"] == R.GO  # what on_no_data: pass decides
    run.finish()
    found = entry(run.coverage(), "testing/queue/submit-storage")
    assert found["status"] == cov.MANUAL
    assert "skipped: GO without one measured sample" in found["evidence"]
    assert "[3 samples: 3 no data]" in found["evidence"]


def test_lines_without_a_gate_are_manual_and_name_what_would_cover_them(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120])
    run.finish()
    coverage = run.coverage()
    unjudged = entry(coverage, "testing/webhook/delivery")
    assert unjudged["status"] == cov.MANUAL
    assert unjudged["evidence"].startswith("not judged in this run")
    assert unjudged["covered_by"] == list(C.BY_ID["testing/webhook/delivery"].covered_by)
    assert "emp.deploy.webhook_probe" in unjudged["covered_by"][0]
    suite = entry(coverage, "testing/db/test-suite")  # nothing here can run the EMP repository's suite
    assert suite["status"] == cov.MANUAL and suite["evidence"].startswith("manual: the EMP repository's own test suite")
    watched = entry(coverage, "success/webhook-success")  # decided after GO, by the watch
    assert watched["status"] == cov.MANUAL and "webhook_success" in watched["covered_by"][0]


def test_not_applicable_only_where_no_gate_judged_and_only_known_ids(tmp_path):
    run = Run(tmp_path)
    run.gate("tunnel-health", "testing/ngrok/health", [10])
    run.finish()
    coverage = run.coverage(not_applicable={"testing/ngrok/auto-restart": "no ngrok in production",
                                            "testing/ngrok/health": "no ngrok in production"})
    assert entry(coverage, "testing/ngrok/auto-restart")["status"] == cov.NOT_APPLICABLE
    assert entry(coverage, "testing/ngrok/auto-restart")["evidence"] == "not applicable: no ngrok in production"
    assert entry(coverage, "testing/ngrok/health")["status"] == cov.PASSED  # a gate judged it: its status stands
    with pytest.raises(cov.CoverageError, match="not_applicable names no checklist line: testing/ngrok/nope"):
        run.coverage(not_applicable={"testing/ngrok/nope": "x"})


def test_manual_verification_lines_follow_the_lines_that_automate_them(tmp_path):
    run = Run(tmp_path)
    for index, line_id in enumerate(("testing/otel/traces", "testing/otel/metrics", "testing/otel/logs",
                                     "testing/otel/performance")):
        run.gate(f"otel-{index}", line_id, [50])
    run.gate("delivery", "testing/webhook/delivery", [50])
    run.gate("urls", "testing/external/urls", [500])
    run.finish()
    coverage = run.coverage()
    otel = entry(coverage, "manual/otel-migration")
    assert otel["status"] == cov.PASSED and otel["covered_by"] == list(C.BY_ID["manual/otel-migration"].derived_from)
    webhook = entry(coverage, "manual/webhook-delivery")
    assert webhook["status"] == cov.FAILED and "automated-failed: testing/external/urls" in webhook["evidence"]
    database = entry(coverage, "manual/database-integration")  # its test-suite line stays manual
    assert database["status"] == cov.MANUAL and "manual: testing/db/test-suite" in database["evidence"]
    assert entry(coverage, "manual/load")["status"] == cov.MANUAL


def test_unknown_checklist_ref_is_listed_as_unmapped_not_dropped(tmp_path):
    run = Run(tmp_path)
    run.gate("typo-gate", "testing/health/api_sla", [100, 300])
    run.gate("no-ref-gate", None, [100])
    run.finish()
    coverage = run.coverage()
    unmapped = [e for e in coverage.entries if e["status"] == cov.UNMAPPED]
    assert [(e["line"], e["covered_by"]) for e in unmapped] == [
        ("testing/health/api_sla", ["typo-gate (emp.deploy.service_probe)"]),
        ("(no checklist_ref)", ["no-ref-gate (emp.deploy.service_probe)"])]
    assert unmapped[0]["evidence"].startswith("checklist_ref 'testing/health/api_sla' names no line of docs/checklist.md")
    assert "NO-GO" in unmapped[0]["evidence"] and unmapped[0]["section"] == cov.UNMAPPED_SECTION
    assert coverage.counts[cov.UNMAPPED] == 2
    assert entry(coverage, "testing/health/api-sla")["status"] == cov.MANUAL


def test_deploy_and_watch_refs_decide_the_go_no_go_and_success_lines(tmp_path):
    """A deploy run's gates and its watch's final gates carry the free-text refs of their roles."""
    run = Run(tmp_path)
    run.gate("webhooks-processing", "Deployment sequence / Phase 3 / 4. Deploy webhook service changes", [100])
    watch_ref = "Success criteria / All services running stable for 24 hours; Service Uptime 99.9%"
    run.gate("stable_api", watch_ref, [100])
    run.gate("stable_worker", watch_ref, [100, 300])
    run.finish()
    coverage = run.coverage()
    assert entry(coverage, "gonogo/webhooks")["status"] == cov.PASSED
    for line_id in ("success/stable-24h", "target/uptime"):
        found = entry(coverage, line_id)
        assert found["status"] == cov.FAILED and "stable_worker on sandbox: NO-GO" in found["evidence"]
    assert not [e for e in coverage.entries if e["status"] == cov.UNMAPPED]


def test_rollback_gates_are_not_checklist_evidence(tmp_path):
    run = Run(tmp_path)
    run.rec.rb_gate(gate_record("verify-rollback", "testing/health/api-sla", [100]))
    run.finish()
    assert entry(run.coverage(), "testing/health/api-sla")["status"] == cov.MANUAL


def test_redacted_gate_keeps_its_decision_not_its_figures(tmp_path):
    run = Run(tmp_path)
    record = gate_record("secret-gate", "testing/db/prisma-queries", [250])
    record["redacted"] = True
    run.rec.add_gate(record, "sandbox")
    run.finish()
    found = entry(run.coverage(), "testing/db/prisma-queries")
    assert found["status"] == cov.FAILED
    assert "redacted (no_log)" in found["evidence"] and "250" not in found["evidence"]
    assert found["gates"][0]["reason"] == "redacted (no_log)"


def test_markdown_table_and_json_say_the_same(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120, 130])
    run.gate("pipe|gate", "testing/otel/logs", [500])
    run.finish()
    coverage = run.coverage()
    files = cov.render(coverage)
    entries = json.loads(files[cov.COVERAGE_JSON])
    assert entries == coverage.entries
    assert all(set(e) >= {"id", "line", "section", "status", "covered_by", "evidence"} for e in entries)
    md = files[cov.COVERAGE_MD]
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| id ")]
    assert len(rows) == len(entries)
    for row, found in zip(rows, entries):
        cells = [c.strip() for c in row.replace("\\|", "\0").strip("|").split("|")]
        assert len(cells) == 5, row
        assert cells[0] == found["id"] and cells[2] == found["status"]
    assert "pipe\\|gate" in md
    # the failed logs line fails manual/otel-migration too
    assert f"{len(C.LINES)} entries: 1 automated-passed, 2 automated-failed, {len(C.LINES) - 3} manual" in md
    for section in C.SECTIONS:
        assert f"### {section}" in md


def test_callback_end_of_run_writes_coverage_for_runs_that_name_lines(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120])
    run_dir = run.finish()  # the recorder's finish writes the reports, as the callback's does
    first = {name: (run_dir / name).read_text() for name in (cov.COVERAGE_JSON, cov.COVERAGE_MD)}
    assert first == cov.render(run.coverage())
    outcome = write_reports(run_dir)  # emp.deploy.report renders the same bytes again
    assert outcome.errors == [] and outcome.files[str(run_dir / cov.COVERAGE_JSON)] == "unchanged"
    # a deploy run whose gates carry no checklist id gets no coverage unless asked
    other = Run(tmp_path, run_id="20261203T120000Z-dep001")
    other.gate("webhooks-processing", "Deployment sequence / Phase 3 / 4. Deploy webhook service changes", [100])
    other_dir = other.finish()
    assert not (other_dir / cov.COVERAGE_JSON).exists() and (other_dir / "report.html").exists()


def test_skipped_gates_alone_make_a_coverage_report(tmp_path):
    run = Run(tmp_path)
    run.skipped("redis-restart", "testing/redis/reconnect")
    run_dir = run.finish()
    assert json.loads((run_dir / cov.COVERAGE_JSON).read_text())[1]["status"] == cov.MANUAL


# --- bad input ------------------------------------------------------------------------------------------


def test_missing_run_folder_and_missing_journal_are_named(tmp_path):
    with pytest.raises(cov.CoverageError, match=r"nope is not a folder: give the folder of one run"):
        cov.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(cov.CoverageError, match=r"empty holds no journal.jsonl"):
        cov.load(tmp_path / "empty")


def test_a_corrupt_line_inside_the_journal_stops_it_and_writes_nothing(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120])
    run_dir = run.finish()
    path = run_dir / "journal.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, '{"schema_version": 1, "type": "gate", "name": "lost-ga\n')
    path.write_text("".join(lines))
    with pytest.raises(cov.CoverageError, match=r"journal.jsonl line 3 is not a journal record .*none is written"):
        cov.load(run_dir)
    before = (run_dir / cov.COVERAGE_JSON).read_text()
    outcome = write_reports(run_dir)  # the other reports are still rendered; coverage is an error, left as it was
    assert [e for e in outcome.errors if e.startswith("coverage not written: ")]
    assert (run_dir / cov.COVERAGE_JSON).read_text() == before


def test_a_last_line_cut_by_a_kill_is_left_out_with_a_warning(tmp_path):
    run = Run(tmp_path)
    run.gate("api-sla", "testing/health/api-sla", [120])
    path = run.run_dir / "journal.jsonl"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"schema_version": 1, "type": "gate", "name": "cut')
    coverage = cov.load(run.run_dir)
    assert coverage.decision == "unfinished"
    assert coverage.warnings and "is cut short (the run was killed while writing it)" in coverage.warnings[0]
    assert coverage.warnings[0] in cov.render_markdown(coverage)
    assert entry(coverage, "testing/health/api-sla")["status"] == cov.PASSED


def test_a_newer_record_format_is_refused(tmp_path):
    run = Run(tmp_path)
    run_dir = run.finish()
    with open(run_dir / "journal.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"schema_version": R.SCHEMA_VERSION + 1, "type": "gate"}) + "\n")
    with pytest.raises(cov.CoverageError, match=r"schema_version 2 is not one this collection knows"):
        cov.load(run_dir)


def test_an_empty_journal_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.jsonl").write_text("\n")
    with pytest.raises(cov.CoverageError, match=r"holds no journal record"):
        cov.load(tmp_path / "run")
