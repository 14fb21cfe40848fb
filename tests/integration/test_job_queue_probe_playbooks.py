"""emp.deploy.job_queue_probe through real ansible-playbook runs: check mode does nothing, secrets never
reach the output (-vvv), bad input fails cleanly, and emp.deploy.gate decides GO, NO-GO and
could-not-measure (never GO) with it."""
from __future__ import annotations

import pytest

from conftest import free_port
from job_queue_support import (  # noqa: F401  # pylint: disable=unused-import
    client,
    load,
    playbook_run,
    queue_redis,
    snapshot,
    start_api,
    start_service,
)

# pylint: disable=redefined-outer-name
MODULE = "emp.deploy.job_queue_probe"


def probe_task(register: str, args: dict) -> dict:
    return {"name": f"Probe {register}", MODULE: args, "register": register, "ignore_errors": True}


def gate_task(register: str, args: dict, check_mode: bool | None = False) -> dict:
    probe = {"module": MODULE, "args": args}
    if check_mode is not None:
        probe["check_mode"] = check_mode
    return {"name": f"Gate {register}", "emp.deploy.gate": {
        "name": register, "phase": "predeploy", "component": "redis", "probe": probe, "samples": 1,
        "criteria": ["result.healthy", "result.claim.claimed_more_than_once == 0"]},
        "register": register, "ignore_errors": True}


def connections_received(server) -> int:
    return int(client(server).info("stats")["total_connections_received"])


def test_check_mode_connects_to_nothing_and_writes_nothing(queue_redis, tmp_path):
    before = snapshot(queue_redis)
    connections = connections_received(queue_redis)
    results, _run = playbook_run(tmp_path, [probe_task("r", {
        "port": queue_redis.port, "api_url": f"http://127.0.0.1:{free_port()}", "claim_jobs": 25, "claimers": 5})],
        check=True)
    result = results["r"]
    assert result["skipped"] is True and result["changed"] is False
    assert "did nothing" in result["msg"]
    assert any("25 synthetic jobs" in step and "5 concurrent claimers" in step for step in result["plan"])
    assert "claim" not in result and "cleanup" not in result
    # one connection since: the snapshot's own client
    assert connections_received(queue_redis) == connections + 1
    assert snapshot(queue_redis) == before


def test_secrets_never_reach_the_output(redis_factory, start_service, tmp_path):
    password, token = "redis-secret-5d1f0b", "api-token-e83a27"
    server = redis_factory(password=password)
    load(server)
    api = start_api(start_service, server, "--auth-token", token)
    # as a vault would give them: variables, so the playbook's own text (which Ansible quotes in errors) holds none
    results, run = playbook_run(tmp_path, [
        probe_task("ok", {"url": f"redis://:{{{{ redis_password }}}}@127.0.0.1:{server.port}/0", "api_url": api.url,
                          "api_token": "{{ api_token }}", "check_workers": False, "claim_jobs": 5}),
        probe_task("wrong_token", {"port": server.port, "password": "{{ redis_password }}", "api_url": api.url,
                                   "api_token": "{{ api_token }}-wrong", "check_workers": False, "claim_jobs": 0}),
    ], args=["-vvv"], extra_vars={"redis_password": password, "api_token": token})
    assert results["ok"]["healthy"] is True, results["ok"]["problems"]
    assert "HTTP 401" in results["wrong_token"]["problems"][0]
    for secret in (password, token):
        assert secret not in run.stdout and secret not in run.stderr
        assert secret not in str(results)
    assert snapshot(server)["pending"] == []


@pytest.mark.parametrize("args, message", [
    ({"claim_jobs": 5}, "api_url is required to submit probe jobs"),
    ({"submit_jobs": 0, "claim_jobs": 5000}, "claim_jobs must be between 0 and 1000, got 5000"),
    ({"submit_jobs": 0, "claim_jobs": 0, "check_workers": False}, "nothing to check"),
    ({"api_url": "ftp://api.internal", "claim_jobs": 1}, "api_url cannot be used: the URL scheme is 'ftp'"),
    ({"submit_jobs": 0, "claimers": 0}, "claimers must be between 1 and 64, got 0"),
])
def test_bad_input_fails_before_anything_is_written(queue_redis, tmp_path, args, message):
    before = snapshot(queue_redis)
    connections = connections_received(queue_redis)
    results, _run = playbook_run(tmp_path, [probe_task("r", {"port": queue_redis.port, **args})])
    assert results["r"]["failed"] is True and message in results["r"]["msg"]
    assert connections_received(queue_redis) == connections + 1
    assert snapshot(queue_redis) == before


def test_gate_go_no_go_and_could_not_measure(redis_factory, tmp_path):
    healthy, broken = redis_factory(), redis_factory()
    load(healthy)
    load(broken, "no_zrem")
    redis_only = {"submit_jobs": 0, "check_workers": False, "claim_jobs": 10, "claimers": 4}
    before = {server.port: snapshot(server) for server in (healthy, broken)}
    results, _run = playbook_run(tmp_path, [
        gate_task("go", {"port": healthy.port, **redis_only}),
        gate_task("no_go", {"port": broken.port, **redis_only}),
        gate_task("down", {"port": free_port(), "connect_timeout": 1, **redis_only}),
        # without probe.check_mode the gate runs a probe that writes in check mode: no data, never GO
        gate_task("default_check_mode", {"port": healthy.port, **redis_only}, check_mode=None),
    ])
    decision = {name: (result["emp_gate"]["decision"], result["msg"]) for name, result in results.items()}
    assert decision["go"][0] == "GO", decision["go"][1]
    assert decision["no_go"][0] == "NO-GO" and "synthetic jobs claimed more than once" in decision["no_go"][1]
    assert decision["down"][0] == "NO-GO"
    assert "could not measure" in decision["down"][1] and "cannot connect to Redis" in decision["down"][1]
    assert decision["default_check_mode"][0] == "NO-GO"
    assert "set probe.check_mode: false" in decision["default_check_mode"][1]
    for server in (healthy, broken):
        assert snapshot(server) == before[server.port]
