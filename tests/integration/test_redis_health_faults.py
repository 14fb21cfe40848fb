"""emp.deploy.redis_health against hostile peers, in real ansible-playbook runs: every probe ends within
its timeout plus a small margin, with a message saying what was too slow and the structured result."""
from __future__ import annotations

import re
import time

from redis_fault_peers import FaultPeer
from redis_probe_runs import probe_many
from servers import LOAD_MARGIN_S

MARGIN_MS = LOAD_MARGIN_S * 1000
STRUCTURED = {"target", "reachable", "healthy", "problems", "error", "duration_ms", "timeout_s"}


def assert_failed_in(result: dict, budget_s: float) -> None:
    assert result["failed"] is True
    assert STRUCTURED <= set(result), sorted(result)
    assert result["reachable"] is False and result["healthy"] is False
    assert result["problems"] == [result["msg"]] and result["error"] in result["msg"]
    assert budget_s * 1000 <= result["duration_ms"] < budget_s * 1000 + MARGIN_MS, result["duration_ms"]


def test_slow_silent_and_truncating_peers_fail_within_their_timeouts(tmp_path):
    with FaultPeer("drip", interval=1.0) as drip, FaultPeer("slow", interval=0.4) as slow, \
            FaultPeer("silent") as silent, FaultPeer("truncate") as truncate:
        started = time.monotonic()
        results, proc = probe_many(tmp_path, {
            # one byte per second: each byte used to restart a 2 s timeout
            "drip": {"port": drip.port, "command_timeout": 2},
            # every reply whole and in time, but 100 samples of 0.4 s: the overall timeout ends it
            "slow": {"port": slow.port, "command_timeout": 2, "latency_samples": 100, "timeout": 3},
            "silent": {"port": silent.port, "command_timeout": 2},
            "truncate": {"port": truncate.port},
            # polls of a peer that never answers: the overall timeout ends the wait, not wait_timeout
            "wait": {"port": silent.port, "command_timeout": 1, "wait_for_reconnect": True, "wait_timeout": 60,
                     "wait_interval": 0.2, "timeout": 3},
        }, timeout=150)
        wall = time.monotonic() - started
    assert wall < 120, proc.stdout

    result = results["drip"]
    assert_failed_in(result, 2)
    assert re.fullmatch(rf"Redis at 127\.0\.0\.1:{drip.port} sent its reply too slowly: only \d bytes? of the reply "
                        rf"to CLIENT SETNAME arrived within 2 s \(command_timeout\)", result["msg"]), result["msg"]
    assert result["timeout_s"] == 35.0

    result = results["slow"]
    assert_failed_in(result, 3)
    assert result["msg"].startswith(f"Redis at 127.0.0.1:{slow.port} did not answer in time: no reply to PING "
                                    "within the probe's overall timeout of 3 s"), result["msg"]
    assert result["timeout_s"] == 3.0

    result = results["silent"]
    assert_failed_in(result, 2)
    assert result["msg"] == (f"Redis at 127.0.0.1:{silent.port} did not answer in time: no reply to CLIENT SETNAME "
                             "within 2 s (command_timeout)")

    result = results["truncate"]
    assert_failed_in(result, 0)
    assert result["msg"] == (f"Redis at 127.0.0.1:{truncate.port} closed the connection in the middle of its reply "
                             "to CLIENT SETNAME (after 9 bytes)")

    result = results["wait"]
    assert_failed_in(result, 3)
    assert result["msg"].startswith(f"Redis at 127.0.0.1:{silent.port} did not recover within the probe's overall "
                                    "timeout of 3 s ("), result["msg"]
    assert result["wait"]["recovered"] is False and result["wait"]["attempts"] >= 2
