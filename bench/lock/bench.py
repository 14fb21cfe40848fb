"""Lock overhead: what taking and releasing the environment lock adds to a run.

1. In process, many times: RunLock.acquire + release with the file lock and with the Redis lock (a private
   redis-server on a free loopback port, started and stopped here), against the baseline of a run with
   emp_lock=off (LockPlan.off_record, what the callback does then).
2. Whole runs: the same one-task playbook (first play marked emp_environment_lock: true) run by ansible-playbook
   with the file lock and with -e emp_lock=off, interleaved so load changes hit both alike; the medians, their
   difference and ratio, and the acquire time the run journaled itself.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "tests"))

from ansible_collections.emp.deploy.plugins.plugin_utils import _env_lock as L  # noqa: E402
from servers import RedisServer  # noqa: E402

PLAYBOOK = """- name: Bench
  hosts: localhost
  gather_facts: false
  vars: {emp_environment_lock: true}
  tasks:
    - name: One task
      ansible.builtin.debug: {msg: hi}
"""


def per_cycle_ms(make, rounds: int) -> float:
    times = []
    for n in range(rounds):
        lock = L.RunLock(make(), 30, lambda entry: None, lambda text: None)
        started = time.perf_counter()
        lock.acquire(L.new_holder(f"bench-{n}", "bench", "now"))
        lock.release()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def off_ms(rounds: int) -> float:
    plan = L.LockPlan("bench", None, None)
    started = time.perf_counter()
    for _round in range(rounds):
        plan.off_record()
    return (time.perf_counter() - started) / rounds * 1000


def one_run(playbook: Path, reports: Path, run_id: str, off: bool) -> tuple[float, float | None]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), EMP_DEPLOY_REPORT_DIR=str(reports))
    extra = {"emp_run_id": run_id, **({"emp_lock": "off"} if off else {})}
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(playbook), "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
                           "-e", json.dumps(extra)], env=env, cwd=str(ROOT), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the bench run failed:\n{proc.stdout[-2000:]}")
    records = [json.loads(line) for line in (reports / run_id / "journal.jsonl").read_text().splitlines()]
    acquired = [r.get("acquire_ms") for r in records if r.get("type") == "lock" and r.get("outcome") == "acquired"]
    return wall, (acquired[0] if acquired else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="in-process acquire/release cycles per backend")
    parser.add_argument("--runs", type=int, default=4, help="ansible-playbook runs per variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis = RedisServer(work).start()
        try:
            file_ms = per_cycle_ms(lambda: L.FileLock(work / "reports", "bench"), args.rounds)
            redis_ms = per_cycle_ms(lambda: L.RedisLock(redis.url, "bench", 30), args.rounds)
        finally:
            redis.stop()
        baseline_ms = off_ms(args.rounds)
        print(f"in process, median of {args.rounds} acquire+release cycles:")
        print(f"  emp_lock=off (baseline) {baseline_ms:8.3f} ms")
        print(f"  file lock               {file_ms:8.3f} ms   (+{file_ms - baseline_ms:.3f} ms)")
        print(f"  redis lock              {redis_ms:8.3f} ms   (+{redis_ms - baseline_ms:.3f} ms; 2 connections: SET NX PX, EVAL)")
        playbook = work / "bench.yml"
        playbook.write_text(PLAYBOOK)
        on_walls, off_walls, acquires = [], [], []
        for n in range(args.runs):
            wall, acquire = one_run(playbook, work / "reports", f"on-{n}", off=False)
            on_walls.append(wall)
            acquires.append(acquire)
            off_walls.append(one_run(playbook, work / "reports", f"off-{n}", off=True)[0])
    on, off = statistics.median(on_walls), statistics.median(off_walls)
    print(f"whole ansible-playbook runs, median of {args.runs} each, interleaved (file lock):")
    print(f"  emp_lock=off (baseline) {off * 1000:8.0f} ms")
    print(f"  with the lock           {on * 1000:8.0f} ms   (difference {1000 * (on - off):+.0f} ms, ratio {on / off:.3f})")
    print(f"  acquire time journaled by the runs: median {statistics.median(a for a in acquires if a is not None):.2f} ms")
    worst = max(file_ms, redis_ms) - baseline_ms
    print(f"goal < 50 ms per run (in-process acquire+release, worse backend): {worst:.2f} ms: "
          f"{'met' if worst < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
