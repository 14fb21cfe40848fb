"""emp.deploy.redis_health and what stands between it and Redis: ACL permissions, its own client name,
URLs with reserved characters in the password, TLS on the wrong port, IPv6. Real redis-server processes."""
from __future__ import annotations

import json
import socket

import pytest
import redis

from redis_probe_runs import probe, probe_many
from servers import LOAD_MARGIN_S


def free_ipv6_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::1", 0))
        return sock.getsockname()[1]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_acl_permission_problems_name_the_command_not_authentication(tmp_path, redis_server):
    redis_server.cli("ACL", "SETUSER", "probe", "on", ">probe-Pa55-never-shown", "~*", "&*", "+@all", "-client|list")
    redis_server.cli("ACL", "SETUSER", "keyless", "on", ">keyless-Pa55-never-shown", "+@all", "resetkeys",
                     "%R~workers:*", "%R~worker:*")
    results, proc = probe_many(tmp_path, {
        "no_client_list": {"port": redis_server.port, "username": "probe", "password": "probe-Pa55-never-shown"},
        "no_queue_key": {"port": redis_server.port, "username": "keyless", "password": "keyless-Pa55-never-shown"},
        "wrong_password": {"port": redis_server.port, "username": "probe", "password": "wrong-Pa55-never-shown"},
    }, cli_args=["-vvv"])
    denied = results["no_client_list"]["msg"]
    assert denied.startswith(f"permission denied: user 'probe' is authenticated at Redis 127.0.0.1:{redis_server.port} "
                             "but may not run CLIENT LIST, which the probe needs (NOPERM "), denied
    assert denied.endswith("; grant it with ACL SETUSER probe +client|list")
    keys = results["no_queue_key"]["msg"]
    assert keys.startswith(f"permission denied: user 'keyless' is authenticated at Redis 127.0.0.1:{redis_server.port} "
                           "but may not read the keys ZCARD needs (NOPERM "), keys
    assert results["wrong_password"]["msg"].startswith(
        f"authentication to Redis at 127.0.0.1:{redis_server.port} failed for user 'probe': WRONGPASS")
    output = proc.stdout + proc.stderr + json.dumps(results)
    assert "Pa55-never-shown" not in output


def test_the_probe_never_counts_its_own_connection_named_or_not(tmp_path, redis_server):
    unnamed = redis.Redis(port=redis_server.port)
    unnamed.ping()
    api = redis.Redis(port=redis_server.port, client_name="emp-api")
    api.ping()
    results, proc = probe_many(tmp_path, {
        "unnamed_probe": {"port": redis_server.port, "client_name": ""},
        "named_probe": {"port": redis_server.port},
        "bad_name": {"port": redis_server.port, "client_name": "emp probe"},
    })
    for key in ("unnamed_probe", "named_probe"):
        clients = results[key]["clients"]
        assert clients["by_name"] == {"emp-api": 1}, (key, clients)
        assert clients["unnamed"] == 1 and clients["connected"] == 2 and clients["connected_total"] == 3, (key, clients)
    assert results["bad_name"]["msg"] == ("client_name may hold only printable ASCII characters without spaces, "
                                          "got 'emp probe'")
    unnamed.close()
    api.close()


def test_url_passwords_with_reserved_characters_and_tls_on_a_plain_port(tmp_path, redis_factory):
    password = "Pa#5s/wo?rd@x-never-shown"
    server = redis_factory(password=password)
    results, proc = probe_many(tmp_path, {
        "raw": {"url": f"redis://:{password}@127.0.0.1:{server.port}/0"},
        "encoded": {"url": f"redis://:{password.replace('#', '%23').replace('/', '%2F')}@127.0.0.1:{server.port}/0"},
        "malformed": {"url": f"redis://:{password}@127.0.0.1:notaport/0"},
        "tls_on_plain_port": {"url": f"rediss://:{password}@127.0.0.1:{server.port}/0", "connect_timeout": 2},
    }, cli_args=["-vvv"])
    for key in ("raw", "encoded"):
        assert results[key]["healthy"] is True, results[key]
        assert results[key]["target"] == f"redis://127.0.0.1:{server.port}/0"
    assert results["malformed"]["msg"] == ("url is malformed: the port is not a number between 1 and 65535; "
                                           "expected redis://[[user]:password@]host[:port][/db]")
    tls = results["tls_on_plain_port"]
    assert tls["msg"].startswith(f"cannot connect to Redis at rediss://127.0.0.1:{server.port}/0: "
                                 "TLS handshake failed: is the server serving TLS on this port?"), tls["msg"]
    assert tls["duration_ms"] < (2 + LOAD_MARGIN_S) * 1000
    output = proc.stdout + proc.stderr + json.dumps(results)
    for fragment in ("Pa#5s", "wo?rd", "never-shown"):
        assert fragment not in output


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_targets_keep_their_brackets(tmp_path, redis_factory):
    server = redis_factory(extra_args=["--bind", "127.0.0.1", "::1"])
    closed_port = free_ipv6_port()
    results, proc = probe_many(tmp_path, {
        "url": {"url": f"redis://[::1]:{server.port}/0"},
        "host": {"host": "::1", "port": server.port},
        "refused": {"url": f"redis://[::1]:{closed_port}/0", "connect_timeout": 2},
    })
    assert results["url"]["healthy"] is True and results["url"]["target"] == f"redis://[::1]:{server.port}/0"
    assert results["host"]["healthy"] is True and results["host"]["target"] == f"[::1]:{server.port}"
    assert results["refused"]["msg"] == f"cannot connect to Redis at redis://[::1]:{closed_port}/0: Connection refused"


@pytest.mark.compat
def test_a_permission_problem_on_the_oldest_ansible_core(tmp_path, redis_server):
    """Also runs on ansible-core 2.18 (make compat-2.18)."""
    redis_server.cli("ACL", "SETUSER", "probe", "on", ">probe-pw", "~*", "&*", "+@all", "-info")
    result, proc = probe(tmp_path, {"port": redis_server.port, "username": "probe", "password": "probe-pw"})
    assert result["msg"].startswith("permission denied: user 'probe' is authenticated at Redis "
                                    f"127.0.0.1:{redis_server.port} but may not run INFO")
