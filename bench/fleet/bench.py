"""Fleet rollout cost (docs/fleet.md): 50, 100 and 200 hosts x components with gates, run in batches.

Each host is a local connection alias with its own release directory; each component is one phase play
(a release and a gate per host) run with emp_batch. For each fleet size it runs the same playbook with
the emp.deploy.go_no_go callback enabled and disabled (the baseline, interleaved in the same run) and
reports the controller's wall time and CPU (ansible-playbook and its workers) per host-gate, as ratios:
enabled / disabled, and per host-gate at N hosts / at the smallest fleet (target <= 1.2).

Then, in this process, the callback's own share: a RunRecorder fed the records of the largest fleet
(a batch start, a release and a gate record per host and component, realistic gate records), its peak
memory (tracemalloc) and the time to write the journal and summary.json (target < 1 s), and the same
feed with an fsync per record (the baseline that batching the fsync per task avoids).
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
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "collections"), str(ROOT / "bench")]

import fleet_harness as fh  # noqa: E402  # pylint: disable=wrong-import-position
import playbook_timing  # noqa: E402  # pylint: disable=wrong-import-position
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R  # noqa: E402  # pylint: disable=wrong-import-position
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr  # noqa: E402  # pylint: disable=wrong-import-position

BATCH = [1, "10%", "50%", "100%"]


def config(tmp: Path, enabled: bool) -> Path:
    return playbook_timing.callback_config(tmp, enabled, "forks = 20\ninternal_poll_interval = 0.01\n")


def one_run(tmp: Path, hosts: int, components: tuple[str, ...], enabled: bool, label: str) -> tuple[float, float]:
    root = tmp / label
    root.mkdir()
    inventory = fh.make_fleet(root, hosts, components=components)
    deploy = fh.write_playbooks(root, components)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "EMP_DEPLOY_"))}
    env.update(ANSIBLE_CONFIG=str(config(tmp, enabled)), ANSIBLE_NOCOLOR="1", EMP_DEPLOY_REPORT_DIR=str(root / "reports"))
    started, cpu_started = time.perf_counter(), playbook_timing.children_cpu_seconds()
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(deploy), "-i", str(inventory), "-e",
                           json.dumps({"emp_batch": BATCH})], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    elapsed, cpu = time.perf_counter() - started, playbook_timing.children_cpu_seconds() - cpu_started
    if proc.returncode != 0 or (enabled != ("EMP GO/NO-GO" in proc.stdout)):
        sys.exit(f"run {label} failed or the callback {'did not run' if enabled else 'ran'}:\n{proc.stdout[-3000:]}")
    return elapsed, cpu


def gate_record(host: str, component: str, n: int) -> dict:
    sample = {"n": 1, "kind": "ok", "started": rr.now(), "duration_ms": 3.1,
              "figures": {"result.stat.exists": False}, "criteria": [{"criterion": "not result.stat.exists", "ok": True}]}
    return {"id": f"{component}:{host}:{n}", "name": f"{component}-fleet", "component": component, "mode": R.ENFORCE,
            "enforced": True, "decision": R.GO, "reason": "all 1 criterion held in 1 of 1 sample", "host": host,
            "started": rr.now(), "ended": rr.now(), "duration_s": 0.3, "samples": [sample],
            "counts": {"ok": 1, "failure": 0, "error": 0, "no_data": 0}}


def feed_recorder(tmp: Path, hosts: int, components: tuple[str, ...], batched_fsync: bool,
                  trace_memory: bool = False) -> dict[str, float]:
    """Seconds recording the run's events, writing the end (run_end, journal head, summary.json) and the
    reports (HTML, JUnit: rendered from the journal), and the peak bytes allocated (with trace_memory)."""
    options = rr.validate_options({"report_dir": str(tmp / f"feed-{batched_fsync}-{trace_memory}")})
    recorder = rr.RunRecorder(options, "fleet-bench")
    timed: dict[str, float] = {"reports": 0.0, "peak": 0.0}
    write_reports = recorder.write_reports

    def timed_reports() -> None:
        started = time.perf_counter()
        write_reports()
        timed["reports"] = time.perf_counter() - started

    recorder.write_reports = timed_reports  # type: ignore[method-assign]
    names = fh.host_names(hosts)
    sizes = [1, hosts // 10, hosts // 2]
    batches = [names[:sizes[0]], names[sizes[0]:sizes[0] + sizes[1]], names[sum(sizes[:2]):sum(sizes)],
               names[sum(sizes):]]
    if trace_memory:
        tracemalloc.start()
    started = time.perf_counter()
    recorder.start(playbook="fleet.yml", check_mode=False, rollback_run=False)
    for number, component in enumerate(components, 1):
        recorder.start_phase(f"phase{number}", component, f"Phase {number} · {component}")
        for batch in [b for b in batches if b]:
            recorder.start_batch(batch, 0)
            if not batched_fsync:
                recorder.batch = None  # the unbatched baseline: every record fsynced as it is written
            recorder.step_started(f"Release {component}")
            for host in batch:
                recorder.add_release({"component": component, "name": component, "version": fh.NEW,
                                      "previous": fh.OLD, "changed": True, "host": host}, host)
            recorder.step_started(f"Gate {component}")
            for number_in_batch, host in enumerate(batch):
                recorder.add_gate(gate_record(host, component, number_in_batch), host)
            if not batched_fsync:
                recorder.batch = recorder.batches[-1]
        recorder.end_phase()
    timed["recording"] = time.perf_counter() - started
    started = time.perf_counter()
    recorder.finish(*recorder.decision(set()), {h: {"ok": 2 * len(components)} for h in names})
    timed["end"] = time.perf_counter() - started - timed["reports"]
    if trace_memory:
        timed["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return timed


def recorder_lines(batched: dict[str, float], unbatched: dict[str, float], peak: float, hosts: int,
                   components: int) -> list[str]:
    """The callback's own figures, for the largest fleet."""
    recording, per_record = batched["recording"], unbatched["recording"]
    return [
        f"  callback alone, {hosts} hosts x {components} components ({hosts * components * 2} release and gate records):",
        f"    recording with the fsync batched per task: {recording:.3f} s; with an fsync per record (baseline C): "
        f"{per_record:.3f} s; ratio {recording / per_record:.3f}",
        f"    journal end and summary.json: {batched['end']:.3f} s (target < 1 s); the reports from the journal "
        f"(HTML, JUnit): {batched['reports']:.3f} s; peak memory of the recorder: {peak / 1e6:.1f} MB",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="50,100,200", help="fleet sizes, comma-separated")
    parser.add_argument("--components", type=int, default=6, help="components (phase plays with a gate each)")
    parser.add_argument("--rounds", type=int, default=1, help="enabled/disabled pairs per fleet size")
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",")]
    components = tuple(f"c{n}" for n in range(1, args.components + 1))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        one_run(tmp, 2, components[:1], True, "warmup")
        for hosts in sizes:
            runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for n in range(args.rounds):
                for on in ((True, False) if n % 2 == 0 else (False, True)):
                    runs[on].append(one_run(tmp, hosts, components, on, f"{hosts}-{n}-{'on' if on else 'off'}"))
            rows.append((hosts, {on: (statistics.median(run[0] for run in r), statistics.median(run[1] for run in r))
                                 for on, r in runs.items()}))
        batched, unbatched = (feed_recorder(tmp, max(sizes), components, b) for b in (True, False))
        peak = feed_recorder(tmp, max(sizes), components, True, trace_memory=True)["peak"]
    print(f"fleet: {args.components} components (a release and a gate per host each), emp_batch {BATCH}, "
          f"{args.rounds} run(s) each, interleaved")
    print("  baseline A: the same playbook and fleet with the go_no_go callback disabled, in the same run")
    print(f"  baseline B: per host-gate cost at {sizes[0]} hosts, callback enabled")
    base_hosts, base = rows[0]
    for hosts, med in rows:
        gates = hosts * args.components
        for index, what in ((0, "wall"), (1, "cpu")):
            on, off = med[True][index], med[False][index]
            per_gate = on / gates * 1000
            flat = per_gate / (base[True][index] / (base_hosts * args.components) * 1000)
            print(f"  {hosts:4d} hosts {what:4s}: enabled {on:7.2f} s, disabled {off:7.2f} s, "
                  f"ratio enabled/disabled {on / off:.3f}; {per_gate:.2f} ms per host-gate, "
                  f"{flat:.3f} x baseline B (target <= 1.2)")
    print("\n".join(recorder_lines(batched, unbatched, peak, max(sizes), args.components)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
