"""Resume at the failed gate without Ansible (docs/resume.md): which run, which steps are skipped and
their evidence, and every reason resuming is refused before any task."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _resume as resume

HOSTS = {"web1": {"ok": 3}, "web2": {"ok": 3}}


def phase(component: str, decision: str) -> dict:
    return {"phase": f"phase-{component}", "component": component, "play": f"play {component}", "decision": decision}


def nogo_summary(run_id: str = "r1", started: str = "2026-12-04T10:00:00Z", **changes: object) -> dict:
    summary = {
        "run_id": run_id, "decision": R.NO_GO, "rollback_run": False, "run_kind": "deploy", "check_mode": False,
        "started": started, "hosts": HOSTS,
        "phases": [phase("database", R.GO), phase("redis", R.GO), phase("webhooks", R.NO_GO), phase("workers", R.GO)],
        "gates": [{"id": "g1", "name": "database-connections", "component": "database", "decision": R.GO, "host": "web1"},
                  {"id": "g2", "name": "redis-connections", "component": "redis", "decision": R.GO, "host": "web1"},
                  {"id": "g3", "name": "webhooks-processing", "component": "webhooks", "decision": R.NO_GO,
                   "host": "web1"}],
        "releases": [{"component": "database", "version": "1.1.0", "host": "web1", "changed": True},
                     {"component": "database", "version": "1.1.0", "host": "web2", "changed": True},
                     {"component": "redis", "version": "1.1.0", "host": "web1", "changed": False},
                     {"component": "webhooks", "version": "1.1.0-404", "host": "web1", "changed": True}],
        "rollback": {"state": "finished", "components": ["webhooks"]},
    }
    summary.update(changes)
    return summary


def write_run(reports: Path, summary: dict | None, run_id: str = "r1") -> None:
    run_dir = reports / run_id
    run_dir.mkdir(parents=True)
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))


def test_the_steps_before_the_first_not_go_are_skipped_with_their_gates_and_releases(tmp_path):
    write_run(tmp_path, nogo_summary())

    plan = resume.plan_resume(tmp_path, "r1", ["web1", "web2"])

    assert plan.resumed_from == "r1" and plan.resume_at == "webhooks"
    assert plan.components == ["database", "redis"]  # workers said GO after the NO-GO: it runs again
    record = plan.as_record()
    assert [g["id"] for s in record["steps"] for g in s["gates"]] == ["g1", "g2"]
    assert record["steps"][0]["releases"] == [{"component": "database", "version": "1.1.0", "host": "web1"},
                                              {"component": "database", "version": "1.1.0", "host": "web2"}]
    assert json.loads(plan.for_tasks()) == {"resumed_from": "r1", "skip": ["database", "redis"], "versions": {
        "database": {"web1": ["1.1.0"], "web2": ["1.1.0"]}, "redis": {"web1": ["1.1.0"]}}}


def test_a_step_that_was_rolled_back_is_not_skipped():
    steps, resume_at = resume.resumed_steps(nogo_summary(rollback={"state": "finished",
                                                                   "components": ["webhooks", "redis"]}))

    assert [s.component for s in steps] == ["database"] and resume_at == "redis"


def test_a_run_whose_first_step_did_not_say_go_skips_nothing():
    steps, resume_at = resume.resumed_steps(nogo_summary(phases=[phase("database", R.NO_GO)]))

    assert steps == [] and resume_at == "database"


def test_latest_is_the_newest_deploy_run_by_its_start(tmp_path):
    write_run(tmp_path, nogo_summary("old", "2026-12-04T09:00:00Z"), "old")
    write_run(tmp_path, nogo_summary("new", "2026-12-04T11:00:00Z"), "new")
    write_run(tmp_path, nogo_summary("rb", "2026-12-04T12:00:00Z", rollback_run=True), "rb")
    write_run(tmp_path, nogo_summary("pre", "2026-12-04T13:00:00Z", run_kind="predeploy"), "pre")

    assert resume.plan_resume(tmp_path, "latest", HOSTS).resumed_from == "new"


@pytest.mark.parametrize(("changes", "reason"), [
    ({"decision": R.GO}, "run r1 said GO end to end: nothing to resume"),
    ({"decision": R.REFUSED}, "run r1 was refused before any task: nothing to resume"),
    ({"rollback_run": True}, "run r1 is a rollback run"),
    ({"run_kind": "predeploy"}, "run r1 is a predeploy run, not a deploy"),
    ({"check_mode": True}, "run r1 was a check-mode run: it released nothing"),
])
def test_a_run_that_cannot_be_resumed_is_refused_with_the_reason(tmp_path, changes, reason):
    write_run(tmp_path, nogo_summary(**changes))

    with pytest.raises(resume.ResumeError, match=f"-e emp_resume=r1: resuming is refused: {reason}"):
        resume.plan_resume(tmp_path, "r1", HOSTS)


@pytest.mark.parametrize(("hosts_now", "reason"), [
    (["web1", "web2", "web3"], "the inventory changed since run r1: new hosts web3"),
    (["web1"], "the inventory changed since run r1: hosts no longer in it web2"),
])
def test_a_different_inventory_is_refused(tmp_path, hosts_now, reason):
    write_run(tmp_path, nogo_summary())

    with pytest.raises(resume.ResumeError, match=reason):
        resume.plan_resume(tmp_path, "r1", hosts_now)


@pytest.mark.parametrize(("requested", "message"), [
    ("nope", "-e emp_resume=nope: no run of that id in"),
    ("../etc", "is not a valid run id"),
    ("", "got '', not a run id"),
    (42, "got 42, not a run id"),
    ("empty", "that run has no record to resume from"),
])
def test_an_unknown_or_unrecorded_run_is_an_error(tmp_path, requested, message):
    write_run(tmp_path, None, "empty")

    with pytest.raises(resume.ResumeError, match=message):
        resume.plan_resume(tmp_path, requested, HOSTS)


def test_latest_without_any_run_is_an_error(tmp_path):
    with pytest.raises(resume.ResumeError, match="holds no finished deploy run to resume"):
        resume.plan_resume(tmp_path / "missing", "latest", HOSTS)
