"""Pre-deployment verification end to end: the real `ansible-playbook predeploy.yml` with the default inventory
(inventories/sandbox: disruptive checks allowed, short soak windows) against a sandbox in a temporary state
directory, with its own database on the machine's PostgreSQL.

1. healthy sandbox: every automated checklist line has its gates and every gate says GO (the disruptive Redis
   and ngrok checks included: Redis is stopped and started, a tunnel removed and brought back), recorded
   with run_kind predeploy; afterwards Redis runs, no switch is left set and no release changed.
2. an enforced NO-GO (a migration the ledger lacks): the run fails with exit code 2 and rolls nothing back.
3. no database (the URL the sandbox reports when PostgreSQL is unreachable): could not measure, NO-GO.
4. observe mode with faults (API 300 ms slower, every webhook delivery failing) and the disruptive checks not
   allowed: the NO-GOs are recorded, the run passes, and the six disruptive checks are recorded as skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook
from test_deploy_sandbox import running_versions, sandbox_cli

pytestmark = pytest.mark.timeout(1800)

# The lines of the checklist's "Pre-deployment testing checklist" a machine checks today (docs/predeploy.md);
# testing/db/test-suite is manual (the EMP repository's own suite); every other testing line is automated.
AUTOMATED = {
    "testing/comfyui/functions", "testing/comfyui/custom-nodes", "testing/ollama/errors",
    "testing/redis/graceful-degradation", "testing/redis/reconnect", "testing/redis/retry-memory",
    "testing/redis/all-services-reconnect", "testing/db/prisma-queries", "testing/db/migrations", "testing/db/pooling",
    "testing/queue/submit-storage", "testing/queue/claim-atomicity", "testing/queue/worker-heartbeat",
    "testing/otel/traces", "testing/otel/metrics", "testing/otel/logs", "testing/otel/performance",
    "testing/health/all-healthy", "testing/health/websocket", "testing/health/api-sla",
    "testing/webhook/registration", "testing/webhook/init-order", "testing/webhook/delivery", "testing/webhook/retries",
    "testing/external/ngrok", "testing/external/urls", "testing/external/payload",
    "testing/ollama/init", "testing/ollama/assets", "testing/ollama/memory", "testing/pm2/restarts",
    "testing/ngrok/auto-restart", "testing/ngrok/health", "testing/ngrok/recovery", "testing/ngrok/no-conflicts",
}
DISRUPTIVE = {"testing/redis/graceful-degradation", "testing/redis/reconnect", "testing/redis/retry-memory",
              "testing/redis/all-services-reconnect", "testing/ngrok/auto-restart", "testing/ngrok/recovery"}
PLAYS = ["redis-database", "job-queue", "telemetry", "webhooks", "external", "workers", "devtools"]


@pytest.fixture(scope="module")
def sandbox_state(tmp_path_factory):
    state = tmp_path_factory.mktemp("predeploy-sandbox") / "state"
    sandbox_cli(state, "up")
    yield state
    sandbox_cli(state, "down")


def predeploy(state: Path, run_id: str, **extra_vars) -> tuple:
    reports = state.parent / "reports"
    proc = run_playbook(ROOT / "predeploy.yml", extra_vars=extra_vars or None, timeout=1500,
                        env={"EMP_SANDBOX_STATE": str(state), "EMP_DEPLOY_REPORT_DIR": str(reports),
                             "EMP_DEPLOY_RUN_ID": run_id, "ANSIBLE_PIPELINING": "1"})
    summary = json.loads((reports / run_id / "summary.json").read_text())
    journal = [json.loads(line) for line in (reports / run_id / "journal.jsonl").read_text().splitlines()]
    return proc, summary, journal


def status(state: Path) -> dict:
    return json.loads(sandbox_cli(state, "status", "--json").stdout)


def test_the_sandbox_has_a_database_of_its_own_with_a_ledger(sandbox_state):
    answer = status(sandbox_state)
    assert answer["database"].startswith("postgresql://postgres@127.0.0.1:5432/emp_sandbox_"), answer
    assert answer["database_error"] is None
    assert len(answer["database_migrations"]) == 3


def test_a_healthy_sandbox_is_go_on_every_automated_line(sandbox_state):
    versions = running_versions(sandbox_state)

    proc, summary, journal = predeploy(sandbox_state, "healthy")

    assert proc.returncode == 0, proc.stdout[-8000:]
    assert summary["decision"] == "GO" and summary["run_kind"] == "predeploy"
    assert journal[0]["type"] == "run_start" and journal[0]["run_kind"] == "predeploy"
    not_go = [(g["name"], g["reason"]) for g in summary["gates"] if g["decision"] != "GO"]
    assert not_go == []
    assert {g["checklist_ref"] for g in summary["gates"]} == AUTOMATED
    assert {g["mode"] for g in summary["gates"]} == {"enforce"}
    assert [p["component"] for p in summary["phases"]] == PLAYS
    assert summary["skipped_checks"] == [] and summary["releases"] == []
    assert summary["rollback"]["triggered"] is False
    # the OTEL performance evidence: both p95s and their ratio
    (perf,) = [r for r in journal if r["type"] == "gate" and r["checklist_ref"] == "testing/otel/performance"]
    figures = perf["samples"][0]["figures"]
    assert figures["result.ratio"] > 0 and "result.added_ms" in figures, perf
    # the disruptive checks left the sandbox as they found it
    after = status(sandbox_state)
    assert after["services"]["redis"]["status"] == "running"
    assert json.loads(sandbox_cli(sandbox_state, "fault", "list").stdout) == {"faults": {}}
    assert running_versions(sandbox_state) == versions
    assert "EMP GO/NO-GO" in proc.stdout and "decision GO" in proc.stdout


def test_an_enforced_nogo_fails_the_run_and_rolls_nothing_back(sandbox_state):
    expected = status(sandbox_state)["database_migrations"] + ["20991231000000_not_applied"]

    proc, summary, journal = predeploy(sandbox_state, "enforced-nogo", predeploy_expected_migrations=expected)

    assert proc.returncode == 2, proc.stdout[-6000:]
    assert summary["decision"] == "NO-GO" and summary["run_kind"] == "predeploy"
    decisions = [(g["name"], g["decision"]) for g in summary["gates"]]
    assert decisions == [("predeploy-db-queries", "GO"), ("predeploy-db-migrations", "NO-GO")]
    assert "result.migrations.pending == 0" in summary["gates"][1]["reason"]
    rollback = summary["rollback"]
    assert rollback["triggered"] is False and rollback["components"] == []
    assert rollback["why_not"] == "a predeploy run never rolls back: it released nothing"
    assert not [r["type"] for r in journal if r["type"].startswith("rollback")]
    assert "EMP ROLLBACK" not in proc.stdout


def test_without_a_database_the_db_gates_could_not_measure(sandbox_state):
    proc, summary, _journal = predeploy(sandbox_state, "no-database", predeploy_database_url="")

    assert proc.returncode == 2, proc.stdout[-6000:]
    (gate,) = summary["gates"]
    assert gate["checklist_ref"] == "testing/db/prisma-queries" and gate["decision"] == "NO-GO"
    assert gate["counts"]["errors"] == 1 and gate["counts"]["passed"] == 0
    assert "could not measure: no database to probe" in gate["reason"]
    assert summary["rollback"]["triggered"] is False


def test_observe_mode_records_the_faults_and_skips_the_disruptive_checks(sandbox_state):
    sandbox_cli(sandbox_state, "fault", "api-latency", "--ms", "300")
    sandbox_cli(sandbox_state, "fault", "webhook-failures", "--rate", "1")
    try:
        proc, summary, journal = predeploy(sandbox_state, "observe", predeploy_mode="observe",
                                           emp_allow_disruptive_checks=False)
    finally:
        sandbox_cli(sandbox_state, "fault", "clear")

    assert proc.returncode == 0, proc.stdout[-8000:]
    gates = {g["name"]: g for g in summary["gates"]}
    assert {g["mode"] for g in gates.values()} == {"observe"}
    assert gates["predeploy-api-sla"]["decision"] == "NO-GO", gates["predeploy-api-sla"]
    assert "result.latency_ms.p95 < predeploy_sla_max_p95_ms" in gates["predeploy-api-sla"]["reason"]
    assert gates["predeploy-webhook-delivery"]["decision"] == "NO-GO", gates["predeploy-webhook-delivery"]
    assert gates["predeploy-db-queries"]["decision"] == "GO"
    # skipped, recorded as such: never a gate, never a GO
    assert {s["checklist_ref"] for s in summary["skipped_checks"]} == DISRUPTIVE
    assert all("emp_allow_disruptive_checks is false" in s["reason"] for s in summary["skipped_checks"])
    assert {r["checklist_ref"] for r in journal if r["type"] == "check_skipped"} == DISRUPTIVE
    assert not DISRUPTIVE & {g["checklist_ref"] for g in gates.values()}
    assert summary["run_kind"] == "predeploy" and summary["rollback"]["triggered"] is False


def test_a_watch_never_attaches_to_a_predeploy_run(sandbox_state):
    reports = sandbox_state.parent / "reports"
    assert (reports / "healthy" / "summary.json").is_file(), "runs after the healthy predeploy"
    proc = run_playbook(ROOT / "playbooks/watch.yml", timeout=120,
                        extra_vars={"emp_watch_run_id": "healthy", "emp_watch_mode": "once"},
                        env={"EMP_SANDBOX_STATE": str(sandbox_state), "EMP_DEPLOY_REPORT_DIR": str(reports)})
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "that run is a predeploy run" in proc.stdout + proc.stderr


def test_sandbox_without_postgresql_starts_and_says_why(tmp_path):
    state = tmp_path / "state"
    closed = "postgresql://postgres@127.0.0.1:9/postgres"  # the discard port: nothing listens there
    sandbox_cli(state, "--pg-url", closed, "up", "--only", "redis")
    try:
        answer = status(state)
        assert answer["database"] is None and answer["database_migrations"] == []
        assert "unreachable or refused" in answer["database_error"]
        assert answer["services"]["redis"]["status"] == "running"
    finally:
        sandbox_cli(state, "down")
