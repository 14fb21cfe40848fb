"""Callback overhead: the same 500-task playbook with emp.deploy.go_no_go enabled and disabled.

Baseline: the run with the callback disabled (ANSIBLE_CALLBACKS_ENABLED empty), measured in the same
process, interleaved with the enabled runs so that load changes on the machine hit both alike.
The tasks are action-only (set_fact, debug, assert) inside a phase play: no module round trips,
so the callback's share of the time is as large as it can be (the worst case).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "bench"))

import playbook_timing  # noqa: E402  # pylint: disable=wrong-import-position


def playbook(tasks: int) -> str:
    lines = ["- name: Phase bench", "  hosts: sandbox", "  gather_facts: false",
             "  vars: {emp_phase: bench, emp_component: redis}", "  tasks:"]
    for n in range(tasks):
        kind = n % 3
        if kind == 0:
            lines += [f"    - name: Set fact {n}", f"      ansible.builtin.set_fact: {{bench_{n % 7}: {n}}}"]
        elif kind == 1:
            lines += [f"    - name: Debug {n}", f"      ansible.builtin.debug: {{msg: 'task {n}'}}"]
        else:
            lines += [f"    - name: Assert {n}", f"      ansible.builtin.assert: {{that: [{n} > 0], quiet: true}}"]
    return "\n".join(lines) + "\n"


def config(tmp: Path, enabled: bool) -> Path:
    return playbook_timing.callback_config(tmp, enabled, "result_format = yaml\n")


def one_run(path: Path, enabled: bool, reports: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "EMP_DEPLOY_"))}
    env.update(ANSIBLE_CONFIG=str(config(path.parent, enabled)), ANSIBLE_NOCOLOR="1",
               EMP_DEPLOY_REPORT_DIR=str(reports))
    started, cpu_started = time.perf_counter(), playbook_timing.children_cpu_seconds()
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(path), "-i", str(ROOT / "inventories/sandbox/hosts.yml")],
                          env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    elapsed, cpu = time.perf_counter() - started, playbook_timing.children_cpu_seconds() - cpu_started
    if proc.returncode != 0:
        sys.exit(f"run failed ({'enabled' if enabled else 'disabled'}):\n{proc.stdout[-3000:]}")
    if enabled and "EMP GO/NO-GO" not in proc.stdout:
        sys.exit("the callback did not run in the enabled run")
    if not enabled and "EMP GO/NO-GO" in proc.stdout:
        sys.exit("the callback ran in the disabled run")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="enabled/disabled pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-callback-") as tmp:
        path = Path(tmp, "bench.yml")
        path.write_text(playbook(args.tasks))
        one_run(path, True, Path(tmp, "warmup"))  # warm caches (bytecode, collection loader) for both
        enabled: list[tuple[float, float]] = []
        disabled: list[tuple[float, float]] = []
        for n in range(args.rounds):
            # alternate which goes first so a trend in machine load favours neither
            order = (True, False) if n % 2 == 0 else (False, True)
            for on in order:
                (enabled if on else disabled).append(one_run(path, on, Path(tmp, f"r{n}")))
    wall_on, wall_off = [wall for wall, cpu in enabled], [wall for wall, cpu in disabled]
    cpu_on, cpu_off = [cpu for wall, cpu in enabled], [cpu for wall, cpu in disabled]
    print(f"callback_overhead: {args.tasks}-task playbook, {args.rounds} runs each, interleaved")
    print("  baseline: the same playbook with the callback disabled, in the same run")
    for label, on, off in (("wall", wall_on, wall_off), ("cpu (user+sys of ansible-playbook and its workers)", cpu_on, cpu_off)):
        med_on, med_off = statistics.median(on), statistics.median(off)
        print(f"  {label}: disabled median {med_off:.2f} s (min {min(off):.2f}), enabled median {med_on:.2f} s "
              f"(min {min(on):.2f})")
        print(f"    ratio enabled/disabled: median {med_on / med_off:.3f}, min/min {min(on) / min(off):.3f}"
              f"  (target <= 1.03); {(med_on - med_off) / args.tasks * 1000:+.2f} ms per task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
