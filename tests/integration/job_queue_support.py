"""Helpers and fixtures shared by the job_queue_probe integration tests (no tests here).

Real parts only: a private redis-server per test with the sandbox's jobMatching library (or a
deliberately broken variant of it), the sandbox API and worker machine as processes, and the probe
itself, run in-process (its Probe class) or through real ansible-playbook runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from conftest import free_port, run_playbook, write_playbook

import sandbox.redis as sandbox_redis

sys.path.insert(0, str(Path(__file__).parent / "sandbox"))
from sandbox_fixtures import start_service  # noqa: E402,F401  # pylint: disable=wrong-import-position,unused-import

from ansible_collections.emp.deploy.plugins.modules import job_queue_probe as module  # noqa: E402

DEFAULTS = {key: spec.get("default") for key, spec in {**module.REDIS_CONNECTION_ARGSPEC,
                                                       **module.PROBE_ARGSPEC}.items()}
# fast workers: heartbeat every 0.2 s, jobs of 40 ms (tests/integration/sandbox/test_sandbox_worker.py)
FAST_WORKER = ["--machine-id", "m1", "--heartbeat-interval", "0.2", "--heartbeat-ttl", "5", "--poll-interval", "0.05",
               "--job-duration-ms", "40", "--redis-backoff-cap", "0.3", "--workers", "mock:1"]
ZREM_LINE = "        redis.call('ZREM', 'jobs:pending', job_id)\n"
FUNCTION_SOURCE = Path(sandbox_redis.__file__).with_name("jobMatching.lua")


def params(**overrides) -> dict:
    merged = dict(DEFAULTS)
    merged.update(overrides)
    return merged


def run_probe(**overrides) -> dict:
    """The probe in-process, as the module runs it after validation."""
    merged = params(**overrides)
    problem = module.validate_options(merged)
    assert problem is None, problem
    return module.Probe(merged).run()


def broken_library(kind: str) -> str:
    """jobMatching with a deliberate fault: `no_zrem` claims without taking the job out of jobs:pending
    (read-then-claim, not atomic); `loses_jobs` also removes the next pending job, handing it to nobody."""
    source = FUNCTION_SOURCE.read_text(encoding="utf-8")
    assert ZREM_LINE in source, "the sandbox function changed: update the broken variants"
    if kind == "no_zrem":
        source = source.replace(ZREM_LINE, "        -- broken on purpose: no ZREM\n")
    elif kind == "loses_jobs":
        source = source.replace(ZREM_LINE, ZREM_LINE + (
            "        local after = redis.call('ZREVRANGE', 'jobs:pending', 0, 0)\n"
            "        if after[1] ~= nil then redis.call('ZREM', 'jobs:pending', after[1]) end\n"))
    else:
        raise ValueError(kind)
    return f"#!lua name={sandbox_redis.LIBRARY_NAME}\n" + source


def client(server) -> redis.Redis:
    return redis.Redis(port=server.port, password=server.password, decode_responses=True, socket_timeout=5)


def load(server, kind: str | None = None) -> None:
    """The sandbox library, or a broken variant of it, on the test's own redis-server."""
    conn = client(server)
    try:
        if kind is None:
            sandbox_redis.load_library(conn)
        else:
            conn.function_load(broken_library(kind), replace=True)
    finally:
        conn.close()


def snapshot(server) -> dict:
    """What the probe must leave as it found it: every key with its type, and jobs:pending with its scores.
    Worker hashes change by themselves (heartbeats), so only their presence is compared."""
    conn = client(server)
    try:
        keys = {key: conn.type(key) for key in conn.scan_iter(count=1000)}
        return {"keys": keys, "pending": conn.zrange("jobs:pending", 0, -1, withscores=True),
                "completed": conn.hkeys("jobs:completed")}
    finally:
        conn.close()


@pytest.fixture
def queue_redis(redis_factory):
    server = redis_factory()
    load(server)
    return server


def start_api(starter, redis_server, *args: str, faults: list | None = None):
    port = free_port()
    service = starter("sandbox.api", "--redis-url", redis_server.url, "--redis-backoff-cap", "0.3", *args,
                      port=port, release={"service": "api", "version": "1.0.0", "faults": faults or []})
    service.url = f"http://127.0.0.1:{port}"
    return service


def start_worker(starter, redis_server, tmp_path):
    port = free_port()
    return starter("sandbox.worker", "--redis-url", redis_server.url, "--asset-dir", str(tmp_path / "assets"),
                   *FAST_WORKER, port=port, release={"service": "worker", "version": "1.0.0", "faults": []})


def playbook_run(tmp_path: Path, tasks: list, *, check: bool = False, args: list | None = None,
                 name: str = "probe", extra_vars: dict | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Tasks (dicts, each with a register) in one real ansible-playbook run; returns {register: result}."""
    out = tmp_path / f"{name}.json"
    registers = [task["register"] for task in tasks]
    body = tasks + [{"name": "Save the results", "ansible.builtin.copy": {
        "content": "{{ {" + ", ".join(f"'{r}': {r}" for r in registers) + "} | to_json }}",
        "dest": str(out), "mode": "0600"}, "check_mode": False}]
    playbook = write_playbook(tmp_path, "", name=f"{name}.yml")
    playbook.write_text(f"- name: Job queue probe test\n  hosts: sandbox\n  gather_facts: false\n"
                        f"  tasks: {json.dumps(body)}\n")
    run = run_playbook(playbook, check=check, args=args, timeout=240, extra_vars=extra_vars,
                       env={"EMP_DEPLOY_REPORT_DIR": str(tmp_path / "reports")})
    assert out.exists(), run.stdout[-4000:] + run.stderr[-2000:]
    return json.loads(out.read_text()), run
