"""The EMP contract check shared by the sandbox contract test (make test) and the real-service tests
(marked real_emp): it sends the same requests to an API, a webhook service and their Redis, and compares
every answer with the shapes recorded from the real services (tests/contract/emp_shapes.json).

`mismatches(shape, value)` lists each difference as "path: what"; `check_services(...)` exercises every
recorded endpoint and returns {endpoint: [differences]}.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import redis
import requests

SHAPES = json.loads((Path(__file__).parent / "contract" / "emp_shapes.json").read_text())
TIMEOUT = 10
TYPES = {"str": str, "int": int, "number": (int, float), "bool": bool, "null": type(None)}


def _type_ok(kind: str, value) -> bool:
    if kind == "any":
        return True
    for name in kind.split("|"):
        expected = TYPES[name]
        if isinstance(value, bool) and name in ("int", "number"):
            continue  # JSON true is not a number
        if isinstance(value, expected):
            return True
    return False


def mismatches(shape, value, path: str = "$", sandbox_only: tuple = (), sandbox: bool = True) -> list[str]:
    """Differences between a recorded shape and a value; keys in sandbox_only may be present in the sandbox."""
    if isinstance(shape, str):
        return [] if _type_ok(shape, value) else [f"{path}: expected {shape}, got {json.dumps(value)[:80]}"]
    if isinstance(shape, dict) and set(shape) == {"="}:
        return [] if value == shape["="] else [f"{path}: expected {json.dumps(shape['='])}, got {json.dumps(value)[:80]}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {json.dumps(value)[:80]}"]
        return [problem for index, item in enumerate(value) for problem in mismatches(shape[0], item, f"{path}[{index}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {json.dumps(value)[:80]}"]
    problems = []
    optional = set(sandbox_only)
    for key in sorted(set(shape) - set(value) - (optional if not sandbox else set())):
        problems.append(f"{path}.{key}: missing")
    for key in sorted(set(value) - set(shape)):
        problems.append(f"{path}.{key}: not in the EMP contract")
    for key in sorted(set(shape) & set(value)):
        problems += mismatches(shape[key], value[key], f"{path}.{key}")
    return problems


def answer_problems(recorded: dict, answer: requests.Response, sandbox: bool) -> list[str]:
    problems = []
    if answer.status_code != recorded["status"]:
        problems.append(f"status {answer.status_code}, expected {recorded['status']}")
    content_type = answer.headers.get("content-type", "").split(";")[0].strip()
    if content_type != recorded["content_type"]:
        problems.append(f"content type {content_type!r}, expected {recorded['content_type']!r}")
    if "text" in recorded:
        return problems + ([] if recorded["text"] in answer.text else [f"body lacks {recorded['text']!r}"])
    try:
        body = answer.json()
    except ValueError:
        return problems + ["body is not JSON"]
    return problems + mismatches(recorded["body"], body, sandbox_only=tuple(recorded.get("sandbox_only", ())),
                                 sandbox=sandbox)


def _webhook_receiver_url(webhook_url: str, receiver: dict) -> str:
    # the EMP service writes http://localhost:3332 into a test receiver's url whatever its port: use our own
    return f"{webhook_url}/test-receivers/{receiver['id']}/webhook"


def check_api(api_url: str, redis_url: str, sandbox: bool) -> dict[str, list[str]]:
    shapes = SHAPES["api"]
    results = {}
    http = requests.Session()
    results["GET /health"] = answer_problems(shapes["GET /health"], http.get(f"{api_url}/health", timeout=TIMEOUT), sandbox)
    results["GET /version"] = answer_problems(shapes["GET /version"], http.get(f"{api_url}/version", timeout=TIMEOUT), sandbox)
    service = f"emp-contract-{uuid.uuid4().hex[:8]}"  # no worker serves it: the job stays pending
    job = {"service_required": service, "priority": 50, "payload": {"contract": True}}
    submitted = http.post(f"{api_url}/api/jobs", json=job, timeout=TIMEOUT)
    results["POST /api/jobs"] = answer_problems(shapes["POST /api/jobs"], submitted, sandbox)
    job_id = submitted.json().get("job_id", "")
    results["GET /api/jobs/:id"] = answer_problems(shapes["GET /api/jobs/:id"],
                                                   http.get(f"{api_url}/api/jobs/{job_id}", timeout=TIMEOUT), sandbox)
    results["GET /api/jobs/:missing"] = answer_problems(
        shapes["GET /api/jobs/:missing"], http.get(f"{api_url}/api/jobs/{uuid.uuid4()}", timeout=TIMEOUT), sandbox)
    results["GET /no-such-route"] = answer_problems(shapes["GET /no-such-route"],
                                                    http.get(f"{api_url}/no-such-route", timeout=TIMEOUT), sandbox)
    conn = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=TIMEOUT)
    try:
        results["job hash"] = job_hash_problems(conn.hgetall(f"job:{job_id}"), shapes["job hash"])
        results["FCALL findMatchingJob"] = claim_problems(conn, job_id, service)
    finally:
        conn.close()
    return results


def job_hash_problems(job: dict, recorded: dict) -> list[str]:
    problems = [f"field {name} missing" for name in recorded["fields"] if name not in job]
    problems += [f"field {name} not in the EMP contract" for name in job if name not in recorded["fields"]]
    problems += [f"{name} is {job.get(name)!r} when not given, expected ''" for name in recorded["absent_as_empty"]
                 if job.get(name) != ""]
    problems += [f"{name} is {job.get(name)!r}, expected {value!r}" for name, value in recorded["defaults"].items()
                 if job.get(name) != value]
    return problems


def claim_problems(conn, job_id: str, service: str) -> list[str]:
    """Claims the contract job through the function as a worker would, then removes what the claim wrote."""
    recorded = SHAPES["redis"]["FCALL findMatchingJob"]
    worker_id = f"{service}-worker"
    caps = json.dumps({"worker_id": worker_id, "job_service_required_map": [service], "hardware": {}, "models": []})
    try:
        raw = conn.fcall("findMatchingJob", 0, caps, "100")
        answer = json.loads(raw) if raw else None
        if not answer:
            return ["findMatchingJob answered nil for a job of the worker's service"]
        problems = mismatches(recorded["answer"], answer)
        if answer.get("jobId") != job_id:
            problems.append(f"claimed {answer.get('jobId')}, expected {job_id}")
        if answer.get("job", {}).get("status") != recorded["answer job status"]:
            problems.append(f"answer job status {answer.get('job', {}).get('status')!r}, "
                            f"expected {recorded['answer job status']!r} (the job as read)")
        job = conn.hgetall(f"job:{job_id}")
        if (job.get("status"), job.get("worker_id")) != ("assigned", worker_id) or not job.get("assigned_at"):
            problems.append(f"job hash after the claim: {job}")
        worker = conn.hgetall(f"worker:{worker_id}")
        if (worker.get("status"), worker.get("current_job_id")) != ("busy", job_id):
            problems.append(f"worker hash after the claim: {worker}")
        entries = conn.xrange(f"progress:{job_id}")
        if not entries or set(entries[-1][1]) != set(recorded["progress stream entry"]):
            problems.append(f"progress stream after the claim: {entries[-1:] if entries else 'empty'}")
        return problems
    finally:
        conn.delete(f"job:{job_id}", f"worker:{worker_id}", f"progress:{job_id}", f"jobs:active:{worker_id}")
        conn.zrem("jobs:pending", job_id)


def check_webhook(webhook_url: str, sandbox: bool) -> dict[str, list[str]]:
    shapes = SHAPES["webhook"]
    results = {}
    http = requests.Session()
    results["GET /health"] = answer_problems(shapes["GET /health"], http.get(f"{webhook_url}/health", timeout=TIMEOUT),
                                             sandbox)
    receiver_answer = http.post(f"{webhook_url}/test-receivers", json={}, timeout=TIMEOUT)
    results["POST /test-receivers"] = answer_problems(shapes["POST /test-receivers"], receiver_answer, sandbox)
    receiver = receiver_answer.json()["data"]
    target = _webhook_receiver_url(webhook_url, receiver)
    secret = uuid.uuid4().hex
    created = http.post(f"{webhook_url}/webhooks", json={"url": target, "events": ["complete_job"], "secret": secret},
                        timeout=TIMEOUT)
    results["POST /webhooks"] = answer_problems(shapes["POST /webhooks"], created, sandbox)
    webhook_id = created.json()["data"]["id"]
    plain = http.post(f"{webhook_url}/webhooks", json={"url": target, "events": ["complete_job"], "active": False},
                      timeout=TIMEOUT)
    results["POST /webhooks without a secret"] = answer_problems(shapes["POST /webhooks without a secret"], plain, sandbox)
    for name, body in (("without url", {"events": ["complete_job"]}), ("without events", {"url": target}),
                       ("with a bad url", {"url": "not a url", "events": ["complete_job"]})):
        results[f"POST /webhooks {name}"] = answer_problems(
            shapes[f"POST /webhooks {name}"], http.post(f"{webhook_url}/webhooks", json=body, timeout=TIMEOUT), sandbox)
    results["GET /webhooks/:missing"] = answer_problems(
        shapes["GET /webhooks/:missing"], http.get(f"{webhook_url}/webhooks/wh_missing", timeout=TIMEOUT), sandbox)
    results["GET /no-such-route"] = answer_problems(shapes["GET /no-such-route"],
                                                    http.get(f"{webhook_url}/no-such-route", timeout=TIMEOUT), sandbox)
    results["POST /webhooks/:id/test"] = answer_problems(
        shapes["POST /webhooks/:id/test"], http.post(f"{webhook_url}/webhooks/{webhook_id}/test", timeout=TIMEOUT),
        sandbox)
    results["delivery"] = delivery_problems(http, webhook_url, receiver["id"], webhook_id, secret)
    results["GET /webhooks/:id/deliveries"] = answer_problems(
        shapes["GET /webhooks/:id/deliveries"],
        http.get(f"{webhook_url}/webhooks/{webhook_id}/deliveries?limit=5", timeout=TIMEOUT), sandbox)
    for created_id in (webhook_id, plain.json()["data"]["id"]):
        http.delete(f"{webhook_url}/webhooks/{created_id}", timeout=TIMEOUT)
    return results


def delivery_problems(http: requests.Session, webhook_url: str, receiver_id: str, webhook_id: str,
                      secret: str) -> list[str]:
    recorded = SHAPES["webhook"]["delivery"]
    deadline = time.monotonic() + TIMEOUT
    received: list = []
    while time.monotonic() < deadline and not received:
        received = http.get(f"{webhook_url}/test-receivers/{receiver_id}/requests", timeout=TIMEOUT).json()["data"]["requests"]
        time.sleep(0.2)
    if not received:
        return ["no test delivery arrived"]
    delivery = received[0]
    headers = {name.lower(): value for name, value in delivery["headers"].items()}
    problems = [] if delivery["method"] == recorded["method"] else [f"method {delivery['method']}"]
    for name, shape in recorded["headers"].items():
        if name not in headers:
            problems.append(f"header {name} missing")
        else:
            problems += mismatches(shape, headers[name], f"header {name}")
    raw = delivery.get("raw_body")
    body_bytes = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(delivery["body"], separators=(",", ":")).encode()
    expected = "sha256=" + hmac.new(secret.encode(), body_bytes, hashlib.sha256).hexdigest()
    if headers.get("x-webhook-signature") != expected:
        problems.append("x-webhook-signature is not the HMAC-SHA256 of the body")
    if headers.get("x-webhook-id") != webhook_id:
        problems.append(f"x-webhook-id {headers.get('x-webhook-id')!r}, expected {webhook_id!r}")
    body = delivery["body"]
    problems += mismatches(recorded["test body"], body, "$body")
    if headers.get("x-event-id") != body.get("event_id"):
        problems.append("x-event-id differs from the body's event_id")
    return problems
