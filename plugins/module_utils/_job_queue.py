# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Redis side of emp.deploy.job_queue_probe: the EMP key schema, synthetic probe jobs, concurrent
claimers over findMatchingJob, and the ledger of what the probe created so that cleanup removes it all.

Everything the probe writes is first entered in the Ledger, before the command that writes it is sent:
a command that times out may still have been applied, and cleanup must cover it too.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

from ansible_collections.emp.deploy.plugins.module_utils._redis import scan_members
from ansible_collections.emp.deploy.plugins.module_utils._resp import Deadline, RespError

# The EMP key schema (docs/emp-contracts.md); findMatchingJob reads PENDING_KEY itself, so these are fixed.
PENDING_KEY = "jobs:pending"
COMPLETED_KEY = "jobs:completed"
FAILED_KEY = "jobs:failed"
WORKERS_KEY = "workers:active"
PRIORITY_FACTOR = 1e15
FUNCTION_NAME = "findMatchingJob"
LIST_LIMIT = 20  # ids shown in figures and messages


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def active_key(worker_id: str) -> str:
    return f"jobs:active:{worker_id}"


def contract_score(priority: int, epoch_s: float) -> float:
    """The pending score the contract gives a job: priority x 10^15 - submission time in whole seconds."""
    return priority * PRIORITY_FACTOR - math.floor(epoch_s)


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text) -> float | None:
    """Epoch seconds of an ISO 8601 time such as 2026-01-01T00:00:00.000Z, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def shown(ids) -> str:
    ids = list(ids)
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


class Ledger:
    """What the probe created: keys to delete, jobs:pending members, hash fields, and API submissions
    whose outcome is unknown (looked for by score window and service name at cleanup)."""

    def __init__(self) -> None:
        self.keys: set = set()
        self.pending: set = set()
        self.fields: dict = {}
        self.unknown_submissions: list = []  # (service, priority, t_before, t_after)
        self.in_flight: dict = {}  # end-to-end job id -> worker id, while a real worker holds it

    def job(self, job_id: str) -> None:
        """A job of the probe: its hash and its jobs:pending entry."""
        self.keys.add(job_key(job_id))
        self.pending.add(job_id)

    def field(self, key: str, name: str) -> None:
        self.fields.setdefault(key, set()).add(name)

    @property
    def empty(self) -> bool:
        return not (self.keys or self.pending or self.fields or self.unknown_submissions)

    def describe(self) -> str:
        parts = [plural(len(self.keys), "key")]
        if self.pending:
            parts.append(f"{plural(len(self.pending), 'member')} of {PENDING_KEY}")
        count = sum(len(names) for names in self.fields.values())
        if count:
            parts.append(plural(count, "hash field"))
        return ", ".join(parts)


def synthetic_job(job_id: str, service: str, priority: int, run_id: str) -> dict:
    """A job hash in the contract's shape, for a service no worker serves."""
    return {
        "id": job_id, "service_required": service, "priority": str(priority),
        "payload": json.dumps({"emp_probe": run_id}), "requirements": "{}", "customer_id": "",
        "created_at": iso_now(), "status": "pending", "retry_count": "0", "max_retries": "0",
        "workflow_id": "", "workflow_priority": "", "workflow_datetime": "", "current_step": "",
        "total_steps": "", "ctx": "{}",
    }


def seed_priority(top_score) -> int:
    """A priority whose contract score is above every pending job, so the synthetic jobs are the first
    ones findMatchingJob looks at and a claimer never has to scan past real jobs."""
    if top_score is None:
        return 100
    return max(100, math.floor(float(top_score) / PRIORITY_FACTOR) + 2)


def seed_jobs(conn, ledger: Ledger, service: str, count: int, run_id: str) -> list:
    """Writes `count` synthetic jobs (hash + jobs:pending) in one MULTI; returns their ids."""
    top = conn.execute("ZREVRANGE", PENDING_KEY, 0, 0, "WITHSCORES")
    priority = seed_priority(top[1] if top else None)
    score = contract_score(priority, time.time())
    ids = [str(uuid.uuid4()) for _index in range(count)]
    commands: list = [("MULTI",)]
    for job_id in ids:
        ledger.job(job_id)
        ledger.keys.add(f"progress:{job_id}")  # the EMP function adds the claim to the job's progress stream
        flat = [item for pair in synthetic_job(job_id, service, priority, run_id).items() for item in pair]
        commands.append(("HSET", job_key(job_id), *flat))
    zadd: list = ["ZADD", PENDING_KEY]
    for job_id in ids:
        zadd += [repr(score), job_id]
    commands += [tuple(zadd), ("EXEC",)]
    replies = conn.pipeline(commands)
    executed = replies[-1]
    if not isinstance(executed, list):
        raise RespError(f"seeding the synthetic jobs failed: {executed or replies[1]}")
    for reply in executed:
        if isinstance(reply, Exception):
            raise reply
    return ids


def claimer_capabilities(service: str, worker_id: str) -> str:
    """A worker that serves only the probe's synthetic service, with no hardware or model needs."""
    return json.dumps({"worker_id": worker_id, "machine_id": "emp-deploy-probe", "connector": "emp-deploy-probe",
                       "job_service_required_map": [service], "models": [], "hardware": {},
                       "customer_access": {"isolation": "none"}})


class BrokenStart(RespError):
    """A claimer did not start: another one failed to connect, or the deadline passed at the start line."""


class Claimer(threading.Thread):
    """One concurrent claimer: its own connection, FCALL findMatchingJob until it answers nil."""

    def __init__(self, open_connection, worker_id: str, service: str, max_scan: int, max_calls: int,
                 start_line: threading.Barrier, deadline: Deadline):
        super().__init__(name=worker_id, daemon=True)
        self.open_connection = open_connection
        self.worker_id = worker_id
        self.capabilities = claimer_capabilities(service, worker_id)
        self.max_scan, self.max_calls = max_scan, max_calls
        self.start_line = start_line
        self.deadline = deadline
        self.claims: list = []
        self.calls = 0
        self.error: BaseException | None = None
        self.exhausted = False  # the function answered nil: nothing left for this claimer

    def run(self) -> None:
        conn = None
        try:
            conn = self.open_connection()
            self.start_line.wait(max(self.deadline.remaining(), 0.0))
            while self.calls < self.max_calls and self.deadline.remaining() > 0:
                self.calls += 1
                raw = conn.execute("FCALL", FUNCTION_NAME, 0, self.capabilities, self.max_scan)
                if raw is None:
                    self.exhausted = True
                    break
                self.claims.append(claimed_id(raw))
        except threading.BrokenBarrierError:
            self.error = self.error or BrokenStart("the claimers could not start together (another one failed first, "
                                                   "or the probe's timeout ran out)")
        except Exception as exc:  # pylint: disable=broad-except  # reported as a problem, never a traceback
            self.error = exc
            self.start_line.abort()
        finally:
            if conn is not None:
                conn.close()


def claimed_id(raw) -> str:
    """The jobId of findMatchingJob's JSON answer; anything else is named as it came."""
    try:
        answer = json.loads(raw)
        return str(answer["jobId"])
    except (TypeError, ValueError, KeyError):
        return f"(unreadable answer: {str(raw)[:60]})"


def run_claimers(open_connection, ledger: Ledger, service: str, jobs: int, claimers: int,
                 deadline: Deadline) -> list:
    """Starts every claimer at once (a barrier) and waits for all; returns the finished claimers."""
    start_line = threading.Barrier(claimers)
    threads = []
    for index in range(claimers):
        worker_id = f"{service}-claimer-{index}"
        ledger.keys.add(active_key(worker_id))  # only the probe's claimers write there
        ledger.keys.add(f"worker:{worker_id}")  # the EMP function marks the claiming worker busy in its hash
        # a correct function answers nil after the last job: one call more than there are jobs is enough
        threads.append(Claimer(open_connection, worker_id, service, jobs, jobs + 1, start_line, deadline))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline.remaining(), 0.0) + 1.0)
    return threads


def claim_state(conn, ids: list, claimers: list) -> tuple[dict, dict]:
    """After the claimers: each synthetic job's pending score, status and worker; each claimer's active jobs."""
    commands: list = []
    for job_id in ids:
        commands += [("ZSCORE", PENDING_KEY, job_id), ("HMGET", job_key(job_id), "status", "worker_id")]
    commands += [("HKEYS", active_key(claimer.worker_id)) for claimer in claimers]
    replies = conn.pipeline(commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    jobs = {}
    for index, job_id in enumerate(ids):
        score, (status, worker) = replies[2 * index], replies[2 * index + 1]
        jobs[job_id] = {"pending": score is not None, "status": status, "worker_id": worker}
    active = {claimer.worker_id: set(replies[2 * len(ids) + i]) for i, claimer in enumerate(claimers)}
    return jobs, active


def judge_claims(ids: list, claimers: list, jobs: dict, active: dict) -> tuple[dict, list]:
    """Figures and problems of the claim-atomicity check: every job claimed exactly once, none lost."""
    ours = set(ids)
    counts: Counter = Counter()
    owners: dict = {}
    for claimer in claimers:
        for job_id in claimer.claims:
            counts[job_id] += 1
            owners.setdefault(job_id, []).append(claimer.worker_id)
    foreign = sorted(job_id for job_id in counts if job_id not in ours)
    twice = sorted(job_id for job_id in ids if counts[job_id] > 1)
    never = [job_id for job_id in ids if counts[job_id] == 0]
    lost = sorted(job_id for job_id in never if not jobs[job_id]["pending"])
    unclaimed = sorted(job_id for job_id in never if jobs[job_id]["pending"])
    unrecorded = sorted(job_id for job_id in ids if counts[job_id] == 1 and not _claim_recorded(
        job_id, jobs[job_id], owners[job_id][0], active))
    failed = sorted((claimer for claimer in claimers if claimer.error),
                    key=lambda claimer: isinstance(claimer.error, BrokenStart))
    errors = [f"{claimer.worker_id}: {claimer.error}" for claimer in failed]
    timed_out = [claimer.worker_id for claimer in claimers
                 if not claimer.exhausted and not claimer.error and claimer.calls < claimer.max_calls]
    figures = {
        "jobs": len(ids), "claimers": len(claimers), "calls": sum(claimer.calls for claimer in claimers),
        "claims": sum(counts.values()), "claimed_once": sum(1 for job_id in ids if counts[job_id] == 1),
        "claimed_more_than_once": len(twice), "max_claims_of_one_job": max((counts[j] for j in ids), default=0),
        "lost": len(lost), "unclaimed": len(unclaimed), "claim_not_recorded": len(unrecorded),
        "foreign_claims": len(foreign), "claimer_errors": errors[:LIST_LIMIT],
        "examples": {"claimed_more_than_once": twice[:LIST_LIMIT], "lost": lost[:LIST_LIMIT],
                     "unclaimed": unclaimed[:LIST_LIMIT], "claim_not_recorded": unrecorded[:LIST_LIMIT],
                     "foreign": foreign[:LIST_LIMIT]},
    }
    return figures, claim_problems(figures, twice, lost, unclaimed, unrecorded, foreign, errors, timed_out)


def _claim_recorded(job_id: str, job: dict, owner: str, active: dict) -> bool:
    """A single claim leaves: status assigned to the claimer, out of jobs:pending, in its jobs:active hash."""
    return (job["status"] == "assigned" and job["worker_id"] == owner and not job["pending"]
            and job_id in active.get(owner, ()))


def claim_problems(figures: dict, twice: list, lost: list, unclaimed: list, unrecorded: list, foreign: list,
                   errors: list, timed_out: list) -> list:
    total = figures["jobs"]
    problems = []
    if twice:
        most = figures["max_claims_of_one_job"]
        how = "twice" if most == 2 else f"more than once (up to {most} times)"
        problems.append(f"{len(twice)} of {total} synthetic jobs claimed {how} by {figures['claimers']} concurrent "
                        f"claimers: {FUNCTION_NAME} does not claim atomically ({shown(twice)})")
    if lost:
        problems.append(f"{len(lost)} of {total} synthetic jobs lost: gone from {PENDING_KEY} but handed to no "
                        f"claimer ({shown(lost)})")
    if foreign:
        problems.append(f"{FUNCTION_NAME} handed {plural(len(foreign), 'job')} that {'is' if len(foreign) == 1 else 'are'} "
                        f"not the probe's to claimers "
                        f"that serve only the probe's synthetic service ({shown(foreign)}): it ignores the service "
                        f"match; those real jobs were taken from the queue and need requeueing")
    if unrecorded:
        problems.append(f"{len(unrecorded)} of {total} claimed synthetic jobs lack their claim record (job hash "
                        f"status=assigned with the claimer's worker_id, gone from {PENDING_KEY}, listed in "
                        f"jobs:active:<worker>) ({shown(unrecorded)})")
    if errors and "function not found" in errors[0].lower():
        problems.append(f"{FUNCTION_NAME} is not loaded on this Redis (FCALL answered: {errors[0].split(': ', 1)[1]}); "
                        f"the claim-atomicity check could not run")
    elif errors:
        problems.append(f"{plural(len(errors), 'claimer')} failed: {errors[0]}")
    elif unclaimed and timed_out:
        problems.append(f"{len(unclaimed)} of {total} synthetic jobs were still pending when the claimers stopped: "
                        f"the probe's timeout ran out")
    elif unclaimed:
        problems.append(f"{len(unclaimed)} of {total} synthetic jobs were never claimed, although the claimers called "
                        f"{FUNCTION_NAME} {figures['calls']} times until it answered nil or each had called it once "
                        f"more than there are jobs ({shown(unclaimed)})")
    return problems


# --- worker registration and heartbeats ----------------------------------------------------------

def heartbeat_age(now: float, last_heartbeat, key_value) -> float | None:
    """Seconds since the worker's last heartbeat: its hash's last_heartbeat, else the heartbeat key's value."""
    for text in (last_heartbeat, key_value):
        moment = parse_iso(text)
        if moment is not None:
            return round(max(now - moment, 0.0), 3)
    return None


def read_workers(conn, limit: int, max_age: float) -> dict:
    """Registered workers (workers:active with their worker:{id} hash) and how fresh their heartbeat is,
    against the Redis server's clock (TIME), one pipelined round trip after the bounded scan."""
    ids, truncated = scan_members(conn, WORKERS_KEY, limit)
    ids.sort()
    commands: list = [("SCARD", WORKERS_KEY), ("TIME",)]
    for worker_id in ids:
        commands += [("HMGET", f"worker:{worker_id}", "worker_id", "last_heartbeat", "status"),
                     ("PTTL", f"worker:{worker_id}:heartbeat"), ("GET", f"worker:{worker_id}:heartbeat")]
    replies = conn.pipeline(commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    now = int(replies[1][0]) + int(replies[1][1]) / 1e6
    fresh, stale, unregistered = [], [], []
    for index, worker_id in enumerate(ids):
        (registered, last, status), ttl, value = replies[2 + 3 * index: 5 + 3 * index]
        age = heartbeat_age(now, last, value)
        live = ttl > 0 or ttl == -1
        if registered is None:
            unregistered.append(worker_id)
        if live and age is not None and age <= max_age:
            fresh.append(worker_id)
        else:
            stale.append({"id": worker_id, "age_s": age, "heartbeat_key": live, "status": status})
    return {"active_count": max(int(replies[0]), len(ids)), "scanned": len(ids), "truncated": truncated,
            "registered": len(ids) - len(unregistered), "fresh_count": len(fresh), "stale_count": len(stale),
            "heartbeat_max_age_s": max_age, "fresh": fresh[:LIST_LIMIT], "stale": stale[:LIST_LIMIT],
            "unregistered": unregistered[:LIST_LIMIT]}


def _staleness(worker: dict) -> str:
    if not worker["heartbeat_key"]:
        return "no heartbeat key"
    if worker["age_s"] is None:
        return "no readable heartbeat time"
    return f"last heartbeat {worker['age_s']:.0f} s ago"


def worker_problems(workers: dict, minimum: int) -> list:
    problems = []
    if workers["fresh_count"] < minimum:
        shown_stale = ", ".join(f"{w['id']} ({_staleness(w)})" for w in workers["stale"][:3])
        scope = " of those scanned" if workers["truncated"] else ""
        problems.append(f"{workers['fresh_count']} of {workers['active_count']} registered workers{scope} have a fresh "
                        f"heartbeat (within {workers['heartbeat_max_age_s']:g} s), expected at least {minimum}"
                        + (f"; stale: {shown_stale}" if shown_stale else ""))
    if workers["unregistered"]:
        problems.append(f"{plural(len(workers['unregistered']), 'id')} in {WORKERS_KEY} without a worker:<id> hash "
                        f"(incomplete registration): {shown(workers['unregistered'])}")
    return problems


# --- end to end ----------------------------------------------------------------------------------

FINISHED = ("completed", "failed", "cancelled", "timeout", "unworkable")
HELD = ("assigned", "accepted", "in_progress")


def completion_keys(job_id: str) -> list:
    """What a worker writes when it finishes a job outside a workflow, first attempt (max_retries 0)."""
    return [f"worker:completion:step-id:{job_id}:attempt:1", f"worker:failure:step-id:{job_id}:attempt:1",
            f"worker:failure:step-id:{job_id}:permanent", f"progress:{job_id}"]


def expect_completion(ledger: Ledger, job_id: str) -> None:
    """Enters the records a real worker will write for the end-to-end job, so cleanup removes them."""
    ledger.job(job_id)
    ledger.keys.update(completion_keys(job_id))
    ledger.field(COMPLETED_KEY, job_id)
    ledger.field(FAILED_KEY, job_id)


def job_progress(conn, ledger: Ledger, job_id: str) -> dict:
    status, worker, completed_at, error = conn.execute("HMGET", job_key(job_id), "status", "worker_id",
                                                       "completed_at", "error")
    if worker:
        ledger.field(active_key(worker), job_id)
        if status in HELD:
            ledger.in_flight[job_id] = worker
        else:
            ledger.in_flight.pop(job_id, None)
    return {"status": status, "worker_id": worker or None, "completed_at": completed_at or None, "error": error}


def completion_records(conn, job_id: str) -> dict:
    exists_completed, attestation = conn.pipeline([("HEXISTS", COMPLETED_KEY, job_id),
                                                   ("EXISTS", completion_keys(job_id)[0])])
    return {"completed_set": exists_completed == 1, "attestation": attestation == 1}


# --- cleanup -------------------------------------------------------------------------------------

def probe_marker(run_id: str) -> dict:
    """The ctx every job the probe submits carries: how cleanup tells its jobs from real ones of the same service."""
    return {"emp_probe": run_id}


def _is_probe_job(fields: list, service: str, run_id: str) -> bool:
    name, ctx = fields
    try:
        return name == service and json.loads(ctx or "null") == probe_marker(run_id)
    except ValueError:
        return False


def sweep_unknown(conn, ledger: Ledger, run_id: str, tolerance_s: float) -> int:
    """Finds jobs the API may have stored although it never told their id: in jobs:pending within the
    submission's score window, of its service and with the run's ctx marker (never a real job of the same
    service). Returns how many submissions are still unaccounted for."""
    left = []
    for service, priority, before, after in ledger.unknown_submissions:
        low = contract_score(priority, after + tolerance_s) - 1
        high = contract_score(priority, before - tolerance_s) + 1
        candidates = conn.execute("ZRANGEBYSCORE", PENDING_KEY, repr(low), repr(high), "LIMIT", 0, 1000)
        fields = conn.pipeline([("HMGET", job_key(job_id), "service_required", "ctx") for job_id in candidates])
        found = [job_id for job_id, pair in zip(candidates, fields) if isinstance(pair, list)
                 and _is_probe_job(pair, service, run_id) and job_id not in ledger.pending]
        if found:
            ledger.job(found[0])
        else:
            left.append((service, priority, before, after))
    ledger.unknown_submissions = left
    return len(left)


def remove(conn, ledger: Ledger) -> int:
    """Deletes every key, pending member and hash field of the ledger in one round trip; returns the count removed.
    A job a real worker still holds is left alone: deleting its hash now would leave a half record when it finishes."""
    held = set(ledger.in_flight)
    keys = sorted(key for key in ledger.keys if not any(job_id in key for job_id in held))
    members = sorted(ledger.pending - held)
    commands: list = []
    if members:
        commands.append(("ZREM", PENDING_KEY, *members))
    if keys:
        commands.append(("DEL", *keys))
    for key, names in sorted(ledger.fields.items()):
        names = sorted(name for name in names if name not in held)
        if names:
            commands.append(("HDEL", key, *names))
    replies = conn.pipeline(commands)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return sum(replies)


def leftovers(conn, ledger: Ledger) -> list:
    """What is still there after remove(): keys, pending members and hash fields, as readable names."""
    keys = sorted(ledger.keys)
    members = sorted(ledger.pending)
    fields = [(key, name) for key, names in sorted(ledger.fields.items()) for name in sorted(names)]
    replies = conn.pipeline([("EXISTS", key) for key in keys] + [("ZSCORE", PENDING_KEY, m) for m in members]
                            + [("HEXISTS", key, name) for key, name in fields])
    found = [key for key, reply in zip(keys, replies) if reply == 1]
    found += [f"{PENDING_KEY}[{member}]" for member, reply in zip(members, replies[len(keys):]) if reply is not None]
    found += [f"{key}[{name}]" for (key, name), reply in zip(fields, replies[len(keys) + len(members):]) if reply == 1]
    return found
