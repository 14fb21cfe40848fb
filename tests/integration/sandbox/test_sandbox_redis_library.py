"""The jobMatching Lua library: FCALL findMatchingJob contract, atomic claiming, checksum."""
from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import redis
from sandbox_fixtures import sandbox_redis_server  # noqa: F401  # pylint: disable=unused-import

import sandbox.redis as sandbox_redis


@pytest.fixture
def r(sandbox_redis_server):  # noqa: F811  # pylint: disable=redefined-outer-name
    client = redis.Redis(port=sandbox_redis_server.port, decode_responses=True)
    yield client
    client.close()


def add_job(client, job_id: str, service: str = "mock", priority: int = 50, *, requirements=None,
            customer_id: str = "", created_s: int | None = None) -> None:
    client.hset(f"job:{job_id}", mapping={"id": job_id, "service_required": service, "priority": str(priority),
                                          "requirements": json.dumps(requirements or {}),
                                          "customer_id": customer_id, "status": "pending", "payload": "{}"})
    epoch_s = created_s if created_s is not None else int(time.time())
    client.zadd("jobs:pending", {job_id: priority * 1e15 - epoch_s})


def claim(client, caps: dict, max_scan: int = 100):
    raw = client.fcall("findMatchingJob", 0, json.dumps(caps), str(max_scan))
    return None if raw is None else json.loads(raw)


CAPS = {"worker_id": "w1", "job_service_required_map": ["mock"]}


def test_library_loaded_with_checksum(r):
    libraries = r.function_list(library="jobMatching")
    assert libraries, "jobMatching not loaded"
    text = json.dumps(libraries)
    assert "findMatchingJob" in text
    # the checksum is of the code Redis holds, read back independently with WITHCODE
    loaded = r.function_list(library="jobMatching", withcode=True)[0]
    loaded = loaded if isinstance(loaded, dict) else dict(zip(loaded[::2], loaded[1::2]))
    code = loaded.get("library_code", loaded.get(b"library_code"))
    code = code.decode() if isinstance(code, bytes) else code
    assert code.startswith("#!lua name=jobMatching\n")
    assert r.get("function:checksum:jobMatching") == hashlib.sha256(code.encode()).hexdigest()


def test_reload_is_idempotent(r):
    assert sandbox_redis.load_library(r) == sandbox_redis.load_library(r)
    assert len(r.function_list(library="jobMatching")) == 1


def test_nothing_pending_returns_nil(r):
    assert claim(r, CAPS) is None


def test_claims_atomically_and_records_everything(r):
    add_job(r, "j1")
    pubsub = r.pubsub()
    pubsub.subscribe("job_claimed", "update_job_progress")
    pubsub.get_message(timeout=1)  # subscribe confirmations
    pubsub.get_message(timeout=1)
    result = claim(r, CAPS)
    assert result["jobId"] == "j1"
    # as the EMP function: the answer carries the job as it was read, before the assignment
    assert result["job"]["status"] == "pending" and "worker_id" not in result["job"]
    assert r.zscore("jobs:pending", "j1") is None
    job = r.hgetall("job:j1")
    assert job["status"] == "assigned" and job["worker_id"] == "w1"
    assert job["assigned_at"].endswith("Z") and job["assigned_at"][:4].isdigit()
    active = json.loads(r.hget("jobs:active:w1", "j1"))
    assert active["id"] == "j1"
    message = pubsub.get_message(timeout=2)
    assert message and message["channel"] == "job_claimed"
    claimed = json.loads(message["data"])
    assert (claimed["job_id"], claimed["worker_id"], claimed["status"]) == ("j1", "w1", "claimed")
    progress = pubsub.get_message(timeout=2)
    assert progress and progress["channel"] == "update_job_progress" and json.loads(progress["data"])["progress"] == 0
    assert r.hget("worker:w1", "status") == "busy" and r.hget("worker:w1", "current_job_id") == "j1"
    assert r.xrange("progress:j1")[0][1]["status"] == "assigned"
    assert claim(r, CAPS) is None, "a claimed job must not be claimed twice"
    pubsub.close()


def test_service_capability_must_match(r):
    add_job(r, "j-ollama", service="ollama")
    assert claim(r, CAPS) is None
    assert r.zscore("jobs:pending", "j-ollama") is not None, "an unmatched job stays pending"
    assert claim(r, {"worker_id": "w2", "job_service_required_map": ["ollama"]})["jobId"] == "j-ollama"


def test_highest_score_first_priority_then_age(r):
    now = int(time.time())
    add_job(r, "low", priority=10, created_s=now - 100)
    add_job(r, "high-new", priority=90, created_s=now)
    add_job(r, "high-old", priority=90, created_s=now - 50)
    order = [claim(r, CAPS)["jobId"] for _index in range(3)]
    assert order == ["high-old", "high-new", "low"]


def test_skips_unservable_job_to_reach_a_servable_one(r):
    add_job(r, "other", service="comfyui", priority=90)
    add_job(r, "mine", priority=10)
    assert claim(r, CAPS)["jobId"] == "mine"
    assert r.zscore("jobs:pending", "other") is not None


def test_max_scan_limits_the_window(r):
    for i in range(3):
        add_job(r, f"blocker{i}", service="comfyui", priority=90)
    add_job(r, "mine", priority=10)
    assert claim(r, CAPS, max_scan=3) is None
    assert claim(r, CAPS, max_scan=4)["jobId"] == "mine"


def test_hardware_requirements(r):
    add_job(r, "gpu-job", requirements={"hardware": {"gpu_memory_gb": 16}})
    assert claim(r, dict(CAPS, hardware={"gpu_memory_gb": 8})) is None
    assert claim(r, dict(CAPS, hardware={"gpu_memory_gb": 24}))["jobId"] == "gpu-job"


def test_model_requirements(r):
    add_job(r, "model-job", requirements={"models": ["sdxl"]})
    assert claim(r, dict(CAPS, models=["sd15"])) is None
    assert claim(r, dict(CAPS, models={"mock": ["sdxl"]}))["jobId"] == "model-job"


def test_customer_isolation(r):
    add_job(r, "acme-job", customer_id="acme")
    strict = dict(CAPS, customer_access={"isolation": "strict", "allowed_customers": ["globex"]})
    assert claim(r, strict) is None
    denied = dict(CAPS, customer_access={"isolation": "loose", "denied_customers": ["acme"]})
    assert claim(r, denied) is None
    allowed = dict(CAPS, customer_access={"isolation": "strict", "allowed_customers": ["acme"]})
    assert claim(r, allowed)["jobId"] == "acme-job"


@pytest.mark.parametrize("caps, message", [
    ("not json", "capabilities must be a JSON object"),
    (json.dumps(["a"]), "worker_id is required"),
    (json.dumps({"job_service_required_map": ["mock"]}), "worker_id is required"),
])
def test_malformed_capabilities_are_errors(r, caps, message):
    with pytest.raises(redis.ResponseError, match=message):
        r.fcall("findMatchingJob", 0, caps, "100")


def test_concurrent_workers_never_share_a_job(r, sandbox_redis_server):  # noqa: F811
    jobs = [f"c{i}" for i in range(60)]
    for job_id in jobs:
        add_job(r, job_id)
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        client = redis.Redis(port=sandbox_redis_server.port, decode_responses=True)
        mine = claimed.setdefault(name, [])
        while True:
            result = claim(client, {"worker_id": name, "job_service_required_map": ["mock"]})
            if result is None:
                break
            mine.append(result["jobId"])
        client.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    everything = [job for mine in claimed.values() for job in mine]
    assert sorted(everything) == sorted(jobs), "every job claimed exactly once"
    for name, mine in claimed.items():
        assert set(r.hkeys(f"jobs:active:{name}")) == set(mine)


def test_stale_ids_without_hash_are_skipped(r):
    r.zadd("jobs:pending", {"ghost": 99e15})
    add_job(r, "real")
    assert claim(r, CAPS)["jobId"] == "real"
