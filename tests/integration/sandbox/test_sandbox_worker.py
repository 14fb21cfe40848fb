"""The sandbox worker machine: registration, heartbeat TTL, FCALL claiming, completion records,
ollama-sim assets, the pm2 jlist view, faults; checked with redis-py and requests."""
from __future__ import annotations

import itertools
import json
import time
import uuid

import pytest
import redis
import requests
from conftest import free_port
from sandbox_fixtures import (  # noqa: F401  # pylint: disable=unused-import
    EVENT_DEADLINE,
    client_names,
    otlp_sink,
    sandbox_redis_server,
    start_service,
    wait_until,
)

import sandbox.redis as sandbox_redis

# pylint: disable=redefined-outer-name
TIMEOUT = 5
MOCK_ID = "m1-worker-mock-0"
OLLAMA_ID = "m1-worker-ollama-sim-0"
FAST = ["--machine-id", "m1", "--heartbeat-interval", "0.2", "--heartbeat-ttl", "2", "--poll-interval", "0.05",
        "--job-duration-ms", "40", "--redis-backoff-cap", "0.3"]


def start_worker(starter, redis_server, tmp_path, *extra, faults=(), version="1.0.0"):
    port = free_port()
    service = starter("sandbox.worker", "--redis-url", redis_server.url, "--asset-dir",
                      str(tmp_path / "assets"), *FAST, *extra, port=port,
                      release={"service": "worker", "version": version, "faults": list(faults)})
    service.url = f"http://127.0.0.1:{port}"
    return service


@pytest.fixture
def r(sandbox_redis_server):  # noqa: F811
    client = redis.Redis(port=sandbox_redis_server.port, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def worker(start_service, sandbox_redis_server, tmp_path, otlp_sink, r):  # noqa: F811
    service = start_worker(start_service, sandbox_redis_server, tmp_path, "--otlp-endpoint", otlp_sink.endpoint)
    wait_until(lambda: r.scard("workers:active") == 2, timeout=EVENT_DEADLINE, message="both workers registered")
    yield service
    service.stop()


def submit(r, service: str = "mock", payload: dict | None = None, **fields) -> str:
    """A job written the way the EMP API writes it (contract fields), independently of sandbox.api."""
    job_id = str(uuid.uuid4())
    job = {"id": job_id, "service_required": service, "priority": "50", "payload": json.dumps(payload or {}),
           "requirements": "{}", "customer_id": "", "created_at": "2026-01-01T00:00:00.000Z", "status": "pending",
           "retry_count": "0", "max_retries": "3", "workflow_id": "", "workflow_priority": "",
           "workflow_datetime": "", "current_step": "", "total_steps": "", "ctx": "{}"}
    job.update({k: str(v) for k, v in fields.items()})
    r.hset(f"job:{job_id}", mapping=job)
    r.zadd("jobs:pending", {job_id: 50e15 - int(time.time())})
    return job_id


def wait_status(r, job_id: str, status: str, timeout: float = EVENT_DEADLINE) -> dict:
    return wait_until(lambda: (job := r.hgetall(f"job:{job_id}")).get("status") == status and job,
                      timeout=timeout, message=f"job {job_id} {status}")


def test_registration_and_heartbeat(worker, r):
    assert r.smembers("workers:active") == {MOCK_ID, OLLAMA_ID}
    info = r.hgetall(f"worker:{MOCK_ID}")
    for field in ("worker_id", "machine_id", "capabilities", "status", "connected_at", "last_heartbeat",
                  "current_job_id"):
        assert field in info, field
    assert info["machine_id"] == "m1"
    assert json.loads(info["capabilities"])["job_service_required_map"] == ["mock", "simulation"]
    # the key lives --heartbeat-ttl (2 s) and is refreshed every 0.2 s; a worker stalled by a loaded
    # box may let it lapse for a moment, so wait for it rather than read it once
    wait_until(lambda: 0 < r.ttl(f"worker:{MOCK_ID}:heartbeat") <= 2, message="heartbeat key with a 2 s TTL")
    first = r.hget(f"worker:{MOCK_ID}", "last_heartbeat")
    wait_until(lambda: r.hget(f"worker:{MOCK_ID}", "last_heartbeat") != first, timeout=EVENT_DEADLINE,
               message="heartbeat refreshed")
    # machine:{id}:info is written right after the heartbeats of the same round: wait for it too
    wait_until(lambda: r.exists("machine:m1:info"), timeout=EVENT_DEADLINE, message="machine info written")
    assert 0 < r.ttl("machine:m1:info") <= 120
    names = client_names(worker_redis_port(r))
    assert f"emp-worker:{MOCK_ID}" in names and f"emp-worker:{OLLAMA_ID}" in names


def worker_redis_port(r) -> int:
    return r.connection_pool.connection_kwargs["port"]


def test_claims_and_completes_a_mock_job(worker, r, otlp_sink):  # noqa: F811
    pubsub = r.pubsub()
    pubsub.subscribe("complete_job")
    pubsub.get_message(timeout=1)
    job_id = submit(r, payload={"hello": "world"})
    job = wait_status(r, job_id, "completed")
    assert job["worker_id"] == MOCK_ID and job["assigned_at"] and job["started_at"] and job["completed_at"]
    assert json.loads(job["result"])["success"] is True
    assert r.zscore("jobs:pending", job_id) is None
    assert r.hget(f"jobs:active:{MOCK_ID}", job_id) is None
    assert json.loads(r.hget("jobs:completed", job_id))["worker_id"] == MOCK_ID
    assert 0 < r.ttl("jobs:completed") <= 24 * 3600
    attestation = r.get(f"worker:completion:step-id:{job_id}:attempt:1")
    assert attestation and json.loads(attestation)["status"] == "completed"
    assert r.ttl(f"worker:completion:step-id:{job_id}:attempt:1") == -1, "attestations have no TTL"
    message = wait_until(lambda: pubsub.get_message(timeout=0.5), timeout=EVENT_DEADLINE, message="complete_job published")
    assert json.loads(message["data"])["job_id"] == job_id
    assert r.xlen(f"progress:{job_id}") >= 1
    pubsub.close()
    # spans arrive in batches, the job's own span not necessarily in the first: wait for it
    wait_until(lambda: any(name == "emp-worker" and s.name == "worker.process_job" for name, s in otlp_sink.spans()),
               message="the worker's job span exported")


def test_workflow_attestation_key(worker, r):
    job_id = submit(r, workflow_id="wf-7", current_step=1, total_steps=2)
    wait_status(r, job_id, "completed")
    assert r.exists(f"worker:completion:job-id:wf-7:step-id:{job_id}:attempt:1")


def test_ollama_sim_saves_an_asset(worker, r, tmp_path):
    job_id = submit(r, service="ollama", payload={"prompt": "why is the sky blue", "model": "llama3.2:1b"})
    job = wait_status(r, job_id, "completed")
    assert job["worker_id"] == OLLAMA_ID
    result = json.loads(job["result"])
    asset = result["metadata"]["saved_asset"]
    assert asset["size"] > 0
    with open(asset["path"], encoding="utf-8") as handle:
        assert "why is the sky blue" in handle.read()


def test_unservable_job_stays_pending(worker, r):
    job_id = submit(r, service="comfyui")
    time.sleep(0.5)
    assert r.hget(f"job:{job_id}", "status") == "pending" and r.zscore("jobs:pending", job_id) is not None


def test_failing_job_retries_then_fails_permanently(worker, r):
    job_id = submit(r, payload={"fail": True, "error": "boom"}, max_retries=1)
    job = wait_status(r, job_id, "failed")
    assert job["retry_count"] == "1" and job["error"] == "boom"
    assert r.exists(f"worker:failure:step-id:{job_id}:attempt:1")
    assert r.exists(f"worker:failure:step-id:{job_id}:permanent")
    assert json.loads(r.hget("jobs:failed", job_id))["permanent"] is True


def test_health_server_and_pm2_view(worker):
    health = requests.get(f"{worker.url}/health", timeout=TIMEOUT)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert requests.get(f"{worker.url}/ready", timeout=TIMEOUT).json() == {"ready": True}
    status = requests.get(f"{worker.url}/status", timeout=TIMEOUT).json()
    assert {w["worker_id"] for w in status["workers"]} == {MOCK_ID, OLLAMA_ID}
    services = requests.get(f"{worker.url}/services", timeout=TIMEOUT).json()["services"]
    assert {s["name"] for s in services} == {"health-server", "redis-worker-mock-0", "redis-worker-ollama-sim-0"}
    assert requests.get(f"{worker.url}/services/redis-worker-mock-0/health", timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{worker.url}/services/nope/health", timeout=TIMEOUT).status_code == 404
    jlist = requests.get(f"{worker.url}/pm2/jlist", timeout=TIMEOUT).json()
    assert [app["name"] for app in jlist] == ["health-server", "redis-worker-mock-0", "redis-worker-ollama-sim-0"]
    for app in jlist:
        assert app["pm2_env"]["status"] == "online"
        assert isinstance(app["pm2_env"]["restart_time"], int)
        assert app["monit"]["memory"] > 10 * 1024 * 1024 and app["monit"]["cpu"] >= 0
        assert app["pid"] == worker.proc.pid


def test_reconnects_after_redis_restart(worker, r, sandbox_redis_server):  # noqa: F811
    sandbox_redis_server.kill()
    sandbox_redis_server.start()  # data and library lost: the kill was not a clean shutdown
    client = redis.Redis(port=sandbox_redis_server.port, decode_responses=True)
    wait_until(lambda: {f"emp-worker:{MOCK_ID}", f"emp-worker:{OLLAMA_ID}"} <= set(
        client_names(sandbox_redis_server.port)), timeout=EVENT_DEADLINE, message="workers reconnected")
    wait_until(lambda: client.scard("workers:active") == 2, timeout=EVENT_DEADLINE, message="workers re-registered")
    job_id = submit(client)
    time.sleep(0.5)  # claims fail meanwhile: the library went with the killed Redis
    assert client.hget(f"job:{job_id}", "status") == "pending"
    sandbox_redis.load_library(client)
    wait_status(client, job_id, "completed")
    assert "worker crashed" not in worker.output()


def test_sigterm_deregisters(worker, r):
    assert worker.terminate() == 0
    assert r.scard("workers:active") == 0
    assert not r.exists(f"worker:{MOCK_ID}:heartbeat")
    assert r.hget(f"worker:{MOCK_ID}", "status") == "offline"
    assert "Traceback" not in worker.output()


def test_fault_leak_memory(start_service, sandbox_redis_server, tmp_path):  # noqa: F811
    service = start_worker(start_service, sandbox_redis_server, tmp_path, "--leak-mb-per-s", "40",
                           faults=["leak_memory"], version="1.1.0-leak")

    def memory() -> int:
        return requests.get(f"{service.url}/pm2/jlist", timeout=TIMEOUT).json()[1]["monit"]["memory"]

    samples = [memory()]

    def grown_by_30_mb() -> bool:
        samples.append(memory())
        return samples[-1] - samples[0] > 30 * 1024 * 1024

    # waits for the growth itself: on a loaded box the leak ticks later, never less
    wait_until(grown_by_30_mb, timeout=EVENT_DEADLINE, interval=0.25, message="memory grew by 30 MiB")
    assert all(b >= a for a, b in itertools.pairwise(samples)), samples


def test_no_leak_without_the_fault(worker):
    def memory() -> int:
        return requests.get(f"{worker.url}/pm2/jlist", timeout=TIMEOUT).json()[1]["monit"]["memory"]
    first = memory()
    time.sleep(1.5)
    assert memory() - first < 10 * 1024 * 1024


def test_fault_no_reconnect(start_service, sandbox_redis_server, tmp_path):  # noqa: F811
    service = start_worker(start_service, sandbox_redis_server, tmp_path, faults=["no_reconnect"],
                           version="1.1.0-noreconnect")
    wait_until(lambda: f"emp-worker:{MOCK_ID}" in client_names(sandbox_redis_server.port), timeout=EVENT_DEADLINE,
               message="worker connected")
    sandbox_redis_server.kill()
    sandbox_redis_server.start()
    wait_until(lambda: "giving Redis up" in service.output(), timeout=EVENT_DEADLINE, message="worker noticed the loss")
    time.sleep(1.0)
    assert not any(name.startswith("emp-worker") for name in client_names(sandbox_redis_server.port))
    health = requests.get(f"{service.url}/health", timeout=TIMEOUT)
    assert health.status_code == 503 and health.json()["redis"]["gave_up"] is True


def test_fault_no_redis_client_and_no_telemetry(start_service, sandbox_redis_server, tmp_path, otlp_sink):  # noqa: F811
    service = start_worker(start_service, sandbox_redis_server, tmp_path, "--otlp-endpoint", otlp_sink.endpoint,
                           faults=["no_redis_client", "no_telemetry"], version="1.1.0-noredis")
    client = redis.Redis(port=sandbox_redis_server.port, decode_responses=True)
    wait_until(lambda: client.scard("workers:active") == 2, timeout=EVENT_DEADLINE, message="workers registered")
    job_id = submit(client)
    wait_status(client, job_id, "completed")
    assert not any(name.startswith("emp-worker") for name in client_names(sandbox_redis_server.port))
    # the worker flushes all its telemetry when it stops: after that, nothing can still come
    assert service.terminate() == 0
    assert otlp_sink.requests == []


def test_bad_worker_spec_is_refused(start_service, sandbox_redis_server):  # noqa: F811
    service = start_service("sandbox.worker", "--redis-url", sandbox_redis_server.url, "--workers", "gpu:1",
                            port=free_port(), wait=False)
    assert service.proc.wait(timeout=10) == 2 and "unknown worker type" in service.output()
