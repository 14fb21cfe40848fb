"""The ngrok stand-in (sandbox/bin/ngrok) as a real process: CLI, config, local API, forwarding, error pages."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from ngrok_harness import (
    BIN,
    TEST_AUTHTOKEN,
    HttpUpstream,
    NgrokStandIn,
    TcpUpstream,
    free_port,
    http,
    wait_until,
)

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def standins(tmp_path):
    started: list[NgrokStandIn] = []

    def make(name: str = "agent", **kwargs) -> NgrokStandIn:
        agent = NgrokStandIn(tmp_path / name, **kwargs)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.cleanup()


@pytest.fixture
def upstream():
    server = HttpUpstream().start()
    yield server
    server.stop()


def run_cli(*args: str, env: dict | None = None, python: str = sys.executable, timeout: float = 20):
    return subprocess.run([python, str(BIN), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


# --------------------------------------------------------------------------- CLI
def test_version_direct_python_and_module():
    direct = subprocess.run([str(BIN), "version"], capture_output=True, text=True, timeout=20, check=True)
    assert direct.returncode == 0 and direct.stdout.startswith("ngrok version 3."), direct.stderr
    assert run_cli("version").stdout == direct.stdout
    assert run_cli("--version").stdout == direct.stdout
    as_module = subprocess.run([sys.executable, "-m", "sandbox.ngrok", "version"], capture_output=True, text=True,
                               timeout=20, cwd=str(BIN.parents[2]), check=True)
    assert as_module.stdout == direct.stdout


def test_refuses_to_start_without_authtoken(standins):
    agent = standins(authtoken=None)
    env = {k: v for k, v in os.environ.items() if k != "NGROK_AUTHTOKEN"}
    proc = subprocess.run(agent.command("start", "--all", "--config", str(agent.config_path)), capture_output=True,
                          text=True, timeout=20, env=env, check=False)
    assert proc.returncode == 1
    assert "ERR_NGROK_4018" in proc.stderr and "authentication failed" in proc.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", agent.web_port), timeout=0.5)


def test_authtoken_from_environment_and_malformed_token(standins):
    agent = standins(authtoken=None)
    agent.start("--none", env={"NGROK_AUTHTOKEN": TEST_AUTHTOKEN})
    assert agent.api("GET", "/api/status")[1]["status"] == "online"
    agent.kill()
    bad = run_cli("start", "--none", "--config", str(agent.config_path), "--authtoken", "not a token!")
    assert bad.returncode == 1 and "ERR_NGROK_105" in bad.stderr
    assert "not a token!" not in bad.stderr + bad.stdout


def test_config_check(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("version: 3\nagent:\n  authtoken: abcdefgh12\n  web_addr: 127.0.0.1:4999\n"
                    "endpoints:\n  - name: api\n    upstream:\n      url: 3331\n")
    ok = run_cli("config", "check", "--config", str(good))
    assert ok.returncode == 0 and f"Valid configuration file at {good}" in ok.stdout
    for text, words in [
        ("version: 9\n", "'version'"),
        ("version: 3\ntunnels:\n  api:\n    addr: 3331\n", "'proto' is required"),
        ("version: 3\nagent:\n  web_addr: 0.0.0.0:4040\n", "loopback only"),
        ("version: 3\nendpoints:\n  - name: x\n", "upstream.url"),
        ("version: [3\n", "Error reading configuration file"),
    ]:
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        proc = run_cli("config", "check", "--config", str(bad))
        assert proc.returncode == 1 and words in proc.stderr, (text, proc.stderr)
    missing = run_cli("config", "check", "--config", str(tmp_path / "nope.yml"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_add_authtoken_writes_a_private_v3_config(tmp_path):
    path = tmp_path / "sub" / "ngrok.yml"
    proc = run_cli("config", "add-authtoken", TEST_AUTHTOKEN, "--config", str(path))
    assert proc.returncode == 0 and "Authtoken saved" in proc.stdout
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert run_cli("config", "check", "--config", str(path)).returncode == 0


def test_start_by_name_and_unknown_name(standins, upstream):
    agent = standins(config={"tunnels": {"a": {"proto": "http", "addr": upstream.port},
                                         "b": {"proto": "http", "addr": f"127.0.0.1:{upstream.port}"}}})
    agent.start("a")
    assert [t["name"] for t in agent.tunnels()] == ["a"]
    agent.kill()
    proc = run_cli("start", "nope", "--config", str(agent.config_path))
    assert proc.returncode == 1 and "Tunnel 'nope' is not defined in the config files." in proc.stderr


def test_several_config_files_are_merged_in_order(standins, upstream, tmp_path):
    agent = standins(authtoken=None)  # agent section (web_addr) without a token
    token_file = tmp_path / "token.yml"
    token_file.write_text(f"version: 3\nagent:\n  authtoken: {TEST_AUTHTOKEN}\n")
    tunnels_file = tmp_path / "tunnels.yml"
    tunnels_file.write_text(f"version: 3\ntunnels:\n  web:\n    proto: http\n    addr: {upstream.port}\n"
                            f"endpoints:\n  - name: api\n    upstream:\n      url: {upstream.port}\n")
    proc = subprocess.Popen(agent.command("start", "--all", "--config", str(agent.config_path),
                                          "--config", f"{token_file},{tunnels_file}", "--log", "false"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agent.wait_ready()
        assert sorted(t["name"] for t in agent.tunnels()) == ["api", "web"]
        files = agent.api("GET", "/api/status")[1]["config_files"]
        assert files == [str(agent.config_path), str(token_file), str(tunnels_file)]
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- API
def test_config_tunnels_and_endpoints_start_with_all(standins, upstream):
    pinned = free_port()
    agent = standins(config={
        "endpoints": [{"name": "api", "url": f"http://127.0.0.1:{pinned}", "upstream": {"url": upstream.port}}],
        "tunnels": {"redis": {"proto": "tcp", "addr": "6399"}},
    })
    agent.start("--all")
    listed = {t["name"]: t for t in agent.api("GET", "/api/tunnels")[1]["tunnels"]}
    assert set(listed) == {"api", "redis"}
    api = listed["api"]
    assert api["public_url"] == f"http://127.0.0.1:{pinned}"
    assert api["proto"] == "http" and api["config"] == {"addr": f"localhost:{upstream.port}", "inspect": True}
    assert api["uri"] == "/api/tunnels/api" and "conns" in api["metrics"] and "http" in api["metrics"]
    assert listed["redis"]["public_url"].startswith("tcp://127.0.0.1:")
    assert agent.api("GET", "/api/tunnels")[1]["uri"] == "/api/tunnels"
    status = agent.api("GET", "/api/status")[1]
    assert status["status"] == "online" and status["tunnels"] == 2 and status["version"].startswith("3.")


def test_post_get_delete_and_errors(standins, upstream):
    agent = standins().start("--none")
    status, created = agent.api("POST", "/api/tunnels", {"name": "web", "addr": str(upstream.port), "proto": "http"})
    assert status == 201 and created["name"] == "web" and created["public_url"].startswith("http://127.0.0.1:")
    assert agent.api("GET", "/api/tunnels/web") == (200, created | {"metrics": created["metrics"]})
    duplicate = agent.api("POST", "/api/tunnels", {"name": "web", "addr": "1234", "proto": "http"})
    assert duplicate[0] == 400 and duplicate[1]["error_code"] == 102
    assert duplicate[1]["details"]["err"] == 'tunnel "web" already exists'
    for body in [{"addr": "80", "proto": "http"}, {"name": "x", "proto": "http"}, {"name": "x", "addr": "80"},
                 {"name": "x", "addr": "abc", "proto": "http"}, {"name": "x", "addr": "80", "proto": "tls"},
                 {"name": "x", "addr": "99999", "proto": "tcp"}, [1, 2]]:
        status, error = agent.api("POST", "/api/tunnels", body)
        assert status == 400 and error["status_code"] == 400 and error["details"]["err"], body
    status, _h, raw = http("POST", agent.api_url + "/api/tunnels", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "invalid JSON" in raw.decode()
    assert agent.api("DELETE", "/api/tunnels/web") == (204, None)
    assert agent.api("GET", "/api/tunnels/web")[0] == 404
    assert agent.api("DELETE", "/api/tunnels/web")[0] == 404
    assert agent.api("GET", "/api/nothing")[0] == 404
    assert agent.tunnels() == []


# --------------------------------------------------------------------------- forwarding
def test_http_forwarding_error_pages_and_interstitial(standins, upstream):
    agent = standins().start("--none")
    url = agent.create("web", str(upstream.port))["public_url"]
    status, headers, body = http("POST", url + "/jobs?x=1", b'{"a": 1}', {"Content-Type": "application/json"})
    assert status == 201 and json.loads(body) == {"echo": '{"a": 1}'}
    status, headers, body = http("GET", url + "/health", headers={"User-Agent": "curl/8"})
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert upstream.requests[-1]["headers"]["X-Forwarded-For"] == "127.0.0.1"

    # Browsers get the free-plan interstitial unless they send the skip header.
    status, headers, body = http("GET", url + "/", headers={"User-Agent": BROWSER_UA})
    assert status == 200 and b"ERR_NGROK_6024" in body and headers["ngrok-error-code"] == "ERR_NGROK_6024"
    status, _h, body = http("GET", url + "/health", headers={"User-Agent": BROWSER_UA, "ngrok-skip-browser-warning": "1"})
    assert status == 200 and json.loads(body) == {"status": "ok"}

    upstream.stop()
    status, headers, body = http("GET", url + "/health")
    assert status == 502 and b"ERR_NGROK_8012" in body and headers["ngrok-error-code"] == "ERR_NGROK_8012"
    assert f"localhost:{upstream.port}".encode() in body
    upstream.start()
    assert http("GET", url + "/health")[0] == 200

    assert agent.api("DELETE", "/api/tunnels/web")[0] == 204
    status, headers, body = http("GET", url + "/health")
    assert status == 404 and b"ERR_NGROK_3200" in body
    again = agent.create("web", str(upstream.port))
    assert again["public_url"] == url, "a re-created tunnel keeps its endpoint, like a reserved domain"
    assert http("GET", url + "/health")[0] == 200
    assert agent.tunnel("web")["metrics"]["http"]["count"] == 1


def test_invalid_upstream_response_is_err_3004(standins):
    garbage = TcpUpstream("garbage").start()
    try:
        agent = standins().start("--none")
        url = agent.create("bad", str(garbage.port))["public_url"]
        status, headers, body = http("GET", url + "/")
        assert status == 502 and headers["ngrok-error-code"] == "ERR_NGROK_3004" and b"ERR_NGROK_3004" in body
    finally:
        garbage.stop()


def test_offline_fault_makes_a_listed_tunnel_answer_3200(standins, upstream):
    agent = standins().start("--none")
    url = agent.create("web", str(upstream.port))["public_url"]
    agent.set_fault("web", "offline")
    assert agent.tunnel("web") is not None
    assert http("GET", url + "/")[0] == 404
    assert agent.api("PUT", "/api/_sandbox/tunnels/web/fault", {"fault": "melt"})[0] == 400
    agent.set_fault("web", None)
    assert http("GET", url + "/")[0] == 200


def test_tcp_relay_and_refused_upstream(standins):
    echo = TcpUpstream("echo").start()
    try:
        agent = standins().start("--none")
        public = agent.create("redis", f"localhost:{echo.port}", "tcp")["public_url"]
        port = int(public.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100) == b"PING\r\n"
        echo.stop()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(5)
            assert sock.recv(100) == b"", "the agent closes a TCP connection whose upstream refuses"
        agent.api("DELETE", "/api/tunnels/redis")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        echo.stop()


def test_non_loopback_upstream_is_refused(standins):
    agent = standins().start("--none")
    url = agent.create("far", "192.0.2.10:80")["public_url"]
    status, _h, body = http("GET", url + "/")
    assert status == 502 and b"ERR_NGROK_8012" in body and b"loopback" in body


def test_websocket_upgrade_is_relayed(standins):
    websockets = pytest.importorskip("websockets")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    port = free_port()

    async def scenario(public_url: str) -> str:
        async def echo(ws):
            async for message in ws:
                await ws.send("echo:" + message)

        async with serve(echo, "127.0.0.1", port):
            async with connect(public_url.replace("http://", "ws://") + "/ws/monitor/1",
                               additional_headers={"ngrok-skip-browser-warning": "1"}) as ws:
                await ws.send("hello")
                return await asyncio.wait_for(ws.recv(), 5)

    agent = standins().start("--none")
    url = agent.create("ws", str(port))["public_url"]
    assert websockets and asyncio.run(scenario(url)) == "echo:hello"


# --------------------------------------------------------------------------- lifecycle
def test_killed_and_restarted_on_the_same_web_addr(standins, upstream):
    pinned = free_port()
    agent = standins(config={"endpoints": [{"name": "api", "url": f"http://127.0.0.1:{pinned}",
                                            "upstream": {"url": upstream.port}}]})
    agent.start("--all")
    agent.create("extra", str(upstream.port))
    pid = agent.proc.pid
    agent.kill()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", pinned), timeout=0.5)
    agent.start("--all")  # returns once the agent listens again (bounded by its own deadline)
    assert agent.proc.pid != pid
    assert [t["name"] for t in agent.tunnels()] == ["api"], "only what the config declares comes back"
    assert http("GET", f"http://127.0.0.1:{pinned}/health")[0] == 200
    agent.stop()
    assert agent.proc.returncode == 0
    assert "received stop request" in agent.log()


def test_sigterm_exits_cleanly_and_never_logs_the_token(standins, upstream):
    agent = standins().start("--all")
    agent.create("web", str(upstream.port))
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(timeout=10)
    assert agent.proc.returncode == 0
    assert TEST_AUTHTOKEN not in agent.log()
    wait_until(lambda: _port_closed(agent.web_port), 5, what="web port released")


def test_console_output_without_log_flag(standins, upstream):
    agent = standins(config={"tunnels": {"web": {"proto": "http", "addr": upstream.port}}})
    proc = subprocess.Popen(agent.command("start", "--all", "--config", str(agent.config_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("Forwarding") for line in lines):
            lines.append(proc.stdout.readline())
        assert any("Session Status" in line and "online" in line for line in lines)
        assert f"localhost:{upstream.port}" in lines[-1]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return False
    except OSError:
        return True
