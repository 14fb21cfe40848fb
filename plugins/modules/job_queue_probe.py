#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: job_queue_probe
short_description: Prove the integrity of the EMP job queue - submission, storage, atomic claiming, completion, heartbeats
version_added: 0.2.0
description:
  - Active probe of the EMP job queue. It writes probe jobs, so unlike the read-only probes it changes its target
    while it runs, and removes everything it wrote before it returns.
  - "B(Submission, storage and retrieval): it submits O(submit_jobs) probe jobs with C(POST /api/jobs) to
    O(api_url), reads each job hash back from Redis (C(id), C(service_required), C(priority), C(status=pending),
    C(payload), C(retry_count), C(created_at)), checks that its C(jobs:pending) score is the contract's
    priority x 10^15 - submission time in seconds (within O(score_tolerance_s)), and reads it back with
    C(GET /api/jobs/:id)."
  - "B(Claiming atomicity): it writes O(claim_jobs) synthetic jobs straight into Redis in the contract's shape,
    for a service named after the run (C(<service_prefix><run id>)) that no real worker serves, and lets
    O(claimers) concurrent claimers - threads, each with its own connection, started together - call
    C(FCALL findMatchingJob 0 <capabilities> <max_scan>) until the function answers nil. Every job must be
    claimed exactly once, none lost (gone from C(jobs:pending) but handed to nobody), none left pending, and each
    claim recorded (job hash C(status=assigned) with the claimer's C(worker_id), in C(jobs:active:<claimer>))."
  - "B(End to end) (O(end_to_end=true)): one job of a real service type, O(end_to_end_service), is submitted
    through the API and must be completed by a real worker within O(end_to_end_timeout), with its completion
    recorded (job hash C(status=completed) and C(completed_at), an entry in C(jobs:completed), the attestation
    C(worker:completion:step-id:<job>:attempt:1))."
  - "B(Worker registration and heartbeats) (O(check_workers=true)): at least O(min_workers) workers of
    C(workers:active) have their C(worker:<id>) hash and a live C(worker:<id>:heartbeat) key whose time is at most
    O(heartbeat_max_age) seconds old by the Redis server's clock. This part only reads."
  - B(Cleanup, on every path) - success, failed checks, errors, timeouts, a lost connection - it deletes every
    job hash, C(jobs:pending) entry, C(jobs:active:<claimer>) hash and completion record it created, then reads
    them back. RV(cleanup) says how many it removed and what it could not remove. A job whose submission timed out
    is looked for in C(jobs:pending) by its score window and synthetic service name, for up to
    O(cleanup_timeout) seconds.
  - "Real work is never disturbed: the synthetic jobs belong to a service no worker serves, and the claimers
    serve only that service. The claim jobs get a priority above every pending job, so the claimers scan only
    them (C(max_scan) is O(claim_jobs)); while the check runs (well under a second for the defaults) they also
    occupy O(claim_jobs) places at the top of the queue that real workers scan past. The submitted jobs get
    O(submit_priority), the bottom of the queue."
  - A check that does not hold is reported in RV(problems) with its figure and fails the task; so does a queue
    that cannot be measured. RV(healthy) is true only when every check ran and held.
  - "Checklist items: Job Queue Integrity (job submission and retrieval, claiming atomicity, job completion end
    to end, worker registration and heartbeat)."
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.redis
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode the probe does nothing at all - it connects to nothing and writes nothing - and returns
        RV(plan), what it would do, with C(skipped=true). M(emp.deploy.gate) counts such a sample as no data.
  read_only:
    description: Never changes its target, so M(emp.deploy.gate) samples it as the task runs, outside check mode.
    support: none
    details:
      - It writes probe jobs (and removes them). A gate therefore samples it in check mode - no data, never GO -
        unless the gate's C(probe.check_mode) is V(false).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  action_group:
    description: Use C(group/emp.deploy.probes) or C(group/emp.deploy.redis) in C(module_defaults) to set options once.
    support: full
    membership:
      - emp.deploy.probes
      - emp.deploy.redis
options:
  api_url:
    description:
      - Base URL of the EMP API, for example C(http://api.internal:3331). Needed for O(submit_jobs) and
        O(end_to_end), which submit with C(POST /api/jobs).
      - Credentials in the URL never appear in results or messages.
    type: str
  api_token:
    description:
      - Bearer token sent as C(Authorization) to O(api_url) when the API enforces authentication.
      - It never appears in results, messages or problems.
    type: str
  api_timeout:
    description: Seconds one API request may take as a whole (connect, headers and body), within O(timeout).
    type: float
    default: 10.0
  api_validate_certs:
    description: Verify the TLS certificate of an C(https://) O(api_url).
    type: bool
    default: true
  submit_jobs:
    description:
      - Probe jobs submitted through the API and verified in Redis and through C(GET /api/jobs/:id). V(0) skips
        the check (and then O(api_url) is not needed unless O(end_to_end=true)).
    type: int
    default: 1
  submit_priority:
    description:
      - C(priority) of the submitted probe jobs. V(1) places them at the bottom of the queue. V(0) is refused,
        because APIs that default a falsy priority to 50 would store another score than the one checked.
    type: int
    default: 1
  score_tolerance_s:
    description:
      - How far, in seconds, the submission time implied by a job's C(jobs:pending) score may be from the probe's
        clock. It absorbs clock skew between the probe's host and the API; a wrong score formula is off by far more.
    type: float
    default: 60.0
  claim_jobs:
    description: Synthetic jobs for the claim-atomicity check. V(0) skips the check. At most 1000.
    type: int
    default: 20
  claimers:
    description: Concurrent claimers of the claim-atomicity check, each a thread with its own connection.
    type: int
    default: 4
  service_prefix:
    description:
      - Start of the synthetic service names; the run id follows (C(<prefix><run id>) for the claim jobs,
        C(<prefix><run id>-api) for the submitted jobs). No real worker may serve a service of that name.
    type: str
    default: emp-probe-
  end_to_end:
    description: Submit one job of O(end_to_end_service) and wait until a real worker completes it.
    type: bool
    default: false
  end_to_end_service:
    description: C(service_required) of the end-to-end job; a service real workers serve.
    type: str
    default: mock
  end_to_end_payload:
    description: C(payload) of the end-to-end job; keep it small and cheap for the worker.
    type: dict
    default: {}
  end_to_end_priority:
    description: C(priority) of the end-to-end job.
    type: int
    default: 50
  end_to_end_timeout:
    description: Seconds the end-to-end job may take from submission to completion.
    type: float
    default: 60.0
  check_workers:
    description: Check worker registration and heartbeats.
    type: bool
    default: true
  min_workers:
    description: Lowest acceptable number of registered workers with a fresh heartbeat.
    type: int
    default: 1
  heartbeat_max_age:
    description:
      - Seconds a worker's last heartbeat may be old, by the Redis server's clock. EMP workers beat every 30 s
        and their heartbeat key lives 60 s.
    type: float
    default: 60.0
  max_workers_scanned:
    description: Upper bound on the worker ids read from C(workers:active) (a bounded C(SSCAN)).
    type: int
    default: 1000
  timeout:
    description:
      - Seconds the checks may take together; when they run out, the remaining checks are reported as not run.
      - Cleanup comes after, with O(cleanup_timeout) of its own, so the task takes at most O(timeout) +
        O(cleanup_timeout).
      - When not set it is O(connect_timeout) plus 30 seconds, plus O(end_to_end_timeout) with O(end_to_end=true).
    type: float
  cleanup_timeout:
    description:
      - Seconds cleanup may take after the checks, including waiting for an end-to-end job a worker still holds
        and looking for a job whose submission timed out.
    type: float
    default: 10.0
notes:
  - Redis keys are the EMP contract's and fixed, because C(findMatchingJob) itself reads C(jobs:pending) -
    C(job:<id>), C(jobs:pending), C(jobs:active:<worker>), C(jobs:completed), C(jobs:failed), C(workers:active),
    C(worker:<id>), C(worker:<id>:heartbeat).
  - "What the probe cannot take back: the API publishes C(job_submitted) for each submitted job and the claim
    function C(job_claimed) for each claim (webhooks subscribed to those events see the synthetic service name),
    the end-to-end job runs on a real worker, and service counters (jobs submitted, jobs completed) count the
    probe's jobs."
  - "Commands it sends, for an ACL user: C(AUTH), C(SELECT), C(CLIENT SETNAME), C(SSCAN), C(SCARD), C(TIME),
    C(HMGET), C(HGETALL), C(HGET), C(HKEYS), C(HEXISTS), C(HSET), C(HDEL), C(PTTL), C(GET), C(EXISTS), C(DEL),
    C(ZADD), C(ZREM), C(ZSCORE), C(ZREVRANGE), C(ZRANGEBYSCORE), C(MULTI), C(EXEC) and C(FCALL)."
seealso:
  - module: emp.deploy.gate
    description: Samples this probe and decides GO or NO-GO; give it C(probe.check_mode=false).
  - module: emp.deploy.redis_health
    description: The read-only Redis probe (function library loaded, queue depth, live workers).
"""

EXAMPLES = r"""
- name: Job queue integrity - submission, storage, atomic claiming and heartbeats
  emp.deploy.job_queue_probe:
    url: "redis://redis.internal:6379/0"
    password: "{{ vault_redis_password }}"
    api_url: http://api.internal:3331
    api_token: "{{ vault_emp_api_token }}"
    claim_jobs: 50
    claimers: 8
    min_workers: 2
  register: queue

- name: A real worker completes a real job, and its completion is recorded
  emp.deploy.job_queue_probe:
    url: "{{ redis_url }}"
    api_url: "{{ api_url }}"
    end_to_end: true
    end_to_end_service: mock
    end_to_end_payload: {duration_ms: 50}
    end_to_end_timeout: 120

- name: Claim atomicity alone, Redis only
  emp.deploy.job_queue_probe:
    host: 127.0.0.1
    port: 6379
    submit_jobs: 0
    check_workers: false
    claim_jobs: 100
    claimers: 16

# The probe writes probe jobs, so a gate runs it in check mode (no data, never GO) unless told otherwise.
- name: Gate - job queue integrity
  emp.deploy.gate:
    name: job-queue-integrity
    phase: predeploy
    component: redis
    checklist_ref: "Pre-deployment testing / Job Queue Integrity"
    probe:
      module: emp.deploy.job_queue_probe
      check_mode: false
      args:
        url: "{{ redis_url }}"
        api_url: "{{ api_url }}"
    samples: 1
    criteria:
      - result.healthy
      - result.claim.claimed_more_than_once == 0
      - result.cleanup.errors | length == 0
"""

RETURN = r"""
healthy:
  description: True when every check ran and held and cleanup left nothing behind.
  returned: always
  type: bool
problems:
  description: One sentence per check that does not hold, per failure to measure, and per cleanup failure.
  returned: always
  type: list
  elements: str
  sample: ["3 of 50 synthetic jobs claimed twice by 8 concurrent claimers: findMatchingJob does not claim atomically"]
reachable:
  description: Whether Redis answered.
  returned: always
  type: bool
error:
  description: Why Redis could not be measured.
  returned: when not reachable
  type: str
target:
  description: Where the probe connected to Redis, without credentials.
  returned: always
  type: str
run_id:
  description: Random id of this run, part of the synthetic service names.
  returned: always
  type: str
services:
  description: The synthetic service names of this run.
  returned: always
  type: dict
  sample: {claim: emp-probe-3f2a9c1b, submit: emp-probe-3f2a9c1b-api}
plan:
  description: What the probe would do; only in check mode.
  returned: in check mode
  type: list
  elements: str
submit:
  description:
    - The submission check. C(submitted) jobs the API accepted, C(stored) whose hash matched what was sent,
      C(score_ok) whose C(jobs:pending) score follows the contract, C(retrieved) that C(GET /api/jobs/:id) returned
      as sent; C(score_offset_s) the largest distance between the implied and the actual submission time;
      C(mismatches) the first differences; C(latency_ms) the C(POST /api/jobs) round trips.
  returned: when the check ran
  type: dict
  sample: {jobs: 1, submitted: 1, stored: 1, score_ok: 1, retrieved: 1, score_offset_s: 0.4, mismatches: [],
           latency_ms: {samples: 1, p50: 3.1}, http_statuses: {"POST /api/jobs": {"201": 1}}}
claim:
  description:
    - The claim-atomicity check. C(claims) every job id the function handed out, C(claimed_once),
      C(claimed_more_than_once), C(lost) (gone from C(jobs:pending), handed to nobody), C(unclaimed) (still
      pending), C(claim_not_recorded), C(foreign_claims) (jobs that are not the probe's), C(examples) the first
      ids of each, C(seconds) how long the claimers took.
  returned: when the check ran
  type: dict
  sample: {jobs: 20, claimers: 4, calls: 24, claims: 20, claimed_once: 20, claimed_more_than_once: 0,
           max_claims_of_one_job: 1, lost: 0, unclaimed: 0, claim_not_recorded: 0, foreign_claims: 0,
           claimer_errors: [], seconds: 0.012}
end_to_end:
  description: The end-to-end job, who took it, its final status, how long it took and which completion records exist.
  returned: when O(end_to_end=true) and the check ran
  type: dict
  sample: {job_id: 5b0c..., service: mock, status: completed, worker_id: m1-worker-mock-0, seconds: 0.31,
           records: {job_hash: true, completed_set: true, attestation: true}}
workers:
  description:
    - C(active_count) ids in C(workers:active), C(scanned) of them read, C(registered) with their hash,
      C(fresh_count) with a live heartbeat key at most C(heartbeat_max_age_s) old; C(stale) (id, C(age_s),
      C(heartbeat_key), C(status)) and C(unregistered) list the first ones.
  returned: when O(check_workers=true) and the check ran
  type: dict
cleanup:
  description:
    - C(removed) keys, C(jobs:pending) members and hash fields deleted; C(errors) what could not be removed or
      looked for, with the names of what is left. Empty C(errors) means nothing of the probe remains.
  returned: always
  type: dict
  sample: {removed: 43, errors: []}
changed:
  description:
    - False when cleanup left nothing behind, the usual case; true when something of the probe remains in Redis
      (named in RV(cleanup)).
  returned: always
  type: bool
duration_ms:
  description: Time the probe spent, cleanup included, in milliseconds.
  returned: always
  type: float
timeout_s:
  description: The bound on the checks, in seconds (O(timeout) or the value derived from the other options).
  returned: always
  type: float
"""

import json
import math
import secrets
import time
from urllib.parse import quote, urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils import _job_queue as queue
from ansible_collections.emp.deploy.plugins.module_utils._http import (
    NOT_HTTP,
    TIMEOUT,
    TRUNCATED,
    HttpClient,
    HttpFailure,
    hostport,
    url_problem,
)
from ansible_collections.emp.deploy.plugins.module_utils._http import Deadline as HttpDeadline
from ansible_collections.emp.deploy.plugins.module_utils._redis import (
    REDIS_CONNECTION_ARGSPEC,
    REDIS_CONNECTION_MUTUALLY_EXCLUSIVE,
    connection_secrets,
    describe_target,
    explain_failure,
    open_connection,
    scrub,
    validate_connection_params,
)
from ansible_collections.emp.deploy.plugins.module_utils._resp import Deadline, RespConnection, RespError
from ansible_collections.emp.deploy.plugins.module_utils._stats import summarize

MEASURE_BUDGET_S = 30.0
POLL_S = 0.2
USER_AGENT = "emp.deploy.job_queue_probe"

PROBE_ARGSPEC: dict = dict(
    api_url=dict(type="str"),
    api_token=dict(type="str", no_log=True),
    api_timeout=dict(type="float", default=10.0),
    api_validate_certs=dict(type="bool", default=True),
    submit_jobs=dict(type="int", default=1),
    submit_priority=dict(type="int", default=1),
    score_tolerance_s=dict(type="float", default=60.0),
    claim_jobs=dict(type="int", default=20),
    claimers=dict(type="int", default=4),
    service_prefix=dict(type="str", default="emp-probe-"),
    end_to_end=dict(type="bool", default=False),
    end_to_end_service=dict(type="str", default="mock"),
    end_to_end_payload=dict(type="dict", default={}),
    end_to_end_priority=dict(type="int", default=50),
    end_to_end_timeout=dict(type="float", default=60.0),
    check_workers=dict(type="bool", default=True),
    min_workers=dict(type="int", default=1),
    heartbeat_max_age=dict(type="float", default=60.0),
    max_workers_scanned=dict(type="int", default=1000),
    timeout=dict(type="float"),
    cleanup_timeout=dict(type="float", default=10.0),
)


class CheckFailed(Exception):
    """A check could not measure; the message is meant for people."""


# --- options -------------------------------------------------------------------------------------

def _range_problem(params: dict, name: str, low: float, high: float | None = None) -> str | None:
    value = params[name]
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        return f"{name} must be {bound}, got {value:g}"
    return None


def _positive_problem(params: dict, names: tuple) -> str | None:
    for name in names:
        if params[name] is not None and params[name] <= 0:
            return f"{name} must be greater than 0, got {params[name]:g}"
    return None


def _api_problem(params: dict) -> str | None:
    needs_api = params["submit_jobs"] > 0 or params["end_to_end"]
    if params["api_url"] is None:
        if needs_api:
            return ("api_url is required to submit probe jobs (submit_jobs is "
                    f"{params['submit_jobs']}{', end_to_end is true' if params['end_to_end'] else ''}); give it, "
                    "or set submit_jobs: 0 and end_to_end: false to check Redis only")
        return None
    problem = url_problem(params["api_url"])
    return f"api_url cannot be used: {problem}" if problem else None


def _service_problem(params: dict) -> str | None:
    prefix = params["service_prefix"]
    if not prefix or len(prefix) > 64 or not all("!" <= char <= "~" for char in prefix):
        return f"service_prefix must be 1 to 64 printable ASCII characters without spaces, got {prefix!r}"
    if params["end_to_end"] and not (params["end_to_end_service"] or "").strip():
        return "end_to_end_service must name the service of the end-to-end job"
    return None


def validate_options(params: dict) -> str | None:
    """A sentence describing the first invalid option, or None. Never quotes a URL."""
    checks = (
        lambda: validate_connection_params(params),
        lambda: _positive_problem(params, ("api_timeout", "score_tolerance_s", "end_to_end_timeout",
                                           "heartbeat_max_age", "timeout", "cleanup_timeout")),
        lambda: _range_problem(params, "submit_jobs", 0, 100),
        lambda: _range_problem(params, "submit_priority", 1),
        lambda: _range_problem(params, "claim_jobs", 0, 1000),
        lambda: _range_problem(params, "claimers", 1, 64),
        lambda: _range_problem(params, "min_workers", 0),
        lambda: _range_problem(params, "max_workers_scanned", 1),
        lambda: _api_problem(params),
        lambda: _service_problem(params),
        lambda: _nothing_problem(params),
        lambda: _timeout_problem(params),
    )
    for check in checks:
        problem = check()
        if problem:
            return problem
    return None


def _nothing_problem(params: dict) -> str | None:
    if not (params["submit_jobs"] or params["claim_jobs"] or params["end_to_end"] or params["check_workers"]):
        return "nothing to check: submit_jobs and claim_jobs are 0, end_to_end and check_workers are false"
    return None


def _timeout_problem(params: dict) -> str | None:
    if params["timeout"] is not None and params["end_to_end"] and params["timeout"] <= params["end_to_end_timeout"]:
        return (f"timeout ({params['timeout']:g} s) must be longer than end_to_end_timeout "
                f"({params['end_to_end_timeout']:g} s), which the end-to-end check may wait")
    return None


def effective_timeout(params: dict) -> float:
    if params["timeout"] is not None:
        return float(params["timeout"])
    budget = params["connect_timeout"] + MEASURE_BUDGET_S
    return budget + (params["end_to_end_timeout"] if params["end_to_end"] else 0.0)


def secrets_of(params: dict) -> list:
    """Every secret of the options: Redis password and URL password, API token, API URL credentials."""
    found = connection_secrets(params)
    found += [params.get("api_token")]
    api_url = params.get("api_url") or ""
    userinfo = urlsplit(api_url).netloc.rpartition("@")[0] if "://" in api_url else ""
    found += [userinfo, userinfo.partition(":")[2]]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


# --- the API -------------------------------------------------------------------------------------

class Api:
    """JSON over HTTP to the EMP API, every request bounded by api_timeout and the probe's deadline."""

    def __init__(self, params: dict, deadline: HttpDeadline):
        self.base = params["api_url"].rstrip("/")
        self.where = hostport(self.base)
        self.timeout = params["api_timeout"]
        self.deadline = deadline
        self.headers = {"Accept": "application/json"}
        if params["api_token"]:
            self.headers["Authorization"] = f"Bearer {params['api_token']}"
        self.http = HttpClient(validate_certs=params["api_validate_certs"], user_agent=USER_AGENT)
        self.statuses: dict = {}

    def call(self, method: str, path: str, route: str, body=None) -> tuple[int, object]:
        """(status, parsed JSON or None); HttpFailure when nothing usable came back."""
        key = f"{method} {route}"
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            answer = self.http.request(method, self.base + path, body=data, headers=headers,
                                       deadline=self.deadline.within(self.timeout))
        except HttpFailure as exc:
            self._count(key, "unreachable" if exc.kind not in (TIMEOUT,) else "timeout")
            exc.request = key
            raise
        self._count(key, answer.status)
        try:
            parsed = json.loads(answer.text()) if answer.body.strip() else None
        except ValueError:
            parsed = None
        return answer.status, parsed

    def _count(self, key: str, status) -> None:
        per_route = self.statuses.setdefault(key, {})
        per_route[str(status)] = per_route.get(str(status), 0) + 1

    def submit(self, body: dict, ledger: queue.Ledger) -> str:
        """POST /api/jobs; the job id, or CheckFailed. A submission whose outcome is unknown (timeout, 5xx,
        broken answer) is entered in the ledger, so cleanup looks for the job the API may have stored."""
        before = time.time()
        try:
            status, data = self.call("POST", "/api/jobs", "/api/jobs", body)
        except HttpFailure as exc:
            if exc.kind in (TIMEOUT, TRUNCATED, NOT_HTTP):
                ledger.unknown_submissions.append((body["service_required"], body["priority"], before, time.time()))
            raise CheckFailed(exc.sentence("the API")) from None
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if status == 201 and isinstance(job_id, str) and job_id:
            return job_id
        if status >= 500 or status < 400:
            ledger.unknown_submissions.append((body["service_required"], body["priority"], before, time.time()))
        raise CheckFailed(f"the API at {self.where} answered POST /api/jobs with HTTP {status}: {_error_text(data)}")

    def get_job(self, job_id: str) -> tuple[int, object]:
        try:
            return self.call("GET", f"/api/jobs/{quote(job_id, safe='')}", "/api/jobs/:id")
        except HttpFailure as exc:
            raise CheckFailed(exc.sentence("the API")) from None


def _error_text(data) -> str:
    if isinstance(data, dict):
        parts = [str(data[key]) for key in ("error", "message") if data.get(key)]
        if parts:
            return ": ".join(parts)[:200]
    return "no job_id in the answer" if data is not None else "no JSON in the answer"


# --- the checks ----------------------------------------------------------------------------------

class Probe:
    """One run: the options, the deadline, the Redis connection, and the ledger of what it created."""

    def __init__(self, params: dict):
        self.params = params
        self.timeout = effective_timeout(params)
        self.deadline = Deadline(self.timeout, "timeout")
        self.http_deadline = HttpDeadline(self.timeout)
        self.run_id = secrets.token_hex(4)
        self.services = {"claim": f"{params['service_prefix']}{self.run_id}",
                         "submit": f"{params['service_prefix']}{self.run_id}-api"}
        self.target = describe_target(params)
        self.ledger = queue.Ledger()
        self.conn: RespConnection | None = None
        self.api_client = Api(params, self.http_deadline) if params["api_url"] else None
        self.secrets = secrets_of(params)
        self.residue = False  # something of the probe is (or may be) left in Redis after cleanup

    @property
    def api(self) -> Api:
        if self.api_client is None:  # validate_options requires api_url for every check that calls this
            raise CheckFailed("api_url is not set")
        return self.api_client

    def redis(self) -> RespConnection:
        """The connection, opened again after a failed exchange left it in an unknown state."""
        if self.conn is None:
            self.conn = open_connection(self.params, self.deadline)
        return self.conn

    def drop_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def explain(self, exc: BaseException) -> str:
        if isinstance(exc, CheckFailed):
            return scrub(str(exc), self.secrets)
        return explain_failure(exc, self.target, self.params)

    # --- submission, storage, retrieval --------------------------------------------------------

    def check_submit(self) -> tuple[dict, list]:
        params, service = self.params, self.services["submit"]
        sent, latencies = [], []
        for index in range(params["submit_jobs"]):
            payload = {"emp_probe": self.run_id, "index": index}
            body = {"service_required": service, "priority": params["submit_priority"], "payload": payload,
                    "max_retries": 0, "ctx": queue.probe_marker(self.run_id)}
            started, before = time.perf_counter(), time.time()
            job_id = self.api.submit(body, self.ledger)
            latencies.append((time.perf_counter() - started) * 1000.0)
            self.ledger.job(job_id)
            sent.append({"id": job_id, "payload": payload, "at": (before + time.time()) / 2.0})
        figures, problems = self.verify_storage(sent, service)
        figures["latency_ms"] = summarize(latencies)
        figures["http_statuses"] = {route: dict(counts) for route, counts in self.api.statuses.items()}
        return figures, problems

    def verify_storage(self, sent: list, service: str) -> tuple[dict, list]:
        priority = self.params["submit_priority"]
        replies = self.redis().pipeline([command for job in sent for command in (
            ("HGETALL", queue.job_key(job["id"])), ("ZSCORE", queue.PENDING_KEY, job["id"]))])
        mismatches, offsets = [], []
        stored = score_ok = retrieved = 0
        for index, job in enumerate(sent):
            fields, score = _pairs(replies[2 * index]), replies[2 * index + 1]
            wrong = _field_mismatches(job, fields, service, priority, queue.probe_marker(self.run_id))
            stored += not wrong
            mismatches += [f"job {job['id']}: {problem}" for problem in wrong]
            offset = _score_offset(score, priority, job["at"])
            if offset is None:
                mismatches.append(f"job {job['id']}: not in {queue.PENDING_KEY}")
            else:
                offsets.append(offset)
                if abs(offset) <= self.params["score_tolerance_s"] + _score_ulp_s(priority):
                    score_ok += 1
                else:
                    mismatches.append(f"job {job['id']}: {queue.PENDING_KEY} score {float(score):.0f} implies a "
                                      f"submission {offset:+.0f} s from the probe's clock, more than "
                                      f"score_tolerance_s {self.params['score_tolerance_s']:g} (the contract: "
                                      f"priority x 10^15 - submission time in seconds)")
            problem = self.verify_retrieval(job, service)
            retrieved += problem is None
            mismatches += [problem] if problem else []
        total = len(sent)
        figures = {"jobs": total, "submitted": total, "stored": stored, "score_ok": score_ok, "retrieved": retrieved,
                   "score_offset_s": max(offsets, key=abs) if offsets else None, "mismatches": mismatches[:20]}
        problems = []
        for name, count, what in (("stored", stored, "stored in Redis as submitted"),
                                  ("score_ok", score_ok, f"queued in {queue.PENDING_KEY} with the contract's score"),
                                  ("retrieved", retrieved, "read back as submitted with GET /api/jobs/:id")):
            if count < total:
                problems.append(f"{total - count} of {total} probe jobs submitted through the API were not {what}: "
                                f"{next((m for m in mismatches), '')}")
        return figures, problems

    def verify_retrieval(self, job: dict, service: str) -> str | None:
        status, data = self.api.get_job(job["id"])
        found = data.get("job") if isinstance(data, dict) else None
        if status != 200 or not isinstance(found, dict):
            return f"job {job['id']}: GET /api/jobs/:id answered HTTP {status}: {_error_text(data)}"
        if found.get("id") != job["id"] or found.get("service_required") != service or found.get("status") != "pending":
            return (f"job {job['id']}: GET /api/jobs/:id returned id {found.get('id')!r}, service "
                    f"{found.get('service_required')!r}, status {found.get('status')!r}")
        if str(found.get("priority")) != str(self.params["submit_priority"]):
            return f"job {job['id']}: GET /api/jobs/:id returned priority {found.get('priority')!r}"
        return None

    # --- claim atomicity ---------------------------------------------------------------------------

    def check_claim(self) -> tuple[dict, list]:
        service = self.services["claim"]
        ids = queue.seed_jobs(self.redis(), self.ledger, service, self.params["claim_jobs"], self.run_id)
        started = time.perf_counter()
        claimers = queue.run_claimers(lambda: open_connection(self.params, self.deadline), self.ledger, service,
                                      len(ids), self.params["claimers"], self.deadline)
        seconds = round(time.perf_counter() - started, 3)
        for claimer in claimers:  # a claim handed a job that is not ours: its active entry is the claimer's too
            for job_id in claimer.claims:
                self.ledger.field(queue.active_key(claimer.worker_id), job_id)
        jobs, active = queue.claim_state(self.redis(), ids, claimers)
        figures, problems = queue.judge_claims(ids, claimers, jobs, active)
        figures["seconds"] = seconds
        figures["claimer_errors"] = [self.explain_text(text) for text in figures["claimer_errors"]]
        return figures, [self.explain_text(problem) for problem in problems]

    def explain_text(self, text: str) -> str:
        return scrub(text, self.secrets)

    # --- end to end --------------------------------------------------------------------------------

    def check_end_to_end(self) -> tuple[dict, list]:
        params = self.params
        service = params["end_to_end_service"].strip()
        body = {"service_required": service, "priority": params["end_to_end_priority"],
                "payload": params["end_to_end_payload"], "max_retries": 0, "ctx": queue.probe_marker(self.run_id)}
        started = time.monotonic()
        job_id = self.api.submit(body, self.ledger)
        queue.expect_completion(self.ledger, job_id)
        wait = self.deadline.sooner(params["end_to_end_timeout"], "end_to_end_timeout")
        state = queue.job_progress(self.redis(), self.ledger, job_id)
        while state["status"] not in queue.FINISHED and wait.remaining() > 0:
            time.sleep(min(POLL_S, max(wait.remaining(), 0.0)))
            state = queue.job_progress(self.redis(), self.ledger, job_id)
        figures = {"job_id": job_id, "service": service, "status": state["status"], "worker_id": state["worker_id"],
                   "seconds": round(time.monotonic() - started, 3)}
        return figures, self.judge_end_to_end(figures, state, wait)

    def judge_end_to_end(self, figures: dict, state: dict, wait: Deadline) -> list:
        service, status = figures["service"], state["status"]
        if status == "completed":
            records = queue.completion_records(self.redis(), figures["job_id"])
            records["job_hash"] = bool(state["completed_at"])
            figures["records"] = records
            missing = [name for name, present in records.items() if not present]
            if missing:
                return [f"the end-to-end job ({service}) was completed by {state['worker_id']} but its completion is "
                        f"not recorded: missing {', '.join(missing)}"]
            return []
        if status in queue.FINISHED:
            return [f"the end-to-end job ({service}) ended {status} on worker {state['worker_id']}: "
                    f"{state['error'] or 'no error given'}"]
        held = f"claimed by {state['worker_id']}, status {status}" if state["worker_id"] else \
            f"still {status or 'missing'}, no worker claimed it"
        return [f"the end-to-end job ({service}) was not completed {wait.phrase()}: {held}"]

    # --- workers -----------------------------------------------------------------------------------

    def check_workers(self) -> tuple[dict, list]:
        workers = queue.read_workers(self.redis(), self.params["max_workers_scanned"], self.params["heartbeat_max_age"])
        return workers, queue.worker_problems(workers, self.params["min_workers"])

    # --- the run -----------------------------------------------------------------------------------

    def plan(self) -> list:
        params, steps = self.params, []
        if params["check_workers"]:
            steps.append(f"read workers:active and the heartbeats: at least {params['min_workers']} fresh within "
                         f"{params['heartbeat_max_age']:g} s")
        if params["submit_jobs"]:
            steps.append(f"submit {queue.plural(params['submit_jobs'], 'probe job')} of service "
                         f"{self.services['submit']} through POST /api/jobs at {hostport(params['api_url'])}, read "
                         f"them back from Redis and GET /api/jobs/:id")
        if params["claim_jobs"]:
            steps.append(f"write {queue.plural(params['claim_jobs'], 'synthetic job')} of service "
                         f"{self.services['claim']} and let {params['claimers']} concurrent claimers call "
                         f"{queue.FUNCTION_NAME} until nil")
        if params["end_to_end"]:
            steps.append(f"submit one {params['end_to_end_service']} job and wait up to "
                         f"{params['end_to_end_timeout']:g} s for a worker to complete it")
        steps.append(f"remove everything it created, within cleanup_timeout {params['cleanup_timeout']:g} s")
        return steps

    def checks(self) -> list:
        params = self.params
        chosen = []
        if params["check_workers"]:
            chosen.append(("workers", self.check_workers))
        if params["submit_jobs"]:
            chosen.append(("submit", self.check_submit))
        if params["claim_jobs"]:
            chosen.append(("claim", self.check_claim))
        if params["end_to_end"]:
            chosen.append(("end_to_end", self.check_end_to_end))
        return chosen

    def run(self) -> dict:
        started = time.perf_counter()
        result: dict = {"changed": False, "target": self.target, "run_id": self.run_id, "services": self.services,
                        "timeout_s": self.timeout}
        problems: list = []
        try:
            self.redis()
            result["reachable"] = True
        except Exception as exc:  # pylint: disable=broad-except  # nothing was created yet: nothing to clean
            result.update(reachable=False, error=self.explain(exc))
            problems.append(result["error"])
        try:
            if result["reachable"]:
                for name, check in self.checks():
                    problems += self.run_check(name, check, result)
        finally:  # whatever happened, what the probe wrote goes
            result["cleanup"] = self.cleanup()
        if result["cleanup"]["errors"]:
            problems.append(f"cleanup left something of the probe behind: {result['cleanup']['errors'][0]}")
            result["changed"] = self.residue
        result["healthy"] = not problems
        result["problems"] = problems
        result["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        return result

    def run_check(self, name: str, check, result: dict) -> list:
        if self.deadline.remaining() <= 0:
            return [f"the {name} check did not run: the probe's overall timeout of {self.timeout:g} s ran out"]
        try:
            result[name], problems = check()
            return problems
        except (CheckFailed, RespError, OSError) as exc:
            if isinstance(exc, RespError):
                self.drop_connection()
            return [f"the {name} check could not measure: {self.explain(exc)}"]
        except Exception as exc:  # pylint: disable=broad-except  # a sentence, and the next checks and cleanup still run
            self.drop_connection()
            return [f"the {name} check failed unexpectedly: {type(exc).__name__}: {self.explain_text(str(exc))}"]

    # --- cleanup -----------------------------------------------------------------------------------

    def cleanup(self) -> dict:
        """Removes what the ledger holds within cleanup_timeout, with a new connection if need be, then reads it back."""
        removed, errors = 0, []
        if self.ledger.empty:
            self.drop_connection()
            return {"removed": 0, "errors": []}
        self.drop_connection()  # the old one may be mid-exchange after a timeout
        limit = Deadline(self.params["cleanup_timeout"], "cleanup_timeout")
        try:
            self.conn = open_connection(self.params, limit)
            self.settle(limit)
            removed = queue.remove(self.conn, self.ledger)
            left = queue.leftovers(self.conn, self.ledger)
        except Exception as exc:  # pylint: disable=broad-except  # reported, never raised: the result must return
            left = []
            self.residue = True
            errors.append(f"could not remove {self.ledger.describe()} of the probe: {self.explain(exc)}; "
                          f"keys: {queue.shown(sorted(self.ledger.keys))}")
        finally:
            self.drop_connection()
        errors += self.cleanup_errors(left)
        self.residue = self.residue or bool(left or self.ledger.in_flight)
        return {"removed": removed, "errors": errors}

    def settle(self, limit: Deadline) -> None:
        """Before removing: wait for an end-to-end job a worker still holds, and look for jobs the API stored
        without telling their id, until both are settled or cleanup_timeout runs out."""
        while True:
            for job_id in list(self.ledger.in_flight):
                queue.job_progress(self.conn, self.ledger, job_id)
            if self.ledger.unknown_submissions:
                queue.sweep_unknown(self.conn, self.ledger, self.run_id, self.params["score_tolerance_s"])
            if (not self.ledger.in_flight and not self.ledger.unknown_submissions) or limit.remaining() < 2 * POLL_S:
                return
            time.sleep(POLL_S)

    def cleanup_errors(self, left: list) -> list:
        errors = []
        if left:
            errors.append(f"{queue.plural(len(left), 'item')} of the probe still in Redis: {queue.shown(left)}")
        for job_id, worker in self.ledger.in_flight.items():
            errors.append(f"the end-to-end job {job_id} was still held by worker {worker} at the end of cleanup; it "
                          f"was left alone, and so will be the records the worker writes when it finishes "
                          f"(job:{job_id}, jobs:completed[{job_id}], {queue.completion_keys(job_id)[0]})")
        if self.ledger.unknown_submissions:
            count = len(self.ledger.unknown_submissions)
            errors.append(f"{queue.plural(count, 'submission')} to the API got no usable answer and no matching job "
                          f"turned up in {queue.PENDING_KEY} within cleanup_timeout; the API may still store "
                          f"{'it' if count == 1 else 'them'} (service {', '.join(sorted({entry[0] for entry in self.ledger.unknown_submissions}))})")
        return errors


def _pairs(reply) -> dict:
    if isinstance(reply, dict):
        return reply
    if not isinstance(reply, list):
        return {}
    return dict(zip(reply[::2], reply[1::2]))


def _field_mismatches(job: dict, fields: dict, service: str, priority: int, ctx: dict) -> list:
    if not fields:
        return [f"no hash at {queue.job_key(job['id'])}"]
    expected = {"id": job["id"], "service_required": service, "priority": str(priority), "status": "pending",
                "retry_count": "0"}
    wrong = [f"{name} is {fields.get(name)!r}, expected {value!r}" for name, value in expected.items()
             if fields.get(name) != value]
    if _json_or_none(fields.get("payload")) != job["payload"]:
        wrong.append("payload differs from the one submitted")
    if _json_or_none(fields.get("ctx")) != ctx:
        wrong.append("ctx differs from the one submitted")
    if queue.parse_iso(fields.get("created_at")) is None:
        wrong.append(f"created_at {fields.get('created_at')!r} is not an ISO 8601 time")
    return wrong


def _json_or_none(text):
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _score_offset(score, priority: int, at: float) -> float | None:
    """Seconds between the submission time the score implies and the probe's own clock, or None when not queued."""
    if score is None:
        return None
    implied = priority * queue.PRIORITY_FACTOR - float(score)
    return round(implied - at, 3)


def _score_ulp_s(priority: int) -> float:
    """The resolution of a double at priority x 10^15: 8 s around priority 50, so the offset cannot be finer."""
    return math.ulp(priority * queue.PRIORITY_FACTOR) + 1.0


def main() -> None:
    argument_spec = dict(REDIS_CONNECTION_ARGSPEC)
    argument_spec.update(PROBE_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, mutually_exclusive=REDIS_CONNECTION_MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    params = dict(module.params)
    module.no_log_values.update(secrets_of(params))
    invalid = validate_options(params)
    if invalid:
        module.fail_json(msg=scrub(invalid, secrets_of(params)), changed=False)
    probe = Probe(params)
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, plan=probe.plan(), run_id=probe.run_id, services=probe.services,
                         target=probe.target,
                         msg="check mode: job_queue_probe writes probe jobs, so it did nothing (see plan)")
    result = probe.run()
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
