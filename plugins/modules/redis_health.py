#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_health
short_description: Measure the health of the EMP job queue's Redis and check it against thresholds
version_added: 0.1.0
description:
  - Read-only probe of a Redis server as the EMP job queue uses it. It measures reachability, server
    version and role, PING latency percentiles, clients (per client name), memory, persistence,
    keyspace size, loaded function libraries, the depth of the pending queue and which active
    workers still have a live heartbeat key.
  - Every threshold is optional. A threshold that does not hold is reported in RV(problems) with the
    measured figure, and fails the task; so does a server that cannot be measured.
  - With O(wait_for_reconnect=true) it polls until Redis answers and every threshold holds, and
    reports how long it waited and whether it observed an outage. This is how a playbook proves the
    checklist's "restart Redis mid-operation, ensure automatic reconnection".
  - "Checklist items: Redis Connection Test; Job Queue Integrity (worker registration and heartbeat,
    Redis functions loaded); post-deployment Redis connection count stable, not growing; alert Redis
    connection failures."
  - It never uses blocking commands or commands that walk the whole keyspace, such as C(KEYS); workers are read with a bounded
    C(SSCAN) and their heartbeat keys with one pipelined C(PTTL) round trip.
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.redis
  - emp.deploy.attributes.probe
attributes:
  action_group:
    description: Use C(group/emp.deploy.probes) or C(group/emp.deploy.redis) in C(module_defaults) to set options once.
    support: full
    membership:
      - emp.deploy.probes
      - emp.deploy.redis
options:
  latency_samples:
    description: Number of C(PING) round trips timed for the latency figures.
    type: int
    default: 10
  max_latency_p95_ms:
    description: Highest acceptable 95th percentile of the PING latency, in milliseconds.
    type: float
  max_memory_ratio:
    description:
      - Highest acceptable C(used_memory) / C(maxmemory) (0 to 1). When C(maxmemory) is 0 (no limit)
        the server's total system memory is the basis; C(ratio_basis) in RV(memory) says which.
    type: float
  max_connected_clients:
    description: Highest acceptable number of connected clients, not counting this probe.
    type: int
  min_connected_clients:
    description: Lowest acceptable number of connected clients, not counting this probe.
    type: int
  expected_client_names:
    description:
      - "Client names that must be connected, each with the minimum number of connections, for example
        C({emp-api: 1, emp-webhook: 1, emp-monitor: 1})."
      - A name may be a shell-style pattern such as C(emp-worker*); connections whose name matches are
        counted together.
      - This is how a gate proves that every service reconnected after a Redis restart.
    type: dict
  expected_functions:
    description:
      - "Function libraries that must be loaded, each with the functions it must define, for example
        C({jobMatching: [findMatchingJob]}). Needs Redis 7 or later."
    type: dict
  queue_key:
    description: Sorted set of pending jobs.
    type: str
    default: jobs:pending
  max_queue_depth:
    description: Highest acceptable number of entries in O(queue_key).
    type: int
  workers_key:
    description: Set of active worker ids.
    type: str
    default: workers:active
  heartbeat_key_template:
    description: Heartbeat key of a worker; C({id}) is replaced by the worker id.
    type: str
    default: "worker:{id}:heartbeat"
  max_workers_scanned:
    description: Upper bound on the worker ids read from O(workers_key), so the probe stays cheap.
    type: int
    default: 10000
  min_live_workers:
    description: Lowest acceptable number of active workers whose heartbeat key is live.
    type: int
  max_client_growth:
    description:
      - Highest acceptable growth of the connected client count over O(growth_window_s) seconds.
        Setting it makes the probe wait that long and count twice.
    type: int
  growth_window_s:
    description: Seconds between the two client counts used for O(max_client_growth).
    type: float
    default: 10.0
  wait_for_reconnect:
    description:
      - Poll until Redis answers and every threshold holds, or until O(wait_timeout) passes.
    type: bool
    default: false
  wait_timeout:
    description: Seconds O(wait_for_reconnect) waits at most.
    type: float
    default: 60.0
  wait_interval:
    description: Seconds between two polls of O(wait_for_reconnect).
    type: float
    default: 0.5
seealso:
  - module: emp.deploy.gate
    description: Samples this probe over a soak window and decides GO or NO-GO.
  - name: EMP Redis key schema
    description: The keys and functions this probe reads are documented in the collection README.
    link: https://redis.io/docs/latest/develop/interact/programmability/functions-intro/
"""

EXAMPLES = r"""
- name: Redis answers fast and the three services are connected
  emp.deploy.redis_health:
    url: "redis://redis.internal:6379/0"
    password: "{{ vault_redis_password }}"
    max_latency_p95_ms: 20
    expected_client_names:
      emp-api: 1
      emp-webhook: 1
      emp-monitor: 1

- name: Job queue integrity - the claiming function is loaded and workers beat
  emp.deploy.redis_health:
    host: 127.0.0.1
    port: 6379
    expected_functions:
      jobMatching: [findMatchingJob]
    min_live_workers: 1
    max_queue_depth: 500

- name: Prove that every service reconnects after a Redis restart
  emp.deploy.redis_health:
    url: "{{ redis_url }}"
    wait_for_reconnect: true
    wait_timeout: 120
    expected_client_names: {emp-api: 1, emp-webhook: 1, emp-monitor: 1}
  register: reconnect

- name: The connection count is stable, not growing
  emp.deploy.redis_health:
    url: "rediss://redis.internal:6380/0"
    ca_path: /etc/ssl/emp/ca.pem
    max_client_growth: 0
    growth_window_s: 60
"""

RETURN = r"""
reachable:
  description: Whether Redis answered.
  returned: always
  type: bool
target:
  description: Where the probe connected, without credentials.
  returned: always
  type: str
  sample: 127.0.0.1:6379
healthy:
  description: True when every given threshold holds.
  returned: always
  type: bool
problems:
  description: One sentence per threshold that does not hold, or per failure to measure, with the figure.
  returned: always
  type: list
  elements: str
  sample: ["p95 PING latency 31.2 ms > 20.0 ms", "client 'emp-webhook' has 0 connections, expected at least 1"]
server:
  description: Server version, mode, replication role and uptime.
  returned: when reachable
  type: dict
  sample: {version: 7.0.15, mode: standalone, role: master, uptime_s: 1234}
latency_ms:
  description: PING round-trip figures in milliseconds (samples, min, p50, p95, p99, max, mean).
  returned: when reachable
  type: dict
clients:
  description:
    - C(connected) and C(by_name) leave out this probe's own connection; C(connected_total) is the
      server's figure. C(unnamed) counts connections without a name. C(expected) has each pattern of
      O(expected_client_names) with the count that matched it.
  returned: when reachable
  type: dict
  sample: {connected: 3, connected_total: 4, blocked: 0, rejected_connections: 0,
           by_name: {emp-api: 1, emp-webhook: 1, emp-monitor: 1}, unnamed: 0, expected: {emp-api: 1}}
memory:
  description: used_bytes, peak_bytes, maxmemory_bytes, ratio, ratio_basis, fragmentation_ratio, evicted_keys.
  returned: when reachable
  type: dict
persistence:
  description: Loading flag, RDB and AOF status as C(INFO persistence) reports them.
  returned: when reachable
  type: dict
keyspace:
  description: C(keys) in the selected database (C(DBSIZE)) and the per-database figures of C(INFO keyspace).
  returned: when reachable
  type: dict
functions:
  description: Loaded function libraries, each with its function names; null before Redis 7.
  returned: when reachable
  type: dict
  sample: {jobMatching: [findMatchingJob]}
queue:
  description: The pending queue key and its depth (C(ZCARD)).
  returned: when reachable
  type: dict
  sample: {key: "jobs:pending", pending: 12}
workers:
  description:
    - Active worker ids read from O(workers_key), which of them have a live heartbeat key, and the
      remaining heartbeat TTL of each live one. Lists hold at most 1000 ids.
  returned: when reachable
  type: dict
  sample: {active_count: 2, live_count: 1, stale_count: 1, live: [m1-worker-mock-0], stale: [m1-worker-mock-1],
           heartbeat_ttl_s: {m1-worker-mock-0: 41.2}, scanned: 2, truncated: false}
growth:
  description: Connected clients (without the probe) at the start and end of O(growth_window_s), and the delta.
  returned: when O(max_client_growth) is set and Redis was reachable
  type: dict
  sample: {window_s: 10.0, start: 3, end: 3, delta: 0}
wait:
  description:
    - How O(wait_for_reconnect) went. C(outage_observed) is true when at least one poll could not reach
      Redis; C(outage_s) is the time from the first failed poll to the first successful one.
  returned: when O(wait_for_reconnect=true)
  type: dict
  sample: {waited_s: 3.41, attempts: 8, outage_observed: true, outage_s: 2.9, recovered: true}
error:
  description: Why Redis could not be measured.
  returned: when not reachable
  type: str
duration_ms:
  description: Time the probe spent, in milliseconds.
  returned: always
  type: float
"""

import fnmatch
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.emp.deploy.plugins.module_utils._redis import (
    REDIS_CONNECTION_ARGSPEC,
    REDIS_CONNECTION_MUTUALLY_EXCLUSIVE,
    connection_secrets,
    describe_target,
    explain_failure,
    open_connection,
    validate_connection_params,
)
from ansible_collections.emp.deploy.plugins.module_utils._resp import ReplyError, parse_client_list, parse_info
from ansible_collections.emp.deploy.plugins.module_utils._stats import summarize

LIST_LIMIT = 1000
SSCAN_BATCH = 500

THRESHOLD_ARGSPEC: dict = dict(
    latency_samples=dict(type="int", default=10),
    max_latency_p95_ms=dict(type="float"),
    max_memory_ratio=dict(type="float"),
    max_connected_clients=dict(type="int"),
    min_connected_clients=dict(type="int"),
    expected_client_names=dict(type="dict"),
    expected_functions=dict(type="dict"),
    queue_key=dict(type="str", default="jobs:pending", no_log=False),
    max_queue_depth=dict(type="int"),
    workers_key=dict(type="str", default="workers:active", no_log=False),
    heartbeat_key_template=dict(type="str", default="worker:{id}:heartbeat", no_log=False),
    max_workers_scanned=dict(type="int", default=10000),
    min_live_workers=dict(type="int"),
    max_client_growth=dict(type="int"),
    growth_window_s=dict(type="float", default=10.0),
    wait_for_reconnect=dict(type="bool", default=False),
    wait_timeout=dict(type="float", default=60.0),
    wait_interval=dict(type="float", default=0.5),
)


class ProbeError(Exception):
    """Redis could not be measured; the message is meant for people."""


# --- option validation ---------------------------------------------------------------------------

def _expected_client_counts(raw: dict | None) -> dict:
    counts = {}
    for name, minimum in (raw or {}).items():
        try:
            counts[str(name)] = int(minimum)
        except (TypeError, ValueError):
            raise ValueError(f"expected_client_names['{name}'] must be a whole number, got {minimum!r}") from None
    return counts


def _expected_function_names(raw: dict | None) -> dict:
    libraries = {}
    for library, functions in (raw or {}).items():
        if isinstance(functions, str):
            functions = [functions]
        if not isinstance(functions, list) or not all(isinstance(f, str) for f in functions):
            raise ValueError(f"expected_functions['{library}'] must be a list of function names, got {functions!r}")
        libraries[str(library)] = functions
    return libraries


def validate_options(params: dict) -> str | None:
    """A sentence describing the first invalid option, or None."""
    problem = validate_connection_params(params)
    if problem:
        return problem
    if not 1 <= params["latency_samples"] <= 100000:
        return f"latency_samples must be between 1 and 100000, got {params['latency_samples']}"
    if params["max_memory_ratio"] is not None and not 0 < params["max_memory_ratio"] <= 1:
        return f"max_memory_ratio must be greater than 0 and at most 1, got {params['max_memory_ratio']}"
    for name in ("growth_window_s", "wait_timeout", "wait_interval"):
        if params[name] < 0:
            return f"{name} must not be negative, got {params[name]}"
    if params["max_workers_scanned"] < 1:
        return f"max_workers_scanned must be at least 1, got {params['max_workers_scanned']}"
    if "{id}" not in params["heartbeat_key_template"]:
        return f"heartbeat_key_template must contain '{{id}}', got '{params['heartbeat_key_template']}'"
    try:
        params["expected_client_names"] = _expected_client_counts(params["expected_client_names"])
        params["expected_functions"] = _expected_function_names(params["expected_functions"])
    except ValueError as exc:
        return str(exc)
    return None


# --- measurements --------------------------------------------------------------------------------

def measure_latency(conn, samples: int) -> dict:
    timings = []
    for _index in range(samples):
        started = time.perf_counter()
        conn.execute("PING")
        timings.append((time.perf_counter() - started) * 1000.0)
    return summarize(timings)


def count_clients_by_name(client_list: list, own_name: str) -> tuple[dict, int]:
    """Connections per client name, leaving out the probe's own; plus the unnamed count."""
    by_name: dict = {}
    unnamed = 0
    for entry in client_list:
        name = entry.get("name") or ""
        if name == own_name:
            continue
        if name:
            by_name[name] = by_name.get(name, 0) + 1
        else:
            unnamed += 1
    return by_name, unnamed


def count_matching(by_name: dict, pattern: str) -> int:
    return sum(count for name, count in by_name.items() if fnmatch.fnmatchcase(name, pattern))


def clients_section(info: dict, client_list: list, own_name: str, expected: dict) -> dict:
    by_name, unnamed = count_clients_by_name(client_list, own_name)
    own = len(client_list) - sum(by_name.values()) - unnamed
    total = int(info.get("connected_clients", len(client_list)))
    return {
        "connected": max(total - own, 0),
        "connected_total": total,
        "blocked": int(info.get("blocked_clients", 0)),
        "rejected_connections": int(info.get("rejected_connections", 0)),
        "by_name": by_name,
        "unnamed": unnamed,
        "expected": {pattern: count_matching(by_name, pattern) for pattern in expected},
    }


def memory_section(info: dict) -> dict:
    used = int(info.get("used_memory", 0))
    maxmemory = int(info.get("maxmemory", 0))
    system = int(info.get("total_system_memory", 0))
    basis, limit = ("maxmemory", maxmemory) if maxmemory else ("system", system)
    return {
        "used_bytes": used,
        "peak_bytes": int(info.get("used_memory_peak", 0)),
        "maxmemory_bytes": maxmemory,
        "maxmemory_policy": info.get("maxmemory_policy"),
        "ratio": round(used / limit, 6) if limit else None,
        "ratio_basis": basis if limit else None,
        "fragmentation_ratio": info.get("mem_fragmentation_ratio"),
        "evicted_keys": int(info.get("evicted_keys", 0)),
    }


def persistence_section(info: dict) -> dict:
    keys = ("loading", "rdb_bgsave_in_progress", "rdb_last_bgsave_status", "rdb_changes_since_last_save",
            "rdb_last_save_time", "aof_enabled", "aof_rewrite_in_progress", "aof_last_write_status")
    return {key: info.get(key) for key in keys if key in info}


def keyspace_section(info: dict, dbsize: int) -> dict:
    databases = {name: value for name, value in info.items() if name.startswith("db") and isinstance(value, dict)}
    return {"keys": dbsize, "databases": databases, "total_keys": sum(int(db.get("keys", 0)) for db in databases.values())}


def _pairs_to_dict(value) -> dict:
    """FUNCTION LIST answers flat key/value lists over RESP2 and maps over RESP3."""
    if isinstance(value, dict):
        return value
    return dict(zip(value[::2], value[1::2]))


def read_functions(conn) -> dict | None:
    try:
        libraries = conn.execute("FUNCTION", "LIST")
    except ReplyError as exc:  # an unknown command before Redis 7
        if "unknown" in str(exc).lower():
            return None
        raise
    loaded = {}
    for raw in libraries or []:
        library = _pairs_to_dict(raw)
        functions = [_pairs_to_dict(function).get("name") for function in library.get("functions") or []]
        loaded[library.get("library_name")] = sorted(name for name in functions if name)
    return loaded


def read_workers(conn, params: dict) -> dict:
    """Active workers by bounded SSCAN, and their heartbeat TTLs in one pipelined round trip."""
    limit = params["max_workers_scanned"]
    worker_ids: list = []
    cursor = "0"
    truncated = False
    while True:
        cursor, batch = conn.execute("SSCAN", params["workers_key"], cursor, "COUNT", SSCAN_BATCH)
        worker_ids.extend(batch)
        if len(worker_ids) >= limit:
            truncated = cursor != "0" or len(worker_ids) > limit
            worker_ids = worker_ids[:limit]
            break
        if cursor == "0":
            break
    worker_ids = sorted(set(worker_ids))
    ttls = conn.pipeline([("PTTL", params["heartbeat_key_template"].replace("{id}", wid)) for wid in worker_ids])
    for reply in ttls:
        if isinstance(reply, ReplyError):
            raise reply
    live = {wid: ttl for wid, ttl in zip(worker_ids, ttls) if ttl > 0 or ttl == -1}
    stale = [wid for wid in worker_ids if wid not in live]
    return {
        "key": params["workers_key"],
        "active_count": len(worker_ids),
        "live_count": len(live),
        "stale_count": len(stale),
        "active": worker_ids[:LIST_LIMIT],
        "live": sorted(live)[:LIST_LIMIT],
        "stale": stale[:LIST_LIMIT],
        "heartbeat_ttl_s": {wid: (round(ttl / 1000.0, 1) if ttl > 0 else None) for wid, ttl in sorted(live.items())[:LIST_LIMIT]},
        "scanned": len(worker_ids),
        "truncated": truncated,
    }


def connected_without_probe(conn, own_name: str) -> int:
    return sum(1 for entry in parse_client_list(conn.execute("CLIENT", "LIST")) if (entry.get("name") or "") != own_name)


def measure(conn, params: dict) -> dict:
    """One full read-only measurement. Redis errors propagate to the caller."""
    latency = measure_latency(conn, params["latency_samples"])
    info = parse_info(conn.execute("INFO"))
    own_name = params.get("client_name") or ""
    client_list = parse_client_list(conn.execute("CLIENT", "LIST"))
    return {
        "reachable": True,
        "server": {
            "version": info.get("redis_version"),
            "mode": info.get("redis_mode"),
            "role": info.get("role"),
            "uptime_s": info.get("uptime_in_seconds"),
        },
        "latency_ms": latency,
        "clients": clients_section(info, client_list, own_name, params["expected_client_names"]),
        "memory": memory_section(info),
        "persistence": persistence_section(info),
        "keyspace": keyspace_section(info, conn.execute("DBSIZE")),
        "functions": read_functions(conn),
        "queue": {"key": params["queue_key"], "pending": conn.execute("ZCARD", params["queue_key"])},
        "workers": read_workers(conn, params),
    }


def measure_growth(conn, params: dict) -> dict:
    own_name = params.get("client_name") or ""
    start = connected_without_probe(conn, own_name)
    time.sleep(params["growth_window_s"])
    end = connected_without_probe(conn, own_name)
    return {"window_s": params["growth_window_s"], "start": start, "end": end, "delta": end - start}


# --- thresholds ----------------------------------------------------------------------------------

def _function_problems(loaded: dict | None, expected: dict, version: str | None) -> list:
    if not expected:
        return []
    if loaded is None:
        return [f"FUNCTION LIST is not available on Redis {version}: functions need Redis 7 or later"]
    problems = []
    for library, functions in expected.items():
        if library not in loaded:
            problems.append(f"function library '{library}' is not loaded (loaded: {', '.join(sorted(loaded)) or 'none'})")
            continue
        missing = [name for name in functions if name not in loaded[library]]
        if missing:
            problems.append(f"function library '{library}' lacks {', '.join(missing)}")
    return problems


def threshold_problems(report: dict, params: dict) -> list:
    """One sentence, with the measured figure, per threshold that does not hold."""
    problems = []
    p95 = report["latency_ms"]["p95"]
    if params["max_latency_p95_ms"] is not None and p95 > params["max_latency_p95_ms"]:
        problems.append(f"p95 PING latency {p95:.2f} ms > {params['max_latency_p95_ms']} ms "
                        f"over {report['latency_ms']['samples']} samples")
    memory = report["memory"]
    if params["max_memory_ratio"] is not None and memory["ratio"] is not None and memory["ratio"] > params["max_memory_ratio"]:
        problems.append(f"memory ratio {memory['ratio']:.3f} ({memory['used_bytes']} of {memory['ratio_basis']}) "
                        f"> {params['max_memory_ratio']}")
    clients = report["clients"]
    if params["max_connected_clients"] is not None and clients["connected"] > params["max_connected_clients"]:
        problems.append(f"{clients['connected']} connected clients > {params['max_connected_clients']}")
    if params["min_connected_clients"] is not None and clients["connected"] < params["min_connected_clients"]:
        problems.append(f"{clients['connected']} connected clients < {params['min_connected_clients']}")
    for pattern, minimum in params["expected_client_names"].items():
        found = clients["expected"].get(pattern, 0)
        if found < minimum:
            problems.append(f"client '{pattern}' has {found} connection{'s' if found != 1 else ''}, expected at least {minimum}")
    problems += _function_problems(report["functions"], params["expected_functions"], report["server"]["version"])
    pending = report["queue"]["pending"]
    if params["max_queue_depth"] is not None and pending > params["max_queue_depth"]:
        problems.append(f"queue '{params['queue_key']}' holds {pending} jobs > {params['max_queue_depth']}")
    workers = report["workers"]
    if params["min_live_workers"] is not None and workers["live_count"] < params["min_live_workers"]:
        problems.append(f"{workers['live_count']} of {workers['active_count']} active workers have a live heartbeat, "
                        f"expected at least {params['min_live_workers']}")
    growth = report.get("growth")
    if growth and params["max_client_growth"] is not None and growth["delta"] > params["max_client_growth"]:
        problems.append(f"connected clients grew by {growth['delta']} ({growth['start']} -> {growth['end']}) in "
                        f"{growth['window_s']} s > {params['max_client_growth']}")
    return problems


# --- one pass and the reconnect loop -------------------------------------------------------------

def probe_once(params: dict, with_growth: bool) -> tuple[dict, list]:
    """Measures once; raises ProbeError with a sentence when Redis cannot be measured."""
    target = describe_target(params)
    conn = None
    try:
        conn = open_connection(params)
        report = measure(conn, params)
        if with_growth:
            report["growth"] = measure_growth(conn, params)
    except Exception as exc:
        raise ProbeError(explain_failure(exc, target, params)) from exc
    finally:
        if conn is not None:
            conn.close()
    return report, threshold_problems(report, params)


def wait_until_healthy(params: dict, with_growth: bool) -> tuple[dict, list, dict]:
    """Polls until Redis answers and every threshold holds, or wait_timeout passes."""
    started = time.monotonic()
    deadline = started + params["wait_timeout"]
    attempts = 0
    first_failure = None
    outage_s = None
    report: dict = {}
    problems: list = []
    while True:
        attempts += 1
        now = time.monotonic()
        try:
            report, problems = probe_once(params, with_growth=False)
            if first_failure is not None and outage_s is None:
                outage_s = round(now - first_failure, 3)
        except ProbeError as exc:
            first_failure = now if first_failure is None else first_failure
            report, problems = {"reachable": False, "error": str(exc)}, [str(exc)]
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(params["wait_interval"], deadline - time.monotonic())))
    wait = {
        "waited_s": round(time.monotonic() - started, 3),
        "attempts": attempts,
        "outage_observed": first_failure is not None,
        "outage_s": outage_s,
        "recovered": not problems,
        "timeout_s": params["wait_timeout"],
    }
    if not problems and with_growth:
        report, problems = probe_once(params, with_growth=True)
    return report, problems, wait


def run_probe(params: dict) -> dict:
    started = time.perf_counter()
    target = describe_target(params)
    with_growth = params["max_client_growth"] is not None
    result: dict = {"changed": False, "target": target}
    if params["wait_for_reconnect"]:
        report, problems, wait = wait_until_healthy(params, with_growth)
        result["wait"] = wait
        if not wait["recovered"]:
            problems = [f"Redis at {target} did not recover within {params['wait_timeout']} s "
                        f"({wait['attempts']} polls): {problems[0]}"] + problems[1:]
    else:
        try:
            report, problems = probe_once(params, with_growth)
        except ProbeError as exc:
            report, problems = {"reachable": False, "error": str(exc)}, [str(exc)]
    result.update(report)
    result["healthy"] = not problems
    result["problems"] = problems
    result["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    return result


def main() -> None:
    argument_spec = dict(REDIS_CONNECTION_ARGSPEC)
    argument_spec.update(THRESHOLD_ARGSPEC)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=REDIS_CONNECTION_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = dict(module.params)
    # a password inside the URL is as secret as the password option
    module.no_log_values.update(connection_secrets(params))
    invalid = validate_options(params)
    if invalid:
        module.fail_json(msg=invalid, changed=False)
    result = run_probe(params)
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
