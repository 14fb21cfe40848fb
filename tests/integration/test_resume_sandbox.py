"""Resume at the failed gate (docs/resume.md), through the real `ansible-playbook deploy.yml` against a
sandbox in a temporary state directory:

1. the broken webhook release (1.1.0-404): phases 1 and 2 say GO, the webhooks gate NO-GO (rolled back);
2. resuming it while a phase 1 release changed (the monitor back to 1.0.0), or with a host the run never
   saw, is refused before anything changes; resuming an unknown run id stops before any task;
3. resuming it with the fixed webhook release skips phases 1 and 2 (their evidence linked), deploys the
   webhooks and the rest, GO, and records resumed_from; resuming that GO run is refused (nothing to resume).

About two minutes in all.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

from test_deploy_sandbox import deploy, running_versions, sandbox_cli

pytestmark = pytest.mark.timeout(480)

SKIPPED = ["database", "redis", "telemetry"]


@pytest.fixture(scope="module")
def sandbox_state(tmp_path_factory):
    state = tmp_path_factory.mktemp("resume-sandbox") / "state"
    sandbox_cli(state, "up")
    yield state
    sandbox_cli(state, "down")


@pytest.fixture(scope="module")
def nogo_run(sandbox_state):
    proc, summary, _journal = deploy(sandbox_state, "resume-nogo", emp_sandbox_webhook_version="1.1.0-404")
    assert proc.returncode == 2, proc.stdout[-6000:]
    assert [(p["component"], p["decision"]) for p in summary["phases"]] == [
        ("database", "GO"), ("redis", "GO"), ("telemetry", "GO"), ("webhooks", "NO-GO")]
    return summary


def test_resume_refused_when_a_skipped_release_changed(sandbox_state, nogo_run):
    before = running_versions(sandbox_state)
    proc, summary, journal = deploy(sandbox_state, "resume-refused", emp_resume="resume-nogo",
                                    emp_sandbox_monitor_version="1.0.0")

    assert proc.returncode != 0, proc.stdout[-6000:]
    assert summary["decision"] == "NO-GO" and summary["resumed_from"] == "resume-nogo"
    assert "resuming run resume-nogo is refused: redis (monitor)" in " ".join(summary["reasons"]), summary["reasons"]
    assert "runs 1.1.0, this run would deploy 1.0.0" in " ".join(summary["reasons"])
    assert summary["phases"] == [] and summary["releases"] == [] and summary["gates"] == []
    assert not summary["rollback"]["triggered"]
    assert running_versions(sandbox_state) == before
    assert not [r for r in journal if r["type"] in ("phase_start", "release", "gate")]


def test_resume_of_an_unknown_run_stops_before_any_task(sandbox_state):
    assert "emp_resume=no-such-run: no run of that id in" in deploy_refused(sandbox_state, "no-such-run")


def test_resume_refused_when_the_inventory_has_other_hosts(sandbox_state, nogo_run, tmp_path):
    # a second inventory source beside the sandbox's: the run would now deploy to a host the earlier one never saw
    extra = tmp_path / "more-hosts.yml"
    extra.write_text("all:\n  hosts:\n    sandbox-b:\n      ansible_connection: local\n", encoding="utf-8")
    before = running_versions(sandbox_state)

    output = deploy_refused(sandbox_state, "resume-nogo", args=["-i", str(extra)])

    assert "the inventory changed since run resume-nogo: new hosts sandbox-b" in output
    assert running_versions(sandbox_state) == before


def test_resume_after_fixing_the_release_skips_the_steps_that_said_go(sandbox_state, nogo_run):
    proc, summary, journal = deploy(sandbox_state, "resume-go", emp_resume="resume-nogo")

    assert proc.returncode == 0, proc.stdout[-6000:]
    assert summary["decision"] == "GO" and summary["resumed_from"] == "resume-nogo"
    assert [s["component"] for s in summary["resumed"]] == SKIPPED
    earlier = {g["id"]: g["decision"] for g in nogo_run["gates"] if g["component"] in SKIPPED}
    assert {g["id"]: g["decision"] for s in summary["resumed"] for g in s["gates"]} == earlier
    assert {g["component"] for g in summary["gates"]} == {"webhooks", "workers", "ngrok"}
    assert {g["decision"] for g in summary["gates"]} == {"GO"}
    assert {r["component"] for r in summary["releases"]} == {"webhooks", "workers", "ngrok"}
    phases = [(p["component"], p["decision"], p.get("resumed_from")) for p in summary["phases"]]
    assert phases[:3] == [(c, "GO", "resume-nogo") for c in SKIPPED], phases
    start = next(r for r in journal if r["type"] == "run_start")
    assert start["resumed_from"] == "resume-nogo"
    resume = next(r for r in journal if r["type"] == "resume")
    assert resume["resumed_from"] == "resume-nogo" and resume["resume_at"] == "webhooks"
    assert running_versions(sandbox_state) == {"api": "1.1.0", "webhook": "1.1.0", "worker": "1.1.0",
                                               "monitor": "1.1.0"}

    again = deploy_refused(sandbox_state, "resume-go")
    assert "run resume-go said GO end to end: nothing to resume" in again


def deploy_refused(state: Path, resumed: str, args: list[str] | None = None) -> str:
    """A resume stopped before any task (exit code 5, no record): its output."""
    proc = run_playbook(ROOT / "deploy.yml", extra_vars={"emp_resume": resumed}, timeout=120, args=args,
                        env={"EMP_SANDBOX_STATE": str(state), "EMP_DEPLOY_REPORT_DIR": str(state.parent / "reports")})
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TASK [" not in proc.stdout
    return proc.stdout + proc.stderr


def test_only_a_deploy_run_resumes(tmp_path):
    proc = run_playbook(ROOT / "predeploy.yml", extra_vars={"emp_resume": "latest"}, timeout=120,
                        env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path)})

    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "-e emp_resume: only a deploy run can resume, not a predeploy run" in proc.stdout + proc.stderr
    assert "TASK [" not in proc.stdout
