"""The environment lock (_env_lock.py) against a real redis-server on a free port and a real file lock held
by another process: held lock refused with the message, expired lock taken over, release only by the holder,
the holder's rollback joins, renewal keeps a short TTL alive, Redis down refuses."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _env_lock as L

ROOT = Path(__file__).resolve().parents[4]


def holder(run_id: str) -> dict:
    return L.new_holder(run_id, "alice", "2026-12-03T12:00:00.000Z")


def test_a_held_redis_lock_refuses_a_second_run_with_who_and_since(redis_server) -> None:
    first, second = L.RedisLock(redis_server.url, "prod", 30), L.RedisLock(redis_server.url, "prod", 30)
    assert first.acquire(holder("run-a")) == ("acquired", None)
    with pytest.raises(L.LockRefused) as refused:
        second.acquire(holder("run-b"))
    message = str(refused.value)
    assert "locked by run run-a" in message and "user alice" in message and "since 2026-12-03T12:00:00.000Z" in message
    assert "on host " in message and refused.value.holder["run_id"] == "run-a"
    assert redis_server.password is None or redis_server.password not in message
    ttl = int(redis_server.cli("PTTL", "emp:deploy:lock:prod"))
    assert 0 < ttl <= 30000


def test_release_only_by_the_holder_compare_and_delete(redis_server) -> None:
    first, intruder = L.RedisLock(redis_server.url, "prod", 30), L.RedisLock(redis_server.url, "prod", 30)
    first.acquire(holder("run-a"))
    intruder.value = json.dumps(holder("run-b"), sort_keys=True)  # a value that is not the holder's
    assert intruder.release() is False
    assert "run-a" in redis_server.cli("GET", "emp:deploy:lock:prod")
    assert first.release() is True
    assert redis_server.cli("EXISTS", "emp:deploy:lock:prod").strip() == "0"


def test_an_expired_lock_of_a_dead_run_is_taken_over(redis_server) -> None:
    dead = L.RedisLock(redis_server.url, "prod", 0.3)
    dead.acquire(holder("run-dead"))  # never renewed nor released: the run died
    time.sleep(0.5)
    late = L.RedisLock(redis_server.url, "prod", 30)
    assert late.acquire(holder("run-new"))[0] == "acquired"
    assert dead.release() is False  # the dead run's value is gone: it deletes nothing of the new holder's
    assert "run-new" in redis_server.cli("GET", "emp:deploy:lock:prod")


def test_the_holders_rollback_joins_and_never_releases(redis_server) -> None:
    records: list = []
    owner = L.RunLock(L.RedisLock(redis_server.url, "prod", 30), 30, records.append, records.append)
    owner.acquire(holder("run-a"))
    rollback = L.RunLock(L.RedisLock(redis_server.url, "prod", 30), 30, records.append, records.append)
    entry = rollback.acquire(holder("run-a"))
    assert entry["outcome"] == "joined" and entry["holder"]["run_id"] == "run-a" and "token" not in entry["holder"]
    assert rollback.release() is None
    assert "run-a" in redis_server.cli("GET", "emp:deploy:lock:prod")
    assert owner.release()["outcome"] == "released"


def test_the_renewal_thread_keeps_a_short_ttl_alive_then_release_records_it(redis_server) -> None:
    records: list = []
    lock = L.RunLock(L.RedisLock(redis_server.url, "prod", 1.0), 1.0, records.append, records.append)
    lock.acquire(holder("run-a"))
    time.sleep(2.5)  # two and a half TTLs: only the renewals keep it
    assert "run-a" in redis_server.cli("GET", "emp:deploy:lock:prod")
    entry = lock.release()
    assert entry["outcome"] == "released" and entry["renewals"] >= 2 and records == []


def test_a_lock_lost_while_running_is_journaled_and_said(redis_server) -> None:
    records: list = []
    warnings: list = []
    lock = L.RunLock(L.RedisLock(redis_server.url, "prod", 0.6), 0.6, records.append, warnings.append)
    lock.acquire(holder("run-a"))
    redis_server.cli("SET", "emp:deploy:lock:prod", "someone else")
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:  # the next renewal finds it (a loaded machine may be late)
        time.sleep(0.05)
    assert [r["outcome"] for r in records] == ["lost"] and "was lost" in warnings[0]
    assert lock.release() is None
    assert redis_server.cli("GET", "emp:deploy:lock:prod").strip() == "someone else"


def test_redis_down_refuses_rather_than_running_unguarded(redis_server) -> None:
    url = redis_server.url
    redis_server.stop()
    with pytest.raises(L.LockRefused, match="cannot be checked: Redis did not answer"):
        L.RedisLock(url, "prod", 30).acquire(holder("run-a"))


def test_a_malformed_redis_url_is_an_option_error_without_the_url() -> None:
    with pytest.raises(L.LockOptionError) as error:
        L.RedisLock("redis://:s3cret@host:notaport", "prod", 30)
    assert "s3cret" not in str(error.value)


HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.emp.deploy.plugins.plugin_utils import _env_lock as L
lock = L.FileLock(sys.argv[2], "prod")
print(lock.acquire(L.new_holder(sys.argv[3], "bob", "2026-12-03T12:00:00.000Z"))[0], flush=True)
time.sleep(float(sys.argv[4]))
"""


def hold_in_another_process(report_dir: Path, run_id: str, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(ROOT / "collections"), str(report_dir), run_id,
                                str(seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() in ("acquired", "taken_over")
    return process


def test_a_held_file_lock_refuses_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    process = hold_in_another_process(tmp_path, "run-a", 60)
    try:
        with pytest.raises(L.LockRefused, match=r"locked by run run-a \(user bob on host .*since 2026-12-03T12:00"):
            L.FileLock(tmp_path, "prod").acquire(holder("run-b"))
        assert L.FileLock(tmp_path, "prod").acquire(holder("run-a"))[0] == "joined"
    finally:
        process.kill()
        process.wait()
    lock = L.FileLock(tmp_path, "prod")
    outcome, previous = lock.acquire(holder("run-b"))
    assert outcome == "taken_over" and previous["run_id"] == "run-a"
    assert lock.release() is True
    assert (tmp_path / ".lock.prod").read_bytes() == b""


def test_a_file_lock_is_released_only_by_its_holder(tmp_path: Path) -> None:
    lock = L.FileLock(tmp_path, "prod")
    lock.acquire(holder("run-a"))
    # someone rewrote the file under the holder: the holder no longer recognises it and leaves it alone
    (tmp_path / ".lock.prod").write_text(json.dumps(holder("run-x")))
    assert lock.release() is False
    assert "run-x" in (tmp_path / ".lock.prod").read_text()


@pytest.mark.parametrize("sources, name", [(["inventories/sandbox/hosts.yml"], "sandbox"), (["prod.ini"], "prod"),
                                           (["h1,h2"], "adhoc"), ([], "localhost")])
def test_the_default_environment_is_the_inventorys_name(sources, name) -> None:
    assert L.inventory_name(sources) == name


def test_a_bad_environment_name_is_refused() -> None:
    with pytest.raises(L.LockOptionError, match="cannot name a lock"):
        L.environment_name("../etc")


@pytest.mark.parametrize("value, off", [("off", True), (False, True), ("on", False), (True, False)])
def test_emp_lock_off(value, off) -> None:
    assert L.lock_off(value) is off


def test_a_playbook_without_the_literal_marker_takes_no_lock(tmp_path: Path) -> None:
    assert L.plan({}, {}, {}, tmp_path, lambda name: None, None) is None
    plan = L.plan({"emp_environment_lock": True}, {"emp_lock": "off"}, {}, tmp_path, lambda name: "prod", None)
    assert plan is not None and plan.off and plan.off_record()["outcome"] == "off"
    with pytest.raises(L.LockOptionError, match="too short"):
        L.plan({"emp_environment_lock": True}, {}, {"lock_ttl": "50ms"}, tmp_path, lambda name: None, None)
