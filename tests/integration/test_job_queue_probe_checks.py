"""emp.deploy.job_queue_probe against real parts: a private redis-server with the sandbox's jobMatching
library (or a deliberately broken variant), the sandbox API and worker as processes.

Every test ends by comparing Redis with a snapshot taken before the probe: whatever the path
(healthy, failed check, Redis or API down, timeout), nothing of the probe may remain.
"""
from __future__ import annotations

import threading
import time

import pytest
import requests

from conftest import free_port
from job_queue_support import (  # noqa: F401  # pylint: disable=unused-import
    client,
    load,
    queue_redis,
    run_probe,
    snapshot,
    start_api,
    start_service,
    start_worker,
)

# pylint: disable=redefined-outer-name
REDIS_ONLY = {"submit_jobs": 0, "check_workers": False}


def wait_for_worker(server, timeout: float = 30.0) -> None:
    """Until the worker has registered and written its machine info: its own keys are in place before the snapshot."""
    conn = client(server)
    deadline = time.monotonic() + timeout
    while not (conn.scard("workers:active") and conn.exists("machine:m1:info")):
        assert time.monotonic() < deadline, "the sandbox worker did not register"
        time.sleep(0.05)
    conn.close()


def test_healthy_queue_every_check_holds_and_nothing_remains(queue_redis, start_service, tmp_path):
    api = start_api(start_service, queue_redis)
    start_worker(start_service, queue_redis, tmp_path)
    wait_for_worker(queue_redis)
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, api_url=api.url, submit_jobs=3, claim_jobs=40, claimers=8,
                       end_to_end=True, end_to_end_timeout=30, min_workers=1, heartbeat_max_age=10)
    assert result["healthy"] is True, result["problems"]
    assert result["changed"] is False
    submit = result["submit"]
    assert (submit["submitted"], submit["stored"], submit["score_ok"], submit["retrieved"]) == (3, 3, 3, 3)
    assert abs(submit["score_offset_s"]) < 5 and submit["http_statuses"]["POST /api/jobs"] == {"201": 3}
    claim = result["claim"]
    assert (claim["jobs"], claim["claimers"], claim["claims"], claim["claimed_once"]) == (40, 8, 40, 40)
    assert claim["claimed_more_than_once"] == claim["lost"] == claim["unclaimed"] == claim["foreign_claims"] == 0
    e2e = result["end_to_end"]
    assert e2e["status"] == "completed" and e2e["worker_id"] == "m1-worker-mock-0"
    assert e2e["records"] == {"completed_set": True, "attestation": True, "job_hash": True}
    assert result["workers"]["fresh_count"] == 1 and result["workers"]["fresh"] == ["m1-worker-mock-0"]
    # every job hash, both synthetic services' queue entries, the claimers' active hashes, the completion records
    assert result["cleanup"]["errors"] == [] and result["cleanup"]["removed"] >= 3 + 40 + 8 + 3
    assert snapshot(queue_redis) == before


@pytest.mark.parametrize("kind, problem", [
    ("no_zrem", "claimed more than once"),
    ("loses_jobs", "synthetic jobs lost: gone from jobs:pending but handed to no claimer"),
])
def test_a_broken_claim_function_is_caught(queue_redis, kind, problem):
    load(queue_redis, kind)
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, claim_jobs=30, claimers=6, **REDIS_ONLY)
    assert result["healthy"] is False
    assert any(problem in text for text in result["problems"]), result["problems"]
    claim = result["claim"]
    if kind == "no_zrem":
        # every claimer keeps getting the top job: far more claims than jobs, most jobs claimed many times
        assert claim["claims"] > claim["jobs"] and claim["claimed_more_than_once"] >= 1
        assert claim["max_claims_of_one_job"] > 1
    else:
        assert claim["lost"] > 0 and claim["claimed_more_than_once"] == 0
        assert claim["lost"] + claim["claimed_once"] == claim["jobs"]
    assert result["cleanup"]["errors"] == [] and snapshot(queue_redis) == before


def test_a_missing_claim_function_is_named(queue_redis):
    client(queue_redis).function_delete("jobMatching")
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, claim_jobs=5, **REDIS_ONLY)
    assert result["healthy"] is False
    assert "findMatchingJob is not loaded on this Redis" in result["problems"][0]
    assert result["claim"]["claims"] == 0
    assert snapshot(queue_redis) == before


def test_redis_down_is_a_clear_error_and_nothing_is_submitted(start_service, queue_redis):
    api = start_api(start_service, queue_redis)
    port = free_port()
    result = run_probe(port=port, api_url=api.url, connect_timeout=1)
    assert result["reachable"] is False and result["healthy"] is False
    assert result["error"].startswith(f"cannot connect to Redis at 127.0.0.1:{port}")
    assert result["cleanup"] == {"removed": 0, "errors": []} and result["changed"] is False
    assert "submit" not in result and "claim" not in result
    assert snapshot(queue_redis)["pending"] == []  # the API got nothing


def test_wrong_password_is_an_authentication_error_without_the_password(redis_factory):
    server = redis_factory(password="right-password-71c3")
    load(server)
    before = snapshot(server)
    result = run_probe(port=server.port, password="wrong-password-9a2e", **REDIS_ONLY)
    assert result["reachable"] is False
    assert "authentication to Redis at 127.0.0.1" in result["error"]
    assert "wrong-password-9a2e" not in str(result) and "right-password-71c3" not in str(result)
    assert snapshot(server) == before


def test_api_down_fails_the_submit_check_and_the_rest_still_runs(queue_redis):
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, api_url=f"http://127.0.0.1:{free_port()}", api_timeout=2,
                       claim_jobs=10, check_workers=False)
    assert result["healthy"] is False and result["reachable"] is True
    assert result["problems"][0].startswith("the submit check could not measure: cannot reach the API at 127.0.0.1:")
    assert result["claim"]["claimed_once"] == 10 and len(result["problems"]) == 1
    assert result["cleanup"]["errors"] == [] and snapshot(queue_redis) == before


def test_an_api_that_answers_too_late_leaves_no_job_behind(queue_redis, start_service):
    """The slow release stores the job 350 ms after the request arrives; the probe gave up after 100 ms, so it
    never learnt the id: cleanup finds the job by its score window and service and removes it."""
    api = start_api(start_service, queue_redis, faults=["slow"])
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, api_url=api.url, api_timeout=0.1, claim_jobs=0, check_workers=False)
    assert result["healthy"] is False
    assert "did not answer POST /api/jobs within 0.1 s" in result["problems"][0]
    assert result["cleanup"] == {"removed": 2, "errors": []}  # the job hash and its jobs:pending entry
    time.sleep(0.5)  # anything the API was still doing has landed by now
    assert snapshot(queue_redis) == before


def test_a_late_end_to_end_job_is_found_by_its_marker_and_real_jobs_stay(queue_redis, start_service):
    """A real mock job sits in the same score window with the same service; only the probe's ctx marker tells
    them apart, and cleanup must take the probe's job and leave the real one."""
    api = start_api(start_service, queue_redis, faults=["slow"])
    real = requests.post(f"{api.url}/api/jobs", json={"service_required": "mock", "payload": {}}, timeout=10)
    assert real.status_code == 201
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, api_url=api.url, api_timeout=0.1, submit_jobs=0, claim_jobs=0,
                       check_workers=False, end_to_end=True, end_to_end_timeout=5)
    assert result["problems"][0].startswith("the end_to_end check could not measure: the API at 127.0.0.1:")
    assert result["cleanup"]["errors"] == [] and result["cleanup"]["removed"] == 2
    time.sleep(0.5)
    assert snapshot(queue_redis) == before
    assert [job_id for job_id, _score in before["pending"]] == [real.json()["job_id"]]


@pytest.mark.parametrize("faults, options, expected", [
    # no worker serves mock: the end-to-end wait runs out, the job is still pending and is removed
    ([], {"submit_jobs": 0, "claim_jobs": 0, "end_to_end_timeout": 1, "timeout": 5},
     ["the end-to-end job (mock) was not completed within 1 s (end_to_end_timeout): still pending, no worker "
      "claimed it"]),
    # every API request takes 350 ms: the overall timeout runs out while the submitted jobs are read back
    (["slow"], {"submit_jobs": 3, "claim_jobs": 10, "end_to_end_timeout": 1, "timeout": 1.2},
     ["the claim check did not run: the probe's overall timeout of 1.2 s ran out",
      "the end_to_end check did not run: the probe's overall timeout of 1.2 s ran out"]),
])
def test_timeouts_stop_the_checks_and_cleanup_still_runs(queue_redis, start_service, faults, options, expected):
    api = start_api(start_service, queue_redis, faults=faults)
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, api_url=api.url, check_workers=False, end_to_end=True, **options)
    assert result["healthy"] is False
    assert result["problems"][-len(expected):] == expected, result["problems"]
    assert result["cleanup"]["errors"] == []
    time.sleep(0.5)  # a request the probe gave up on has been answered by now
    assert snapshot(queue_redis) == before


def test_stale_and_missing_workers_are_reported(queue_redis):
    conn = client(queue_redis)
    # a worker that registered and died: its hash and set entry remain, its heartbeat key expired
    conn.hset("worker:dead-1", mapping={"worker_id": "dead-1", "last_heartbeat": "2026-01-01T00:00:00.000Z",
                                        "status": "idle"})
    conn.sadd("workers:active", "dead-1", "ghost-2")  # ghost-2 never wrote its hash
    before = snapshot(queue_redis)
    result = run_probe(port=queue_redis.port, submit_jobs=0, claim_jobs=0, min_workers=1)
    assert result["healthy"] is False
    workers = result["workers"]
    assert (workers["active_count"], workers["registered"], workers["fresh_count"]) == (2, 1, 0)
    assert result["problems"][0].startswith("0 of 2 registered workers have a fresh heartbeat (within 60 s), "
                                            "expected at least 1; stale: dead-1 (no heartbeat key)")
    assert result["problems"][1] == ("1 id in workers:active without a worker:<id> hash (incomplete registration): "
                                     "ghost-2")
    assert snapshot(queue_redis) == before


def test_redis_lost_mid_run_is_reported_as_what_remains(queue_redis, start_service):
    api = start_api(start_service, queue_redis)
    killer = threading.Timer(0.8, queue_redis.kill)
    killer.start()
    try:
        result = run_probe(port=queue_redis.port, api_url=api.url, submit_jobs=0, claim_jobs=0, check_workers=False,
                           end_to_end=True, end_to_end_timeout=20, connect_timeout=1, cleanup_timeout=2)
    finally:
        killer.cancel()
    assert result["healthy"] is False and result["changed"] is True
    assert result["problems"][0].startswith("the end_to_end check could not measure: Redis at 127.0.0.1:")
    assert result["cleanup"]["removed"] == 0
    assert result["cleanup"]["errors"][0].startswith("could not remove ")
    assert "cannot connect to Redis" in result["cleanup"]["errors"][0]
