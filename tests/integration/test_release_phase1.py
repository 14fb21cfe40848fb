"""Phase 1 end to end through the real deploy.yml: the database and Redis roles, emp.deploy.release,
the gates and the go_no_go rollback - also on ansible-core 2.18 (marked compat).

A private redis-server (redis_factory), a private database on the shared PostgreSQL (created and
dropped here) and the molecule scenarios' toy service, which holds a Redis connection named emp-toy
unless its release has the fault no_redis_client.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook

TOY = ROOT / "extensions/molecule/default/files/toy_service.py"
PSQL = ["-h", "127.0.0.1", "-U", "postgres"]


@pytest.fixture
def database():
    name = f"emp_deploy_pytest_{os.getpid()}"
    subprocess.run(["createdb", *PSQL, name], check=True, capture_output=True, timeout=30)
    yield name
    subprocess.run(["dropdb", "--if-exists", *PSQL, name], check=False, capture_output=True, timeout=30)


@pytest.fixture
def toy(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    yield tmp_path
    subprocess.run([sys.executable, str(TOY), "stop", "--base-dir", str(tmp_path / "toy"), "--state-dir", str(state)],
                   check=False, timeout=30)


def deploy_vars(work: Path, redis_url: str, database: str) -> dict:
    restart = f"{sys.executable} {TOY} restart --base-dir {work}/toy --redis-url {redis_url} --state-dir {work}/state"
    return {
        "redis_url": redis_url, "redis_expected_clients": {"emp-toy": 1}, "redis_reconnect_timeout": 5,
        "redis_gate_duration": 1, "redis_gate_interval": 1,
        "database_name": database, "database_gate_duration": 1, "database_gate_interval": 1,
        "database_smoke_queries": ["SELECT 1", "SELECT count(*) FROM pg_catalog.pg_tables"],
        "redis_releases": [{"name": "toy", "version": "{{ toy_version }}", "base_dir": f"{work}/toy",
                            "restart_command": restart,
                            "manifest": {"service": "toy", "client_name": "emp-toy", "version": "{{ toy_version }}",
                                         "faults": "{{ toy_faults }}"}}],
        "database_releases": [{"name": "dbpkg", "version": "{{ toy_version }}", "base_dir": f"{work}/dbpkg",
                               "manifest": {"service": "dbpkg", "version": "{{ toy_version }}"}}],
    }


def run_deploy(work: Path, variables: dict, version: str, faults: list[str], run_id: str):
    proc = run_playbook(ROOT / "deploy.yml", extra_vars={**variables, "toy_version": version, "toy_faults": faults},
                        env={"EMP_DEPLOY_REPORT_DIR": str(work / "reports"), "EMP_DEPLOY_RUN_ID": run_id})
    summary = json.loads((work / "reports" / run_id / "summary.json").read_text())
    return proc, summary


@pytest.mark.compat
def test_phase1_go_then_nogo_rolls_redis_back_to_the_previous_release(redis_server, database, toy):
    variables = deploy_vars(toy, redis_server.url, database)

    proc, summary = run_deploy(toy, variables, "1.0.0", [], "go")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert summary["decision"] == "GO"
    assert [(g["component"], g["decision"]) for g in summary["gates"]] == [("database", "GO"), ("redis", "GO")]
    assert "name=emp-toy" in redis_server.cli("CLIENT", "LIST")

    proc, summary = run_deploy(toy, variables, "1.1.0-noredis", ["no_redis_client"], "nogo")
    assert proc.returncode == 2, proc.stdout[-4000:]
    assert summary["decision"] == "NO-GO"
    redis_gate = summary["gates"][-1]
    assert redis_gate["decision"] == "NO-GO"
    assert redis_gate["reason"].startswith("client 'emp-toy' has 0 connections, expected at least 1")
    rollback = summary["rollback"]
    assert rollback["components"] == ["redis"] and rollback["ok"] and rollback["within_budget"], rollback
    assert os.readlink(toy / "toy/current") == "releases/1.0.0"
    assert os.readlink(toy / "dbpkg/current") == "releases/1.1.0-noredis"  # its gate said GO: not rolled back
    assert (toy / "state/toy.version").read_text() == "1.0.0"
    assert "name=emp-toy" in redis_server.cli("CLIENT", "LIST")
