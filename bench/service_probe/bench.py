"""Benchmark: the p95 latency of 100 requests to the sandbox API's /health, measured by
emp.deploy.service_probe (one task) vs the ansible.builtin.uri loop a user would write (one task
execution per request, the latency of each taken from when its loop item finished).

Both run in the same ansible-playbook of this checkout's .venv, against the same API (a private
redis-server and `python -m sandbox.api` on free loopback ports), interleaved over the rounds. Wall time
is the playbook's, and the net time is that minus an empty playbook's (start-up), the median of the
rounds. The uri module reports `elapsed` in whole seconds only, so a user's loop can time its requests
only by the task itself: that figure is printed beside the probe's.
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
# the deploy bench's task timer also records when each loop item finishes and a probe's latency figures
CALLBACKS = ROOT / "bench" / "deploy_wall" / "callback_plugins"
sys.path.insert(0, str(ROOT / "tests"))
from servers import RedisServer, free_port, wait_for_port  # noqa: E402  (the servers the tests use too)

BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.emp.deploy.plugins.module_utils._stats import percentile  # noqa: E402


def playbook(path: Path, tasks: str) -> Path:
    path.write_text("- name: Bench\n  hosts: sandbox\n  gather_facts: false\n  tasks:\n" + tasks)
    return path


def books(workdir: Path, url: str, requests: int) -> dict[str, Path]:
    """The same shape each: the measuring task, then a debug of the figures a user reads."""
    return {
        "empty": playbook(workdir / "empty.yml", "    - name: Nothing\n      ansible.builtin.meta: noop\n"),
        "service_probe": playbook(workdir / "probe.yml", f"""    - name: Probe
      emp.deploy.service_probe: {{url: "{url}", requests: {requests}, concurrency: 1}}
      register: probe
    - name: The p95
      ansible.builtin.debug:
        msg: "{{{{ probe.latency_ms.p95 }}}}"
"""),
        "uri_loop": playbook(workdir / "uri.yml", f"""    - name: Request
      ansible.builtin.uri: {{url: "{url}", status_code: 200}}
      loop: "{{{{ range({requests}) | list }}}}"
      register: answers
    - name: The p95 a user can compute from uri's elapsed (whole seconds)
      ansible.builtin.debug:
        msg: "{{{{ answers.results | map(attribute='elapsed') | list | sort }}}}"
"""),
    }


def timed_run(path: Path, timings: Path | None = None) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED="task_timer",
               EMP_BENCH_TIMINGS=str(timings or ""), EMP_DEPLOY_REPORT_DIR=str(path.parent / "reports"))
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories/sandbox/hosts.yml"), str(path)],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench playbook {path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def timing_of(timings: Path, task: str) -> dict:
    lines = [json.loads(line) for line in timings.read_text().splitlines()]
    return next(line for line in lines if line["task"] == task)


def item_latencies_ms(timings: Path) -> list[float]:
    """Per request of the uri loop: from the task start (first item) or the previous item to each item's end."""
    ends = timing_of(timings, "Request")["item_s"]
    return [(end - before) * 1000.0 for before, end in zip([0.0, *ends[:-1]], ends)]


def start_api(workdir: Path) -> tuple[RedisServer, subprocess.Popen, str]:
    redis_server = RedisServer(workdir).start()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.api", "--host", "127.0.0.1", "--port", str(port),
                             "--redis-url", redis_server.url, "--log-file", str(workdir / "api.log")], cwd=str(ROOT))
    wait_for_port(port)
    return redis_server, proc, f"http://127.0.0.1:{port}/health"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100, help="requests per measurement (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, the median is shown (default 3)")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="emp-bench-service-") as tmp:
        workdir = Path(tmp)
        redis_server, api, url = start_api(workdir)
        try:
            plays = books(workdir, url, args.requests)
            walls: dict[str, list[float]] = {name: [] for name in plays}
            probe_p95, loop_p95, elapsed_p95 = [], [], []
            for round_index in range(args.rounds):
                order = list(plays) if round_index % 2 == 0 else list(reversed(plays))
                for name in order:
                    timings = workdir / f"timings-{name}-{round_index}.jsonl"
                    walls[name].append(timed_run(plays[name], timings))
                    if name == "service_probe":
                        probe_p95.append(timing_of(timings, "Probe")["latency_ms"]["p95"])
                    elif name == "uri_loop":
                        loop_p95.append(percentile(sorted(item_latencies_ms(timings)), 0.95))
        finally:
            api.terminate()
            api.wait(timeout=10)
            redis_server.stop()
    wall = {name: statistics.median(values) for name, values in walls.items()}
    net = {name: wall[name] - wall["empty"] for name in ("service_probe", "uri_loop")}
    print(f"bench/service_probe: {args.requests} requests to the sandbox API's /health, {args.rounds} rounds, median")
    print(f"{'measured by':34} {'wall s':>8} {'net s':>8} {'p95 ms':>9}")
    print(f"{'ansible-playbook start-up (empty)':34} {wall['empty']:8.2f}")
    print(f"{'emp.deploy.service_probe':34} {wall['service_probe']:8.2f} {net['service_probe']:8.2f} "
          f"{statistics.median(probe_p95):9.2f}")
    print(f"{'ansible.builtin.uri loop':34} {wall['uri_loop']:8.2f} {net['uri_loop']:8.2f} "
          f"{statistics.median(loop_p95):9.2f}  (per loop item; uri's own elapsed is whole seconds)")
    print(f"service_probe is {net['uri_loop'] / net['service_probe']:.0f}x cheaper than the uri loop in net wall time "
          f"({wall['uri_loop'] / wall['service_probe']:.1f}x with start-up); goal >= 50x")
    print(f"the uri loop's p95 is {statistics.median(loop_p95) / statistics.median(probe_p95):.0f}x the probe's: "
          f"it measures the task machinery, not the request")


if __name__ == "__main__":
    main()
