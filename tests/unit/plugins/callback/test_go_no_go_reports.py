"""The go_no_go callback writes the run's reports when the run ends (the same bytes the report action
renders from the journal), keeps no record of a run that only renders records, and reports a report
it cannot write as a record error."""
from __future__ import annotations

import json

from ansible_collections.emp.deploy.plugins.plugin_utils import _reports
from test_go_no_go import Play, Result, Stats, callback, gate, loader, restore_process_state, start  # noqa: F401

__all__ = ["callback", "loader", "restore_process_state"]  # fixtures used by name


def run_dirs(tmp_path):
    return [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]


def test_the_reports_are_written_when_the_run_ends(callback, tmp_path):
    start(callback, Play("Phase db", {"emp_phase": "infrastructure", "emp_component": "database"}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("db-gate", "database")}))
    callback.v2_playbook_on_stats(Stats())
    (run_dir,) = run_dirs(tmp_path)
    written = {p.name: p.read_text() for p in run_dir.iterdir() if p.suffix in (".html", ".xml", ".md")}
    assert written == _reports.render_run(run_dir)  # what the report playbook renders later, byte for byte
    assert 'data-decision="GO"' in written["report.html"] and "db-gate" in written["report.html"]
    assert (tmp_path / "reports" / "index.html").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["record_errors"] == []
    start_record = json.loads((run_dir / "journal.jsonl").read_text().splitlines()[0])
    assert start_record["controller"] and "user" in start_record


def test_a_report_that_cannot_be_written_is_a_record_error(callback, tmp_path):
    start(callback, Play("Phase db", {"emp_phase": "infrastructure", "emp_component": "database"}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("db-gate", "database", "NO-GO", mode="warn")}))
    (run_dir,) = run_dirs(tmp_path)
    (run_dir / "junit.xml").mkdir()  # a folder in the way: even root cannot write the file
    callback.v2_playbook_on_stats(Stats())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["decision"] == "GO"
    assert any("junit.xml" in error for error in summary["record_errors"])
    assert (run_dir / "report.html").is_file()


def test_a_run_that_only_renders_records_keeps_none(callback, tmp_path):
    start(callback, Play("Reports", {"emp_record": False}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("db-gate", "database")}))
    callback.v2_playbook_on_stats(Stats())
    assert not (tmp_path / "reports").exists()
