"""`python -m sandbox fault` returns only once the fault is in effect in every running service it concerns.

The services read faults.json every 0.5 s; before the acknowledgement (faults.ack.<service>) a caller
that measured right after `fault` could measure the service without the fault, as the predeploy's telemetry
on/off comparison did. Here a request sent the moment `fault api-latency` returns must be slowed, and one sent
the moment `fault clear` returns must not; a service that cannot acknowledge (stopped with SIGSTOP) makes
`fault` fail naming it, and a stopped service is not waited for.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests
from sandbox_fixtures import cli, recorded_processes, status

# pylint: disable=redefined-outer-name
DELAY_MS = 400
ROUNDS = 4  # without the acknowledgement about half of the first requests would miss the switch: 4 rounds catch it


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("sandbox-fault-ack")
    cli(state_dir, "up", "--only", "redis,telemetry,api,webhook")
    yield state_dir
    cli(state_dir, "down", check=False)


def request_seconds(api: str) -> float:
    started = time.monotonic()
    answer = requests.get(f"{api}/api/jobs?status=pending&limit=1", timeout=10)
    assert answer.status_code in (200, 401), answer.text
    return time.monotonic() - started


def test_the_fault_is_in_effect_when_the_command_returns(sandbox):
    api = status(sandbox)["api"]
    for _round in range(ROUNDS):
        answer = json.loads(cli(sandbox, "fault", "api-latency", "--ms", str(DELAY_MS)).stdout)
        assert answer["applied_by"] == ["api"]
        assert request_seconds(api) >= DELAY_MS / 1000
        cleared = json.loads(cli(sandbox, "fault", "clear", "api-latency").stdout)
        assert cleared["cleared"] == ["api-latency"] and cleared["applied_by"] == ["api"]
        assert request_seconds(api) < DELAY_MS / 1000


def test_a_stopped_service_is_not_waited_for(sandbox):
    # the worker and the monitor are not running in this sandbox: redis-drop concerns them too
    answer = json.loads(cli(sandbox, "fault", "redis-drop").stdout)
    assert answer["applied_by"] == ["api", "webhook"]
    cli(sandbox, "fault", "clear", "redis-drop")


def test_a_service_that_cannot_acknowledge_makes_fault_fail_naming_it(sandbox):
    pid = recorded_processes(sandbox)["api"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        proc = cli(sandbox, "fault", "api-latency", "--timeout", "1.5", check=False)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert proc.returncode != 0
    assert "api did not take up the faults file within 1.5 s" in proc.stderr, proc.stderr
    assert elapsed < 10
    # the fault is written all the same, and the service takes it up once it runs again
    assert "api-latency" in json.loads(cli(sandbox, "fault", "list").stdout)["faults"]
    assert json.loads(cli(sandbox, "fault", "clear", "api-latency").stdout)["applied_by"] == ["api"]


def test_a_bad_timeout_is_refused(sandbox):
    proc = cli(sandbox, "fault", "api-latency", "--timeout", "0", check=False)
    assert proc.returncode != 0 and "--timeout 0.0: must be > 0" in proc.stderr, proc.stderr
    assert "api-latency" not in json.loads(cli(sandbox, "fault", "list").stdout)["faults"]
