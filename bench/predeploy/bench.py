"""Predeploy wall time: the whole `ansible-playbook predeploy.yml` against a fresh sandbox.

A fresh sandbox (`python -m sandbox up`) in a temporary state directory, then the real
`ansible-playbook predeploy.yml` with the default inventory (inventories/sandbox: disruptive checks on,
2 samples 0.5 s apart), as `make demo-predeploy` does. Measured in that run:

- wall: the ansible-playbook process, start to exit (goal: <= 60 s);
- gates: how many, and how many said GO; skipped checks;
- the five slowest items: the predeploy role's tasks by duration (bench/deploy_wall's task timer), each a
  gate (named by its checklist line) or the one probe run that several gates judge.

The machine's load average is printed beside the figures: on a shared machine the wall time says as much
about the neighbours as about the predeploy. Each round uses a fresh sandbox (--rounds).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMER = ROOT / "bench" / "deploy_wall" / "callback_plugins"
BIN = Path(sys.executable).parent
GOAL_S = 60.0


def sandbox(state: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "sandbox", "--state-dir", str(state), *args], cwd=str(ROOT),
                          check=False, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise SystemExit(f"python -m sandbox {' '.join(args)} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


def predeploy(work: Path, run_id: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMP_DEPLOY_", "ANSIBLE_"))}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1",
               ANSIBLE_CALLBACK_PLUGINS=str(TIMER), ANSIBLE_CALLBACKS_ENABLED="emp.deploy.go_no_go,task_timer",
               EMP_SANDBOX_STATE=str(work / "state"), EMP_DEPLOY_REPORT_DIR=str(work / "reports"),
               EMP_DEPLOY_RUN_ID=run_id, EMP_BENCH_TIMINGS=str(work / f"{run_id}.timings.jsonl"),
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), str(ROOT / "predeploy.yml")], cwd=str(ROOT), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=900)
    return time.monotonic() - started, proc


def slowest(timings: Path, count: int = 5) -> list[tuple[float, str]]:
    lines = [json.loads(line) for line in timings.read_text(encoding="utf-8").splitlines()] if timings.exists() else []
    items = [(line["duration_s"], line["task"]) for line in lines if line.get("role") == "predeploy"]
    return sorted(items, reverse=True)[:count]


def one_round(work: Path, n: int) -> dict:
    load_before = os.getloadavg()[0]
    try:
        sandbox(work / "state", "up")  # inside the try: a half-started sandbox is stopped (and its database dropped) too
        run_id = f"bench-predeploy-{n}"
        wall, proc = predeploy(work, run_id)
    finally:
        sandbox(work / "state", "down")
    summary_path = work / "reports" / run_id / "summary.json"
    if not summary_path.exists():
        raise SystemExit(f"no summary: the run failed before recording (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return {"wall_s": round(wall, 2), "rc": proc.returncode, "decision": summary["decision"],
            "run_kind": summary.get("run_kind"), "gates": len(summary["gates"]),
            "go": sum(g["decision"] == "GO" for g in summary["gates"]),
            "nogo": [g["name"] for g in summary["gates"] if g["decision"] != "GO"],
            "skipped": len(summary.get("skipped_checks") or []),
            "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "slowest": slowest(work / f"{run_id}.timings.jsonl"),
            # why a run that did not finish GO stopped, in its own words
            "output_tail": proc.stdout.splitlines()[-25:] if proc.returncode != 0 else []}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per round")
    args = parser.parse_args()
    failed = False
    for n in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="emp-bench-predeploy-") as tmp:
            result = one_round(Path(tmp), n)
        if args.json:
            print(json.dumps(result))
            continue
        verdict = "within" if result["wall_s"] <= GOAL_S else "OVER"
        print(f"predeploy round {n}: wall {result['wall_s']:.1f} s ({verdict} the {GOAL_S:.0f} s goal), rc {result['rc']}, "
              f"decision {result['decision']} (run_kind {result['run_kind']}), {result['go']}/{result['gates']} gates GO, "
              f"{result['skipped']} skipped, load average {result['load'][0]} -> {result['load'][1]}")
        if result["nogo"]:
            print(f"  not GO: {', '.join(result['nogo'])}")
        if result["output_tail"]:
            print("  the end of its output:")
            print("\n".join("    " + line for line in result["output_tail"]))
        print("  slowest items:")
        for seconds, task in result["slowest"]:
            print(f"    {seconds:7.2f} s  {task}")
        failed = failed or result["rc"] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
