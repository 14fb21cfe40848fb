"""Rollback latency: end of the NO-GO gate -> end of the verified rollback.

Setup as in extensions/molecule/nogo_rollback: a private redis-server, release 1.0.0 of a toy
service that holds a Redis connection named emp-toy; then `ansible-playbook deploy.yml` deploys
1.1.0-noredis (which never registers its client), the Redis gate says NO-GO and the go_no_go
callback rolls redis back in the same process (release role: switch back, restart, verify current;
then wait for emp-toy).

auto:     latency = journal rollback_end.ts - NO-GO gate.ended (both written by the run itself).
baseline: the manual procedure measured in the same run - the same NO-GO with EMP_DEPLOY_ROLLBACK=off,
          then `ansible-playbook playbooks/rollback.yml` started as soon as the deploy exits;
          latency = end of that process - NO-GO gate.ended.
Also shown against the checklist's budget for redis (300 s) and the target (10 s).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOY = ROOT / "extensions/molecule/default/files/toy_service.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Setup:
    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(work)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{self.port}/0"
        restart = f"{sys.executable} {TOY} restart --base-dir {work}/toy --redis-url {url} --state-dir {work}/state"
        self.vars = work / "vars.yml"
        self.vars.write_text(json.dumps({
            "emp_database_hosts": "!all",  # phase 1 step 2 only: no database here
            "redis_url": url, "redis_expected_clients": {"emp-toy": 1}, "redis_reconnect_timeout": 3,
            "redis_gate_duration": 1, "redis_gate_interval": 1,
            "toy_version": "1.1.0-noredis", "toy_faults": ["no_redis_client"],
            "redis_releases": [{"name": "toy", "version": "{{ toy_version }}", "base_dir": f"{work}/toy",
                                "restart_command": restart,
                                "manifest": {"service": "toy", "client_name": "emp-toy", "version": "{{ toy_version }}",
                                             "faults": "{{ toy_faults }}"}}],
        }))
        (work / "state").mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_DEPLOY_")}
        self.env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        EMP_DEPLOY_REPORT_DIR=str(work / "reports"))
        self.playbook(ROOT / "deploy.yml", "-e", '{"toy_version": "1.0.0", "toy_faults": []}', check=True)

    def playbook(self, path: Path, *args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / "ansible-playbook"), str(path), "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
                               "-e", f"@{self.vars}", *args], env={**self.env, **(env or {})}, cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if check and proc.returncode != 0:
            sys.exit(f"{path.name} failed:\n{proc.stdout[-3000:]}")
        return proc

    def run_dir(self, run_id: str) -> Path:
        return self.work / "reports" / run_id

    def journal(self, run_id: str) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir(run_id) / "journal.jsonl").read_text().splitlines()]

    def nogo_gate_end(self, journal: list[dict]) -> float:
        (gate,) = [r for r in journal if r["type"] == "gate" and r["decision"] == "NO-GO"]
        return ts(gate["ended"])

    def current(self) -> str:
        return os.readlink(self.work / "toy/current")

    def close(self) -> None:
        subprocess.run([sys.executable, str(TOY), "stop", "--base-dir", str(self.work / "toy"),
                        "--state-dir", str(self.work / "state")], check=False)
        self.redis.terminate()
        self.redis.wait(timeout=10)


def auto_round(setup: Setup, n: int) -> tuple[float, float]:
    run_id = f"bench-auto-{n}-{time.time_ns()}"
    proc = setup.playbook(ROOT / "deploy.yml", env={"EMP_DEPLOY_RUN_ID": run_id})
    journal = setup.journal(run_id)
    (end,) = [r for r in journal if r["type"] == "rollback_end"]
    if proc.returncode == 0 or not end["ok"] or setup.current() != "releases/1.0.0":
        sys.exit(f"auto round {n}: rc {proc.returncode}, rollback ok {end['ok']}, current {setup.current()}\n"
                 + proc.stdout[-3000:])
    return ts(end["ts"]) - setup.nogo_gate_end(journal), end["duration_s"]


def manual_round(setup: Setup, n: int) -> float:
    run_id = f"bench-manual-{n}-{time.time_ns()}"
    setup.playbook(ROOT / "deploy.yml", env={"EMP_DEPLOY_RUN_ID": run_id, "EMP_DEPLOY_ROLLBACK": "off"})
    gate_end = setup.nogo_gate_end(setup.journal(run_id))
    setup.playbook(ROOT / "playbooks/rollback.yml", "-e",
                   json.dumps({"emp_rollback_components": ["redis"], "emp_run_id": run_id}), check=True,
                   env={"EMP_DEPLOY_RUN_ID": run_id + "-rollback"})
    ended = time.time()
    if setup.current() != "releases/1.0.0":
        sys.exit(f"manual round {n}: current is {setup.current()}")
    return ended - gate_end


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("redis-server is needed (make system-deps)")
    with tempfile.TemporaryDirectory(prefix="bench-rollback-") as tmp:
        setup = Setup(Path(tmp))
        try:
            auto, rollback_only, manual = [], [], []
            for n in range(args.rounds):
                latency, duration = auto_round(setup, n)
                auto.append(latency)
                rollback_only.append(duration)
                manual.append(manual_round(setup, n))
        finally:
            setup.close()
    med_auto, med_manual = statistics.median(auto), statistics.median(manual)
    print(f"rollback_latency: NO-GO gate end -> verified rollback end, redis, {args.rounds} rounds")
    print(f"  auto (go_no_go, same process): median {med_auto:.2f} s  (min {min(auto):.2f}, max {max(auto):.2f});"
          f" the rollback playbook itself: median {statistics.median(rollback_only):.2f} s")
    print(f"  baseline, manual (rollback.yml as a new process right after the run): median {med_manual:.2f} s"
          f"  (min {min(manual):.2f}, max {max(manual):.2f})")
    print(f"  ratio auto/manual: {med_auto / med_manual:.2f}")
    print(f"  ratio auto/target 10 s: {med_auto / 10:.2f}; auto/checklist budget 300 s: {med_auto / 300:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
