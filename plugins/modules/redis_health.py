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
  - It never uses blocking commands or commands that walk the whole keyspace, such as C(KEYS); workers are counted with
    C(SCARD), read with a bounded C(SSCAN) and their heartbeat keys with one pipelined C(PTTL) round trip.
  - The whole task is bounded by O(timeout), whatever the server does. A server that answers one byte at a time
    fails the probe when O(command_timeout) or O(timeout) runs out, with the structured result and a message
    saying what was too slow.
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
      - Only for services that name their connections (C(CLIENT SETNAME)). The services of the public EMP
        sources do not; judge their reconnection with O(min_connected_clients) (the count before the
        restart) and O(service_health) instead.
    type: dict
  service_health:
    description:
      - Health endpoints of the services that use this Redis, each requested once per measurement with a
        C(GET). A service is healthy when it answers 2xx and every path of its C(expect) has the expected value.
      - "This is how a gate proves that services which do not name their Redis connections reconnected after
        a Redis restart, for example the webhook service's C({redis.connected: true})."
      - An unreachable service, another status, an answer that is not JSON or a missing path is a problem
        (nothing passes for lack of data).
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the service, for messages and RV(services).
        type: str
        required: true
      url:
        description: Health endpoint URL (http or https).
        type: str
        required: true
      expect:
        description:
          - "Expected JSON values by dotted path into the answer, for example C({status: ok, redis.connected: true})."
          - Empty, only the status code is judged.
        type: dict
        default: {}
      headers:
        description: Request headers, for example an C(Authorization) header. Never logged.
        type: dict
        default: {}
  service_health_timeout:
    description: Seconds each health request may take.
    type: float
    default: 5.0
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
    description:
      - Upper bound on the worker ids read from O(workers_key), so the probe stays cheap. The set's real size
        comes from C(SCARD); C(truncated) in RV(workers) says whether the scan stopped at this bound.
    type: int
    default: 10000
  min_live_workers:
    description:
      - Lowest acceptable number of active workers whose heartbeat key is live.
      - When the scan stopped at O(max_workers_scanned), only the scanned sample was checked. The threshold then
        holds when the sample alone has enough live workers, and fails when it could not hold even if every
        worker left unscanned were live. Between the two it cannot be judged, and that is a problem too
        (nothing passes for lack of data); the message gives an estimate from the sample
        (C(live_estimate) in RV(workers)) and the O(max_workers_scanned) that would judge it.
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
  timeout:
    description:
      - Seconds the whole task may take at most, everything included - name resolution, connecting, the TLS
        handshake, authentication, latency samples, the worker scan, O(growth_window_s) and every poll of
        O(wait_for_reconnect). When it runs out, the task fails with what was measured so far.
      - O(connect_timeout) and O(command_timeout) still bound each step; this bounds their sum.
      - When not set it is O(connect_timeout) plus 30 seconds for the measurement, plus O(wait_timeout) with
        O(wait_for_reconnect=true), plus O(growth_window_s) with O(max_client_growth). RV(timeout_s) returns
        the value used.
      - With O(max_client_growth) it must be longer than O(growth_window_s).
    type: float
notes:
  - "Commands the probe sends, for an ACL user: C(AUTH), C(SELECT) (O(db) other than 0), C(CLIENT SETNAME) (unless
    O(client_name) is empty), C(CLIENT ID), C(CLIENT LIST), C(PING), C(INFO), C(DBSIZE), C(FUNCTION LIST), C(ZCARD),
    C(SCARD), C(SSCAN) and C(PTTL), with read access to O(queue_key), O(workers_key) and the heartbeat keys, for
    example C(ACL SETUSER probe on >password +ping +info +dbsize +client|id +client|list +client|setname
    +function|list +zcard +scard +sscan +pttl %R~*). A command the user may not run is reported as a permission
    problem naming the command, not as an authentication failure."
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

- name: Count the service connections before the Redis restart
  emp.deploy.redis_health:
    url: "{{ redis_url }}"
  register: before

- name: Prove that every service reconnects after a Redis restart (services without client names)
  emp.deploy.redis_health:
    url: "{{ redis_url }}"
    wait_for_reconnect: true
    wait_timeout: 120
    min_connected_clients: "{{ before.clients.connected }}"
    service_health:
      - {name: api, url: "http://127.0.0.1:3331/health", expect: {status: ok}}
      - {name: webhook, url: "http://127.0.0.1:3332/health", expect: {redis.connected: true}}
  register: reconnect

- name: The same where the services name their connections
  emp.deploy.redis_health:
    url: "{{ redis_url }}"
    wait_for_reconnect: true
    expected_client_names: {emp-api: 1, emp-webhook: 1, emp-monitor: 1}

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
    - C(connected) and C(by_name) leave out this probe's own connection (known by its connection id, named or
      not) and other connections named O(client_name) (other probes); C(connected_total) is the server's
      figure. C(unnamed) counts connections without a name. C(expected) has each pattern of
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
    - C(active_count) is the size of O(workers_key) (C(SCARD)). C(scanned) ids were read from it, at most
      O(max_workers_scanned); C(truncated) is true when the scan stopped at that bound.
    - C(live_count) and C(stale_count) count the scanned ids whose heartbeat key is live or not; with a
      truncated scan C(live_estimate) extrapolates C(live_count) to C(active_count) (an estimate from a
      sample of C(scanned)), otherwise it equals C(live_count).
    - C(live), C(stale) and C(heartbeat_ttl_s) (remaining TTL of each live heartbeat) hold at most 1000 ids.
  returned: when reachable
  type: dict
  sample: {active_count: 2, scanned: 2, truncated: false, live_count: 1, stale_count: 1, live_estimate: 1,
           live: [m1-worker-mock-0], stale: [m1-worker-mock-1], heartbeat_ttl_s: {m1-worker-mock-0: 41.2}}
services:
  description:
    - Per service of O(service_health), C(url) (without credentials or query), C(healthy), C(status_code) and the
      value found at each path of its C(expect) (null when absent).
  returned: when reachable and O(service_health) is set
  type: dict
  sample: {webhook: {url: "127.0.0.1:3332/health", healthy: true, status_code: 200, redis.connected: true}}
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
timeout_s:
  description: The bound on the whole task, in seconds (O(timeout), or the value derived from the other options).
  returned: always
  type: float
  sample: 35.0
"""

import fnmatch
import time
from typing import Callable

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.emp.deploy.plugins.module_utils._redis import (
    REDIS_CONNECTION_ARGSPEC,
    REDIS_CONNECTION_MUTUALLY_EXCLUSIVE,
    connection_secrets,
    describe_target,
    explain_failure,
    open_connection,
    scan_members,
    validate_connection_params,
)
from ansible_collections.emp.deploy.plugins.module_utils._resp import Deadline, ReplyError, parse_client_list, parse_info
from ansible_collections.emp.deploy.plugins.module_utils._service_health import (
    SERVICE_HEALTH_SPEC,
    check_services,
    service_health_problem,
)
from ansible_collections.emp.deploy.plugins.module_utils._stats import summarize

LIST_LIMIT = 1000
# what a single measurement may take on top of connect_timeout when `timeout` is not set
MEASURE_BUDGET_S = 30.0

THRESHOLD_ARGSPEC: dict = dict(
    latency_samples=dict(type="int", default=10),
    max_latency_p95_ms=dict(type="float"),
    max_memory_ratio=dict(type="float"),
    max_connected_clients=dict(type="int"),
    min_connected_clients=dict(type="int"),
    expected_client_names=dict(type="dict"),
    expected_functions=dict(type="dict"),
    service_health=SERVICE_HEALTH_SPEC,
    service_health_timeout=dict(type="float", default=5.0),
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
    timeout=dict(type="float"),
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


def _timeout_problem(params: dict) -> str | None:
    timeout = params["timeout"]
    if timeout is None:
        return None
    if timeout <= 0:
        return f"timeout must be greater than 0, got {timeout}"
    if params["max_client_growth"] is not None and timeout <= params["growth_window_s"]:
        return (f"timeout ({timeout:g} s) must be longer than growth_window_s ({params['growth_window_s']:g} s), "
                f"which max_client_growth waits")
    return None


def validate_options(params: dict) -> str | None:
    """A sentence describing the first invalid option, or None."""
    problem = validate_connection_params(params) or _timeout_problem(params)
    if problem:
        return problem
    if not 1 <= params["latency_samples"] <= 100000:
        return f"latency_samples must be between 1 and 100000, got {params['latency_samples']}"
    if params["max_memory_ratio"] is not None and not 0 < params["max_memory_ratio"] <= 1:
        return f"max_memory_ratio must be greater than 0 and at most 1, got {params['max_memory_ratio']}"
    for name in ("growth_window_s", "wait_timeout", "wait_interval"):
        if params[name] < 0:
            return f"{name} must not be negative, got {params[name]}"
    if params["service_health_timeout"] <= 0:
        return f"service_health_timeout must be greater than 0, got {params['service_health_timeout']}"
    problem = service_health_problem(params["service_health"] or [])
    if problem:
        return problem
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


def effective_timeout(params: dict) -> float:
    """The bound on the whole task: `timeout`, or what the other options add up to."""
    if params["timeout"] is not None:
        return float(params["timeout"])
    budget = params["connect_timeout"] + MEASURE_BUDGET_S
    if params["wait_for_reconnect"]:
        budget += params["wait_timeout"]
    if params["max_client_growth"] is not None:
        budget += params["growth_window_s"]
    return budget


# --- measurements --------------------------------------------------------------------------------

def measure_latency(conn, samples: int) -> dict:
    timings = []
    for _index in range(samples):
        started = time.perf_counter()
        conn.execute("PING")
        timings.append((time.perf_counter() - started) * 1000.0)
    return summarize(timings)


def probe_matcher(own_id, own_name: str) -> Callable[[dict], bool]:
    """Tells the probe's connections in CLIENT LIST: its own (by id, named or not) and other probes (by name)."""
    own = str(own_id) if own_id is not None else None

    def is_probe(entry: dict) -> bool:
        return (own is not None and entry.get("id") == own) or bool(own_name) and entry.get("name") == own_name

    return is_probe


def count_clients_by_name(client_list: list, is_probe: Callable[[dict], bool]) -> tuple[dict, int]:
    """Connections per client name, leaving out the probe's; plus the unnamed count."""
    by_name: dict = {}
    unnamed = 0
    for entry in client_list:
        if is_probe(entry):
            continue
        name = entry.get("name") or ""
        if name:
            by_name[name] = by_name.get(name, 0) + 1
        else:
            unnamed += 1
    return by_name, unnamed


def count_matching(by_name: dict, pattern: str) -> int:
    return sum(count for name, count in by_name.items() if fnmatch.fnmatchcase(name, pattern))


def clients_section(info: dict, client_list: list, is_probe: Callable[[dict], bool], expected: dict) -> dict:
    by_name, unnamed = count_clients_by_name(client_list, is_probe)
    probes = len(client_list) - sum(by_name.values()) - unnamed
    total = int(info.get("connected_clients", len(client_list)))
    return {
        "connected": max(total - probes, 0),
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


def _unknown_command(reply) -> bool:
    return isinstance(reply, ReplyError) and "unknown" in str(reply).lower()


def _checked(reply):
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def loaded_functions(reply) -> dict | None:
    """FUNCTION LIST's reply as {library: [function names]}; None before Redis 7 (an unknown command)."""
    if _unknown_command(reply):
        return None
    loaded = {}
    for raw in _checked(reply) or []:
        library = _pairs_to_dict(raw)
        functions = [_pairs_to_dict(function).get("name") for function in library.get("functions") or []]
        loaded[library.get("library_name")] = sorted(name for name in functions if name)
    return loaded


def read_workers(conn, params: dict, active_total: int) -> dict:
    """Active workers (SCARD for the real count), a bounded SSCAN sample of them, and their
    heartbeat TTLs in one pipelined round trip."""
    worker_ids, truncated = scan_members(conn, params["workers_key"], params["max_workers_scanned"])
    worker_ids.sort()
    ttls = [_checked(reply) for reply in conn.pipeline(
        [("PTTL", params["heartbeat_key_template"].replace("{id}", wid)) for wid in worker_ids])]
    live = {wid: ttl for wid, ttl in zip(worker_ids, ttls) if ttl > 0 or ttl == -1}
    stale = [wid for wid in worker_ids if wid not in live]
    active = max(active_total, len(worker_ids))
    estimate = round(len(live) * active / len(worker_ids)) if truncated and worker_ids else len(live)
    return {
        "key": params["workers_key"],
        "active_count": active,
        "scanned": len(worker_ids),
        "truncated": truncated,
        "live_count": len(live),
        "stale_count": len(stale),
        "live_estimate": estimate,
        "active": worker_ids[:LIST_LIMIT],
        "live": sorted(live)[:LIST_LIMIT],
        "stale": stale[:LIST_LIMIT],
        "heartbeat_ttl_s": {wid: (round(ttl / 1000.0, 1) if ttl > 0 else None) for wid, ttl in sorted(live.items())[:LIST_LIMIT]},
    }


def connected_without_probe(conn, is_probe: Callable[[dict], bool]) -> int:
    return sum(1 for entry in parse_client_list(conn.execute("CLIENT", "LIST")) if not is_probe(entry))


def measure(conn, params: dict) -> tuple[dict, Callable[[dict], bool]]:
    """One full read-only measurement, and how to tell the probe's connections. Redis errors propagate."""
    latency = measure_latency(conn, params["latency_samples"])
    # one round trip for everything that is not a latency sample or the worker scan
    info_text, own_id, client_text, dbsize, functions, pending, active_total = conn.pipeline([
        ("INFO",), ("CLIENT", "ID"), ("CLIENT", "LIST"), ("DBSIZE",), ("FUNCTION", "LIST"),
        ("ZCARD", params["queue_key"]), ("SCARD", params["workers_key"]),
    ])
    info = parse_info(_checked(info_text))
    # CLIENT ID is Redis 5 and later; before that only the name tells the probe's connection
    is_probe = probe_matcher(None if _unknown_command(own_id) else _checked(own_id), params.get("client_name") or "")
    report = {
        "reachable": True,
        "server": {
            "version": info.get("redis_version"),
            "mode": info.get("redis_mode"),
            "role": info.get("role"),
            "uptime_s": info.get("uptime_in_seconds"),
        },
        "latency_ms": latency,
        "clients": clients_section(info, parse_client_list(_checked(client_text)), is_probe,
                                   params["expected_client_names"]),
        "memory": memory_section(info),
        "persistence": persistence_section(info),
        "keyspace": keyspace_section(info, _checked(dbsize)),
        "functions": loaded_functions(functions),
        "queue": {"key": params["queue_key"], "pending": _checked(pending)},
        "workers": read_workers(conn, params, _checked(active_total)),
    }
    return report, is_probe


def measure_growth(conn, params: dict, is_probe: Callable[[dict], bool], deadline: Deadline) -> dict:
    window = params["growth_window_s"]
    start = connected_without_probe(conn, is_probe)
    if deadline.remaining() < window:
        raise ProbeError(f"the probe's overall timeout of {deadline.seconds:g} s leaves {max(deadline.remaining(), 0):.1f} s, "
                         f"not enough for growth_window_s {window:g} s; raise timeout")
    time.sleep(window)
    end = connected_without_probe(conn, is_probe)
    return {"window_s": window, "start": start, "end": end, "delta": end - start}


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


def live_workers_problem(workers: dict, minimum: int | None) -> str | None:
    """Judges min_live_workers; a bounded scan passes or fails only when its sample decides it."""
    if minimum is None:
        return None
    live, scanned, active = workers["live_count"], workers["scanned"], workers["active_count"]
    if not workers["truncated"]:
        if live < minimum:
            return f"{live} of {active} active workers have a live heartbeat, expected at least {minimum}"
        return None
    if live >= minimum:  # the live workers found in the sample are enough on their own
        return None
    most = live + active - scanned
    if most < minimum:  # even if every worker the scan did not reach were live
        return (f"at most {most} of {active} active workers can have a live heartbeat ({live} live among the "
                f"{scanned} scanned, max_workers_scanned), expected at least {minimum}")
    return (f"min_live_workers {minimum} cannot be judged: the scan stopped at max_workers_scanned "
            f"({scanned} of {active} active workers) and found {live} live among them, an estimate of about "
            f"{workers['live_estimate']} live in all from that sample; raise max_workers_scanned to {active} to judge it")


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
        problems.append(f"{clients['connected']} connected clients < {params['min_connected_clients']} "
                        f"(not counting this probe)")
    for pattern, minimum in params["expected_client_names"].items():
        found = clients["expected"].get(pattern, 0)
        if found < minimum:
            problems.append(f"client '{pattern}' has {found} connection{'s' if found != 1 else ''}, expected at least {minimum}")
    problems += _function_problems(report["functions"], params["expected_functions"], report["server"]["version"])
    pending = report["queue"]["pending"]
    if params["max_queue_depth"] is not None and pending > params["max_queue_depth"]:
        problems.append(f"queue '{params['queue_key']}' holds {pending} jobs > {params['max_queue_depth']}")
    workers_problem = live_workers_problem(report["workers"], params["min_live_workers"])
    if workers_problem:
        problems.append(workers_problem)
    problems += report.pop("service_problems", [])
    growth = report.get("growth")
    if growth and params["max_client_growth"] is not None and growth["delta"] > params["max_client_growth"]:
        problems.append(f"connected clients grew by {growth['delta']} ({growth['start']} -> {growth['end']}) in "
                        f"{growth['window_s']} s > {params['max_client_growth']}")
    return problems


# --- one pass and the reconnect loop -------------------------------------------------------------

def probe_once(params: dict, with_growth: bool, deadline: Deadline) -> tuple[dict, list]:
    """Measures once within the deadline; raises ProbeError with a sentence when Redis cannot be measured."""
    target = describe_target(params)
    conn = None
    try:
        conn = open_connection(params, deadline)
        report, is_probe = measure(conn, params)
        if params["service_health"]:
            report["services"], report["service_problems"] = check_services(
                params["service_health"], min(params["service_health_timeout"], max(deadline.remaining(), 0.1)))
        if with_growth:
            report["growth"] = measure_growth(conn, params, is_probe, deadline)
    except ProbeError:
        raise
    except Exception as exc:
        raise ProbeError(explain_failure(exc, target, params)) from exc
    finally:
        if conn is not None:
            conn.close()
    return report, threshold_problems(report, params)


def wait_until_healthy(params: dict, with_growth: bool, deadline: Deadline) -> tuple[dict, list, dict]:
    """Polls until Redis answers and every threshold holds, or wait_timeout (or the overall timeout) passes."""
    started = time.monotonic()
    wait_deadline = deadline.sooner(params["wait_timeout"], "wait_timeout")
    attempts = 0
    first_failure = None
    outage_s = None
    report: dict = {}
    problems: list = []
    while True:
        attempts += 1
        now = time.monotonic()
        try:
            report, problems = probe_once(params, with_growth=False, deadline=deadline)
            if first_failure is not None and outage_s is None:
                outage_s = round(now - first_failure, 3)
        except ProbeError as exc:
            first_failure = now if first_failure is None else first_failure
            report, problems = {"reachable": False, "error": str(exc)}, [str(exc)]
        if not problems or wait_deadline.remaining() <= 0:
            break
        time.sleep(max(0.0, min(params["wait_interval"], wait_deadline.remaining())))
    wait = {
        "waited_s": round(time.monotonic() - started, 3),
        "attempts": attempts,
        "outage_observed": first_failure is not None,
        "outage_s": outage_s,
        "recovered": not problems,
        "timeout_s": params["wait_timeout"],
    }
    if not problems and with_growth:
        report, problems = probe_once(params, with_growth=True, deadline=deadline)
    if not wait["recovered"]:
        limit = (f"within {params['wait_timeout']} s" if wait_deadline.option == "wait_timeout"
                 else f"within the probe's overall timeout of {deadline.seconds:g} s")
        problems = [f"Redis at {describe_target(params)} did not recover {limit} ({attempts} polls): {problems[0]}",
                    *problems[1:]]
    return report, problems, wait


def run_probe(params: dict) -> dict:
    started = time.perf_counter()
    timeout = effective_timeout(params)
    deadline = Deadline(timeout, "timeout")
    result: dict = {"changed": False, "target": describe_target(params), "timeout_s": timeout}
    try:
        if params["wait_for_reconnect"]:
            report, problems, result["wait"] = wait_until_healthy(params, params["max_client_growth"] is not None,
                                                                  deadline)
        else:
            report, problems = probe_once(params, params["max_client_growth"] is not None, deadline)
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
