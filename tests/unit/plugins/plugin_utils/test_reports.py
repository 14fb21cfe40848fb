"""The run reports rendered from crafted journals: report.html, junit.xml (against tests/junit/junit.xsd),
incident.md, index.html; determinism, a journal alone vs one with summary.json, bad journals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree, html

import report_journals as rj
from ansible_collections.emp.deploy.plugins.plugin_utils import _reports
from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import JournalError, history_text, thresholds

XSD = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[3] / "junit" / "junit.xsd")))


def written(tmp_path: Path, builder: rj.JournalBuilder) -> Path:
    run_dir = tmp_path / "deploy-reports" / builder.run_id
    builder.write(run_dir)
    outcome = _reports.write_reports(run_dir)
    assert outcome.errors == []
    return run_dir


def junit(run_dir: Path) -> etree._Element:
    doc = etree.parse(str(run_dir / "junit.xml"))
    XSD.assertValid(doc)
    return doc.getroot()


def test_a_go_run_report_junit_and_no_incident(tmp_path):
    builder = rj.go_run()
    run_dir = written(tmp_path, builder)
    page = html.fromstring((run_dir / "report.html").read_bytes())
    assert page.get_element_by_id("decision").get("data-decision") == "GO"
    names = [n.text_content() for n in page.find_class("gate-name")]
    assert names == [r["name"] for r in builder.records if r["type"] == "gate"]
    assert page.xpath("//meta[@http-equiv='Content-Security-Policy']")[0].get("content").startswith("default-src 'none'")
    assert not page.xpath("//script") and "http://" not in (run_dir / "report.html").read_text().split("<body", 1)[1]
    assert not (run_dir / "incident.md").exists()
    root = junit(run_dir)
    assert [s.get("name") for s in root] == ["phase infrastructure · redis", "phase application · webhooks"]
    assert root.get("failures") == "0" and root.get("errors") == "0" and root.get("tests") == "3"


def test_a_nogo_run_fails_in_junit_with_the_reason_and_the_evidence(tmp_path):
    builder = rj.nogo_run()
    run_dir = written(tmp_path, builder)
    root = junit(run_dir)
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["webhook-p95"].find("failure")
    gate = next(r for r in builder.records if r.get("name") == "webhook-p95")
    assert failure.get("message") == gate["reason"] and failure.get("type") == "NO-GO"
    assert "result.latency_ms.p95=312" in failure.text and "sample 4" in failure.text
    error = cases["webhook-reachable"].find("error")  # could not measure: an error, not a failure
    assert error is not None and cases["webhook-reachable"].find("failure") is None
    assert "could not measure" in error.get("message")
    observed = cases["webhook-error-rate"]  # observe mode: passed, the would-be decision in system-out
    assert observed.find("failure") is None and observed.find("error") is None
    assert "would have decided NO-GO" in observed.find("system-out").text
    assert cases["redis-latency"].find("failure") is None
    assert (root.get("failures"), root.get("errors")) == ("1", "1")


def test_a_nogo_run_report_shows_it_at_the_top_with_the_rollback(tmp_path):
    run_dir = written(tmp_path, rj.nogo_run())
    text = (run_dir / "report.html").read_text()
    page = html.fromstring(text)
    banner = page.get_element_by_id("decision")
    assert "b-nogo" in banner.get("class") and banner.get("data-decision") == "NO-GO"
    assert "webhook-p95" in banner.text_content() and "rollback of webhooks: ok" in banner.text_content()
    assert text.index('id="decision"') < text.index('id="timeline"') < text.index('id="gates"')
    rollback = page.get_element_by_id("rollback").text_content()
    assert "within budget" in rollback and "emp.deploy.rollback" in rollback
    charts = page.find_class("chart")
    assert charts and any("result.latency_ms.p95 < 200" == c.get("aria-label") for c in charts)


def test_the_incident_draft_has_the_timeline_rollback_figures_and_commands(tmp_path):
    builder = rj.nogo_run()
    run_dir = written(tmp_path, builder)
    draft = (run_dir / "incident.md").read_text()
    gate = next(r for r in builder.records if r.get("name") == "webhook-p95")
    first_bad = next(s for s in gate["samples"] if s["outcome"] != "passed")
    assert f"| {first_bad['time']} | first bad sample of gate webhook-p95" in draft
    assert "NO-GO: gate webhook-p95" in draft and "rollback of webhooks started" in draft
    assert "| webhooks | yes | yes |" in draft and "within its budget" in draft
    start = next(r for r in builder.records if r["type"] == "rollback_start")
    assert start["command"] in draft
    assert f"emp_run_dir={run_dir}" in draft
    for heading in ("## Timeline (UTC)", "## What rolled back", "## Failing criteria", "## Evidence",
                    "## Reproduce or redo", "## Open questions for the root-cause analysis"):
        assert heading in draft


def test_a_watch_section_and_a_watch_suite(tmp_path):
    builder = rj.watch_run()
    run_dir = written(tmp_path, builder)
    page = html.fromstring((run_dir / "report.html").read_bytes())
    watch = page.get_element_by_id("watch")
    assert page.get_element_by_id("watch-verdict").text_content() == "FAILED"
    checks = [c.text_content() for c in watch.find_class("check-name")]
    assert checks == ["webhook-failure-ratio", "worker-memory"]
    assert "window 24 h 00 min" in watch.text_content()
    # the deploy's gates stay the deploy's; the watch's alert is in the watch section
    assert page.get_element_by_id("decision").get("data-decision") == "GO"
    assert [n.text_content() for n in page.get_element_by_id("gates").find_class("gate-name")] == \
        ["redis-latency", "webhook-p95", "webhook-errors"]
    suite = next(s for s in junit(run_dir) if s.get("name") == "watch")
    cases = {c.get("name"): c for c in suite}
    assert cases["check webhook-failure-ratio"].find("failure") is not None
    assert cases["check worker-memory"].find("failure") is None  # one NO-DATA pass among GO passes
    # an enforced watch alert: an incident draft for a GO deployment
    assert (run_dir / "incident.md").read_text().startswith("# Incident draft: watch alert of 1.1.0")


def test_rendering_is_the_same_with_or_without_summary_json_and_twice(tmp_path):
    run_dir = written(tmp_path, rj.nogo_run())
    first = _reports.render_run(run_dir)
    (run_dir / "summary.json").write_text(json.dumps({"decision": "GO", "gates": []}))
    assert _reports.render_run(run_dir) == first
    again = _reports.write_reports(run_dir)
    assert set(again.files.values()) == {"unchanged"} and not again.changed
    assert (run_dir / "report.html").read_text() == first["report.html"]


def test_check_mode_writes_nothing(tmp_path):
    builder = rj.go_run()
    run_dir = tmp_path / "reports" / builder.run_id
    builder.write(run_dir)
    outcome = _reports.write_reports(run_dir, check_mode=True)
    assert set(outcome.files.values()) == {"would write"} and outcome.changed
    assert sorted(p.name for p in run_dir.iterdir()) == ["journal.jsonl"]
    assert not (run_dir.parent / "index.html").exists()


def test_the_index_lists_every_run_newest_first(tmp_path):
    older, newer = rj.go_run("20261203T110000Z-old001"), rj.nogo_run("20261203T130000Z-new001")
    older.records[0]["started"] = "2026-12-03T11:00:00.000Z"
    newer.records[0]["started"] = "2026-12-03T13:00:00.000Z"
    written(tmp_path, older)
    run_dir = written(tmp_path, newer)
    (run_dir.parent / "not-a-run").mkdir()
    page = html.fromstring((run_dir.parent / "index.html").read_bytes())
    rows = page.xpath("//tr[@data-run]")
    assert [r.get("data-run") for r in rows] == ["20261203T130000Z-new001", "20261203T110000Z-old001"]
    assert "NO-GO" in rows[0].text_content() and "1.1.0" in rows[0].text_content()
    assert rows[1].xpath(".//a")[0].get("href") == "20261203T110000Z-old001/report.html"


def test_a_report_of_200_gates_of_30_samples_stays_under_2_mb(tmp_path):
    builder = rj.big_run(200, 30)
    run_dir = written(tmp_path, builder)
    size = (run_dir / "report.html").stat().st_size
    assert size < 2 * 1024 * 1024, size
    page = html.fromstring((run_dir / "report.html").read_bytes())
    assert len(page.find_class("gate-name")) == 200
    assert len(list(junit(run_dir).iter("testcase"))) == 200


def test_markup_in_recorded_text_is_escaped(tmp_path):
    builder = rj.nogo_run()
    gate = next(r for r in builder.records if r.get("name") == "webhook-p95")
    gate["name"] = '<img src=x onerror="alert(1)">'
    gate["reason"] = "</p><script>alert(2)</script> & \x1b[31m"
    run_dir = written(tmp_path, builder)
    page = html.fromstring((run_dir / "report.html").read_bytes())
    assert not page.xpath("//script") and not page.xpath("//img")
    assert gate["name"] in [n.text_content() for n in page.find_class("gate-name")]
    failure = next(c for c in junit(run_dir).iter("testcase") if c.get("name") == gate["name"]).find("failure")
    assert failure.get("message").startswith("</p><script>")


def test_a_redacted_gate_shows_no_figures(tmp_path):
    builder = rj.nogo_run()
    gate = next(r for r in builder.records if r.get("name") == "webhook-p95")
    for sample in gate["samples"]:
        sample["figures"] = {}
    gate.update(redacted=True, reason="redacted (no_log)", criteria=[])
    run_dir = written(tmp_path, builder)
    for name in ("report.html", "junit.xml"):
        assert "312" not in (run_dir / name).read_text()
    assert "redacted (no_log)" in (run_dir / "report.html").read_text()


def test_a_journal_cut_by_a_kill_renders_as_unfinished(tmp_path):
    builder = rj.nogo_run()
    run_dir = tmp_path / builder.run_id
    path = builder.write(run_dir)
    lines = path.read_text().splitlines()
    cut = [line for line in lines if '"run_end"' not in line and '"rollback_' not in line]
    path.write_text("\n".join(cut) + "\n" + lines[-1][:40])
    files = _reports.render_run(run_dir)
    page = html.fromstring(files["report.html"])
    assert page.get_element_by_id("decision").get("data-decision") == "unfinished"
    assert "incident.md" not in files


def test_bad_journals_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(JournalError, match="no journal at"):
        _reports.render_run(tmp_path)
    (tmp_path / "journal.jsonl").write_text("not json\n")
    with pytest.raises(JournalError, match="holds no journal record"):
        _reports.render_run(tmp_path)
    (tmp_path / "journal.jsonl").write_text(json.dumps({"schema_version": 99, "type": "run_start", "ts": "x"}) + "\n")
    with pytest.raises(JournalError, match="schema_version 99"):
        _reports.render_run(tmp_path)
    outcome = _reports.write_reports(tmp_path)
    assert outcome.errors and "schema_version 99" in outcome.errors[0] and outcome.files == {}


def test_an_unwritable_report_file_is_an_error_not_an_exception(tmp_path):
    builder = rj.go_run()
    run_dir = tmp_path / builder.run_id
    builder.write(run_dir)
    (run_dir / "report.html").mkdir()  # even root cannot replace a folder with a file
    outcome = _reports.write_reports(run_dir, index=False)
    assert any("report.html" in error for error in outcome.errors)
    assert (run_dir / "junit.xml").is_file()


@pytest.mark.parametrize(("criterion", "expected"), [
    ("result.latency_ms.p95 < 200", [("result.latency_ms.p95", "<", 200.0)]),
    ("result.stdout | int >= 3", [("result.stdout", ">=", 3.0)]),
    ("0.5 > result.ratio", [("result.ratio", "<", 0.5)]),
    ("result.a < 1 and result.b['x'] != -2.5e1", [("result.a", "<", 1.0), ("result.b['x']", "!=", -25.0)]),
    ("result.healthy", []),
    ("result.connected - baseline.connected <= 2", []),
    ("result.p95 * 1.5 < 300", []),
    ("result.version == '1.2'", []),
])
def test_thresholds_are_found_in_criteria(criterion, expected):
    assert [(x.path, x.op, x.value) for x in thresholds(criterion)] == expected


def test_a_failed_step_fails_its_phase_suite_and_a_loose_gate_has_a_suite_of_its_own(tmp_path):
    builder = rj.JournalBuilder("20261203T120000Z-step01")
    builder.run_start()
    builder.add("phase_start", phase="infrastructure", component="database", play="Phase db")
    builder.clock.tick(1)
    builder.add("step_failed", phase="infrastructure", component="database", host="db-1", task="Run migrations",
                action="ansible.builtin.command", unreachable=False, msg="relation already exists",
                reason="deployment step failed")
    builder.clock.tick(1)
    builder.add("phase_end", phase="infrastructure", component="database", play="Phase db", decision="NO-GO",
                duration_s=2, nogo=["deployment step failed"])
    builder.gate("smoke", None, None, [10, 20])
    builder.run_end("NO-GO")
    run_dir = written(tmp_path, builder)
    suites = {s.get("name"): s for s in junit(run_dir)}
    assert list(suites) == ["phase infrastructure · database", "outside any phase"]
    (step,) = suites["phase infrastructure · database"]
    assert step.get("name") == "step Run migrations on db-1"
    assert step.find("failure").get("message") == "deployment step failed: relation already exists"
    assert [c.get("name") for c in suites["outside any phase"]] == ["smoke"]
    page = html.fromstring((run_dir / "report.html").read_bytes())
    assert "Run migrations" in page.get_element_by_id("failures").text_content()
    assert "Run migrations on db-1" in (run_dir / "incident.md").read_text()


def test_notices_and_the_trace_export_are_shown_in_the_report(tmp_path):
    builder = rj.told_run()
    run_dir = written(tmp_path, builder)
    page = html.fromstring((run_dir / "report.html").read_bytes())
    section = page.get_element_by_id("notices")
    rows = [[cell.text_content() for cell in row.xpath("td")] for row in section.xpath(".//tr[td]")]
    notices = [r for r in builder.records if r["type"] == "notify"]
    assert [row[:4] for row in rows] == [[n["ts"], n["target"], n["event"], n["outcome"]] for n in notices]
    assert rows[1][4:] == ["503", "3", "the Teams URL answered HTTP 503: try later"]
    assert [row.get("class") for row in section.xpath(".//tr[td]")] == ["sent", "unsent", "sent"]
    trace = section.find_class("trace")[0].text_content()
    assert "trace " + "5f0c" * 8 + " sent to 127.0.0.1:4318: 9 spans, 19 events" in trace
    # a run that told nobody and exported nothing has no such section
    plain_dir = written(tmp_path, rj.go_run())
    assert 'id="notices"' not in (plain_dir / "report.html").read_text()


@pytest.mark.parametrize(("after_s", "verdict"), [(90, "within"), (660, "LATER than")])
def test_the_incident_draft_says_when_and_how_stakeholders_were_notified(tmp_path, after_s, verdict):
    builder = rj.told_run(after_s=after_s)
    draft = (written(tmp_path, builder) / "incident.md").read_text()
    gate = next(r for r in builder.records if r["type"] == "gate")
    slack = next(r for r in builder.records if r["type"] == "notify")
    section = draft.split("## Stakeholders notified\n", 1)[1].split("\n## ", 1)[0]
    assert (f"Stakeholders notified at {slack['ts']} via slack, {_fmt(after_s + 0.5)} after the NO-GO at "
            f"{gate['ended']} ({verdict} the checklist's 10 minutes).") in section
    assert "- " + slack["ts"] + " slack nogo: sent, HTTP 200, 1 attempt(s)" in section
    assert "teams nogo: NOT SENT (http_error): the Teams URL answered HTTP 503: try later, HTTP 503, 3 attempt(s)" in section
    assert "trace " + "5f0c" * 8 + " sent to 127.0.0.1:4318" in section
    assert f"| {slack['ts']} | notice to slack (nogo): sent |" in draft  # in the timeline too
    assert draft.index("## Stakeholders notified") < draft.index("## Timeline (UTC)")


def test_an_incident_draft_without_a_sent_notice_asks_who_was_told(tmp_path):
    draft = (written(tmp_path, rj.told_run(slack_sent=False)) / "incident.md").read_text()
    section = draft.split("## Stakeholders notified\n", 1)[1].split("\n## ", 1)[0]
    # the rollback notice went out, the NO-GO notices did not: the first sent one is the rollback's
    assert "via slack" in section and "slack nogo: NOT SENT (timeout)" in section
    bare = (written(tmp_path, rj.nogo_run()) / "incident.md").read_text()
    assert "No notice reached anybody: TODO who was told, when and how" in bare


def _fmt(seconds: float) -> str:
    from ansible_collections.emp.deploy.plugins.plugin_utils._report_model import fmt_seconds
    return fmt_seconds(seconds)


def test_a_watch_alert_counts_only_the_notices_sent_after_it(tmp_path):
    builder = rj.watch_run()
    end = next(i for i, r in enumerate(builder.records) if r["type"] == "run_end")
    go_notice_at = builder.records[end]["ts"]
    builder.notify("slack", "go")  # as the deploy sent it, just before its run_end
    builder.records.insert(end, dict(builder.records.pop(), ts=go_notice_at))
    builder.notify("teams", "watch_alert")
    alert_at = builder.records[-1]["ts"]
    draft = (written(tmp_path, builder) / "incident.md").read_text()
    assert f"Stakeholders notified at {alert_at} via teams, " in draft
    assert f"- {go_notice_at} slack go: sent" in draft  # listed, but not the answer to the alert


@pytest.mark.parametrize("past, text", [
    (None, None),
    ({"source": "history", "aggregate": "median", "runs": 5, "decision": "GO", "found": 7,
      "run_ids": ["r7", "r6", "r5", "r4", "r3", "r2", "r1"], "figures": {"latency_ms.p95": 120.5}},
     "judged against the median of the last 5 GO runs (r7, r6, r5, r4, r3 and 2 more): history.latency_ms.p95 = 120.5"),
    ({"source": "fallback", "aggregate": "p90", "runs": 3, "decision": "GO", "found": 1, "run_ids": ["r1"],
      "figures": {"error_rate": 0.0}},
     "judged against history_fallback (1 of the 3 GO runs needed were recorded): history.error_rate = 0"),
    ({"source": "none", "runs": 5, "decision": "NO-GO", "found": 2, "figures": {},
      "reason": "history has 2 of the 5 NO-GO runs needed"},
     "history not used: history has 2 of the 5 NO-GO runs needed"),
    ({"source": "none", "runs": 5, "decision": "GO", "found": 0, "figures": {}},
     "history not used: 0 of the 5 GO runs needed were recorded"),
])
def test_history_text_says_what_a_gate_was_judged_against(past, text):
    gate = {"name": "g"} if past is None else {"name": "g", "history": past}
    assert history_text(gate) == text
