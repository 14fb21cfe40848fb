"""The run reports for real: written by the go_no_go callback at the end of real ansible-playbook runs,
rendered again byte for byte by `ansible-playbook emp.deploy.report`, and opened in headless Chromium
(no network) with no console error, the decision and every gate name read from the rendered DOM, and
a screenshot under the test's output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lxml import etree, html

import chromium
import report_journals as rj
from conftest import ROOT, run_playbook
from test_go_no_go_runs import ROLLBACK, deploy

XSD = etree.XMLSchema(etree.parse(str(ROOT / "tests/junit/junit.xsd")))
REPORTS = ("report.html", "junit.xml", "incident.md")

GO_DEPLOY = """
- name: Phase db
  hosts: sandbox
  gather_facts: false
  vars: {emp_phase: infrastructure, emp_component: database, emp_release: "2.0"}
  tasks:
    - name: Release the database
      emp_test_release: {component: database, version: "2.0"}
    - name: Database gate
      emp.deploy.gate:
        name: db-gate
        component: database
        probe: {module: ansible.builtin.command, args: {argv: [echo, "120"]}, check_mode: false}
        samples: 3
        interval: 0.1
        criteria: ["result.stdout | int < 200"]
    - name: Observe gate
      emp.deploy.gate:
        name: db-observe
        component: database
        mode: observe
        evidence: {rc: 1}
        criteria: [result.rc == 0]
"""

needs_chromium = pytest.mark.skipif(chromium.binary() is None, reason="chromium missing: run tools/system-deps")


def render_again(run_dir: Path, check: bool = False):
    return run_playbook(ROOT / "playbooks/report.yml", extra_vars={"emp_run_dir": str(run_dir)}, check=check,
                        env={"EMP_DEPLOY_REPORT_DIR": str(run_dir.parent)})


def check_in_chromium(report: Path, shots: Path, gates: list[str], decision: str) -> str:
    dom, console = chromium.load(report, shots / f"{report.parent.name}.png")
    assert console == [], console
    page = html.fromstring(dom)
    assert page.get_element_by_id("decision").get("data-decision") == decision
    assert page.get_element_by_id("decision").find_class("decision")[0].text_content() == decision
    assert [n.text_content() for n in page.get_element_by_id("gates").find_class("gate-name")] == gates
    assert (shots / f"{report.parent.name}.png").stat().st_size > 10_000
    return dom


@pytest.mark.compat
def test_a_nogo_run_writes_its_reports_and_the_report_playbook_renders_the_same_bytes(tmp_path):
    run = deploy(tmp_path, env={"EMP_DEPLOY_ROLLBACK_SCOPE": "run"})
    assert run.proc.returncode == 2, run.stdout[-3000:]
    first = {name: (run.dir / name).read_bytes() for name in REPORTS}
    XSD.assertValid(etree.fromstring(first["junit.xml"]))
    assert run.summary["record_errors"] == []
    incident = first["incident.md"].decode()
    assert "redis-gate" in incident and run.summary["rollback"]["command"] in incident

    for name in REPORTS:
        (run.dir / name).unlink()
    (run.dir / "summary.json").unlink()  # the journal alone
    dry = render_again(run.dir, check=True)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "would write report.html, junit.xml, incident.md" in dry.stdout
    assert not any((run.dir / name).exists() for name in REPORTS)
    again = render_again(run.dir)
    assert again.returncode == 0, again.stdout[-3000:]
    assert {name: (run.dir / name).read_bytes() for name in REPORTS} == first
    # the report run keeps no record of its own: still one run folder
    assert [p.name for p in run.dir.parent.iterdir() if p.is_dir()] == [run.dir.name]
    unchanged = render_again(run.dir)
    assert "changed=0" in unchanged.stdout, unchanged.stdout[-2000:]


def test_the_report_playbook_refuses_a_folder_without_a_journal(tmp_path):
    proc = render_again(tmp_path / "nothing-here")
    assert proc.returncode == 2 and "holds no journal.jsonl" in proc.stdout
    proc = run_playbook(ROOT / "playbooks/report.yml", env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path)})
    assert proc.returncode == 2 and "Give the run folder" in proc.stdout


@needs_chromium
def test_the_go_and_nogo_reports_of_real_runs_in_chromium(tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for name in ("nogo", "go"):
        (tmp_path / name).mkdir()
    nogo = deploy(tmp_path / "nogo", env={"EMP_DEPLOY_ROLLBACK_SCOPE": "run"})
    gates = [r["name"] for r in nogo.journal if r["type"] == "gate"]
    dom = check_in_chromium(nogo.dir / "report.html", shots, gates, "NO-GO")
    assert "rollback of redis, database: ok" in html.fromstring(dom).get_element_by_id("decision").text_content()
    go = deploy(tmp_path / "go", playbook=GO_DEPLOY, rollback=ROLLBACK)
    assert go.proc.returncode == 0, go.stdout[-3000:]
    dom = check_in_chromium(go.dir / "report.html", shots, ["db-gate", "db-observe"], "GO")
    charts = html.fromstring(dom).find_class("chart")
    assert [c.get("aria-label") for c in charts] == ["result.stdout < 200", "result.rc == 0"]
    assert len(charts[0].findall(".//{*}circle") or charts[0].findall(".//circle")) == 3  # one mark per sample


@needs_chromium
def test_a_watched_run_and_a_200_gate_run_in_chromium(tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    watched = rj.watch_run()
    run_dir = tmp_path / "reports" / watched.run_id
    watched.write(run_dir)
    shutil.copy(run_dir / "journal.jsonl", tmp_path / "journal.copy")
    from ansible_collections.emp.deploy.plugins.plugin_utils import _reports
    assert _reports.write_reports(run_dir).errors == []
    files = _reports.render_run(run_dir)
    deploy_gates = [r["name"] for r in watched.records if r["type"] == "gate" and r["phase"] != "watch"]
    dom = check_in_chromium(run_dir / "report.html", shots, deploy_gates, "GO")
    page = html.fromstring(dom)
    assert page.get_element_by_id("watch-verdict").text_content() == "FAILED"
    assert [c.text_content() for c in page.get_element_by_id("watch").find_class("check-name")] == \
        ["webhook-failure-ratio", "worker-memory"]
    assert "incident.md" in files

    big = rj.big_run(200, 30)
    big_dir = tmp_path / "reports" / big.run_id
    big.write(big_dir)
    assert _reports.write_reports(big_dir).errors == []
    assert (big_dir / "report.html").stat().st_size < 2 * 1024 * 1024
    check_in_chromium(big_dir / "report.html", shots, [r["name"] for r in big.records if r["type"] == "gate"], "NO-GO")
    # who was told: the notices and the trace export, as people see them
    told = rj.told_run()
    told_dir = tmp_path / "reports" / told.run_id
    told.write(told_dir)
    assert _reports.write_reports(told_dir).errors == []
    notices = html.fromstring(check_in_chromium(told_dir / "report.html", shots, ["webhook-p95"], "NO-GO")
                              ).get_element_by_id("notices")
    assert [r.get("class") for r in notices.xpath(".//tr[td]")] == ["sent", "unsent", "sent"]
    assert "trace " + "5f0c" * 8 + " sent to 127.0.0.1:4318" in notices.text_content()
    index_dom, console = chromium.load(tmp_path / "reports" / "index.html")
    assert console == []
    assert sorted(r.get("data-run") for r in html.fromstring(index_dom).xpath("//tr[@data-run]")) == \
        sorted([watched.run_id, big.run_id, told.run_id])


@needs_chromium
def test_the_console_check_sees_a_script_error(tmp_path):
    """The check above can fail: a page with a failing script and a blocked remote image is caught."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><p id="decision">x</p>'
                    '<script>console.error("boom"); notDefined();</script></body></html>')
    dummy, console = chromium.load(page)
    assert any("boom" in line for line in console) and any("notDefined" in line for line in console)
    assert json.dumps(console)
