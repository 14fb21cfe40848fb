"""metric_query benchmark: cost per sample against ansible.builtin.uri, and the in-process client's cost.

Same run, same real Prometheus (Debian's binary, tests/prometheus_harness.py) scraping a small exporter:

1. per task: N tasks of emp.deploy.metric_query in one ansible-playbook, against N tasks of the
   ansible.builtin.uri POST a user would otherwise write for the same instant query (form body, JSON
   answer, status checked). Per-task time is (playbook time - empty playbook time) / N, the median
   over interleaved rounds; the ratio metric_query / uri is the figure (goal <= 1.1x). uri reads no
   figure out of the answer (no value, no NaN/Inf naming, no error classes): it is the floor.
2. in process: the same query sent N times with PromClient (what the watch does on the controller,
   no module execution), wall and CPU milliseconds per query, against urllib.request in the same process.

`measure()` returns the figures for other benchmarks (bench/watch_cost).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "collections"), str(ROOT / "bench")]

import playbook_timing  # noqa: E402

from ansible_collections.emp.deploy.plugins.module_utils._prometheus import PromClient  # noqa: E402
from playbook_timing import playbook  # noqa: E402
from prometheus_harness import MetricsExporter, PromHarness, prometheus_missing  # noqa: E402

BIN = Path(sys.executable).parent
QUERY = 'sum(bench_requests_total{job="bench"})'


def task_lines(url: str) -> dict[str, str]:
    uri = ("ansible.builtin.uri: {url: '" + url + "/api/v1/query', method: POST, body_format: form-urlencoded, "
           "body: {query: '" + QUERY + "'}, return_content: true, status_code: 200}")
    probe = "emp.deploy.metric_query: {url: '" + url + "', query: '" + QUERY + "'}"
    return {"ansible.builtin.uri": uri, "emp.deploy.metric_query": probe}


def timed_run(path: Path) -> float:
    # the go_no_go callback's run records go to the bench's temporary directory, not the checkout
    return playbook_timing.timed_run(path, BIN, env={"EMP_DEPLOY_REPORT_DIR": str(path.parent / "reports")})


def in_process(url: str, count: int) -> dict[str, float]:
    """ms per query (wall and CPU) of PromClient and of a bare urllib POST, interleaved."""
    client = PromClient(url, timeout=10)
    body = urllib.parse.urlencode({"query": QUERY}).encode()

    def bare() -> None:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/v1/query", data=body), timeout=10) as answer:
            json.loads(answer.read())

    def prom() -> None:
        if client.query(QUERY).value is None:
            raise SystemExit("the bench query returned no value")

    figures: dict[str, float] = {}
    for name, call in (("urllib", bare), ("PromClient", prom), ("urllib", bare), ("PromClient", prom)):
        wall, cpu = time.perf_counter(), time.process_time()
        for dummy in range(count):
            call()
        figures[f"{name}_wall_ms"] = (time.perf_counter() - wall) / count * 1000  # the second pass is kept (warm)
        figures[f"{name}_cpu_ms"] = (time.process_time() - cpu) / count * 1000
    return figures


def measure(tasks: int = 20, rounds: int = 3, queries: int = 200) -> dict:
    missing = prometheus_missing()
    if missing:
        raise SystemExit(f"bench/metric_query: {missing}")
    with tempfile.TemporaryDirectory(prefix="emp-bench-mq-") as tmp, MetricsExporter() as exporter:
        workdir = Path(tmp)
        exporter.set("bench_requests_total", 1234, {"route": "/jobs"}, kind="counter")
        with PromHarness(workdir / "prom", {"bench": [exporter.address]}) as prom:
            prom.wait_for_series(QUERY)
            empty = playbook(workdir / "empty.yml", None, 0)
            books = {name: playbook(workdir / f"{name.rsplit('.', 1)[1]}.yml", line, tasks)
                     for name, line in task_lines(prom.url).items()}
            samples: dict[str, list[float]] = {name: [] for name in ["empty", *books]}
            for round_index in range(rounds):
                order = list(books.items())
                order = order[round_index % len(order):] + order[:round_index % len(order)]
                samples["empty"].append(timed_run(empty))
                for name, path in order:
                    samples[name].append(timed_run(path))
            client = in_process(prom.url, queries)
    startup = statistics.median(samples["empty"])
    per_task = {name: (statistics.median(samples[name]) - startup) / tasks * 1000 for name in books}
    return {"tasks": tasks, "rounds": rounds, "startup_s": startup, "per_task_ms": per_task,
            "ratio": per_task["emp.deploy.metric_query"] / per_task["ansible.builtin.uri"], "in_process": client,
            "queries": queries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    figures = measure(args.tasks, args.rounds, args.queries)
    print(f"bench/metric_query: {figures['tasks']} tasks per playbook, {figures['rounds']} rounds, median; "
          f"playbook start-up {figures['startup_s']:.2f} s subtracted; query {QUERY}")
    print(f"{'task':28} {'ms/sample':>10}")
    for name, value in figures["per_task_ms"].items():
        print(f"{name:28} {value:10.1f}")
    print(f"metric_query vs uri: {figures['ratio']:.2f}x (goal <= 1.10x)")
    client = figures["in_process"]
    print(f"in process, {figures['queries']} queries: PromClient {client['PromClient_wall_ms']:.2f} ms wall, "
          f"{client['PromClient_cpu_ms']:.2f} ms CPU per query; urllib {client['urllib_wall_ms']:.2f} ms wall, "
          f"{client['urllib_cpu_ms']:.2f} ms CPU ({client['PromClient_cpu_ms'] / client['urllib_cpu_ms']:.2f}x CPU)")


if __name__ == "__main__":
    main()
