"""The sandbox's own database on the machine's PostgreSQL: a small EMP-like schema and a Prisma ledger.

``up`` creates it (``ensure``), ``down`` drops it (``drop``); ``status`` reports its URL. The name is
derived from the state directory, so two sandboxes never share one, and only the database recorded
in ``<state>/database.json`` (the one ``ensure`` created) is ever dropped. PostgreSQL unreachable:
the sandbox still starts, and ``database.json`` says why there is no database.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# the admin connection: the machine's PostgreSQL (trust auth on loopback), overridable
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_URL_ENV = "EMP_SANDBOX_PG_URL"
CONNECT_TIMEOUT_S = 3
# the migrations the ledger says were applied, in order (what a predeploy's expected_migrations lists)
MIGRATIONS = ("20250101000000_init", "20250301120000_add_attestations", "20250601000000_job_queue_indexes")
SCHEMA = """
CREATE TABLE IF NOT EXISTS _prisma_migrations (
  id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, finished_at timestamptz,
  migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
  started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS "Customer" (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS "Job" (id text PRIMARY KEY, status text NOT NULL, service_required text NOT NULL,
  customer_id text REFERENCES "Customer"(id), created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS "Attestation" (id text PRIMARY KEY, job_id text NOT NULL REFERENCES "Job"(id),
  worker_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
"""
SEED = """
INSERT INTO "Customer" (id, name) VALUES ('cust-1', 'Sandbox customer') ON CONFLICT DO NOTHING;
INSERT INTO "Job" (id, status, service_required, customer_id) VALUES
  ('job-1', 'completed', 'mock', 'cust-1'), ('job-2', 'pending', 'ollama', 'cust-1') ON CONFLICT DO NOTHING;
INSERT INTO "Attestation" (id, job_id, worker_id) VALUES ('att-1', 'job-1', 'sandbox-worker-mock-0')
  ON CONFLICT DO NOTHING;
"""


def admin_url(given: str | None = None) -> str:
    return given or os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def database_name(state_root: Path) -> str:
    """emp_sandbox_<12 hex of the state directory>: unique per state dir, stable across up/down."""
    return "emp_sandbox_" + hashlib.sha256(str(state_root.resolve()).encode()).hexdigest()[:12]


def url_of(admin: str, name: str) -> str:
    parts = urlsplit(admin)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def _connect(url: str) -> Any:
    import psycopg  # the venv's psycopg (requirements.txt); imported only here, the CLI stays light

    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                           application_name="emp-sandbox")


def _safe(url: str) -> str:
    """The URL without a password, for messages and status."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, ""))


def ensure(state_root: Path, admin: str) -> dict[str, Any]:
    """Creates (or keeps) the sandbox database with its schema and ledger; the record for database.json."""
    name = database_name(state_root)
    try:
        with _connect(admin) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')  # name is emp_sandbox_<hex>: no quoting issue
        url = url_of(admin, name)
        with _connect(url) as conn:
            conn.execute(SCHEMA)
            conn.execute(SEED)
            for migration in MIGRATIONS:
                conn.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, "
                             "applied_steps_count) SELECT %s, %s, now(), %s, 1 WHERE NOT EXISTS "
                             "(SELECT 1 FROM _prisma_migrations WHERE migration_name = %s)",
                             (hashlib.sha256(migration.encode()).hexdigest()[:32], "sandbox", migration, migration))
    except Exception as exc:  # pylint: disable=broad-except  # no PostgreSQL here: the sandbox runs without
        return {"url": None, "name": None, "admin": _safe(admin), "migrations": [],
                "error": f"no sandbox database: {_safe(admin)} unreachable or refused ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})"}
    return {"url": url, "name": name, "admin": admin, "migrations": list(MIGRATIONS), "error": None}


def drop(record: dict[str, Any]) -> str | None:
    """Drops the database ``ensure`` recorded (nothing else); returns its name, None when there was none."""
    name, admin = record.get("name"), record.get("admin")
    if not name or not admin or not str(name).startswith("emp_sandbox_"):
        return None
    try:
        with _connect(admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # pylint: disable=broad-except  # the server went away: nothing left to drop there
        return None
    return str(name)


def read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
