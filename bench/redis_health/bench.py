"""Benchmark: N tasks of emp.deploy.redis_health vs community.general.redis_info vs ansible.builtin.ping.

All three run in the same ansible-playbook (same ansible-core, from .venv-bench, whose `ansible`
package bundles community.general) against the same private redis-server. Per-task time is
(playbook time - empty playbook time) / N, the median over interleaved rounds. It also reports the
module time of one task taking 1,000 PING latency samples.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
import playbook_timing  # noqa: E402
from playbook_timing import playbook  # noqa: E402
from servers import RedisServer  # noqa: E402  (the private redis-server the tests use too)

BIN = Path(sys.executable).parent
TASKS = {
    "ansible.builtin.ping": "ansible.builtin.ping:",
    "community.general.redis_info": "community.general.redis_info: {{login_host: 127.0.0.1, login_port: {port}}}",
    "emp.deploy.redis_health": "emp.deploy.redis_health: {{host: 127.0.0.1, port: {port}}}",
}


def timed_run(path: Path) -> float:
    return playbook_timing.timed_run(path, BIN)


def module_time_for_latency_samples(workdir: Path, port: int, samples: int) -> dict:
    out = workdir / "latency.json"
    path = workdir / "latency.yml"
    path.write_text(f"""- name: Latency samples
  hosts: sandbox
  gather_facts: false
  tasks:
    - name: Probe
      emp.deploy.redis_health: {{host: 127.0.0.1, port: {port}, latency_samples: {samples}}}
      register: probe
    - name: Save
      ansible.builtin.copy: {{content: "{{{{ probe | to_json }}}}", dest: "{out}", mode: "0600"}}
""")
    timed_run(path)
    result = json.loads(out.read_text())
    return {"duration_ms": result["duration_ms"], "latency_ms": result["latency_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emp-bench-redis-") as tmp:
        workdir = Path(tmp)
        server = RedisServer(workdir).start()
        try:
            empty = playbook(workdir / "empty.yml", None, 0)
            books = {name: playbook(workdir / f"{name}.yml", line.format(port=server.port), args.tasks)
                     for name, line in TASKS.items()}
            samples: dict = {name: [] for name in ["empty", *books]}
            for round_index in range(args.rounds):
                order = list(books.items())
                order = order[round_index % len(order):] + order[:round_index % len(order)]
                samples["empty"].append(timed_run(empty))
                for name, path in order:
                    samples[name].append(timed_run(path))
            latency = module_time_for_latency_samples(workdir, server.port, 1000)
        finally:
            server.stop()
    startup = statistics.median(samples["empty"])
    per_task = {name: (statistics.median(samples[name]) - startup) / args.tasks * 1000 for name in books}
    baseline = per_task["ansible.builtin.ping"]
    print(f"bench/redis_health: {args.tasks} tasks per playbook, {args.rounds} rounds, median; "
          f"playbook start-up {startup:.2f} s subtracted")
    print(f"{'module':34} {'ms/task':>9} {'vs ping':>8}")
    for name, value in per_task.items():
        print(f"{name:34} {value:9.1f} {value / baseline:7.2f}x")
    print(f"redis_health vs redis_info: {per_task['emp.deploy.redis_health'] / per_task['community.general.redis_info']:.2f}x")
    print(f"1000 latency samples: module time {latency['duration_ms']:.0f} ms "
          f"(PING p50 {latency['latency_ms']['p50']} ms, p95 {latency['latency_ms']['p95']} ms)")


if __name__ == "__main__":
    main()
