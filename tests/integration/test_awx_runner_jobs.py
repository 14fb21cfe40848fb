"""The deploy run exactly the way AWX runs a job: an ansible-runner private data directory (env/extravars,
env/envvars, inventory/, project/), runner's event callback and its awx_display stdout callback, the
variables and environment the 'EMP deployment' credential type injects (awx/configs/credential_types.yml,
rendered as AWX renders injectors), and the job's artifact directory, against a real sandbox.

1. GO: the full deploy job template takes the 1.0.0 sandbox to 1.1.0; the injected ngrok authtoken reaches
   the ngrok module (it writes it to the agent configuration) and no injected secret reaches the job's output.
2. NO-GO: the webhook release answering 404; the webhooks roll back inside the job (the rollback's tasks are
   in runner's job events), the signed webhook notifications use the injected secret, and the workflow's
   phase 3 rollback node (the rollback template with that node's extra data) then finds nothing left to undo.
3. Cancel: a job cancelled mid-gate through runner's cancel callback; the journal is valid and ends, and the
   summary says the run was interrupted.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from awx_config import inject, load_configs, template
from conftest import BIN, ROOT
from notify_receiver import Receiver
from servers import kill_processes_mentioning
from test_deploy_sandbox import (  # noqa: F401  # pylint: disable=unused-import
    running_versions, sandbox_cli, sandbox_state,  # sandbox_state: the module-scoped sandbox fixture
)

ansible_runner = pytest.importorskip("ansible_runner")
# pylint: disable=redefined-outer-name

# runner's pexpect mode (the one AWX uses) forkpty()s from this multi-threaded pytest process; the child
# execs ansible-playbook at once (see test_go_no_go_ansible_runner.py)
pytestmark = [pytest.mark.timeout(1200),
              pytest.mark.filterwarnings("ignore:This process .* use of forkpty:DeprecationWarning")]

CONFIGS = load_configs()
(WORKFLOW,) = CONFIGS["controller_workflows"]
# The sandbox inventory gives an otel_verify sample 10 s; on a loaded 2-core machine the Dash0 stand-in can
# take longer to show a canary, so these jobs give it the time the role's own default allows more of.
LOADED_MACHINE = {"telemetry_gate_timeout": 30}
DATABASE_GATE = "GO/NO-GO · all existing queries working, no connection errors"
ROLLBACK_PHASE3 = next(n for n in WORKFLOW["workflow_nodes"] if n["identifier"] == "rollback_phase3")


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Job:
    """One AWX job of a job template, as ansible-runner's private data directory."""

    def __init__(self, tmp_path: Path, state: Path, template_name: str, inputs: dict, extra_vars: dict | None = None):
        self.template = template(CONFIGS, template_name)
        self.pdd = tmp_path / "job"
        self.ident = "1"  # AWX names a job's artifact directory after the job id
        self.artifacts = self.pdd / "artifacts" / self.ident
        self.reports = self.artifacts / "emp-deploy-reports"
        self.pdd.mkdir(parents=True)
        (self.pdd / "project").symlink_to(ROOT)  # the project update's checkout of this repository
        self._inventory()
        injected_vars, injected_env = inject(CONFIGS, {"report_dir": str(self.reports), **inputs})
        # AWX's precedence: the template's extra vars, then launch-time vars, then the credential's
        job_vars = {**(self.template.get("extra_vars") or {}), **LOADED_MACHINE, **(extra_vars or {}), **injected_vars}
        self._write("env/extravars", job_vars)
        self._write("env/envvars", {**injected_env, "EMP_SANDBOX_STATE": str(state), "ANSIBLE_PIPELINING": "1",
                                    "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
        self.runner = None

    def _inventory(self) -> None:
        """The sandbox inventory as an AWX inventory: its group vars, and a host variable for where the
        sandbox's code is (the inventory no longer sits in the checkout)."""
        inventory = self.pdd / "inventory"
        shutil.copytree(ROOT / "inventories/sandbox/group_vars", inventory / "group_vars")
        hosts = yaml.safe_load((ROOT / "inventories/sandbox/hosts.yml").read_text())
        hosts["all"]["hosts"]["sandbox"]["emp_sandbox_root"] = str(ROOT)
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))

    def _write(self, name: str, data: dict) -> None:
        path = self.pdd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data))

    def run(self, **kwargs):
        env = dict(os.environ)
        env.pop("ANSIBLE_CONFIG", None)  # AWX runs in the project checkout: its ansible.cfg applies
        self.runner = ansible_runner.run(private_data_dir=str(self.pdd), playbook=self.template["playbook"],
                                         ident=self.ident, quiet=True, timeout=900, **kwargs)
        return self.runner

    def run_dir(self) -> Path:
        (run_dir,) = [p for p in self.reports.iterdir() if p.is_dir()]
        return run_dir

    def summary(self) -> dict:
        return json.loads((self.run_dir() / "summary.json").read_text())

    def journal(self) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir() / "journal.jsonl").read_text().splitlines()]

    def events(self) -> list[dict]:
        return list(self.runner.events)

    def task_names(self) -> set[str]:
        return {e.get("event_data", {}).get("task") for e in self.events()}

    def artifact_text(self) -> str:
        """Everything the job left in its artifact directory (stdout, job events, our reports), less runner's
        `command` file: the job's environment as runner launched it (AWX keeps that out of the job's output)."""
        return "\n".join(p.read_text(errors="replace") for p in self.artifacts.rglob("*")
                         if p.is_file() and p != self.artifacts / "command")


def test_go_as_an_awx_job_of_the_full_deploy_template(sandbox_state, tmp_path):
    authtoken = "2aw" + secrets.token_hex(16)
    job = Job(tmp_path, sandbox_state, "EMP deploy · full deploy",
              {"dash0_token": "sandbox-token", "ngrok_authtoken": authtoken})
    runner = job.run()

    assert (runner.status, runner.rc) == ("successful", 0), Path(runner.stdout.name).read_text()[-4000:]
    summary = job.summary()
    assert summary["decision"] == "GO" and not summary["rollback"]["triggered"]
    assert [g["decision"] for g in summary["gates"]] == ["GO"] * 8, [(g["name"], g["reason"]) for g in summary["gates"]]
    assert running_versions(sandbox_state) == {"api": "1.1.0", "webhook": "1.1.0", "worker": "1.1.0", "monitor": "1.1.0"}
    # runner's artifact directory holds what AWX stores of a job, and our records beside it
    assert (job.artifacts / "rc").read_text().strip() == "0" and (job.artifacts / "status").read_text() == "successful"
    assert list((job.artifacts / "job_events").glob("*.json")) and (job.artifacts / "stdout").is_file()
    assert {e["event"] for e in job.events()} >= {"playbook_on_start", "runner_on_ok", "playbook_on_stats"}
    assert DATABASE_GATE in job.task_names()
    assert "EMP GO/NO-GO" in (job.artifacts / "stdout").read_text()
    # the credential's ngrok authtoken reached the ngrok module through NGROK_AUTHTOKEN (it owns the agent
    # configuration then), and appears nowhere in the job's output, events or records
    ngrok_config = Path(json.loads(sandbox_cli(sandbox_state, "status", "--json").stdout)["ngrok_config"])
    assert authtoken in ngrok_config.read_text()
    assert authtoken not in job.artifact_text()


def test_nogo_as_an_awx_job_rolls_back_in_the_job_then_the_workflow_rollback_finds_nothing(sandbox_state, tmp_path):
    # the release: a new webhook service (whose routes answer 404), the workers left out (already current)
    launch = {"emp_sandbox_webhook_version": "1.1.0-404", "emp_workers_hosts": "!all"}
    webhook_before = running_versions(sandbox_state)["webhook"]
    secret = whsec()
    with Receiver() as receiver:
        job = Job(tmp_path / "deploy", sandbox_state, "EMP deploy · full deploy",
                  {"dash0_token": "sandbox-token", "webhook_url": receiver.url("/hook"), "webhook_secret": secret}, launch)
        runner = job.run()
        hooks = receiver.at("/hook")

    assert (runner.status, runner.rc) == ("failed", 2)
    summary = job.summary()
    gates = [(g["component"], g["decision"], g["reason"]) for g in summary["gates"]]
    assert [g[:2] for g in gates] == [("database", "GO"), ("redis", "GO"), ("telemetry", "GO"), ("webhooks", "NO-GO")], gates
    assert summary["rollback"]["components"] == ["webhooks"] and summary["rollback"]["ok"] is True
    after_nogo = running_versions(sandbox_state)
    assert after_nogo["webhook"] == webhook_before
    # the rollback ran inside the job: its play and tasks are in runner's job events, after the NO-GO gate
    events = job.events()
    plays = [e["event_data"].get("play") for e in events if e["event"] == "playbook_on_play_start"]
    assert "Rollback · webhooks · webhook service changes" in plays
    assert "Roll back the webhook service changes" in job.task_names()
    gate_failed = next(i for i, e in enumerate(events) if e["event"] == "runner_on_failed")
    rollback_at = next(i for i, e in enumerate(events) if e["event_data"].get("play", "").startswith("Rollback · webhooks"))
    assert gate_failed < rollback_at
    assert [r["type"] for r in job.journal()][-1] == "run_end"
    # the injected webhook secret signed the callback's notifications, and is in no output
    assert [Webhook(secret).verify(h.body, h.headers)["type"] for h in hooks] == ["emp.deploy.nogo", "emp.deploy.rollback"]
    assert secret not in job.artifact_text()

    # the workflow's failure path of phase 3: the rollback template with that node's extra data and the
    # workflow's launch variables (AWX passes them to every node); the 404 release is no longer current, so
    # the webhook rollback has nothing to undo, and the workers, left out of this release, are left alone
    rollback = Job(tmp_path / "rollback", sandbox_state, ROLLBACK_PHASE3["unified_job_template"]["name"],
                   {"dash0_token": "sandbox-token"}, {**launch, **ROLLBACK_PHASE3["extra_data"]})
    runner = rollback.run()
    assert (runner.status, runner.rc) == ("successful", 0), Path(runner.stdout.name).read_text()[-4000:]
    assert "Roll back the webhook service changes" in rollback.task_names()
    assert "Roll back the worker improvements" not in rollback.task_names()
    assert running_versions(sandbox_state) == after_nogo


def test_a_job_cancelled_mid_gate_ends_its_record_as_interrupted(sandbox_state, tmp_path):
    # a long database soak, so the cancel lands in the middle of the first gate
    job = Job(tmp_path, sandbox_state, "EMP deploy · phase 1 infrastructure", {"dash0_token": "sandbox-token"},
              {"database_gate_duration": 120, "database_gate_interval": 1})

    gate_started: list[float] = []

    def on_event(event: dict) -> bool:  # runner's event callback, as AWX receives the job's events
        if event.get("event") == "playbook_on_task_start" and event["event_data"].get("task") == DATABASE_GATE:
            gate_started.append(time.monotonic())
        return True

    def cancel() -> bool:  # runner polls this; True cancels the job as AWX's cancel does, a few seconds into the gate
        return bool(gate_started) and time.monotonic() - gate_started[0] > 3

    try:
        runner = job.run(event_handler=on_event, cancel_callback=cancel)
    finally:
        # runner kills the job's process group; ansible-core 2.21 runs each worker in a session of its own,
        # so the gate's worker outlives the cancel (as it would in AWX) unless it is killed too
        kill_processes_mentioning(str(job.pdd / "env/extravars"))
    assert runner.status == "canceled"
    deadline = time.monotonic() + 60
    while not (job.run_dir() / "summary.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the run's watcher notices the death and ends the record
    summary = job.summary()
    assert summary["decision"] == "interrupted" and summary["interrupted"] == "killed"
    assert summary["running_step"]["task"] == f"emp.deploy.database : {DATABASE_GATE}" and summary["running_step"]["component"] == "database"
    assert summary["record_errors"] == [] and summary["rollback"]["state"] == "not_started"
    journal = job.journal()
    assert [r["type"] for r in journal][-2:] == ["run_interrupted", "run_end"]
    assert (job.artifacts / "status").read_text() == "canceled"
