"""emp.deploy.ngrok_tunnel through real ansible-playbook runs against the sandbox's ngrok stand-in.

Every test starts its own stand-in (a tmp config on a free web_addr port) or lets the module start
one, and kills every agent process that used its tmp directory at the end.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading

import pytest

from ansible_collections.emp.deploy.plugins.module_utils._ngrok_health import TCP_SETTLE_S
from conftest import run_playbook, write_playbook
from misbehaving_http import MisbehavingServer, bad_gzip, drip, not_http, truncated
from ngrok_harness import (
    BIN,
    HttpUpstream,
    NgrokStandIn,
    TcpUpstream,
    free_port,
    http,
    kill_pids,
    pids_using,
    wait_until,
)
from servers import LOAD_MARGIN_S

SECRET = "emp_ngrok_s3cret_token_for_leak_checks_42"


@pytest.fixture
def agent(tmp_path):
    """A running stand-in with no tunnels."""
    standin = NgrokStandIn(tmp_path / "agent")
    standin.start("--none")
    yield standin
    standin.cleanup()


@pytest.fixture
def upstream():
    server = HttpUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def agent_dir(tmp_path):
    """A directory for agents the module starts; whatever runs from it is killed at the end."""
    path = tmp_path / "managed"
    path.mkdir()
    yield path
    kill_pids(pids_using(str(path)))


def tunnel_args(standin_or_url, **overrides) -> dict:
    api_url = standin_or_url if isinstance(standin_or_url, str) else standin_or_url.api_url
    args = {"api_url": api_url, "ngrok_binary": str(BIN), "timeout": 5, "recheck_delay": 0}
    args.update(overrides)
    return args


def run(tmp_path, steps: list[dict], *, name: str = "run", env: dict | None = None, verbose: bool = False):
    """One playbook, one module task per step (each may carry check_mode/diff); returns the results and process."""
    out = tmp_path / f"{name}.json"
    tasks = []
    for index, step in enumerate(steps):
        step = dict(step)
        keywords = {key: step.pop(key) for key in ("check_mode", "diff") if key in step}
        lines = [f"- name: Step {index}", f"  emp.deploy.ngrok_tunnel: {json.dumps(step)}",
                 f"  register: step_{index}", "  ignore_errors: true"]
        lines += [f"  {key}: {json.dumps(value)}" for key, value in keywords.items()]
        tasks.append("\n".join(lines))
    registered = ", ".join(f"step_{i}" for i in range(len(steps)))
    tasks.append(f"""- name: Save the results
  ansible.builtin.copy:
    content: "{{{{ [{registered}] | to_json }}}}"
    dest: "{out}"
    mode: "0600"
  check_mode: false""")
    playbook = write_playbook(tmp_path, "\n".join(tasks), name=f"{name}.yml")
    proc = run_playbook(playbook, env=env, args=["-vvv"] if verbose else None, timeout=120)
    assert out.exists(), proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc


# --------------------------------------------------------------------------- present
@pytest.mark.compat
def test_missing_tunnel_created_idempotent_and_check_mode(tmp_path, agent, upstream):
    args = tunnel_args(agent, name="api", addr=str(upstream.port), health_path="/health",
                       expect_status=[200], expect_body='"status": "ok"')
    results, proc = run(tmp_path, [dict(args, check_mode=True, diff=True), args, args, dict(args, check_mode=True)])
    would, created, again, again_check = results
    assert proc.returncode == 0, proc.stdout

    assert would["changed"] is True and would["failed"] is False
    assert would["actions"] == [f"would create tunnel 'api' -> localhost:{upstream.port}: no tunnel of that name is running"]
    assert would["public_url"] is None and would["health"]["checked"] is False
    wanted = {"name": "api", "proto": "http", "addr": str(upstream.port), "upstream": f"localhost:{upstream.port}"}
    assert would["diff"] == {"before": {}, "after": wanted}

    assert created["changed"] is True and created["healthy"] is True and created["problems"] == []
    assert created["actions"][0].startswith("created tunnel 'api' http://127.0.0.1:")  # step 0 created nothing
    public_url = created["public_url"]
    assert public_url == agent.tunnel("api")["public_url"]
    assert created["tunnel"]["upstream"] == f"localhost:{upstream.port}"
    assert created["agent"]["status"] == "online" and created["agent"]["version"].startswith("3.")
    health = created["health"]
    assert health["url"] == public_url + "/health" and health["status"] == 200 and health["attempts"] == 1
    assert health["elapsed_ms"] > 0 and created["attempts"] == 1
    probe = [r for r in upstream.requests if r["path"] == "/health"][0]
    assert {k.lower(): v for k, v in probe["headers"].items()}["ngrok-skip-browser-warning"] == "1"

    for result in (again, again_check):
        assert result["changed"] is False and result["actions"] == [] and result["healthy"] is True
        assert result["public_url"] == public_url and result["health"]["status"] == 200
    assert [t["name"] for t in agent.tunnels()] == ["api"]


def test_wrong_upstream_replaced_equal_addresses_kept_restarted_recreates(tmp_path, agent, upstream):
    other = HttpUpstream().start()
    try:
        agent.create("api", str(other.port))
        agent.create("same", f"http://127.0.0.1:{other.port}")
        first_id = agent.tunnel("same")["ID"]
        results, proc = run(tmp_path, [
            tunnel_args(agent, name="api", addr=f"127.0.0.1:{upstream.port}", diff=True),
            tunnel_args(agent, name="same", addr=f"localhost:{other.port}"),
            tunnel_args(agent, name="same", addr=str(other.port), state="restarted"),
        ])
    finally:
        other.stop()
    replaced, kept, restarted = results
    assert proc.returncode == 0, proc.stdout
    assert replaced["changed"] is True
    assert replaced["actions"][0] == (f"deleted tunnel 'api' because it forwards to localhost:{other.port}, "
                                      f"localhost:{upstream.port} is wanted")
    assert replaced["diff"]["before"]["addr"] == f"localhost:{other.port}"
    assert agent.tunnel("api")["config"]["addr"] == f"127.0.0.1:{upstream.port}"
    assert replaced["healthy"] is True and upstream.requests, "the health check went through the new tunnel"
    # http://127.0.0.1:P and localhost:P are one upstream: the old script's string comparison got this wrong.
    assert kept["changed"] is False and kept["actions"] == []
    assert restarted["changed"] is True and restarted["healthy"] is True
    assert restarted["actions"][0] == "deleted tunnel 'same' because state=restarted recreates it"
    assert agent.tunnel("same")["ID"] != first_id


def test_conflicts_and_silent_upstream_refuse_creation(tmp_path, agent, upstream):
    agent.create("other", str(upstream.port))
    dead = free_port()
    results, proc = run(tmp_path, [
        tunnel_args(agent, name="api", addr=f"localhost:{upstream.port}"),
        tunnel_args(agent, name="dead", addr=str(dead)),
        tunnel_args(agent, name="dead", addr=str(dead), require_upstream=False, fail_on_unhealthy=False),
    ])
    conflict, refused, forced = results
    assert conflict["failed"] is True
    assert conflict["msg"] == (f"will not create tunnel 'api': tunnel 'other' ({agent.tunnel('other')['public_url']}) "
                               f"already forwards to localhost:{upstream.port}")
    assert conflict["conflicts"][0]["name"] == "other"
    assert refused["failed"] is True and f"its upstream localhost:{dead} is not listening" in refused["msg"]
    assert refused["upstream"]["listening"] is False
    assert forced["failed"] is False and forced["changed"] is True and forced["healthy"] is False
    assert any("ERR_NGROK_8012" in p for p in forced["problems"])
    assert [t["name"] for t in agent.tunnels()] == ["other", "dead"]


# --------------------------------------------------------------------------- failures and recovery
def test_upstream_down_err_8012_and_invalid_response_err_3004_are_named(tmp_path, agent, upstream):
    public_url = agent.create("api", str(upstream.port))["public_url"]
    upstream.stop()
    garbage = TcpUpstream("garbage").start()
    args = tunnel_args(agent, name="api", addr=str(upstream.port), health_path="/health")
    try:
        results, _proc = run(tmp_path, [args, dict(args, fail_on_unhealthy=False), dict(args, restart_on_failure=True),
                                        tunnel_args(agent, name="junk", addr=str(garbage.port))])
    finally:
        garbage.stop()
    failed, reported, gave_up, junk = results
    assert failed["failed"] is True and failed["changed"] is False
    assert "ERR_NGROK_8012" in failed["msg"]
    expected = (f"GET {public_url}/health answered 502 with ngrok error ERR_NGROK_8012: the agent could not "
                f"connect to the upstream localhost:{upstream.port} (connection refused)")
    assert expected in failed["problems"]
    assert failed["health"]["error_code"] == "ERR_NGROK_8012" and failed["health"]["status"] == 502
    assert failed["healthy"] is False and failed["public_url"] == public_url
    assert reported["failed"] is False and reported["healthy"] is False and expected in reported["problems"]
    # restart_on_failure recreates once, checks again, and gives up while the upstream stays down.
    assert gave_up["failed"] is True and gave_up["attempts"] == 2 and gave_up["health"]["recovered"] is False
    assert [c["error_code"] for c in gave_up["health"]["checks"]] == ["ERR_NGROK_8012", "ERR_NGROK_8012"]
    assert junk["failed"] is True and junk["health"]["error_code"] == "ERR_NGROK_3004"
    assert "ERR_NGROK_3004: the upstream returned an invalid or incomplete HTTP response" in junk["msg"]


def test_restart_on_failure_recovers_once_the_upstream_is_back(tmp_path, agent, upstream):
    agent.create("api", str(upstream.port))
    upstream.stop()
    # Bring the upstream back as soon as the agent has refused the first health check.
    refused = threading.Event()

    def bring_back() -> None:
        wait_until(lambda: "upstream refused" in agent.log(), 60, interval=0.05, what="first refusal")
        upstream.start()
        refused.set()

    threading.Thread(target=bring_back, daemon=True).start()
    args = tunnel_args(agent, name="api", addr=str(upstream.port), health_path="/health",
                       restart_on_failure=True, recheck_delay=3)
    (result,), proc = run(tmp_path, [args])
    assert refused.is_set(), agent.log()
    assert result["failed"] is False, result.get("msg")
    assert result["healthy"] is True and result["problems"] == []
    assert result["attempts"] == 2 and result["health"]["recovered"] is True
    first, second = result["health"]["checks"]
    assert first["error_code"] == "ERR_NGROK_8012" and second["status"] == 200
    assert result["changed"] is True
    assert result["actions"][0].startswith("deleted tunnel 'api' because the health check failed: GET")
    assert result["actions"][1].startswith("created tunnel 'api'")


def test_stale_tunnel_err_3200_recreated_by_restart_on_failure(tmp_path, agent, upstream):
    agent.create("api", str(upstream.port))
    agent.set_fault("api", "offline")  # listed by the agent, yet its URL answers ERR_NGROK_3200
    args = tunnel_args(agent, name="api", addr=str(upstream.port))
    results, _proc = run(tmp_path, [args, dict(args, restart_on_failure=True)])
    plain, recovered = results
    assert plain["failed"] is True and "ERR_NGROK_3200" in plain["msg"]
    assert "the endpoint is offline" in plain["msg"]
    assert recovered["failed"] is False and recovered["healthy"] is True and recovered["attempts"] == 2
    assert recovered["health"]["checks"][0]["error_code"] == "ERR_NGROK_3200"
    assert agent.tunnel("api") is not None and http("GET", recovered["public_url"] + "/")[0] == 200


def test_tcp_tunnel_and_its_refused_upstream(tmp_path, agent):
    echo = TcpUpstream("echo").start()
    dead = free_port()
    try:
        results, _proc = run(tmp_path, [
            tunnel_args(agent, name="redis", addr=f"localhost:{echo.port}", proto="tcp"),
            # The stand-in closes the connection once its dial to the dead upstream fails; on a loaded
            # host that takes a while, so the probe waits for that close with a generous window.
            tunnel_args(agent, name="dead", addr=f"tcp://127.0.0.1:{dead}", proto="tcp", require_upstream=False,
                        timeout=30, tcp_settle=20),
        ])
    finally:
        echo.stop()
    created, down = results
    assert created["changed"] is True and created["healthy"] is True
    assert created["public_url"].startswith("tcp://127.0.0.1:") and created["health"]["method"] == "TCP"
    assert down["failed"] is True and down["changed"] is True
    assert f"{down['public_url']} accepted the connection and closed it at once" in down["msg"]
    assert created["health"]["closed_at_once"] is False
    assert created["health"]["elapsed_ms"] >= 1000 * TCP_SETTLE_S  # a healthy upstream kept it open all the default window


# --------------------------------------------------------------------------- agent lifecycle
def test_agent_killed_is_started_again_and_the_authtoken_never_appears(tmp_path, agent_dir, upstream):
    web_port = free_port()
    config_path = agent_dir / "ngrok.yml"
    args = tunnel_args(f"http://127.0.0.1:{web_port}", name="api", addr=str(upstream.port), health_path="/health",
                       start_agent=True, config_path=str(config_path))
    (first,), proc1 = run(tmp_path, [dict(args, authtoken=SECRET)], name="first", verbose=True)
    assert first["failed"] is False, first.get("msg")
    assert first["agent"]["started"] is True and first["agent"]["config_changed"] is True
    assert first["healthy"] is True and first["changed"] is True
    assert first["actions"][0] == f"wrote the agent configuration {config_path} (mode 0600)"
    assert oct(config_path.stat().st_mode & 0o777) == "0o600" and SECRET in config_path.read_text()

    os.kill(first["agent"]["pid"], signal.SIGKILL)
    wait_until(lambda: not pids_using(str(config_path)), 10, what="agent gone")
    # Second run: the token comes from NGROK_AUTHTOKEN this time.
    (second,), proc2 = run(tmp_path, [args], name="second", env={"NGROK_AUTHTOKEN": SECRET}, verbose=True)
    assert second["failed"] is False, second.get("msg")
    assert second["agent"]["started"] is True and second["agent"]["pid"] != first["agent"]["pid"]
    assert second["agent"]["config_changed"] is False
    assert "does not answer" in second["actions"][0] and second["actions"][1].startswith("created tunnel 'api'")
    assert second["healthy"] is True and second["health"]["status"] == 200

    for proc in (proc1, proc2):
        assert "ESTABLISH LOCAL CONNECTION" in proc.stdout and "AnsiballZ_ngrok_tunnel" in proc.stdout  # really -vvv
        assert SECRET not in proc.stdout + proc.stderr
    for result in (first, second):
        assert SECRET not in json.dumps(result)
    assert SECRET not in (agent_dir / "ngrok-agent.log").read_text()


def test_check_mode_does_not_start_the_agent(tmp_path, agent_dir, upstream):
    web_port = free_port()
    config_path = agent_dir / "ngrok.yml"
    args = tunnel_args(f"http://127.0.0.1:{web_port}", name="api", addr=str(upstream.port), start_agent=True,
                       config_path=str(config_path), authtoken=SECRET, check_mode=True)
    (result,), proc = run(tmp_path, [args])
    assert proc.returncode == 0, proc.stdout
    assert result["changed"] is True and result["failed"] is False and result["healthy"] is False
    assert result["actions"][0] == f"would write the agent configuration {config_path}"
    assert result["actions"][1].startswith("would start the ngrok agent")
    assert not config_path.exists() and not pids_using(str(agent_dir))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", web_port), timeout=0.5)


def test_agent_failures_are_clear(tmp_path, agent_dir, upstream):
    down_url = f"http://127.0.0.1:{free_port()}"
    user_config = agent_dir / "user.yml"
    user_config.write_text(f"version: 3\nagent:\n  web_addr: {down_url[7:]}\n")
    base = {"name": "api", "addr": str(upstream.port)}
    results, _proc = run(tmp_path, [
        dict(base, api_url=down_url, timeout=2),
        dict(base, api_url=down_url, ngrok_binary="/nonexistent/bin/ngrok", start_agent=True,
             config_path=str(user_config)),
        dict(base, api_url=down_url, ngrok_binary="ngrok-is-not-installed-here", start_agent=True,
             config_path=str(user_config)),
        dict(base, api_url=down_url, ngrok_binary=str(BIN), start_agent=True, config_path=str(user_config)),
        dict(base, api_url=down_url, ngrok_binary=str(BIN), start_agent=True,
             config_path=str(agent_dir / "bad.yml"), authtoken="bad token!"),
        {"name": "api", "state": "absent", "api_url": down_url},
    ], env={"NGROK_AUTHTOKEN": ""})
    unreachable, missing_path, missing_cmd, no_token, bad_token, absent = results
    assert unreachable["failed"] is True
    assert f"the ngrok agent API at {down_url[7:]} does not answer" in unreachable["msg"]
    assert "set start_agent=true" in unreachable["msg"] and unreachable["agent"]["reachable"] is False
    assert missing_path["failed"] is True and "/nonexistent/bin/ngrok does not exist" in missing_path["msg"]
    assert "never downloads" in missing_path["msg"]
    assert missing_cmd["failed"] is True and "'ngrok-is-not-installed-here' is not on PATH" in missing_cmd["msg"]
    assert no_token["failed"] is True and "ERR_NGROK_4018: the agent has no authtoken" in no_token["msg"]
    assert bad_token["failed"] is True and "ERR_NGROK_105" in bad_token["msg"]
    assert not pids_using(str(agent_dir)), "a failed start leaves no agent behind"
    # A stopped agent has no tunnels: absent holds, nothing to do, nothing to start.
    assert absent["failed"] is False and absent["changed"] is False and absent["agent"]["reachable"] is False


# --------------------------------------------------------------------------- absent
def test_absent_removes_and_is_idempotent(tmp_path, agent, upstream):
    public_url = agent.create("api", str(upstream.port))["public_url"]
    args = tunnel_args(agent, name="api", state="absent")
    results, proc = run(tmp_path, [dict(args, check_mode=True), args, args])
    would, removed, again = results
    assert proc.returncode == 0, proc.stdout
    assert would["changed"] is True and would["actions"] == [f"would delete tunnel 'api' ({public_url})"]
    assert removed["changed"] is True and removed["actions"] == [f"deleted tunnel 'api' ({public_url})"]
    assert again["changed"] is False and again["healthy"] is True
    assert agent.tunnels() == []
    assert http("GET", public_url + "/")[0] == 404  # ERR_NGROK_3200 from the deleted tunnel's URL


# --------------------------------------------------------------------------- bad input
def test_bad_input_not_an_agent_and_an_agent_that_never_answers(tmp_path, agent, upstream):
    good = tunnel_args(agent, name="api", addr=str(upstream.port))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nobody ever answers
    try:
        results, _proc = run(tmp_path, [
            dict(good, colour="blue"),
            dict(good, expect_status=["abc"]),
            dict(good, addr="not-a-port"),
            dict(good, addr="99999"),
            dict(good, health_path="health"),
            {k: v for k, v in good.items() if k != "addr"},
            dict(good, api_url="ftp://127.0.0.1:4040"),
            dict(good, timeout=0),
            dict(good, proto="tls"),
            dict(good, expect_status=[999]),
            dict(good, api_url=f"http://127.0.0.1:{upstream.port}"),
            dict(good, api_url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1),
        ])
    finally:
        silent.close()
    messages = [r.get("msg", "") for r in results]
    assert all(r["failed"] for r in results), messages
    assert "Unsupported parameters" in messages[0] and "colour" in messages[0]
    assert "expect_status" in messages[1]
    assert "addr 'not-a-port' is not an upstream address" in messages[2]
    assert "port 99999 is out of range" in messages[3]
    assert messages[4] == "health_path must start with '/', got 'health'"
    assert "state is present but all of the following are missing: addr" in messages[5]
    assert "api_url 'ftp://127.0.0.1:4040' is not an http:// URL" in messages[6]
    assert messages[7] == "timeout must be greater than 0, got 0.0"
    assert "proto" in messages[8] and "tls" in messages[8]
    assert messages[9] == "expect_status holds 999, which is not an HTTP status"
    assert "did not return a tunnel list" in messages[10]
    assert "does not answer" in messages[11] and "timed out" in messages[11]
    assert results[11]["duration_ms"] < (5 + LOAD_MARGIN_S) * 1000  # its timeout of 5 s, honoured
    assert agent.tunnels() == []


# --------------------------------------------------------------------------- misbehaving peers
MARGIN_S = LOAD_MARGIN_S  # a drip of the old kind takes minutes


def fake_agent(*faults: tuple) -> MisbehavingServer:
    """An agent API listing one tunnel 'api' whose public URL is this same server, where ``faults`` answer."""
    server = MisbehavingServer([("GET", path, fault) for path, fault in faults])
    tunnel = {"name": "api", "ID": "fake", "uri": "/api/tunnels/api", "public_url": server.url, "proto": "https",
              "config": {"addr": f"http://localhost:{server.port}", "inspect": False}}
    server.add("GET", "/api/tunnels", (200, "application/json", json.dumps({"tunnels": [tunnel]}).encode()))
    server.add("GET", "/api/status", (200, "application/json", b'{"status": "online", "agent_version": "3.1.0"}'))
    return server


@pytest.mark.compat
def test_broken_answers_through_the_public_url_are_named(tmp_path):
    with fake_agent(("/cut", truncated()), ("/gzip", bad_gzip("text/html")), ("/nothttp", not_http()),
                    ("/slow", drip())) as agent:
        args = tunnel_args(agent.url, name="api", addr=str(agent.port), timeout=2)
        results, _proc = run(tmp_path, [dict(args, health_path=path) for path in ("/cut", "/gzip", "/nothttp", "/slow")])
    cut, gzipped, other, slow = results
    for result in results:
        assert result["failed"] is True and result["healthy"] is False and result["changed"] is False
        assert result["public_url"] == agent.url and result["attempts"] == 1  # the structured result is all there
    assert cut["health"]["broken"] is True and cut["health"]["reachable"] is True
    assert (f"GET {agent.url}/cut failed: the public URL at {agent.where} sent a truncated body to GET /cut "
            "(13 of 100 bytes, then the connection closed)") in cut["problems"]
    assert f"the public URL at {agent.where} sent a broken gzip body to GET /gzip" in gzipped["msg"]
    assert f"the public URL at {agent.where} did not answer GET /nothttp with HTTP" in other["msg"]
    assert slow["health"]["error"].startswith("timed out") and slow["health"]["elapsed_ms"] < (2 + MARGIN_S) * 1000
    assert slow["duration_ms"] < (3 * 2 + MARGIN_S) * 1000  # agent API calls, upstream check, health: each bounded


def test_a_broken_or_dripping_agent_api_is_named(tmp_path):
    with MisbehavingServer([("GET", "/cut/api/tunnels", truncated()), ("GET", "/slow/api/tunnels", drip())]) as api:
        results, _proc = run(tmp_path, [tunnel_args(f"{api.url}/{case}", name="api", addr=str(api.port), timeout=2)
                                        for case in ("cut", "slow")])
    cut, slow = results
    assert cut["failed"] is True and cut["agent"]["reachable"] is False
    assert cut["msg"].startswith(f"the ngrok agent API at {api.where} sent a truncated body to GET /cut/api/tunnels")
    assert "set start_agent=true" not in cut["msg"]  # an answering agent is not started again
    assert slow["failed"] is True and slow["duration_ms"] < (2 + MARGIN_S) * 1000
    assert f"the ngrok agent API at {api.where} does not answer (GET /api/tunnels): timed out" in slow["msg"]


def test_a_config_path_that_is_a_directory_is_named(tmp_path, agent_dir, upstream):
    down_url = f"http://127.0.0.1:{free_port()}"
    base = tunnel_args(down_url, name="api", addr=str(upstream.port), start_agent=True, config_path=str(agent_dir))
    results, _proc = run(tmp_path, [base, dict(base, authtoken=SECRET, check_mode=True)], env={"NGROK_AUTHTOKEN": ""})
    for result in results:
        assert result["failed"] is True and "does not exist" not in result["msg"]
        assert result["msg"].startswith(f"config_path {agent_dir} is a directory, not the agent configuration file")
    assert results[1]["actions"] == []  # check mode does not claim it would write into a directory
    assert not pids_using(str(agent_dir))


def test_check_mode_predicts_the_recovery_it_would_make(tmp_path, agent, upstream):
    agent.create("api", str(upstream.port))
    agent.set_fault("api", "offline")
    first_id = agent.tunnel("api")["ID"]
    args = tunnel_args(agent, name="api", addr=str(upstream.port), restart_on_failure=True)
    results, _proc = run(tmp_path, [dict(args, check_mode=True), args, dict(args, check_mode=True)])
    predicted, done, settled = results
    assert predicted["changed"] is True and predicted["actions"][0].startswith("would recreate tunnel 'api'")
    assert done["changed"] is True and done["healthy"] is True and agent.tunnel("api")["ID"] != first_id
    assert settled["changed"] is False and settled["actions"] == [] and settled["healthy"] is True
