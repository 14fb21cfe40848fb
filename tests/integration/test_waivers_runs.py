"""Waivers (emp_waivers) in real ansible-playbook runs: a valid waiver lets an enforced NO-GO through on the
record (decision WAIVED, evidence kept, shown in the table, the HTML report and JUnit), an expired one is
ignored with a warning, and a misspelt or malformed one stops the run before any task, also for the real
deploy.yml and its roles' gate names."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import ROOT, run_playbook
from test_go_no_go_runs import DB_GATE, DB_PHASE, REDIS_PHASE, ROLLBACK, deploy, test_library

REDIS_GATE = """    - name: Redis gate
      emp.deploy.gate:
        name: redis-gate
        component: redis
        evidence: {stdout: "312"}
        criteria: ["result.stdout | int < 200"]
"""
PLAYBOOK = DB_PHASE + DB_GATE + REDIS_PHASE + REDIS_GATE
WAIVER = {"gate": "redis-gate", "reason": "INC-42: replica slow, fix tomorrow", "by": "alice",
          "expires": "2999-01-01T00:00:00Z"}


def run_with(tmp_path: Path, waivers: list[dict]):
    path = tmp_path / "waivers.json"
    path.write_text(json.dumps({"emp_waivers": waivers}))
    return deploy(tmp_path, PLAYBOOK, ROLLBACK, args=["-e", f"@{path}"])


def test_a_valid_waiver_records_the_evidence_and_does_not_block(tmp_path):
    run = run_with(tmp_path, [WAIVER])
    assert run.proc.returncode == 0, run.stdout[-3000:]
    summary = run.summary
    assert summary["decision"] == "GO" and not summary["rollback"]["triggered"]
    assert [(g["name"], g["decision"]) for g in summary["gates"]] == [("db-gate", "GO"), ("redis-gate", "WAIVED")]
    (gate,) = [r for r in run.journal if r["type"] == "gate" and r["name"] == "redis-gate"]
    assert gate["waiver"] == dict(WAIVER, expires="2999-01-01T00:00:00Z", measured_decision="NO-GO")
    assert gate["samples"][0]["figures"] == {"result.stdout": "312"}  # sampled and recorded as usual
    assert gate["reason"].startswith("waived by alice until 2999-01-01T00:00:00Z (INC-42: replica slow, fix tomorrow)"
                                     "; measured NO-GO: ")
    (start,) = [r for r in run.journal if r["type"] == "run_start"]
    assert start["waivers"] == [dict(WAIVER, expired=False)]
    assert [p["decision"] for p in summary["phases"]] == ["GO", "GO"]

    table = run.stdout[run.stdout.index("EMP GO/NO-GO  run"):]
    assert "WAIVED redis-gate: by alice until 2999-01-01T00:00:00Z (INC-42: replica slow, fix tomorrow); " \
           "measured NO-GO" in table
    junit = ET.parse(run.dir / "junit.xml").getroot()
    (case,) = [c for c in junit.iter("testcase") if c.get("name") == "redis-gate"]
    skipped = case.find("skipped")
    assert skipped is not None and "waived by alice" in str(skipped.get("message"))
    assert '<span class="tag t-warn">WAIVED</span>' in (run.dir / "report.html").read_text()


def test_an_expired_waiver_is_ignored_with_a_warning(tmp_path):
    run = run_with(tmp_path, [dict(WAIVER, expires="2020-01-01")])
    assert run.proc.returncode == 2, run.stdout[-3000:]
    out = run.stdout + run.proc.stderr
    assert "the waiver of gate redis-gate by alice expired at 2020-01-01T00:00:00Z; it is ignored" in out
    assert [(g["name"], g["decision"]) for g in run.summary["gates"]] == [("db-gate", "GO"), ("redis-gate", "NO-GO")]
    assert run.summary["rollback"]["components"] == ["redis"]
    (start,) = [r for r in run.journal if r["type"] == "run_start"]
    assert start["waivers"][0]["expired"] is True


def stopped_before_any_task(tmp_path: Path, proc) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 5, out[-3000:]
    assert "The run stops before any task ran" in out
    assert "TASK [" not in proc.stdout
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
    return " ".join(out.split())


def test_a_misspelt_waiver_stops_the_run_before_any_task(tmp_path):
    path = tmp_path / "waivers.json"
    path.write_text(json.dumps({"emp_waivers": [dict(WAIVER, gate="redis-gaet")]}))
    (tmp_path / "deploy.yml").write_text(PLAYBOOK)
    proc = run_playbook(tmp_path / "deploy.yml", args=["-e", f"@{path}"],
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"),
                             "ANSIBLE_LIBRARY": str(test_library(tmp_path))})
    out = stopped_before_any_task(tmp_path, proc)
    assert "emp_waivers: no gate named redis-gaet in deploy.yml (its gates: db-gate, redis-gate)" in out


def test_a_waiver_without_reason_stops_the_run_before_any_task(tmp_path):
    (tmp_path / "deploy.yml").write_text(PLAYBOOK)
    waiver = {k: v for k, v in WAIVER.items() if k != "reason"}
    proc = run_playbook(tmp_path / "deploy.yml", extra_vars={"emp_waivers": [waiver]},
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports"),
                             "ANSIBLE_LIBRARY": str(test_library(tmp_path))})
    out = stopped_before_any_task(tmp_path, proc)
    assert "emp_waivers[0] (gate redis-gate): reason is required" in out


def test_the_real_deploy_playbook_knows_its_roles_gates(tmp_path):
    """deploy.yml's gates live in the component roles it includes: a real one is accepted (the run goes on to
    its first task, stopped here by a target that is not ready), a misspelt one is refused before any task."""
    env = {"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")}
    proc = run_playbook(ROOT / "deploy.yml", env=env, extra_vars={
        "emp_waivers": [dict(WAIVER, gate="webhook-processing")], "emp_lock": "off"})
    out = stopped_before_any_task(tmp_path, proc)
    assert "emp_waivers: no gate named webhook-processing in deploy.yml" in out
    assert "webhooks-processing" in out and "workers-processing-*" in out

    proc = run_playbook(ROOT / "deploy.yml", env=env, extra_vars={
        "emp_waivers": [dict(WAIVER, gate="webhooks-processing"), dict(WAIVER, gate="workers-processing-mock")],
        "emp_lock": "off", "emp_target_ready": False, "emp_target_not_ready_msg": "stopped by the test"})
    assert proc.returncode != 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stopped by the test" in proc.stdout
