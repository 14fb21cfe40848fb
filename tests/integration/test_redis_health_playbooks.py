"""emp.deploy.redis_health through real ansible-playbook runs against real redis-server processes."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from conftest import free_port
from redis_probe_runs import probe, probe_many
from servers import LOAD_MARGIN_S

JOB_MATCHING_LUA = """#!lua name=jobMatching
redis.register_function('findMatchingJob', function(keys, args) return nil end)
"""


def test_healthy_redis_reports_every_section(tmp_path, redis_server):
    result, proc = probe(tmp_path, {"port": redis_server.port, "latency_samples": 50, "max_latency_p95_ms": 500})
    assert proc.returncode == 0, proc.stdout
    assert result["failed"] is False and result["changed"] is False
    assert result["healthy"] is True and result["problems"] == []
    assert result["reachable"] is True
    assert result["server"]["version"].split(".")[0].isdigit()
    assert result["server"]["role"] == "master"
    latency = result["latency_ms"]
    assert latency["samples"] == 50
    assert 0 < latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert result["clients"]["connected"] == 0  # the probe leaves itself out
    assert result["clients"]["connected_total"] == 1
    assert result["memory"]["used_bytes"] > 0 and result["memory"]["ratio_basis"] == "system"
    assert result["persistence"]["rdb_last_bgsave_status"] == "ok"
    assert result["keyspace"]["keys"] == 0
    assert result["functions"] == {}
    assert result["queue"] == {"key": "jobs:pending", "pending": 0}
    assert result["workers"]["active_count"] == 0


def test_check_mode_measures_the_same(tmp_path, redis_server):
    result, proc = probe(tmp_path, {"port": redis_server.port}, check=True)
    assert proc.returncode == 0, proc.stdout
    assert result["changed"] is False and result["reachable"] is True


def test_client_names_and_queue_depth(tmp_path, redis_server):
    clients = [redis.Redis(port=redis_server.port, client_name=name) for name in
               ("emp-api", "emp-webhook", "emp-worker:m1-worker-mock-0", "emp-worker:m1-worker-mock-1")]
    for client in clients:
        client.ping()
    admin = redis.Redis(port=redis_server.port)
    admin.zadd("jobs:pending", {f"job-{i}": i for i in range(7)})
    result, proc = probe(tmp_path, {
        "url": redis_server.url,
        "expected_client_names": {"emp-api": 1, "emp-worker*": 2, "emp-monitor": 1},
        "max_queue_depth": 5,
    })
    assert result["failed"] is True
    assert result["clients"]["by_name"]["emp-api"] == 1
    assert result["clients"]["expected"] == {"emp-api": 1, "emp-worker*": 2, "emp-monitor": 0}
    assert result["queue"]["pending"] == 7
    assert "client 'emp-monitor' has 0 connections, expected at least 1" in result["problems"]
    assert "queue 'jobs:pending' holds 7 jobs > 5" in result["problems"]
    assert len(result["problems"]) == 2
    for client in clients + [admin]:
        client.close()


def test_function_library_present_and_missing(tmp_path, redis_server):
    missing, proc = probe(tmp_path, {"port": redis_server.port,
                                     "expected_functions": {"jobMatching": ["findMatchingJob"]}}, name="missing")
    assert missing["failed"] is True
    assert missing["problems"] == ["function library 'jobMatching' is not loaded (loaded: none)"]
    redis.Redis(port=redis_server.port).function_load(JOB_MATCHING_LUA)
    present, proc = probe(tmp_path, {"port": redis_server.port,
                                     "expected_functions": {"jobMatching": ["findMatchingJob"]}}, name="present")
    assert proc.returncode == 0, proc.stdout
    assert present["functions"] == {"jobMatching": ["findMatchingJob"]}
    lacking, proc = probe(tmp_path, {"port": redis_server.port,
                                     "expected_functions": {"jobMatching": ["findMatchingJob", "claimBatch"]}},
                          name="lacking")
    assert lacking["problems"] == ["function library 'jobMatching' lacks claimBatch"]


def test_heartbeat_keys_live_and_expired(tmp_path, redis_server):
    client = redis.Redis(port=redis_server.port)
    client.sadd("workers:active", "m1-worker-mock-0", "m1-worker-mock-1", "m2-worker-ollama-0")
    set_at = time.monotonic()
    client.set("worker:m1-worker-mock-0:heartbeat", "1", ex=60)
    client.set("worker:m2-worker-ollama-0:heartbeat", "1", ex=60)
    client.set("worker:m1-worker-mock-1:heartbeat", "1", px=1)
    time.sleep(0.05)
    result, proc = probe(tmp_path, {"port": redis_server.port, "min_live_workers": 3})
    # The TTL was read somewhere between the SET and now; on a loaded host that can be many seconds.
    at_most_elapsed = time.monotonic() - set_at
    assert result["failed"] is True
    workers = result["workers"]
    assert workers["live"] == ["m1-worker-mock-0", "m2-worker-ollama-0"]
    assert workers["stale"] == ["m1-worker-mock-1"]
    assert 60 - at_most_elapsed - 0.1 <= workers["heartbeat_ttl_s"]["m1-worker-mock-0"] <= 60  # 0.1: rounding
    assert result["problems"] == ["2 of 3 active workers have a live heartbeat, expected at least 3"]
    ok, proc = probe(tmp_path, {"port": redis_server.port, "min_live_workers": 2}, name="ok")
    assert proc.returncode == 0 and ok["healthy"] is True


def test_worker_scan_is_bounded(tmp_path, redis_server):
    client = redis.Redis(port=redis_server.port)
    client.sadd("workers:active", *[f"w{i}" for i in range(1200)])
    result, proc = probe(tmp_path, {"port": redis_server.port, "max_workers_scanned": 1000})
    assert proc.returncode == 0, proc.stdout
    assert result["workers"]["scanned"] == 1000 and result["workers"]["truncated"] is True
    assert result["workers"]["active_count"] == 1200


def populate_workers(client: redis.Redis, count: int, live_every: int) -> None:
    """`count` active workers; every `live_every`-th has a heartbeat key (pipelined, in chunks)."""
    ids = [f"w{index}" for index in range(count)]
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, 20000):
        chunk = ids[start:start + 20000]
        pipe.sadd("workers:active", *chunk)
        pipe.mset({f"worker:{wid}:heartbeat": 1 for wid in chunk[::live_every]})
    pipe.execute()


def test_min_live_workers_on_a_bounded_scan_is_never_judged_on_the_sample_alone(tmp_path, redis_server):
    """200,000 active workers, half of them live, the default scan bound of 10,000."""
    client = redis.Redis(port=redis_server.port)
    populate_workers(client, 200000, live_every=2)
    assert client.scard("workers:active") == 200000
    results, proc = probe_many(tmp_path, {
        "undecided": {"port": redis_server.port, "min_live_workers": 50000},
        "sample_is_enough": {"port": redis_server.port, "min_live_workers": 1000},
        "full_scan": {"port": redis_server.port, "min_live_workers": 50000, "max_workers_scanned": 200000},
    })
    undecided = results["undecided"]
    workers = undecided["workers"]
    assert workers["active_count"] == 200000 and workers["scanned"] == 10000 and workers["truncated"] is True
    # the sample is half live, so is the estimate
    assert 0.4 < workers["live_count"] / workers["scanned"] < 0.6
    assert 80000 < workers["live_estimate"] < 120000
    assert undecided["failed"] is True
    assert undecided["problems"] == [
        f"min_live_workers 50000 cannot be judged: the scan stopped at max_workers_scanned (10000 of 200000 active "
        f"workers) and found {workers['live_count']} live among them, an estimate of about {workers['live_estimate']} "
        f"live in all from that sample; raise max_workers_scanned to 200000 to judge it"]
    assert results["sample_is_enough"]["healthy"] is True
    full = results["full_scan"]
    assert full["healthy"] is True, full["problems"]
    assert full["workers"]["truncated"] is False and full["workers"]["live_count"] == 100000
    client.close()


def test_memory_ratio_breached_with_maxmemory(tmp_path, redis_factory):
    server = redis_factory(extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
    client = redis.Redis(port=server.port)
    for index in range(40):
        client.set(f"filler:{index}", "x" * 20000)
    result, proc = probe(tmp_path, {"port": server.port, "max_memory_ratio": 0.5})
    assert result["failed"] is True
    memory = result["memory"]
    assert memory["maxmemory_bytes"] == 2 * 1024 * 1024 and memory["ratio_basis"] == "maxmemory"
    assert memory["ratio"] > 0.5
    assert result["problems"][0].startswith(f"memory ratio {memory['ratio']:.3f} (")
    assert result["problems"][0].endswith("> 0.5")


def test_client_growth_is_detected_and_stability_passes(tmp_path, redis_server):
    stable, proc = probe(tmp_path, {"port": redis_server.port, "max_client_growth": 0, "growth_window_s": 1},
                         name="stable")
    assert proc.returncode == 0, proc.stdout
    assert stable["growth"]["delta"] == 0

    leaked: list = []
    stop = threading.Event()
    admin = redis.Redis(port=redis_server.port)

    def probe_connected() -> bool:
        return any(client.get("name") == "emp-deploy-probe" for client in admin.client_list())

    def leak_connections():
        # leak only while the probe is connected (its growth window), however long ansible-playbook takes to start
        while not stop.is_set() and not probe_connected():
            time.sleep(0.02)
        # one every 0.1 s (slower on a loaded host) for as long as the probe stays, so its window sees several
        while not stop.is_set() and len(leaked) < 300 and probe_connected():
            client = redis.Redis(port=redis_server.port, client_name="emp-leaky")
            client.ping()
            leaked.append(client)
            time.sleep(0.1)

    thread = threading.Thread(target=leak_connections, daemon=True)
    thread.start()
    try:
        growing, proc = probe(tmp_path, {"port": redis_server.port, "max_client_growth": 2, "growth_window_s": 5},
                              name="growing")
    finally:
        stop.set()
        thread.join()
        for client in leaked + [admin]:
            client.close()
    assert growing["failed"] is True, growing
    assert growing["growth"]["delta"] > 2
    assert growing["problems"][0].startswith(f"connected clients grew by {growing['growth']['delta']} (")


def test_password_auth_and_wrong_password_is_not_leaked(tmp_path, redis_factory):
    password = "s3cret-Pa55-for-emp-tests"
    server = redis_factory(password=password)
    ok, proc = probe(tmp_path, {"port": server.port, "password": password}, name="ok")
    assert proc.returncode == 0, proc.stdout
    wrong_password = "wrong-Pa55-never-shown"
    result, proc = probe(tmp_path, {"port": server.port, "password": "{{ wrong_password }}"}, name="wrong",
                         extra_vars={"wrong_password": wrong_password}, cli_args=["-vvv"])
    assert result["failed"] is True and result["reachable"] is False
    assert result["msg"].startswith(f"authentication to Redis at 127.0.0.1:{server.port} failed for user 'default'")
    output = proc.stdout + proc.stderr + json.dumps(result)
    assert wrong_password not in output
    assert password not in output


def test_password_inside_url_is_not_leaked(tmp_path, redis_factory):
    password = "url-Pa55-inside-the-url"
    server = redis_factory(password=password)
    result, proc = probe(tmp_path, {"url": f"redis://:{password}@127.0.0.1:{server.port}/0"})
    assert proc.returncode == 0, proc.stdout
    assert result["target"] == f"redis://127.0.0.1:{server.port}/0"
    assert password not in json.dumps(result)


def test_tls_with_a_throwaway_ca(tmp_path, redis_factory):
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    authority.cert_pem.write_to_path(str(ca_file))
    server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    server = redis_factory(tls={"cert": str(cert_file), "key": str(key_file), "ca": str(ca_file)})

    ok, proc = probe(tmp_path, {"host": "127.0.0.1", "port": server.port, "tls": True, "ca_path": str(ca_file)},
                     name="verified")
    assert proc.returncode == 0, proc.stdout
    via_url, proc = probe(tmp_path, {"url": f"rediss://127.0.0.1:{server.port}/0", "ca_path": str(ca_file)},
                          name="url")
    assert proc.returncode == 0, proc.stdout
    untrusted, proc = probe(tmp_path, {"port": server.port, "tls": True}, name="untrusted")
    assert untrusted["failed"] is True
    assert f"127.0.0.1:{server.port}" in untrusted["msg"] and "certificate verify failed" in untrusted["msg"]
    unverified, proc = probe(tmp_path, {"port": server.port, "tls": True, "validate_certs": False},
                             name="unverified")
    assert proc.returncode == 0, proc.stdout


def test_stopped_server_fails_fast_naming_host_and_port(tmp_path, redis_server):
    port = redis_server.port
    redis_server.stop()
    result, proc = probe(tmp_path, {"port": port, "connect_timeout": 30})
    assert result["failed"] is True
    assert result["reachable"] is False and result["healthy"] is False
    assert result["msg"] == f"cannot connect to Redis at 127.0.0.1:{port}: Connection refused"
    assert result["duration_ms"] < LOAD_MARGIN_S * 1000  # refused at once: the probe does not wait for connect_timeout


def test_silent_port_times_out_within_the_command_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    try:
        result, proc = probe(tmp_path, {"port": port, "connect_timeout": 1, "command_timeout": 1})
    finally:
        listener.close()
    assert result["failed"] is True
    assert result["msg"].startswith(f"Redis at 127.0.0.1:{port} did not answer in time")
    assert result["duration_ms"] < (1 + 1 + LOAD_MARGIN_S) * 1000  # connect_timeout + command_timeout, honoured


def test_a_port_that_is_not_redis_gives_a_protocol_error(tmp_path):
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result, proc = probe(tmp_path, {"port": server.server_address[1]})
    finally:
        server.shutdown()
    assert result["failed"] is True
    assert "does not speak the Redis protocol" in result["msg"]
    assert "answered '<!DOCTYPE HTML>' instead of a Redis reply" in result["msg"]


def test_wait_for_reconnect_observes_the_outage(tmp_path, redis_server):
    """Redis is down when the probe starts; it comes back only after the probe saw the outage."""
    redis_server.kill()
    # While Redis is down, a stand-in on its port drops every connection and counts them, so the
    # restart waits for the probe's failed polls instead of guessing how long ansible-playbook takes.
    standin = socket.socket()
    standin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    standin.bind(("127.0.0.1", redis_server.port))
    standin.listen(16)
    api_clients: list = []

    def outage_then_recovery():
        for _poll in range(2):
            conn, _address = standin.accept()
            conn.close()
        standin.close()
        redis_server.start()
        # the "service" reconnects and registers its client name
        client = redis.Redis(port=redis_server.port, client_name="emp-api")
        client.ping()
        api_clients.append(client)

    recovery = threading.Thread(target=outage_then_recovery, daemon=True)
    recovery.start()
    result, proc = probe(tmp_path, {"port": redis_server.port, "wait_for_reconnect": True, "wait_timeout": 60,
                                    "wait_interval": 0.2, "connect_timeout": 0.5,
                                    "expected_client_names": {"emp-api": 1}})
    recovery.join(timeout=10)
    assert proc.returncode == 0, proc.stdout
    wait = result["wait"]
    assert wait["recovered"] is True and wait["outage_observed"] is True
    assert wait["attempts"] >= 3
    assert wait["outage_s"] > 0
    assert result["clients"]["expected"]["emp-api"] == 1
    for client in api_clients:
        client.close()


def test_wait_for_reconnect_times_out_with_a_clear_message(tmp_path, redis_server):
    port = redis_server.port
    redis_server.stop()
    result, proc = probe(tmp_path, {"port": port, "wait_for_reconnect": True, "wait_timeout": 1.5,
                                    "wait_interval": 0.2, "connect_timeout": 0.5})
    assert result["failed"] is True
    assert result["wait"]["recovered"] is False and result["wait"]["outage_observed"] is True
    assert result["msg"].startswith(f"Redis at 127.0.0.1:{port} did not recover within 1.5 s (")
    assert 1.5 <= result["wait"]["waited_s"] < 1.5 + 0.5 + LOAD_MARGIN_S  # wait_timeout + one connect_timeout


@pytest.mark.parametrize("args, message", [
    ({"port": "not-a-port"}, "port"),
    ({"latency_samples": 0}, "latency_samples must be between 1 and 100000, got 0"),
    ({"no_such_option": 1}, "Unsupported parameters for (emp.deploy.redis_health) module: no_such_option"),
    ({"url": "http://127.0.0.1:6379"}, "url must start with redis://, rediss:// or unix://, got scheme 'http'"),
    ({"url": "redis://127.0.0.1:6379", "port": 6380}, "parameters are mutually exclusive: url|port"),
    ({"expected_client_names": {"emp-api": "many"}}, "expected_client_names['emp-api'] must be a whole number"),
    ({"max_memory_ratio": 1.5}, "max_memory_ratio must be greater than 0 and at most 1, got 1.5"),
])
def test_bad_options_fail_with_a_clear_message(tmp_path, args, message):
    result, proc = probe(tmp_path, args)
    assert result["failed"] is True
    assert message in result["msg"]


@pytest.mark.compat
def test_probe_and_failure_in_one_real_playbook(tmp_path, redis_server):
    """Also runs on the oldest supported ansible-core (make compat-2.18)."""
    ok, proc = probe(tmp_path, {"port": redis_server.port, "expected_client_names": {}}, name="ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ok["healthy"] is True
    port = free_port()
    down, proc = probe(tmp_path, {"port": port, "connect_timeout": 1}, name="down")
    assert down["failed"] is True
    assert down["msg"].startswith(f"cannot connect to Redis at 127.0.0.1:{port}")
