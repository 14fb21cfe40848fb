"""Unit tests of the pure parts of emp.deploy.ngrok_tunnel and its module_utils (_ngrok, _ngrok_agent, _ngrok_health)."""
from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import pytest
import yaml

from ansible_collections.emp.deploy.plugins.module_utils import _ngrok as ngrok
from ansible_collections.emp.deploy.plugins.module_utils import _ngrok_agent as agent
from ansible_collections.emp.deploy.plugins.module_utils import _ngrok_health as health
from ansible_collections.emp.deploy.plugins.modules import ngrok_tunnel as module
from sandbox.ngrok import config as standin_config
from sandbox.ngrok import pages as standin_pages
from ngrok_harness import HttpUpstream, free_port
from servers import LOAD_MARGIN_S

U = ngrok.Upstream


def tunnel(name="api", addr="localhost:3331", proto="https", public_url="https://abc.ngrok-free.app"):
    return {"name": name, "uri": f"/api/tunnels/{name}", "public_url": public_url, "proto": proto,
            "config": {"addr": addr, "inspect": True}}


# --------------------------------------------------------------------------- upstreams
@pytest.mark.parametrize("addr, proto, expected", [
    ("3331", "http", U("http", "localhost", 3331)),
    (3331, "http", U("http", "localhost", 3331)),
    ("localhost:3331", "http", U("http", "localhost", 3331)),
    ("127.0.0.1:3331", "http", U("http", "localhost", 3331)),
    ("[::1]:3331", "http", U("http", "localhost", 3331)),
    ("http://LOCALHOST:3331", "http", U("http", "localhost", 3331)),
    ("http://127.0.0.1:3331/", "https", U("http", "localhost", 3331)),
    ("https://localhost:8443", "http", U("https", "localhost", 8443)),
    ("https://localhost", "http", U("https", "localhost", 443)),
    ("http://api.internal", "http", U("http", "api.internal", 80)),
    ("10.0.0.5:3331", "http", U("http", "10.0.0.5", 3331)),
    ("6379", "tcp", U("tcp", "localhost", 6379)),
    ("tcp://127.0.0.1:6379", "tcp", U("tcp", "localhost", 6379)),
])
def test_parse_upstream_normalises(addr, proto, expected):
    assert ngrok.parse_upstream(addr, proto) == expected


@pytest.mark.parametrize("addr, proto, words", [
    ("", "http", "addr is empty"),
    (None, "http", "addr is empty"),
    ("not-a-port", "http", "expected a port, host:port or a URL"),
    ("99999", "http", "port 99999 is out of range"),
    ("0", "tcp", "port 0 is out of range"),
    ("localhost:abc", "http", "is not an upstream address"),
    ("tcp://localhost:6379", "http", "forwards to http:// or https://"),
    ("http://localhost:80", "tcp", "forwards to tcp://"),
    ("3331", "tls", "proto must be one of http, tcp"),
])
def test_parse_upstream_refuses(addr, proto, words):
    with pytest.raises(ValueError, match=words):
        ngrok.parse_upstream(addr, proto)


def test_labels_name_host_and_port():
    assert U("http", "localhost", 3331).label == "localhost:3331"
    assert U("https", "localhost", 8443).label == "https://localhost:8443"
    assert U("tcp", "fe80::1", 6379).label == "[fe80::1]:6379"
    assert U("http", "localhost", 1).connect_host == "127.0.0.1"
    assert U("http", "10.0.0.5", 1).connect_host == "10.0.0.5"


def test_the_old_scripts_comparison_fails_where_parsing_holds():
    """The old script compared the cloud API's forwards_to with f"http://localhost:{port}" as strings."""
    listed = tunnel(addr="127.0.0.1:3331")  # what the local agent API lists for a tunnel to port 3331
    assert listed["config"]["addr"] != "http://localhost:3331"  # the string test says "wrong upstream"
    assert ngrok.tunnel_upstream(listed) == ngrok.parse_upstream("3331", "http")  # it is the right one
    assert ngrok.tunnel_upstream({"name": "x", "forwards_to": "http://localhost:3331"}) is None


# --------------------------------------------------------------------------- plans and conflicts
def test_plan_tunnel():
    wanted = ngrok.parse_upstream("3331", "http")
    assert ngrok.plan_tunnel(None, "http", wanted).action == "create"
    assert ngrok.plan_tunnel(tunnel(), "http", wanted) == ("none", "it already forwards to localhost:3331")
    assert ngrok.plan_tunnel(tunnel(proto="http"), "http", wanted).action == "none"
    assert ngrok.plan_tunnel(tunnel(), "http", wanted, restart=True) == ("replace", "state=restarted recreates it")
    assert ngrok.plan_tunnel(tunnel(addr="3332"), "http", wanted) == (
        "replace", "it forwards to localhost:3332, localhost:3331 is wanted")
    assert ngrok.plan_tunnel(tunnel(proto="tcp"), "http", wanted).reason == "it is a tcp tunnel, http is wanted"
    assert ngrok.plan_tunnel(tunnel(addr="???"), "http", wanted).reason == "its upstream '???' cannot be read"
    assert ngrok.plan_tunnel(tunnel(addr="https://localhost:3331"), "http", wanted).action == "replace"


def test_find_conflicts_ignores_own_name_and_other_protocols():
    wanted = ngrok.parse_upstream("3331", "http")
    tunnels = [tunnel("api"), tunnel("dup", "http://127.0.0.1:3331"), tunnel("tcp", "3331", "tcp"),
               tunnel("other", "3332")]
    assert [c["name"] for c in ngrok.find_conflicts(tunnels, "api", "http", wanted)] == ["dup"]
    assert ngrok.find_conflicts(tunnels, "dup", "http", wanted)[0]["name"] == "api"
    assert ngrok.find_conflicts([], "api", "http", wanted) == []


def test_summarize_tunnel():
    assert ngrok.summarize_tunnel(tunnel()) == {
        "name": "api", "public_url": "https://abc.ngrok-free.app", "proto": "https", "addr": "localhost:3331",
        "upstream": "localhost:3331", "uri": "/api/tunnels/api"}


# --------------------------------------------------------------------------- error pages and health
def test_find_error_code():
    assert ngrok.find_error_code({"Ngrok-Error-Code": "ERR_NGROK_3200"}, "") == "ERR_NGROK_3200"
    assert ngrok.find_error_code({}, b"<p>ERR_NGROK_8012</p> ERR_NGROK_1") == "ERR_NGROK_8012"
    assert ngrok.find_error_code(None, "all fine") is None
    assert ngrok.find_error_code({"ngrok-error-code": ""}, "ERR_NGROK_3004") == "ERR_NGROK_3004"
    # The stand-in's pages carry both; the code is recognised from either.
    status, code, body = standin_pages.upstream_refused("localhost:3331", "localhost:3331", "connection refused")
    assert (status, ngrok.find_error_code({}, body)) == (502, code) == (502, "ERR_NGROK_8012")


def test_describe_error_names_every_code_the_issue_lists():
    for code in ("ERR_NGROK_3200", "ERR_NGROK_8012", "ERR_NGROK_3004"):
        assert ngrok.describe_error(code) != "an ngrok error"
    assert ngrok.describe_error("ERR_NGROK_9999") == "an ngrok error"


def http_check(**overrides):
    check = {"url": "https://abc.ngrok-free.app/health", "reachable": True, "status": 200, "error_code": None}
    check.update(overrides)
    return check


def test_judge_http_health():
    upstream = ngrok.parse_upstream("3331", "http")
    assert ngrok.judge_http_health(http_check(), None, None) == []
    assert ngrok.judge_http_health(http_check(status=404), None, None) == []
    assert ngrok.judge_http_health(http_check(status=503), None, None) == [
        "GET https://abc.ngrok-free.app/health answered 503, a server error"]
    assert ngrok.judge_http_health(http_check(status=503), [503], None) == []
    assert ngrok.judge_http_health(http_check(status=201), [200, 204], None) == [
        "GET https://abc.ngrok-free.app/health answered 201, expected 200 or 204"]
    assert ngrok.judge_http_health(http_check(body_matched=False), None, "ok") == [
        "GET https://abc.ngrok-free.app/health answered 200 but its body does not contain 'ok'"]
    assert ngrok.judge_http_health(http_check(body_matched=True), None, "ok") == []
    refused = ngrok.judge_http_health(http_check(status=502, error_code="ERR_NGROK_8012"), [502], None, upstream)
    assert refused == ["GET https://abc.ngrok-free.app/health answered 502 with ngrok error ERR_NGROK_8012: the agent "
                       "could not connect to the upstream localhost:3331 (connection refused)"]
    offline = ngrok.judge_http_health(http_check(status=404, error_code="ERR_NGROK_3200"), None, None)
    assert "ERR_NGROK_3200: the endpoint is offline" in offline[0]
    gone = ngrok.judge_http_health(http_check(reachable=False, status=None, error="connection refused"), None, None)
    assert gone == ["GET https://abc.ngrok-free.app/health failed: connection refused; "
                    "the agent no longer serves this public URL"]


def test_judge_tcp_health():
    assert ngrok.judge_tcp_health({"url": "tcp://x:1", "reachable": True, "closed_at_once": False}) == []
    assert "closed it at once" in ngrok.judge_tcp_health({"url": "tcp://x:1", "reachable": True, "closed_at_once": True})[0]
    assert "failed: refused" in ngrok.judge_tcp_health({"url": "tcp://x:1", "reachable": False, "error": "refused"})[0]


def test_health_url():
    assert ngrok.health_url("https://abc.ngrok-free.app", "/health") == "https://abc.ngrok-free.app/health"
    assert ngrok.health_url("http://127.0.0.1:5/", "/") == "http://127.0.0.1:5/"


# --------------------------------------------------------------------------- agent configuration
def test_web_addr_and_api_base():
    assert ngrok.web_addr_from_api_url("http://127.0.0.1:4040") == "127.0.0.1:4040"
    assert ngrok.web_addr_from_api_url("http://localhost") == "localhost:80"
    assert ngrok.web_addr_from_api_url("http://[::1]:4041/api") == "[::1]:4041"
    with pytest.raises(ValueError, match="not an http:// URL"):
        ngrok.web_addr_from_api_url("127.0.0.1:4040")
    assert ngrok.api_base("http://127.0.0.1:4040/api/") == "http://127.0.0.1:4040"
    assert ngrok.api_base("http://127.0.0.1:4040/") == "http://127.0.0.1:4040"


@pytest.mark.parametrize("token", ["2abcDEF_ghi", 'quote"and\\backslash: #not-a-comment', "ünïcode-tøken"])
def test_rendered_config_is_v3_yaml_the_standin_reads(token):
    text = ngrok.render_agent_config(token, "127.0.0.1:4040")
    assert yaml.safe_load(text) == {"version": "3", "agent": {"authtoken": token, "web_addr": "127.0.0.1:4040"}}
    parsed = standin_config.parse_config(yaml.safe_load(text))
    assert parsed.authtoken == token and parsed.web_addr == ("127.0.0.1", 4040) and parsed.tunnels == {}


def test_parse_version_output():
    assert ngrok.parse_version_output("ngrok version 3.19.1\n") == "3.19.1"
    assert ngrok.parse_version_output("something else") is None


def test_private_config_file_is_written_atomically_with_mode_0600(tmp_path):
    path = str(tmp_path / "conf" / "ngrok.yml")
    assert agent.file_needs_update(path, "a")
    agent.write_private_file(path, "a")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and open(path).read() == "a"
    assert not agent.file_needs_update(path, "a")
    assert agent.file_needs_update(path, "b")
    os.chmod(path, 0o644)
    assert agent.file_needs_update(path, "a"), "a readable token file is rewritten"
    assert [p.name for p in (tmp_path / "conf").iterdir()] == ["ngrok.yml"]


def test_explain_agent_exit_names_the_code():
    tail = "ERROR:  authentication failed: Usage of ngrok requires ...\nERROR:  ERR_NGROK_4018\n"
    message = agent.explain_agent_exit(1, tail)
    assert message.startswith("the ngrok agent exited with status 1 (ERR_NGROK_4018: the agent has no authtoken)")
    assert agent.explain_agent_exit(2, "") == "the ngrok agent exited with status 2"


# --------------------------------------------------------------------------- probes on real sockets
def test_probe_http_sends_the_skip_header_and_reads_error_pages():
    upstream = HttpUpstream().start()
    try:
        ok = health.probe_http(f"http://127.0.0.1:{upstream.port}/health", 2, expect_body='"ok"')
        assert ok["status"] == 200 and ok["reachable"] and ok["body_matched"] and ok["error_code"] is None
        headers = {k.lower(): v for k, v in upstream.requests[-1]["headers"].items()}
        assert headers["ngrok-skip-browser-warning"] == "1" and headers["user-agent"] == "emp.deploy.ngrok_tunnel"
        error = health.probe_http(f"http://127.0.0.1:{upstream.port}/status/503", 2)
        assert error["status"] == 503 and error["body_excerpt"] == "status page"
    finally:
        upstream.stop()
    refused = health.probe_http(f"http://127.0.0.1:{upstream.port}/health", 2)
    assert refused["reachable"] is False and "refused" in refused["error"]


def test_probe_http_times_out():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        check = health.probe_http(f"http://127.0.0.1:{silent.getsockname()[1]}/", 0.3)
    finally:
        silent.close()
    assert check["reachable"] is False and check["error"] == "timed out" and check["elapsed_ms"] < (0.3 + LOAD_MARGIN_S) * 1000


def test_probe_tcp_unreachable_port():
    check = health.probe_tcp(f"tcp://127.0.0.1:{free_port()}", 1)
    assert check["reachable"] is False and check["method"] == "TCP"


class _SlowEdge:
    """Accepts one connection and closes it ``close_after`` seconds later (None: never), like an edge whose agent's dial fails slowly."""

    def __init__(self, close_after: float | None) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.closer = threading.Thread(target=self._serve, args=(close_after,), daemon=True)
        self.closer.start()

    def _serve(self, close_after: float | None) -> None:
        conn, _address = self.listener.accept()
        if close_after is None:
            self.conn = conn  # kept open until stop()
            return
        time.sleep(close_after)
        conn.close()

    def stop(self) -> None:
        self.listener.close()
        getattr(self, "conn", socket.socket()).close()


def test_probe_tcp_sees_a_close_that_comes_later_than_a_moment():
    # A refused upstream behind a distant edge closes the connection one round trip later; the old
    # fixed 0.3 s wait judged it healthy. Here the close comes after 1 s, inside a generous window.
    edge = _SlowEdge(close_after=1.0)
    try:
        check = health.probe_tcp(f"tcp://127.0.0.1:{edge.port}", 30, settle=20)
    finally:
        edge.stop()
    assert check["reachable"] is True and check["closed_at_once"] is True
    assert check["elapsed_ms"] >= 1000


def test_probe_tcp_waits_for_the_close_no_longer_than_the_timeout():
    edge = _SlowEdge(close_after=None)
    try:
        check = health.probe_tcp(f"tcp://127.0.0.1:{edge.port}", 1.0, settle=60)
    finally:
        edge.stop()
    assert check["reachable"] is True and check["closed_at_once"] is False
    assert 900 <= check["elapsed_ms"] < (1.0 + LOAD_MARGIN_S) * 1000  # the timeout, not the settle window


def test_port_listening():
    assert agent.port_listening("127.0.0.1", free_port(), 1)[0] is False


# --------------------------------------------------------------------------- options
DEFAULTS = {key: spec.get("default") for key, spec in {**agent.NGROK_AGENT_ARGSPEC, **module.TUNNEL_ARGSPEC}.items()}


def options(**overrides):
    merged = dict(DEFAULTS, name="api", addr="3331")
    merged.update(overrides)
    return merged


@pytest.mark.parametrize("overrides, message", [
    ({}, None),
    ({"name": "  "}, "name must not be empty"),
    ({"timeout": 0.0}, "timeout must be greater than 0, got 0.0"),
    ({"agent_start_timeout": -1.0}, "agent_start_timeout must be greater than 0, got -1.0"),
    ({"recheck_delay": -0.5}, "recheck_delay must not be negative, got -0.5"),
    ({"tcp_settle": 0.0}, "tcp_settle must be greater than 0, got 0.0"),
    ({"health_path": "health"}, "health_path must start with '/', got 'health'"),
    ({"expect_status": [200, 42]}, "expect_status holds 42, which is not an HTTP status"),
    ({"api_url": "localhost:4040"}, "api_url 'localhost:4040' is not an http:// URL"),
])
def test_validate_options(overrides, message):
    found = module.validate_options(options(**overrides))
    if message is None:
        assert found is None
    else:
        assert found is not None and found.startswith(message)


def test_authtoken_is_no_log_with_env_fallback():
    spec = agent.NGROK_AGENT_ARGSPEC["authtoken"]
    assert spec["no_log"] is True and spec["fallback"][1] == ["NGROK_AUTHTOKEN"]


def test_documentation_matches_the_argument_spec():
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    from ansible_collections.emp.deploy.plugins.doc_fragments.ngrok import ModuleDocFragment

    documented.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
    spec = {**agent.NGROK_AGENT_ARGSPEC, **module.TUNNEL_ARGSPEC}
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name]["type"] == option["type"], name
    assert json.loads(json.dumps(yaml.safe_load(module.RETURN)))["healthy"]["type"] == "bool"
