"""Rollback readiness before GO (docs/safety.md), through real ansible-playbook runs of the emp.deploy.release
role (and the database role) on real release directories, with the go_no_go callback recording:

- the previous release is missing, or its release.json records another version: a NO-GO named
  rollback-ready-<service> before anything changed (current untouched, no release folder written, no
  release record), and no rollback (nothing changed);
- the command strategy without a rollback command, or whose current-version command does not answer;
- the database declared to need a backup that is absent (the shared PostgreSQL answers the read-only
  pre-check; nothing is written to it);
- the healthy case releases as before, and a first release (nothing to return to) is ready.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import run_playbook


def release_layout(base: Path, versions: dict[str, str], current: str) -> None:
    """The ansistrano layout the sandbox and the release module use: releases/<v>/release.json, current."""
    for folder, recorded in versions.items():
        (base / "releases" / folder).mkdir(parents=True)
        (base / "releases" / folder / "release.json").write_text(json.dumps({"service": "svc", "version": recorded}))
    os.symlink(f"releases/{current}", base / "current")


def run_component(tmp_path: Path, tasks: str, component: str = "webhooks", **extra):
    """One phase play (emp_phase/emp_component set, as deploy.yml's) with the given tasks; the run's summary."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"""---
- name: "Phase 3 · application · {component}"
  hosts: sandbox
  gather_facts: false
  vars:
    emp_phase: application
    emp_component: {component}
  tasks:
{tasks}
""")
    reports = tmp_path / "reports"
    proc = run_playbook(playbook, env={"EMP_DEPLOY_REPORT_DIR": str(reports), "EMP_DEPLOY_RUN_ID": "readiness"},
                        **extra)
    summary = json.loads((reports / "readiness" / "summary.json").read_text())
    return proc, summary


def release_task(spec: dict) -> str:
    return f"""    - name: Release
      ansible.builtin.include_role:
        name: emp.deploy.release
      vars:
        release_spec: {json.dumps(spec)}
"""


def assert_nogo_before_change(proc, summary, reason: str) -> dict:
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert summary["decision"] == "NO-GO", summary
    (gate,) = summary["gates"]
    assert gate["name"].startswith("rollback-ready-") and gate["decision"] == "NO-GO", gate
    assert reason in gate["reason"], gate["reason"]
    assert summary["releases"] == []  # the release step never ran
    rollback = summary["rollback"]
    assert not rollback["triggered"] and "nothing changed" in rollback["why_not"], rollback
    assert reason in summary["reasons"][0]
    return gate


def test_missing_previous_release_is_no_go_before_any_change(tmp_path):
    base = tmp_path / "webhook"
    release_layout(base, {"1.0.0": "1.0.0"}, "1.0.0")
    (base / "releases" / "1.0.0" / "release.json").unlink()
    (base / "releases" / "1.0.0").rmdir()  # current now points at a release that is gone
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('1.1.0')\n")

    spec = {"name": "webhook", "version": "1.1.0", "base_dir": str(base), "src": str(src)}
    proc, summary = run_component(tmp_path, release_task(spec))

    gate = assert_nogo_before_change(proc, summary, "cannot roll back webhooks: previous release 1.0.0 is missing")
    assert gate["component"] == "webhooks" and gate["phase"] == "application" and gate["mode"] == "enforce"
    assert os.readlink(base / "current") == "releases/1.0.0"  # untouched
    assert not (base / "releases" / "1.1.0").exists()  # nothing copied
    assert not (base / ".emp-release.json").exists()
    assert "rollback-ready-webhook" in proc.stdout  # the GO/NO-GO table shows it


def test_corrupted_previous_release_is_no_go(tmp_path):
    base = tmp_path / "webhook"
    release_layout(base, {"1.0.0": "0.9.0"}, "1.0.0")

    proc, summary = run_component(tmp_path, release_task({"name": "webhook", "version": "1.1.0", "base_dir": str(base)}))

    assert_nogo_before_change(proc, summary, "previous release 1.0.0 is corrupted")
    assert "records version '0.9.0'" in summary["gates"][0]["reason"]
    assert os.readlink(base / "current") == "releases/1.0.0"
    assert not (base / "releases" / "1.1.0").exists()


def test_command_strategy_without_rollback_command_is_no_go(tmp_path):
    deployed = tmp_path / "deployed"
    spec = {"name": "api", "strategy": "command", "version": "2.0.0", "state_dir": str(tmp_path / "state"),
            "current_version_command": "echo 1.0.0", "deploy_command": f"touch {deployed}"}

    proc, summary = run_component(tmp_path, release_task(spec))

    assert_nogo_before_change(proc, summary, "cannot roll back webhooks: no rollback command is configured")
    assert not deployed.exists()  # the deploy command never ran


def test_command_strategy_whose_current_version_command_fails_is_no_go(tmp_path):
    deployed = tmp_path / "deployed"
    spec = {"name": "api", "strategy": "command", "version": "2.0.0", "state_dir": str(tmp_path / "state"),
            "current_version_command": "echo down >&2; exit 3", "deploy_command": f"touch {deployed}",
            "rollback_command": "true"}

    proc, summary = run_component(tmp_path, release_task(spec))

    assert_nogo_before_change(proc, summary, "its current-version command did not answer (rc 3")
    assert not deployed.exists()


def test_database_requiring_an_absent_backup_is_no_go(tmp_path):
    migrated = tmp_path / "migrated"
    tasks = f"""    - name: Release the database
      ansible.builtin.include_role:
        name: emp.deploy.database
      vars:
        database_host: 127.0.0.1
        database_port: 5432
        database_name: postgres
        database_user: postgres
        database_rollback_requires: backup
        database_backup_path: {tmp_path / 'backup.dump'}
        database_migrate_command: touch {migrated}
"""
    proc, summary = run_component(tmp_path, tasks, component="database")

    gate = assert_nogo_before_change(proc, summary, "cannot roll back database: the required backup is absent")
    assert gate["name"] == "rollback-ready-database"
    assert not migrated.exists()  # no migration ran


def test_healthy_and_first_releases_are_ready(tmp_path):
    base, fresh = tmp_path / "webhook", tmp_path / "fresh"
    release_layout(base, {"1.0.0": "1.0.0"}, "1.0.0")
    backup = tmp_path / "backup.dump"
    backup.write_bytes(b"PGDMP")
    tasks = release_task({"name": "webhook", "version": "1.1.0", "base_dir": str(base),
                          "manifest": {"service": "webhook", "version": "1.1.0"}})
    tasks += release_task({"name": "fresh", "version": "1.0.0", "base_dir": str(fresh)})
    tasks += f"""    - name: The database's declared backup is there
      emp.deploy.rollback_ready:
        name: database
        strategy: none
        requires: backup_or_down_migration
        backup_path: {backup}
      register: database_ready
    - name: Check it
      ansible.builtin.assert:
        that: database_ready.ready and not database_ready.problems
"""
    proc, summary = run_component(tmp_path, tasks)

    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["gates"] == []  # a ready release records no gate of its own
    assert [(r["component"], r["version"], r["changed"]) for r in summary["releases"]] == [
        ("webhooks", "1.1.0", True), ("webhooks", "1.0.0", True)]
    assert os.readlink(base / "current") == "releases/1.1.0"
    assert os.readlink(fresh / "current") == "releases/1.0.0"
