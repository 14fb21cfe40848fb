"""emp.deploy.db_probe through real ansible-playbook runs against real PostgreSQL:

- the machine's shared server (127.0.0.1:5432, trust auth), in a database of our own with a Prisma
  ledger (created and dropped here; no other database is touched);
- a private cluster (tests/servers.py PostgresCluster) with password authentication and
  max_connections 10, for what the shared server cannot show: a wrong password and a full server;
- a free port with nothing listening, for an unreachable server.

Every run checks that the probe left nothing behind: no session of it in pg_stat_activity, the
ledger unchanged.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import free_port, run_playbook, write_playbook
from redis_probe_runs import assert_gate_keeps_secret, gate_many, probe_many
from servers import PostgresCluster

PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
APPLIED = ["20250101000000_init", "20250201000000_jobs", "20250301000000_assets"]
LEDGER = """
CREATE TABLE _prisma_migrations (
  id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, finished_at timestamptz,
  migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
  started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer NOT NULL DEFAULT 0);
CREATE TABLE "Job" (id serial PRIMARY KEY, status text NOT NULL);
INSERT INTO "Job" (status) VALUES ('completed'), ('pending');
"""
# pylint: disable=redefined-outer-name


def psql(dbname: str, command: str, port: int = 5432, password: str | None = None) -> str:
    env = dict(os.environ, PGPASSWORD=password) if password else None
    return subprocess.run([*PSQL, "-p", str(port), "-d", dbname, "-c", command], check=True, capture_output=True,
                          text=True, timeout=30, env=env).stdout.strip()


def add_migration(dbname: str, name: str, finished: bool = True, rolled_back: bool = False) -> None:
    psql(dbname, "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, rolled_back_at, "
                 f"applied_steps_count) VALUES ('{secrets.token_hex(8)}', 'c0ffee', "
                 f"{'now()' if finished else 'NULL'}, '{name}', {'now()' if rolled_back else 'NULL'}, 1)")


def probe_sessions(dbname: str) -> int:
    return int(psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                f"'emp-deploy-db-probe' AND datname = '{dbname}'"))


@pytest.fixture
def database():
    """A database of our own on the shared server, with a ledger of three applied migrations."""
    name = f"emp_db_probe_{os.getpid()}_{secrets.token_hex(3)}"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True, capture_output=True, timeout=30)
    try:
        psql(name, LEDGER)
        for migration in APPLIED:
            add_migration(name, migration)
        yield name
    finally:
        subprocess.run(["dropdb", "--if-exists", "--force", "-h", "127.0.0.1", "-U", "postgres", name],
                       check=False, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def cluster():
    server = PostgresCluster(password=f"pw-{secrets.token_hex(8)}", max_connections=10).start()
    yield server
    server.stop()


def run(tmp_path: Path, probes: dict, **kwargs) -> tuple[dict, subprocess.CompletedProcess]:
    return probe_many(tmp_path, probes, module="emp.deploy.db_probe", **kwargs)


@pytest.mark.compat
def test_healthy_database_and_check_mode(database, tmp_path):
    args = {"dbname": database, "queries": ['SELECT count(*) FROM "Job"', "SELECT status FROM \"Job\" ORDER BY id"],
            "expected_migrations": APPLIED[:2], "pool_connections": 3, "pool_duration": 1}
    results, _proc = run(tmp_path, {"normal": args})
    checked, _proc = run(tmp_path, {"checked": args}, check=True, name="check")  # read-only: it measures as well
    for result in (results["normal"], checked["checked"]):
        assert result["failed"] is False and result["healthy"] is True, result.get("problems")
        assert result["changed"] is False and result["reachable"] is True
        assert [(q["ok"], q["rows"]) for q in result["queries"]] == [(True, 1), (True, 2)]
        migrations = result["migrations"]
        assert (migrations["ledger"], migrations["applied"], migrations["failed"], migrations["pending"]) == (True, 3, 0, 0)
        assert migrations["names"]["unexpected"] == [APPLIED[2]]  # applied, but the release does not list it
        pool = result["pool"]
        assert (pool["connections"], pool["opened"], pool["errors"]) == (3, 3, 0)
        assert pool["queries"] > 0 and pool["p50_ms"] <= pool["p95_ms"] <= pool["p99_ms"]
        assert pool["headroom"] == pool["max_connections"] - pool["peak_in_use"]
        assert result["target"] == f"127.0.0.1:5432/{database}"
    assert probe_sessions(database) == 0


def test_each_failure_class_is_a_problem_with_its_figure(database, tmp_path):
    add_migration(database, "20250401000000_broken", finished=False)
    add_migration(database, "20250402000000_reverted", finished=False, rolled_back=True)
    results, _proc = run(tmp_path, {
        "write": {"dbname": database,
                  "queries": ["SELECT 1", "INSERT INTO \"Job\" (status) VALUES ('probe')", "DELETE FROM _prisma_migrations",
                              "SELECT 2"]},
        "slow": {"dbname": database, "queries": ["SELECT pg_sleep(5)"], "statement_timeout": 300},
        "migrations": {"dbname": database,
                       "expected_migrations": [*APPLIED, "20250401000000_broken", "20250501000000_next"]},
        "noledger": {"dbname": "postgres", "expected_migrations": APPLIED},
        "noledger_unasked": {"dbname": "postgres"},
        "headroom": {"dbname": database, "min_connection_headroom": 100000},
        "pool_p95": {"dbname": database, "pool_connections": 2, "pool_duration": 0.5, "max_pool_p95_ms": 0.000001},
    })
    write = results["write"]
    assert write["failed"] is True and write["reachable"] is True
    assert [q["ok"] for q in write["queries"]] == [True, False, False, True]  # a failure does not stop the others
    assert "query 2 failed: cannot execute INSERT in a read-only transaction (SQLSTATE 25006)" in write["problems"]
    assert "query 3 failed: cannot execute DELETE in a read-only transaction (SQLSTATE 25006)" in write["problems"]
    assert psql(database, 'SELECT count(*) FROM "Job"') == "2"
    assert psql(database, "SELECT count(*) FROM _prisma_migrations") == "5"

    # (the broken migration is a problem of every probe of this database; each test looks for its own)
    assert "query 1 failed: canceling statement due to statement timeout (SQLSTATE 57014)" in results["slow"]["problems"]

    migrations = results["migrations"]["migrations"]
    assert (migrations["applied"], migrations["failed"], migrations["rolled_back"], migrations["pending"]) == (3, 1, 1, 2)
    assert migrations["names"] == {"failed": ["20250401000000_broken"], "rolled_back": ["20250402000000_reverted"],
                                   "pending": ["20250401000000_broken", "20250501000000_next"], "unexpected": []}
    assert results["migrations"]["problems"] == [
        "1 migration failed (started, not finished, not rolled back): 20250401000000_broken",
        "2 of 5 expected migrations are pending: 20250401000000_broken, 20250501000000_next"]

    assert results["noledger"]["problems"] == [
        "the migration ledger _prisma_migrations does not exist in 127.0.0.1:5432/postgres, so none of the 3 "
        "expected migrations is applied"]
    assert results["noledger"]["migrations"]["ledger"] is False
    assert results["noledger_unasked"]["healthy"] is True  # no ledger and nothing expected: a finding, not a problem
    assert results["noledger_unasked"]["migrations"]["ledger"] is False

    headroom = results["headroom"]
    assert headroom["problems"][-1].startswith(f"connection headroom {headroom['connections']['headroom']} (")
    assert headroom["problems"][-1].endswith("< 100000")

    pool = results["pool_p95"]
    assert pool["problems"][1:] == [
        f"pooled query p95 {pool['pool']['p95_ms']:.1f} ms > 1e-06 ms over {pool['pool']['queries']} queries on 2 connections"]
    assert probe_sessions(database) == 0


def test_wrong_password_full_server_and_secrets(cluster, tmp_path):
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"
    results, proc = run(tmp_path, {
        "good": {"port": cluster.port, "password": cluster.password},
        "good_url": {"url": url},
        "wrong": {"port": cluster.port, "password": "not-" + cluster.password},
        "full": {"port": cluster.port, "password": cluster.password, "pool_connections": 12, "pool_duration": 0.5},
    }, cli_args=["-vvv"])
    assert results["good"]["healthy"] is True, results["good"]["problems"]
    assert results["good_url"]["healthy"] is True and results["good_url"]["target"] == f"127.0.0.1:{cluster.port}/postgres"
    wrong = results["wrong"]
    assert wrong["reachable"] is False and "pool" not in wrong and "queries" not in wrong
    assert wrong["msg"].startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{cluster.port}/postgres: ")
    assert 'password authentication failed for user "postgres"' in wrong["msg"]
    full = results["full"]
    assert full["failed"] is True and full["pool"]["opened"] < 12 and full["pool"]["errors"] == 12 - full["pool"]["opened"]
    assert "too many clients already" in full["problems"][0]
    assert full["pool"]["max_connections"] == 10
    for text in (proc.stdout, proc.stderr, json.dumps(results)):
        assert cluster.password not in text


def test_unreachable_server(tmp_path):
    port = free_port()
    results, _proc = run(tmp_path, {"dead": {"port": port, "connect_timeout": 2}})
    dead = results["dead"]
    assert dead["failed"] is True and dead["reachable"] is False
    assert dead["msg"].startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/postgres: ")
    assert set(dead) >= {"error", "target", "problems", "duration_ms"} and "migrations" not in dead


def test_bad_input_is_refused_before_connecting(database, tmp_path):
    stub = tmp_path / "stub"
    (stub / "psycopg").mkdir(parents=True)
    (stub / "psycopg" / "__init__.py").write_text("raise ImportError('psycopg hidden by the test')\n")
    cases = {
        "scheme": ({"url": "mysql://u:hunter2@127.0.0.1/emp"},
                   "bad input: url must start with postgresql:// or postgres://, got scheme 'mysql'"),
        "port": ({"port": 70000}, "bad input: port must be between 1 and 65535, got 70000"),
        "timeout": ({"statement_timeout": 0}, "bad input: statement_timeout must be at least 1 ms, got 0"),
        "empty": ({"queries": ["SELECT 1", "  "]}, "bad input: queries 2 are empty"),
        "pool": ({"pool_connections": -1}, "bad input: pool_connections must be between 0 and 500, got -1"),
        "both": ({"url": f"postgresql://127.0.0.1/{database}", "host": "127.0.0.1"},
                 "parameters are mutually exclusive: url|host"),
    }
    results, proc = run(tmp_path, {key: args for key, (args, _msg) in cases.items()}, cli_args=["-vvv"])
    for key, (_args, message) in cases.items():
        assert results[key]["failed"] is True and results[key]["msg"] == message, results[key]
    assert "hunter2" not in proc.stdout + proc.stderr
    missing, _proc = run(tmp_path, {"missing": {"dbname": database}}, environment={"PYTHONPATH": str(stub)},
                         name="missing")
    assert missing["missing"]["failed"] is True
    assert "Failed to import the required Python library (psycopg)" in missing["missing"]["msg"]
    assert probe_sessions(database) == 0


@pytest.mark.compat
def test_gate_go_no_go_and_could_not_measure(database, tmp_path):
    dead = free_port()

    gates = gate_many(tmp_path, "emp.deploy.db_probe", "database", {
        "db-go": ({"dbname": database}, ["result.connections.database <= 100"]),
        "db-nogo": ({"dbname": database, "expected_migrations": [*APPLIED, "20250501000000_next"]},
                    ["result.migrations.failed == 0"]),
        "db-dead": ({"port": dead, "connect_timeout": 2}, ["result.migrations.failed == 0"]),
    })
    assert gates["db-go"]["decision"] == "GO", gates["db-go"]
    assert gates["db-nogo"]["decision"] == "NO-GO"
    assert gates["db-nogo"]["reason"].startswith("1 of 4 expected migrations is pending: 20250501000000_next")
    assert gates["db-dead"]["decision"] == "NO-GO"
    assert "could not measure" in gates["db-dead"]["reason"]
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{dead}/postgres" in gates["db-dead"]["reason"]
    assert probe_sessions(database) == 0


def test_gate_never_prints_the_password(cluster, tmp_path):
    assert_gate_keeps_secret(tmp_path, "emp.deploy.db_probe", "database",
                             {"port": cluster.port, "password": cluster.password},
                             ["result.connections.database <= 100"], cluster.password)


def test_database_role_rollback_judges_only_the_smoke_queries(database, tmp_path):
    # a failed migration is often why the rollback runs: it must not fail the rollback's verification
    add_migration(database, "20250401000000_broken", finished=False)

    def rollback(queries: list[str], name: str) -> subprocess.CompletedProcess:
        role_vars = {"database_name": database, "database_smoke_queries": queries, "database_releases": []}
        tasks = textwrap.dedent(f"""
        - name: Roll the database back
          ansible.builtin.include_role:
            name: emp.deploy.database
            tasks_from: rollback
          vars: {json.dumps(role_vars)}
        """)
        return run_playbook(write_playbook(tmp_path, tasks, name=f"{name}.yml"))

    working = rollback(['SELECT count(*) FROM "Job"'], "working")
    assert working.returncode == 0, working.stdout[-4000:]
    broken = rollback(['SELECT count(*) FROM "Job"', "SELECT * FROM no_such_table"], "broken")
    assert broken.returncode == 2, broken.stdout[-4000:]
    assert 'relation "no_such_table" does not exist' in broken.stdout
    assert probe_sessions(database) == 0
