"""Watch cost: controller CPU seconds per watched hour, at the default intervals (alerts every 60 s).

One sandbox deployed by the real deploy.yml (GO). Two things run side by side for the same minutes:

watch:    ansible-playbook playbooks/watch.yml in follow mode on a copy of the GO run, default window
          (24h) and intervals, the default checks (tests/watch_sandbox.py).
baseline: what a user would otherwise write: an ansible-playbook looping over passes, each pass the same
          alert queries as ansible.builtin.uri tasks against the same Prometheus API, then a wait
          (ansible.builtin.wait_for with a timeout) until the next minute.

CPU is user + system time of each ansible-playbook's whole process tree (the process, its live
descendants, and the children they reaped), read from /proc once the first pass is done and again at
the end; the steady rate is extrapolated to an hour and shown as a share of one core (goal <= 2 %),
the watch against the baseline as a ratio. The start-up (playbook start, query validation, first pass)
is shown apart, and spread over the default 24 h window.

Most of a follow watch's steady cost is not the watch's: while a task runs, ansible-playbook's main
process polls for its result every `internal_poll_interval` (ansible.cfg [defaults], default 0.001 s,
no environment variable), about 2-3 % of a core on this machine for a task that only sleeps; the
baseline pays it as well. The repository's ansible.cfg sets it to 0.01 s. The per-sample cost of emp.deploy.metric_query
against ansible.builtin.uri is bench/metric_query's (--with-metric-query runs it here too).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from watch_sandbox import ALERT_RANGE_S, BIN, INVENTORY, Sandbox  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
ALERT_S = 60
DEFAULTS = ROOT / "roles/watch/defaults/main.yml"
SANDBOX_VARS = ROOT / "inventories/sandbox/group_vars/all/sandbox.yml"


def tree_cpu(root_pid: int) -> float:
    """CPU seconds of a process and its descendants (each one's own time and its reaped children's)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state
        stats[int(entry.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / TICK)
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += [child for child, (parent, _cpu) in stats.items() if parent == pid]
    return total


def alert_queries() -> list[str]:
    """The default alert checks' PromQL with the lookbacks of the measured watch."""
    defaults = yaml.safe_load(DEFAULTS.read_text())
    lookbacks = {"watch_alert_range": f"{ALERT_RANGE_S}s",
                 "watch_jobs_stalled_after": yaml.safe_load(SANDBOX_VARS.read_text())["watch_jobs_stalled_after"]}
    queries = []
    for check in defaults["watch_alert_checks"]:
        query = check["query"]
        for name, value in lookbacks.items():
            query = query.replace("{{ " + name + " }}", str(value))
        queries.append(query)
    return queries


def baseline_playbook(path: Path, status: dict, passes: int) -> Path:
    tasks = []
    for index, query in enumerate(alert_queries()):
        tasks.append({"name": f"Query {index}", "ansible.builtin.uri": {
            "url": status["prometheus_api"] + "/api/v1/query", "method": "POST", "body_format": "form-urlencoded",
            "body": {"query": query}, "return_content": True, "status_code": 200, "timeout": 10,
            "headers": {"Authorization": "Bearer " + status["query_token"], "Dash0-Dataset": status["dataset"]}}})
    tasks.append({"name": "Wait for the next pass", "ansible.builtin.wait_for": {"timeout": ALERT_S}})
    (path.parent / "pass.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))
    play = [{"name": "Baseline watch", "hosts": "sandbox", "gather_facts": False, "tasks": [
        {"name": "Pass", "ansible.builtin.include_tasks": str(path.parent / "pass.yml"),
         "loop": f"{{{{ range({passes}) | list }}}}"}]}]
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return path


def start_baseline(box: Sandbox, path: Path, log: Path) -> subprocess.Popen:
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen([str(BIN / "ansible-playbook"), str(path), "-i", str(INVENTORY)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
                                env={**os.environ, **box.env, "EMP_DEPLOY_REPORT_DIR": str(path.parent / "reports")})


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(minutes: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="emp-bench-watch-") as tmp:
        work = Path(tmp)
        box = Sandbox(work)
        try:
            box.up("24h")
            status = json.loads(box.cli("status", "--json"))
            run_id = box.new_run("cost")
            passes = int(minutes * 60 / ALERT_S) + 2
            started = time.monotonic()
            watch = box.start_watch(run_id, work / "watch.log", window="24h", alert="60s", hourly="1h", rollback="off")
            base = start_baseline(box, baseline_playbook(work / "baseline.yml", status, passes), work / "baseline.log")
            try:
                while box.passes(run_id) < 1:
                    if watch.poll() is not None or time.monotonic() - started > 120:
                        raise SystemExit(f"bench/watch_cost: the watch did not start:\n{(work / 'watch.log').read_text()[-3000:]}")
                    time.sleep(0.2)
                t1, startup = time.monotonic(), {"watch": tree_cpu(watch.pid), "baseline": tree_cpu(base.pid)}
                first = box.passes(run_id)
                time.sleep(minutes * 60)
                t2, end = time.monotonic(), {"watch": tree_cpu(watch.pid), "baseline": tree_cpu(base.pid)}
                done = box.passes(run_id) - first
                alive = {"watch": watch.poll() is None, "baseline": base.poll() is None}
            finally:
                stop(watch)
                stop(base)
            if not all(alive.values()):
                raise SystemExit(f"bench/watch_cost: a measured playbook ended early: {alive}; see {work}")
        finally:
            box.down()
    elapsed = t2 - t1
    rates = {name: (end[name] - startup[name]) / elapsed for name in end}
    return {"minutes": elapsed / 60, "watch_passes": done, "startup_cpu_s": startup,
            "cpu_s_per_hour": {name: rate * 3600 for name, rate in rates.items()},
            "core_percent": {name: rate * 100 for name, rate in rates.items()},
            "ratio": rates["watch"] / rates["baseline"] if rates["baseline"] else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="how long to measure after the first pass")
    parser.add_argument("--with-metric-query", action="store_true", help="also run bench/metric_query")
    args = parser.parse_args()
    figures = measure(args.minutes)
    print(f"bench/watch_cost: {figures['minutes']:.1f} min measured after the first pass, alert interval {ALERT_S} s, "
          f"{figures['watch_passes']} watch passes; CPU of each ansible-playbook process tree")
    print(f"{'':34} {'CPU s / watched hour':>22} {'% of one core':>14} {'start-up CPU s':>15}")
    for name, label in (("watch", "watch (emp.deploy.watch, follow)"), ("baseline", "baseline (uri loop + wait_for)")):
        print(f"{label:34} {figures['cpu_s_per_hour'][name]:22.1f} {figures['core_percent'][name]:14.2f} "
              f"{figures['startup_cpu_s'][name]:15.1f}")
    ratio = figures["ratio"]
    print(f"watch vs baseline: {ratio:.2f}x" if ratio else "watch vs baseline: baseline used no CPU")
    per_day = figures["startup_cpu_s"]["watch"] / 24
    print(f"watch: {figures['core_percent']['watch']:.2f} % of one core (goal <= 2 %); its start-up spread over a 24 h "
          f"window adds {per_day:.2f} CPU s per hour")
    print(json.dumps(figures))
    if args.with_metric_query:
        subprocess.run([str(ROOT / "bench/metric_query/run")], check=True)
    else:
        print("per-sample cost of emp.deploy.metric_query against ansible.builtin.uri: bench/metric_query/run")


if __name__ == "__main__":
    main()
