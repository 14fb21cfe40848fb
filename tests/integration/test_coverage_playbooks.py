"""The checklist coverage report for real: gates naming checklist lines sample a real redis-server in a real
ansible-playbook run, emp.deploy.coverage is its last task, and the go_no_go callback writes the report again
when the run ends; the report playbook writes the same bytes later; a run stopped by an enforced NO-GO before
its coverage task still gets its report; a missing folder or a corrupt journal is refused with a clear error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import ROOT, run_playbook
from servers import free_port

RUN_ID = "20261203T120000Z-cov0001"

PREDEPLOY = """---
- name: Redis & database layer
  hosts: sandbox
  gather_facts: false
  vars: {{emp_phase: predeploy, emp_component: redis}}
  module_defaults:
    group/emp.deploy.redis: {{connect_timeout: 1, command_timeout: 1, latency_samples: 3}}
  tasks:
    - name: Gate · every service's Redis answers
      emp.deploy.gate:
        name: redis-answers
        component: redis
        checklist_ref: testing/redis/all-services-reconnect
        probe: {{module: emp.deploy.redis_health, args: {{port: {port}}}}}
        samples: 2
        interval: 0.1
        criteria: [result.reachable, "result.latency_ms.samples == 3"]
    - name: Gate · observe a criterion that does not hold
      emp.deploy.gate:
        name: redis-observed
        component: redis
        checklist_ref: testing/redis/retry-memory
        mode: observe
        probe: {{module: emp.deploy.redis_health, args: {{port: {port}}}}}
        samples: 2
        interval: 0.1
        criteria: ["result.latency_ms.samples == 99"]
    - name: Gate · a Redis that is not there
      emp.deploy.gate:
        name: redis-absent
        component: redis
        checklist_ref: testing/queue/claim-atomicity
        mode: warn
        probe: {{module: emp.deploy.redis_health, args: {{port: {closed}}}}}
        samples: 2
        interval: 0.1
        consecutive_error_limit: 1
        criteria: [result.reachable]
    - name: Gate · restart Redis mid-operation (disruptive)
      emp.deploy.gate:
        name: redis-restart
        component: redis
        checklist_ref: testing/redis/reconnect
        probe: {{module: emp.deploy.redis_health, args: {{port: {port}}}}}
        criteria: [result.reachable]
      when: emp_predeploy_disruptive | default(false) | bool
    - name: Gate · a checklist_ref with a typo
      emp.deploy.gate:
        name: redis-typo
        component: redis
        checklist_ref: testing/redis/reconect
        evidence: {{answered: true}}
        criteria: [result.answered]
{last}
"""

COVERAGE_TASK = """
- name: Coverage
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Checklist coverage of this run
      emp.deploy.coverage:
      register: coverage
    - name: Keep what the task returned
      ansible.builtin.copy:
        content: "{{{{ coverage | to_json }}}}"
        dest: "{out}"
        mode: "0600"
"""


def run_predeploy(tmp_path: Path, port: int, *, last: str = COVERAGE_TASK, run_id: str = RUN_ID, **kwargs):
    out = tmp_path / "coverage-result.json"
    playbook = tmp_path / "predeploy.yml"
    playbook.write_text(PREDEPLOY.format(port=port, closed=free_port(), last=last.format(out=out)))
    proc = run_playbook(playbook, extra_vars={"emp_run_id": run_id}, env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")},
                        **kwargs)
    return proc, tmp_path / "reports" / run_id, out


def coverage_again(run_dir: Path, check: bool = False, **extra):
    return run_playbook(ROOT / "playbooks/coverage.yml", extra_vars={"emp_run_dir": str(run_dir), **extra}, check=check,
                        env={"EMP_DEPLOY_REPORT_DIR": str(run_dir.parent)})


def by_id(entries: list[dict]) -> dict:
    return {e["id"]: e for e in entries if e["id"]}


def test_predeploy_run_reports_each_line_with_its_gates(tmp_path, redis_server):
    proc, run_dir, out = run_predeploy(tmp_path, redis_server.port)
    assert proc.returncode == 0, proc.stdout[-4000:]

    # the coverage task ran inside the run, printed the table and returned it
    assert f"CHECKLIST COVERAGE  run {RUN_ID}" in proc.stdout
    assert "| testing/redis/all-services-reconnect | Verify all three services (API, webhook, monitor) reconnect " \
           "properly | automated-passed |" in proc.stdout
    returned = json.loads(out.read_text())
    assert returned["counts"] == {"automated-passed": 1, "automated-failed": 2, "manual": 56, "not-applicable": 0,
                                  "unmapped": 1}
    assert returned["files"] == {str(run_dir / "coverage.json"): "written", str(run_dir / "coverage.md"): "written"}
    assert returned["table"] in (run_dir / "coverage.md").read_text()

    # the callback wrote the report again when the run ended: the same lines, and the run's decision
    entries = json.loads((run_dir / "coverage.json").read_text())
    assert [e["status"] for e in entries] == [e["status"] for e in returned["coverage"]]
    lines = by_id(entries)
    passed = lines["testing/redis/all-services-reconnect"]
    assert passed["status"] == "automated-passed"
    assert passed["covered_by"] == ["redis-answers (emp.deploy.redis_health)"]
    assert "redis-answers on sandbox: GO: all 2 criteria held in 2 of 2 samples [2 samples: 2 passed]" in passed["evidence"]

    observed = lines["testing/redis/retry-memory"]
    assert observed["status"] == "automated-failed"
    assert "NO-GO (observe mode: recorded, not enforced)" in observed["evidence"]
    assert "(result.latency_ms.samples was 3)" in observed["evidence"] and "[1 sample: 1 failed]" in observed["evidence"]

    absent = lines["testing/queue/claim-atomicity"]
    assert absent["status"] == "automated-failed"
    assert "NO-GO (warn mode: not enforced)" in absent["evidence"] and "could not measure" in absent["evidence"]

    skipped = lines["testing/redis/reconnect"]
    assert skipped["status"] == "manual"
    assert skipped["evidence"] == ("redis-restart: skipped: condition false: "
                                   "emp_predeploy_disruptive | default(false) | bool")

    assert lines["testing/db/migrations"]["status"] == "manual"
    assert lines["testing/db/migrations"]["evidence"].startswith("not judged in this run")
    typo = [e for e in entries if e["status"] == "unmapped"]
    assert [(t["line"], t["covered_by"]) for t in typo] == [("testing/redis/reconect", ["redis-typo (evidence)"])]

    md = (run_dir / "coverage.md").read_text()
    assert md.startswith(f"# Checklist coverage · run {RUN_ID}\n\nRun decision: **GO**")
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [r["name"] for r in journal if r["type"] == "gate_skipped"] == ["redis-restart"]

    # later, from the journal alone: the same bytes; --check writes nothing
    before = {name: (run_dir / name).read_bytes() for name in ("coverage.json", "coverage.md")}
    again = coverage_again(run_dir)
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"run {RUN_ID}: 60 entries: 1 automated-passed, 2 automated-failed, 56 manual" in again.stdout
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert "changed=0" in again.stdout

    (run_dir / "coverage.md").unlink()
    checked = coverage_again(run_dir, check=True, emp_coverage_not_applicable={"testing/db/migrations": "no prisma here"})
    assert checked.returncode == 0 and not (run_dir / "coverage.md").exists()
    marked = coverage_again(run_dir, emp_coverage_not_applicable={"testing/db/migrations": "no prisma here"})
    assert marked.returncode == 0, marked.stdout[-3000:]
    status = by_id(json.loads((run_dir / "coverage.json").read_text()))["testing/db/migrations"]
    assert (status["status"], status["evidence"]) == ("not-applicable", "not applicable: no prisma here")


def test_a_run_stopped_by_an_enforced_nogo_still_gets_its_report(tmp_path, redis_server):
    stop = """
- name: Enforced gate on a Redis that is not there
  hosts: sandbox
  gather_facts: false
  tasks:
    - name: Gate · pooling
      emp.deploy.gate:
        name: pool
        component: database
        checklist_ref: testing/db/pooling
        probe: {{module: emp.deploy.redis_health, args: {{port: 1, connect_timeout: 1}}}}
        samples: 1
        criteria: [result.reachable]
""" + COVERAGE_TASK
    proc, run_dir, out = run_predeploy(tmp_path, redis_server.port, last=stop, run_id="20261203T120000Z-cov0002")
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert not out.exists() and "CHECKLIST COVERAGE" not in proc.stdout  # the coverage task never ran
    lines = by_id(json.loads((run_dir / "coverage.json").read_text()))
    assert lines["testing/db/pooling"]["status"] == "automated-failed"
    assert "pool on sandbox: NO-GO (could not measure)" in lines["testing/db/pooling"]["evidence"]
    assert "Run decision: **NO-GO**" in (run_dir / "coverage.md").read_text()


def test_bad_run_folders_are_refused_with_a_clear_error(tmp_path, redis_server):
    missing = coverage_again(tmp_path / "reports" / "no-such-run")
    assert missing.returncode == 2
    assert "no-such-run is not a folder: give the folder of one run" in missing.stdout

    proc, run_dir, _out = run_predeploy(tmp_path, redis_server.port, last="")
    assert proc.returncode == 0, proc.stdout[-3000:]
    broken = tmp_path / "reports" / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "coverage.json").unlink()
    lines = (broken / "journal.jsonl").read_text().splitlines(keepends=True)
    lines.insert(3, "}{ not json\n")
    (broken / "journal.jsonl").write_text("".join(lines))
    refused = coverage_again(broken)
    assert refused.returncode == 2
    assert "journal.jsonl line 4 is not a journal record ('}{ not json')" in refused.stdout
    assert not (broken / "coverage.json").exists()
