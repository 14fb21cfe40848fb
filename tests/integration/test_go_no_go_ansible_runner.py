"""The go_no_go callback beside ansible-runner, the way AWX runs a job: runner's own stdout
callback (awx_display) and event stream, our callback still journaling and rolling back in-process."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT
from servers import kill_processes_working_in
from test_go_no_go_reliability import SOAK
from test_go_no_go_runs import DEPLOY, ROLLBACK, test_library

ansible_runner = pytest.importorskip("ansible_runner")

# ansible-runner's default pexpect mode (the one AWX uses, so the one worth testing) forkpty()s from
# this multi-threaded pytest process (xdist's and pytest-timeout's threads). The child execs
# ansible-playbook at once and touches no lock first, so the deadlock Python warns about cannot happen.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* use of forkpty:DeprecationWarning")


def test_nogo_and_rollback_under_ansible_runner(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "deploy.yml").write_text(DEPLOY)
    (project / "rollback.yml").write_text(ROLLBACK)
    marker = tmp_path / "rollback.jsonl"
    reports = tmp_path / "reports"
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "EMP_DEPLOY_REPORT_DIR": str(reports),
        "EMP_DEPLOY_ROLLBACK_PLAYBOOK": str(project / "rollback.yml"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_LIBRARY": str(test_library(tmp_path)),
    }
    runner = ansible_runner.run(
        private_data_dir=str(tmp_path), playbook="deploy.yml", inventory=str(ROOT / "inventories/sandbox/hosts.yml"),
        extravars={"marker": str(marker)}, envvars=env, quiet=True, timeout=240,
    )
    assert runner.status == "failed" and runner.rc == 2

    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["decision"] == "NO-GO"
    assert summary["rollback"]["triggered"] is True and summary["rollback"]["ok"] is True
    assert summary["rollback"]["components"] == ["redis"] and summary["rollback"]["runner"] == "in_process"
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert journal[-1]["type"] == "run_end"

    rollbacks = [json.loads(line) for line in marker.read_text().splitlines()]
    assert [r["component"] for r in rollbacks] == ["redis"]
    # runner forces its awx_display stdout callback, which emits these events; the rollback ran inside the
    # same ansible-playbook process, so its tasks are in the same event stream as the gate
    task_names = {event.get("event_data", {}).get("task") for event in runner.events}
    assert "Record the redis rollback" in task_names
    assert "Redis gate" in task_names
    stdout = Path(runner.stdout.name).read_text() if hasattr(runner.stdout, "name") else runner.stdout.read()
    assert "NO-GO" in stdout


def test_a_job_cancelled_by_ansible_runner_still_ends_its_record(tmp_path):
    """ansible-runner (and AWX) cancel a job with SIGKILL to its process group: no handler runs, so
    the run's watcher process ends the record from the journal."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "soak.yml").write_text(SOAK.replace("__FAIL_OR_PASS__", "1"))
    reports = tmp_path / "reports"
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "EMP_DEPLOY_REPORT_DIR": str(reports),
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_LIBRARY": str(test_library(tmp_path))}

    def soaking() -> bool:  # cancel once the soak has taken samples
        journals = list(reports.glob("*/journal.jsonl"))
        return bool(journals) and '"type":"release"' in journals[0].read_text()

    try:
        check_cancelled_run(tmp_path, reports, env, soaking)
    finally:
        # the cancel kills the playbook's process group; ansible-core 2.21's workers run in sessions of
        # their own and outlive it (killed once the watcher has ended the record)
        kill_processes_working_in(project)


def check_cancelled_run(tmp_path: Path, reports: Path, env: dict, soaking) -> None:
    runner = ansible_runner.run(
        private_data_dir=str(tmp_path), playbook="soak.yml", inventory=str(ROOT / "inventories/sandbox/hosts.yml"),
        envvars=env, quiet=True, timeout=240, cancel_callback=soaking,
    )
    assert runner.status == "canceled"
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    deadline = time.monotonic() + 60
    while not (run_dir / "summary.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the watcher notices the death and writes the summary
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["decision"] == "interrupted" and summary["interrupted"] == "killed"
    assert summary["running_step"]["task"] in ("Release redis", "A long soak")
    assert summary["rollback"]["state"] == "not_started"
    assert summary["releases"][0]["component"] == "redis"
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert [r["type"] for r in journal][-2:] == ["run_interrupted", "run_end"]
    # the watcher wrote the reports too, from the journal it had just ended
    assert 'data-decision="interrupted"' in (run_dir / "report.html").read_text() and summary["record_errors"] == []
