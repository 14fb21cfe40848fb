#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: db_probe
short_description: Check the EMP PostgreSQL database - smoke queries, the Prisma migration ledger and pooling under load
version_added: 0.1.0
description:
  - Read-only probe of a PostgreSQL database as the EMP services use it. It connects, runs the user's
    smoke queries (O(queries)), reads the Prisma migration ledger (C(_prisma_migrations)) against the
    migrations the release expects (O(expected_migrations)), and with O(pool_connections) holds that many
    connections for O(pool_duration) seconds running queries, to measure the p95 latency, the errors
    and the headroom left under the server's C(max_connections).
  - "Read-only by construction: every statement runs alone (the extended protocol, so one statement per
    query) in its own C(READ ONLY) transaction that is rolled back afterwards, with C(statement_timeout)
    and C(lock_timeout) set to O(statement_timeout) inside it. A query that writes fails with the
    server's C(cannot execute ... in a read-only transaction), reported in RV(problems)."
  - A missing ledger table is a finding, not a crash - C(ledger) in RV(migrations) is V(false), and with
    O(expected_migrations) that is a problem.
  - A threshold that does not hold, a query that fails, a failed or pending migration, is reported in
    RV(problems) with the figure and fails the task. A database that cannot be reached or refuses the
    login cannot be measured - RV(reachable) is V(false) and the task fails without figures, so
    M(emp.deploy.gate) counts it as an error sample, never as a pass.
  - "Checklist items: Database Operations (connect, existing queries work, migrations applied, connection
    pooling under load); Phase 1 GO/NO-GO all existing queries working, no connection errors."
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.attributes.probe
requirements:
  - psycopg >= 3.1 (psycopg 3) on the host that runs the probe
options:
  url:
    description:
      - Connection URL, C(postgresql://[user[:password]@]host[:port]/dbname[?param=value]) (C(postgres://) too).
      - Mutually exclusive with O(host), O(port), O(dbname) and O(user); O(password) given as an option takes
        precedence over one in the URL. The URL's password is never shown.
    type: str
  host:
    description: Server host name, address, or the directory of its Unix socket.
    type: str
    default: 127.0.0.1
  port:
    description: Server port.
    type: int
    default: 5432
  dbname:
    description: Database name.
    type: str
    default: postgres
  user:
    description: Role to log in as. Give it only read privileges; the read-only transaction does not stop functions with side effects outside the tables.
    type: str
    default: postgres
  password:
    description:
      - Password of O(user). It never appears in results, messages or problems.
    type: str
  sslmode:
    description: libpq C(sslmode).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
  connect_timeout:
    description: Seconds each connection may take to open (libpq C(connect_timeout), at least 2).
    type: int
    default: 5
  statement_timeout:
    description:
      - Milliseconds each statement may run (C(statement_timeout) and C(lock_timeout), set in its transaction).
        A query that runs out of it is cancelled by the server and reported.
    type: int
    default: 5000
  queries:
    description:
      - Smoke queries, each one SQL statement, run in order, each in its own read-only transaction.
      - A query that fails does not stop the others.
    type: list
    elements: str
    default: [SELECT 1]
  expected_migrations:
    description:
      - Names of the migrations the release expects applied (the folder names under C(prisma/migrations)).
        Each must have a finished, not rolled back row in the ledger; one without is pending.
      - Without it, only failed migrations are a problem.
    type: list
    elements: str
  migrations_table:
    description: The ledger table (schema-qualified if needed).
    type: str
    default: _prisma_migrations
  pool_connections:
    description:
      - Connections opened at once for the pooling check; V(0) skips it. Each runs C(SELECT 1) in a loop for
        O(pool_duration) seconds.
    type: int
    default: 0
  pool_duration:
    description: Seconds the pooling check keeps its connections busy.
    type: float
    default: 5.0
  max_pool_p95_ms:
    description: Highest acceptable 95th percentile of a pooled query's latency, in milliseconds.
    type: float
  max_pool_errors:
    description: Highest acceptable number of connection or query errors during the pooling check.
    type: int
    default: 0
  min_connection_headroom:
    description:
      - Lowest acceptable number of connections still free under C(max_connections) while the pooling check
        held its connections (or, without it, at the time of the probe).
    type: int
notes:
  - The probe needs C(psycopg) (version 3) where it runs; with a binary build (C(psycopg[binary])) no libpq
    is needed on the host.
  - Statements are prepared (extended protocol), which a PgBouncer in transaction mode before 1.21 does not
    support; point the probe at the database or at a session-mode pool.
seealso:
  - module: emp.deploy.gate
    description: Samples this probe over a soak window and decides GO or NO-GO.
  - name: Prisma migrate - the _prisma_migrations table
    description: What the ledger's columns mean.
    link: https://www.prisma.io/docs/orm/prisma-migrate/understanding-prisma-migrate/migration-histories
"""

EXAMPLES = r"""
- name: Database operations - the smoke queries work and every migration of the release is applied
  emp.deploy.db_probe:
    host: db.internal
    dbname: emp
    user: emp_readonly
    password: "{{ vault_emp_db_password }}"
    queries:
      - SELECT count(*) FROM "Job"
      - SELECT id FROM "User" LIMIT 1
    expected_migrations:
      - 20250101000000_init
      - 20250301120000_add_attestations

- name: Connection pooling under load - 20 connections for 30 s, p95 under 50 ms, no errors
  emp.deploy.db_probe:
    url: "postgresql://emp_readonly@db.internal:5432/emp"
    password: "{{ vault_emp_db_password }}"
    pool_connections: 20
    pool_duration: 30
    max_pool_p95_ms: 50
    min_connection_headroom: 10

- name: Phase 1 GO/NO-GO - all existing queries working, no connection errors
  emp.deploy.gate:
    name: database-connections
    component: database
    probe:
      module: emp.deploy.db_probe
      args:
        host: db.internal
        dbname: emp
        queries: ["SELECT 1"]
    duration: 1800
    interval: 60
    criteria:
      - result.migrations.failed == 0
      - result.connections.database <= 100
"""

RETURN = r"""
reachable:
  description: Whether the probe could connect and log in.
  returned: always
  type: bool
target:
  description: host:port/dbname, without credentials.
  returned: always
  type: str
  sample: 127.0.0.1:5432/emp
healthy:
  description: True when every query worked and every threshold and expectation holds.
  returned: always
  type: bool
problems:
  description: One sentence per failed query, threshold that does not hold, or failure to measure, with the figure.
  returned: always
  type: list
  elements: str
  sample: ["query 2 failed: cannot execute INSERT in a read-only transaction (SQLSTATE 25006)",
           "2 expected migrations are pending: 20250301120000_add_attestations, 20250302000000_assets"]
error:
  description: Why the database could not be measured.
  returned: when not reachable
  type: str
server:
  description: Server version, C(max_connections), and the probe's connect time in milliseconds.
  returned: when reachable
  type: dict
  sample: {version: "15.14", max_connections: 100, connect_ms: 3.2}
connections:
  description:
    - Sessions in C(pg_stat_activity) at the time of the probe - C(database) on this database, C(total) client
      sessions on the server - and C(headroom), what C(max_connections) leaves.
  returned: when reachable
  type: dict
  sample: {database: 4, total: 9, headroom: 91}
queries:
  description: One entry per O(queries) item - C(query), C(ok), C(rows) (rows returned or affected), C(duration_ms), and C(error) when it failed.
  returned: when reachable
  type: list
  elements: dict
  sample: [{query: "SELECT 1", ok: true, rows: 1, duration_ms: 0.4}]
migrations:
  description:
    - C(ledger) says whether O(migrations_table) exists. C(applied), C(failed), C(rolled_back), C(pending) and
      C(unexpected) are counts of migration names; C(names) lists the failed, rolled back, pending and
      unexpected ones (applied migrations not in O(expected_migrations)).
    - Prisma's meaning - applied is finished and not rolled back; failed is started, not finished and not rolled
      back (it blocks C(prisma migrate deploy)); a name whose every row is rolled back is rolled back.
  returned: when reachable
  type: dict
  sample: {ledger: true, table: _prisma_migrations, applied: 12, failed: 0, rolled_back: 1, pending: 0, unexpected: 0,
           names: {failed: [], rolled_back: [20250201000000_bad], pending: [], unexpected: []}}
pool:
  description:
    - The pooling check - C(connections) asked for, C(opened), C(duration_s), C(queries) run, C(errors),
      C(p50_ms), C(p95_ms), C(p99_ms) of a pooled query, C(connect_p95_ms), C(max_connections), C(peak_in_use)
      (sessions on the server while the check held its connections) and C(headroom).
  returned: when O(pool_connections) > 0 and reachable
  type: dict
  sample: {connections: 10, opened: 10, duration_s: 5.0, queries: 48211, errors: 0, p50_ms: 0.2, p95_ms: 0.6,
           p99_ms: 1.1, connect_p95_ms: 4.0, max_connections: 100, peak_in_use: 21, headroom: 79, error_examples: []}
duration_ms:
  description: Time the probe spent, in milliseconds.
  returned: always
  type: float
"""

import threading
import time
import traceback
from urllib.parse import unquote, urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.emp.deploy.plugins.module_utils._stats import percentile, summarize

try:
    import psycopg
    from psycopg import sql
except ImportError:
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None

EXAMPLES_KEPT = 3
MAX_POOL = 500
# beyond statement_timeout, what a statement may take before the client cancels it (the server did not)
CANCEL_GRACE_S = 2.0
LIST_LIMIT = 100

ARGUMENT_SPEC: dict = dict(
    url=dict(type="str"),
    host=dict(type="str", default="127.0.0.1"),
    port=dict(type="int", default=5432),
    dbname=dict(type="str", default="postgres"),
    user=dict(type="str", default="postgres"),
    password=dict(type="str", no_log=True),
    sslmode=dict(type="str", default="prefer", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    connect_timeout=dict(type="int", default=5),
    statement_timeout=dict(type="int", default=5000),
    queries=dict(type="list", elements="str", default=["SELECT 1"]),
    expected_migrations=dict(type="list", elements="str"),
    migrations_table=dict(type="str", default="_prisma_migrations"),
    pool_connections=dict(type="int", default=0),
    pool_duration=dict(type="float", default=5.0),
    max_pool_p95_ms=dict(type="float"),
    max_pool_errors=dict(type="int", default=0),
    min_connection_headroom=dict(type="int"),
)
MUTUALLY_EXCLUSIVE = [("url", "host"), ("url", "port"), ("url", "dbname"), ("url", "user")]


class ProbeError(Exception):
    """The database could not be measured; the message is for people."""


# --- connection settings ---------------------------------------------------------------------------

def url_password(url: str | None) -> str | None:
    """The password inside a URL, so that it joins the values never shown."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        return f"url must start with postgresql:// or postgres://, got scheme '{parts.scheme[:20] or '(none)'}'"
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        return "url has an invalid port"
    return None


def connection_kwargs(params: dict) -> dict:
    """Keyword arguments of psycopg.connect: the URL as conninfo or the options, plus the timeouts."""
    kwargs: dict = {"connect_timeout": max(2, params["connect_timeout"]), "sslmode": params["sslmode"],
                    "application_name": "emp-deploy-db-probe"}
    if params["url"]:
        kwargs["conninfo"] = params["url"]
    else:
        kwargs.update(host=params["host"], port=params["port"], dbname=params["dbname"], user=params["user"])
    if params["password"] is not None:
        kwargs["password"] = params["password"]
    return kwargs


def describe_target(params: dict) -> str:
    if params["url"]:
        parts = urlsplit(params["url"])
        try:
            port = parts.port or 5432
        except ValueError:
            port = "?"
        return f"{parts.hostname or 'localhost'}:{port}/{unquote(parts.path.lstrip('/')) or '?'}"
    return f"{params['host']}:{params['port']}/{params['dbname']}"


def bad_input_problems(params: dict) -> list[str]:
    problems = []
    if params["url"]:
        problem = url_problem(params["url"])
        if problem:
            problems.append(problem)
    elif not 0 < params["port"] < 65536:
        problems.append(f"port must be between 1 and 65535, got {params['port']}")
    if params["connect_timeout"] < 1:
        problems.append(f"connect_timeout must be at least 1, got {params['connect_timeout']}")
    if params["statement_timeout"] < 1:
        problems.append(f"statement_timeout must be at least 1 ms, got {params['statement_timeout']}")
    empty = [str(index + 1) for index, query in enumerate(params["queries"]) if not query.strip()]
    if empty:
        problems.append(f"queries {', '.join(empty)} are empty")
    if not 0 <= params["pool_connections"] <= MAX_POOL:
        problems.append(f"pool_connections must be between 0 and {MAX_POOL}, got {params['pool_connections']}")
    if params["pool_connections"] and params["pool_duration"] <= 0:
        problems.append(f"pool_duration must be greater than 0, got {params['pool_duration']}")
    if params["max_pool_errors"] < 0:
        problems.append(f"max_pool_errors must not be negative, got {params['max_pool_errors']}")
    if not params["migrations_table"].strip():
        problems.append("migrations_table must not be empty")
    return problems


def error_text(exc: BaseException) -> str:
    """The server's message with its SQLSTATE, on one line, never the connection string."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{message} (SQLSTATE {state})" if state else message


# --- read-only statements --------------------------------------------------------------------------

class Session:
    """One connection; every statement runs alone in a READ ONLY transaction that is rolled back."""

    def __init__(self, params: dict) -> None:
        self.params = params
        started = time.perf_counter()
        self.conn = psycopg.connect(**connection_kwargs(params))
        self.connect_ms = (time.perf_counter() - started) * 1000.0
        self.conn.read_only = True  # psycopg opens every transaction with BEGIN READ ONLY

    def run(self, statement, args: tuple | None = None) -> tuple[list, int]:
        """(rows, row count) of one statement; raises psycopg.Error."""
        timeout = self.params["statement_timeout"]
        # a server that stopped answering is cancelled from this side too
        watchdog = threading.Timer(timeout / 1000.0 + CANCEL_GRACE_S, self.cancel)
        watchdog.daemon = True
        watchdog.start()
        try:
            with self.conn.cursor() as cursor:
                # set_config(..., true) is SET LOCAL: it ends with the transaction
                cursor.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                               (str(timeout), str(timeout)))
                # prepare=True: the extended protocol, so a query is exactly one statement
                cursor.execute(statement, args, prepare=True)
                rows = cursor.fetchall() if cursor.description is not None else []
                return rows, cursor.rowcount
        finally:
            watchdog.cancel()
            self.rollback()

    def for_pool(self) -> None:
        """Session-wide timeouts and read-only default, then autocommit: the pool's SELECT 1 is one round trip."""
        timeout = str(self.params["statement_timeout"])
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false), "
                           "set_config('default_transaction_read_only', 'on', false)", (timeout, timeout))
        self.conn.commit()
        self.conn.autocommit = True

    def ping(self) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT 1", prepare=True)
            cursor.fetchall()

    def cancel(self) -> None:
        try:
            self.conn.cancel_safe(timeout=CANCEL_GRACE_S)
        except Exception:  # pylint: disable=broad-except  # best effort; the statement's own error follows
            pass

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except psycopg.Error:
            pass

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass


def run_queries(session: Session, queries: list[str]) -> tuple[list[dict], list[str]]:
    results, problems = [], []
    for index, query in enumerate(queries, start=1):
        started = time.perf_counter()
        entry: dict = {"query": query}
        try:
            rows, count = session.run(query.strip().rstrip(";"))
        except psycopg.Error as exc:
            entry.update(ok=False, rows=None, error=error_text(exc))
            problems.append(f"query {index} failed: {entry['error']}")
        else:
            entry.update(ok=True, rows=len(rows) if rows else max(count, 0))
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        results.append(entry)
    return results, problems


# --- the migration ledger --------------------------------------------------------------------------

def read_ledger(session: Session, table: str) -> list[tuple] | None:
    """(migration_name, finished, rolled_back) rows, or None when the table does not exist."""
    rows, _count = session.run("SELECT to_regclass(%s)::text", (table,))
    if not rows or rows[0][0] is None:
        return None
    identifier = sql.Identifier(*table.split(".", 1)) if "." in table else sql.Identifier(table)
    query = sql.SQL("SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL "
                    "FROM {} ORDER BY started_at").format(identifier)
    rows, _count = session.run(query)
    return rows


def migration_figures(rows: list[tuple] | None, table: str, expected: list[str] | None) -> dict:
    if rows is None:
        return {"ledger": False, "table": table, "applied": 0, "failed": 0, "rolled_back": 0,
                "pending": len(expected or []), "unexpected": 0,
                "names": {"failed": [], "rolled_back": [], "pending": list(expected or [])[:LIST_LIMIT],
                          "unexpected": []}}
    applied = {name for name, finished, rolled_back in rows if finished and not rolled_back}
    failed = {name for name, finished, rolled_back in rows if not finished and not rolled_back}
    rolled_back = {name for name, _finished, rolled in rows if rolled} - applied - failed
    pending = [name for name in (expected or []) if name not in applied]
    unexpected = sorted(applied - set(expected)) if expected is not None else []
    return {"ledger": True, "table": table, "applied": len(applied), "failed": len(failed),
            "rolled_back": len(rolled_back), "pending": len(pending), "unexpected": len(unexpected),
            "names": {"failed": sorted(failed)[:LIST_LIMIT], "rolled_back": sorted(rolled_back)[:LIST_LIMIT],
                      "pending": pending[:LIST_LIMIT], "unexpected": unexpected[:LIST_LIMIT]}}


def migration_problems(figures: dict, expected: list[str] | None, target: str) -> list[str]:
    if not figures["ledger"]:
        if expected:
            return [f"the migration ledger {figures['table']} does not exist in {target}, so none of the "
                    f"{len(expected)} expected migrations is applied"]
        return []
    problems = []
    names = figures["names"]
    if figures["failed"]:
        problems.append(f"{figures['failed']} migration{'s' if figures['failed'] != 1 else ''} failed "
                        f"(started, not finished, not rolled back): {', '.join(names['failed'])}")
    if figures["pending"]:
        problems.append(f"{figures['pending']} of {len(expected or [])} expected migrations "
                        f"{'are' if figures['pending'] != 1 else 'is'} pending: {', '.join(names['pending'])}")
    return problems


# --- connections and pooling -----------------------------------------------------------------------

def server_figures(session: Session) -> tuple[dict, dict]:
    rows, _count = session.run(
        "SELECT current_setting('server_version'), current_setting('max_connections')::int, "
        "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())::int, "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int")
    version, max_connections, database, total = rows[0]
    server = {"version": version, "max_connections": max_connections, "connect_ms": round(session.connect_ms, 3)}
    return server, {"database": database, "total": total, "headroom": max_connections - total}


def in_use(session: Session) -> int:
    rows, _count = session.run("SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend'")
    return rows[0][0]


class Pool:
    """pool_connections threads, each with its own connection, running SELECT 1 until the window ends."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.connects: list[float] = []
        self.errors = 0
        self.examples: list[str] = []
        self.opened = 0
        self.ready = threading.Barrier(params["pool_connections"] + 1)

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors += 1
            text = error_text(exc)
            if len(self.examples) < EXAMPLES_KEPT and text not in self.examples:
                self.examples.append(text)

    def worker(self, ends: list[float]) -> None:
        session = None
        try:
            session = Session(self.params)
            session.for_pool()
            with self.lock:
                self.opened += 1
                self.connects.append(session.connect_ms)
        except psycopg.Error as exc:
            self.error(exc)
            if session is not None:
                session.close()
                session = None
        try:
            self.ready.wait(timeout=self.params["connect_timeout"] + CANCEL_GRACE_S)
        except threading.BrokenBarrierError:
            pass
        if session is None:
            return
        timings = []
        try:
            while time.monotonic() < ends[0]:
                started = time.perf_counter()
                try:
                    session.ping()
                except psycopg.Error as exc:
                    self.error(exc)
                    if session.conn.closed:
                        return
                    continue
                timings.append((time.perf_counter() - started) * 1000.0)
        finally:
            with self.lock:
                self.latencies.extend(timings)
            session.close()

    def measure(self, monitor: Session) -> dict:
        params = self.params
        ends = [float("inf")]
        threads = [threading.Thread(target=self.worker, args=(ends,), name=f"emp-db-probe-pool-{index}", daemon=True)
                   for index in range(params["pool_connections"])]
        for thread in threads:
            thread.start()
        try:  # every connection is open (or failed) before the window starts
            self.ready.wait(timeout=params["connect_timeout"] + CANCEL_GRACE_S)
        except threading.BrokenBarrierError:
            pass
        started = time.monotonic()
        ends[0] = started + params["pool_duration"]
        peak = in_use(monitor)
        time.sleep(max(0.0, min(params["pool_duration"] / 2, ends[0] - time.monotonic())))
        peak = max(peak, in_use(monitor))
        for thread in threads:
            thread.join(timeout=max(0.0, ends[0] - time.monotonic()) + params["statement_timeout"] / 1000.0
                        + 2 * CANCEL_GRACE_S)
        figures = summarize(self.latencies, digits=3)
        max_connections = int(monitor.run("SELECT current_setting('max_connections')::int")[0][0][0])
        return {"connections": params["pool_connections"], "opened": self.opened,
                "duration_s": round(time.monotonic() - started, 3), "queries": len(self.latencies),
                "errors": self.errors, "p50_ms": figures["p50"], "p95_ms": figures["p95"], "p99_ms": figures["p99"],
                "connect_p95_ms": round(percentile(sorted(self.connects), 0.95) or 0.0, 3) if self.connects else None,
                "max_connections": max_connections, "peak_in_use": peak, "headroom": max_connections - peak,
                "error_examples": list(self.examples)}


def pool_problems(params: dict, pool: dict) -> list[str]:
    problems = []
    if pool["errors"] > params["max_pool_errors"]:
        problems.append(f"{pool['errors']} errors with {pool['connections']} pooled connections over "
                        f"{pool['duration_s']:g} s > {params['max_pool_errors']}: {pool['error_examples'][0]}")
    limit = params["max_pool_p95_ms"]
    if limit is not None:
        if pool["p95_ms"] is None:
            problems.append(f"no pooled query completed in {pool['duration_s']:g} s, so p95 cannot be judged")
        elif pool["p95_ms"] > limit:
            problems.append(f"pooled query p95 {pool['p95_ms']:.1f} ms > {limit:g} ms over {pool['queries']} queries "
                            f"on {pool['opened']} connections")
    return problems


def headroom_problem(params: dict, headroom: int, in_use_count: int, max_connections: int, pooled: bool) -> list[str]:
    minimum = params["min_connection_headroom"]
    if minimum is None or headroom >= minimum:
        return []
    when = " while the pooling check held its connections" if pooled else ""
    return [f"connection headroom {headroom} ({in_use_count} of max_connections {max_connections} in use{when}) "
            f"< {minimum}"]


# --- the run ---------------------------------------------------------------------------------------

def measure(params: dict, target: str, result: dict) -> list[str]:
    """Fills the result; returns the problems. Raises ProbeError when the database cannot be measured."""
    try:
        session = Session(params)
    except psycopg.Error as exc:
        raise ProbeError(f"cannot connect to PostgreSQL at {target}: {error_text(exc)}") from None
    try:
        try:
            result["server"], result["connections"] = server_figures(session)
        except psycopg.Error as exc:
            raise ProbeError(f"PostgreSQL at {target} answered the probe's own figures query with an error: "
                             f"{error_text(exc)}") from None
        result["queries"], problems = run_queries(session, params["queries"])
        try:
            rows = read_ledger(session, params["migrations_table"])
        except psycopg.Error as exc:
            problems.append(f"cannot read the migration ledger {params['migrations_table']}: {error_text(exc)}")
            rows = None
            result["migrations"] = {"ledger": None, "table": params["migrations_table"]}
        else:
            result["migrations"] = migration_figures(rows, params["migrations_table"], params["expected_migrations"])
            problems += migration_problems(result["migrations"], params["expected_migrations"], target)
        server, connections = result["server"], result["connections"]
        if params["pool_connections"]:
            pool = Pool(params).measure(session)
            result["pool"] = pool
            problems += pool_problems(params, pool)
            problems += headroom_problem(params, pool["headroom"], pool["peak_in_use"], pool["max_connections"], True)
        else:
            problems += headroom_problem(params, connections["headroom"], connections["total"],
                                         server["max_connections"], False)
        return problems
    finally:
        session.close()


def run_probe(params: dict) -> dict:
    started = time.perf_counter()
    target = describe_target(params)
    result: dict = {"changed": False, "target": target}
    try:
        problems = measure(params, target, result)
        result["reachable"] = True
    except ProbeError as exc:
        result = {"changed": False, "target": target, "reachable": False, "error": str(exc)}
        problems = [str(exc)]
    result["healthy"] = not problems
    result["problems"] = problems
    result["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    params = dict(module.params)
    secret = url_password(params["url"])
    if secret:  # a password inside the URL is as secret as the password option
        module.no_log_values.add(secret)
    problems = bad_input_problems(params)
    if problems:
        module.fail_json(msg="bad input: " + "; ".join(problems), changed=False)
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg", reason="to connect to PostgreSQL"),
                         exception=PSYCOPG_IMPORT_ERROR, changed=False)
    # the probe only reads: check mode measures exactly as a normal run does
    result = run_probe(params)
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
