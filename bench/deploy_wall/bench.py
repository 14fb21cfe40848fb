"""Deploy wall time: the sandbox deploy's own overhead against its soak windows.

A fresh sandbox (`python -m sandbox up`, every service at 1.0.0) in a temporary state directory, then
the real `ansible-playbook deploy.yml` with the default inventory (inventories/sandbox) deploys 1.1.0
through every phase, as `make demo` does. Measured in that one run:

- wall: the ansible-playbook process, start to exit;
- soak: the time spent inside the gates (the sum of every gate's duration_s in summary.json), i.e.
  the soak windows and their samples;
- overhead ratio: (wall - soak) / soak, the deploy's own cost per second of soak (goal: <= 1.0);
- per role: tasks run and seconds spent, from a bench-only timing callback (callback_plugins/).

Run it twice or more (--rounds) to see the spread; each round uses a fresh sandbox.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def sandbox(root: Path, state: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "sandbox", "--state-dir", str(state), *args], cwd=str(root),
                   check=True, capture_output=True, text=True, timeout=180)


def deploy(root: Path, work: Path, run_id: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMP_DEPLOY_", "ANSIBLE_"))}
    env.update(ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1",
               ANSIBLE_CALLBACK_PLUGINS=str(HERE / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="emp.deploy.go_no_go,task_timer",
               EMP_SANDBOX_STATE=str(work / "state"), EMP_DEPLOY_REPORT_DIR=str(work / "reports"),
               EMP_DEPLOY_RUN_ID=run_id, EMP_BENCH_TIMINGS=str(work / f"{run_id}.timings.jsonl"),
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(root / "deploy.yml")], cwd=str(root), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=900)
    return time.monotonic() - started, proc


def one_round(root: Path, work: Path, n: int) -> dict:
    sandbox(root, work / "state", "up")
    try:
        run_id = f"bench-deploy-wall-{n}"
        wall, proc = deploy(root, work, run_id)
    finally:
        sandbox(root, work / "state", "down")
    summary_path = work / "reports" / run_id / "summary.json"
    if not summary_path.exists():
        sys.exit(f"round {n}: ansible-playbook deploy.yml exited {proc.returncode}\n{proc.stdout[-4000:]}")
    summary = json.loads(summary_path.read_text())
    if summary["decision"] != "GO":
        # still shown (where the time goes), but not comparable with a GO run
        print(f"round {n}: decision {summary['decision']} (exit {proc.returncode}), expected GO: "
              + "; ".join(g["reason"] for g in summary["gates"] if g["decision"] != "GO"), file=sys.stderr)
    soak = sum(gate["duration_s"] for gate in summary["gates"])
    journal = [json.loads(line) for line in (summary_path.parent / "journal.jsonl").read_text().splitlines()]
    # the windows the gates were asked to soak: (samples - 1) x interval
    windows = sum(max(r["counts"]["planned"] - 1, 0) * r.get("interval_s", 0) for r in journal
                  if r.get("type") == "gate" and "counts" in r)
    timings = [json.loads(line) for line in (work / f"{run_id}.timings.jsonl").read_text().splitlines()]
    return {"wall": wall, "soak": soak, "windows": windows, "gates": len(summary["gates"]), "timings": timings,
            "decision": summary["decision"]}


def per_role(timings: list[dict]) -> list[tuple[str, int, float]]:
    counts: collections.Counter[str] = collections.Counter()
    seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
    for line in timings:
        role = line["role"] or "(play)"
        counts[role] += 1
        # includes finish when their tasks are queued, so only real tasks count towards the time
        if line["action"] not in ("ansible.builtin.include_role", "ansible.builtin.include_tasks",
                                  "include_role", "include_tasks"):
            seconds[role] += line["duration_s"]
    return sorted(((role, counts[role], seconds[role]) for role in counts), key=lambda row: -row[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="deploys, each on a fresh sandbox (default 1)")
    parser.add_argument("--top", type=int, default=0, help="also list the N slowest tasks of the last round")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout to deploy from (default this one), e.g. an export of another commit")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-wall-", dir=ROOT / ".tmp" if (ROOT / ".tmp").is_dir()
                                     else None) as tmp:
        for n in range(args.rounds):
            rounds.append(one_round(args.root.resolve(), Path(tmp) / f"round-{n}", n))
    walls, soaks = [r["wall"] for r in rounds], [r["soak"] for r in rounds]
    wall, soak = statistics.median(walls), statistics.median(soaks)
    last = rounds[-1]
    decisions = sorted({r["decision"] for r in rounds})
    print(f"deploy_wall: sandbox deploy 1.0.0 -> 1.1.0, decision {'/'.join(decisions)}, {args.rounds} round(s), "
          f"{last['gates']} gates, {len(last['timings'])} task results")
    print(f"  wall {wall:.1f} s (min {min(walls):.1f}, max {max(walls):.1f}); soak (time inside the gates) "
          f"{soak:.1f} s; overhead {wall - soak:.1f} s; overhead ratio (wall - soak) / soak {(wall - soak) / soak:.2f}")
    print(f"  the gates' soak windows alone ((samples - 1) x interval): {statistics.median(r['windows'] for r in rounds):.1f} s")
    print("  per role (last round): tasks, seconds outside the includes")
    for role, count, seconds in per_role(last["timings"]):
        print(f"    {role:<12} {count:4d} tasks {seconds:7.1f} s")
    if args.top:
        print(f"  the {args.top} slowest tasks (last round)")
        for line in sorted(last["timings"], key=lambda line: -line["duration_s"])[:args.top]:
            print(f"    {line['duration_s']:6.2f} s  {line['role'] or '(play)'}: {line['task']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
