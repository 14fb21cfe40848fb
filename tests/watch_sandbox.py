"""The watch after GO against a real sandbox, for tests/integration/test_watch_sandbox_faults.py and
bench/alert_latency: one sandbox, one real GO deploy, then any number of watches, each on a copy of
that deploy run (a run has one watch window), each with a fault of the sandbox's faults CLI.

`Sandbox.reset()` clears the faults and re-releases what a rollback switched back
(tests/integration/files/watch_rearm.yml), so every watch starts from the deployed state.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from watch_harness import wait_for_series

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories/sandbox/hosts.yml"
REARM = ROOT / "tests/integration/files/watch_rearm.yml"
GO_RUN = "go"
# The alert queries' lookback in these watches (the sandbox inventory's is 30 s): short, so that a reset
# sandbox is quiet again soon; reset() waits a little longer than this.
ALERT_RANGE_S = 10
# what the sandbox's Prometheus answers once it has scraped the services for a while (the job rate baseline)
SETTLED = 'sum(rate(emp_jobs_completed_total{status="completed"}[30s])) > 0'

# Each fault class: the faults CLI arguments, the check that must alert and the component it rolls back.
# api-latency has no immediate alert in the checklist: its check is the final API p95 target.
FAULTS = {
    "webhook-failures": (["--rate", "0.5"], "webhook_delivery_failures", "webhooks"),
    "worker-memory-leak": (["--mb-per-s", "5"], "memory_trend_worker", "workers"),
    "api-latency": (["--ms", "300"], "api_latency_p95", "telemetry"),
    "jobs-stalled": ([], "job_processing_stopped", "workers"),
    "redis-drop": ([], "redis_connection_failures", "redis"),
    "telemetry-export": ([], "otel_export_failures", "telemetry"),
}


@dataclass
class Watch:
    run_id: str
    rc: int
    output: str
    summary: dict
    journal: list[dict] = field(default_factory=list)

    def records(self, kind: str) -> list[dict]:
        return [r for r in self.journal if r.get("type") == kind]


class Sandbox:
    """A sandbox in its own state directory, deployed to 1.1.0 by the real deploy.yml (GO)."""

    def __init__(self, base: Path) -> None:
        self.state = base / "state"
        self.reports = base / "reports"
        self.env = {"EMP_SANDBOX_STATE": str(self.state), "EMP_DEPLOY_REPORT_DIR": str(self.reports),
                    "ANSIBLE_PIPELINING": "1", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                    "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "sandbox", "--state-dir", str(self.state), *args], cwd=str(ROOT),
                              capture_output=True, text=True, timeout=120, check=True).stdout

    def playbook(self, playbook: Path, extra_vars: dict, env: dict | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "ansible-playbook"), str(playbook), "-i", str(INVENTORY), "-e", json.dumps(extra_vars)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), check=False,
                              env={**os.environ, **self.env, **(env or {})})

    def up(self, window: str, settle_s: float = 0.0) -> None:
        """Starts the sandbox and deploys it (GO); the baseline is captured over `window`.

        A sandbox just started has no samples yet: with settle_s, the deploy waits until its Prometheus has
        scraped completed jobs, then settle_s more, so that the baseline window before the deploy holds data."""
        self.cli("up")
        if settle_s:
            wait_for_series(json.loads(self.cli("status", "--json"))["prometheus"], SETTLED, deadline_s=60)
            time.sleep(settle_s)
        proc = self.playbook(ROOT / "deploy.yml", {"emp_watch_window": window}, env={"EMP_DEPLOY_RUN_ID": GO_RUN})
        summary = json.loads((self.reports / GO_RUN / "summary.json").read_text(encoding="utf-8"))
        if proc.returncode != 0 or summary.get("decision") != "GO":
            raise RuntimeError(f"the sandbox deploy did not say GO (exit {proc.returncode}): {proc.stdout[-3000:]}")

    def down(self) -> None:
        self.cli("down")

    def reset(self) -> None:
        """No fault, every component at its deployed release (what a rollback switched back is released again),
        and the previous fault's effects out of the alert queries' lookback."""
        self.cli("fault", "clear")
        proc = self.playbook(REARM, {}, env={"EMP_DEPLOY_REPORT_DIR": str(self.reports.parent / "rearm-reports")})
        if proc.returncode != 0:
            raise RuntimeError(f"re-releasing the sandbox failed: {proc.stdout[-3000:]}")
        time.sleep(ALERT_RANGE_S + 2)

    def fault(self, name: str) -> float:
        """Injects a fault class; returns the time it was set (epoch seconds)."""
        self.cli("fault", name, *FAULTS[name][0])
        return time.time()

    def new_run(self, run_id: str) -> str:
        """A copy of the GO deploy run under another id: the watch attaches to it and records into it."""
        source, target = self.reports / GO_RUN, self.reports / run_id
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in ("summary.json", "journal.jsonl", "baseline.json"):
            text = (source / name).read_text(encoding="utf-8")
            (target / name).write_text(text.replace(f'"run_id": "{GO_RUN}"', f'"run_id": "{run_id}"'), encoding="utf-8")
        return run_id

    def watch_args(self, run_id: str, window: str, alert: str, hourly: str, rollback: str = "auto",
                   **extra: str) -> dict:
        return {"emp_watch_run_id": run_id, "emp_watch_mode": "follow", "emp_watch_window": window,
                "emp_watch_alert_interval": alert, "emp_watch_hourly_interval": hourly,
                "emp_watch_rollback": rollback, "watch_alert_range": f"{ALERT_RANGE_S}s", **extra}

    def watch(self, run_id: str, window: str, alert: str, hourly: str, rollback: str = "auto",
              timeout: float = 300, **extra: str) -> Watch:
        """A follow watch of run_id (attached by the go_no_go callback); returns when it ends."""
        proc = self.playbook(ROOT / "playbooks/watch.yml", self.watch_args(run_id, window, alert, hourly, rollback, **extra),
                             timeout=timeout)
        return self.record(run_id, proc.returncode, proc.stdout + proc.stderr)

    def start_watch(self, run_id: str, log: Path, **watch_args: str) -> subprocess.Popen:
        """The same watch in the background, in a session of its own (its process tree is one group)."""
        cmd = [str(BIN / "ansible-playbook"), str(ROOT / "playbooks/watch.yml"), "-i", str(INVENTORY),
               "-e", json.dumps(self.watch_args(run_id, **watch_args))]
        with open(log, "w", encoding="utf-8") as out:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
                                    env=dict(os.environ, **self.env))

    def passes(self, run_id: str) -> int:
        """How many passes the watch of run_id has recorded so far (0 before its first)."""
        try:
            return int(json.loads((self.reports / run_id / "watch.json").read_text(encoding="utf-8"))["passes"])
        except (OSError, ValueError, KeyError):
            return 0

    def record(self, run_id: str, rc: int, output: str) -> Watch:
        run_dir = self.reports / run_id
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()]
        return Watch(run_id, rc, output, summary, journal)
