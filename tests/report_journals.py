"""Journals of crafted runs, in the record formats of docs/records.md (and the watch records of
docs/reports.md), for the report tests and bench/report. Timestamps advance from a fixed start, so
a journal (and its reports) are the same on every call."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.at = START

    def tick(self, seconds: float) -> str:
        self.at += timedelta(seconds=seconds)
        return self.now()

    def now(self) -> str:
        return self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JournalBuilder:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.clock = Clock()
        self.records: list[dict] = []

    def add(self, kind: str, **data) -> dict:
        record = {"schema_version": 1, "ts": self.clock.now(), "type": kind, "run_id": self.run_id, **data}
        self.records.append(record)
        return record

    def write(self, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "journal.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")
        return path

    def run_start(self, release: str = "1.1.0") -> None:
        self.add("run_start", playbook="/srv/deploy/deploy.yml", playbooks=["/srv/deploy/deploy.yml"], check_mode=False,
                 emp_release=release, limit=None, rollback_run=False, started=self.clock.now(), pid=4242,
                 user="deployer", controller="ctl-01")

    def gate(self, name: str, phase: str, component: str, values: list[float], limit: float = 200,
             mode: str = "enforce", fail_limit: int = 0, path: str = "result.latency_ms.p95",
             errors: int = 0) -> dict:
        started = self.clock.now()
        samples, passed, failed = [], 0, 0
        criterion = f"{path} < {limit:g}"
        for index, value in enumerate(values, start=1):
            self.clock.tick(1)
            held = value < limit
            passed, failed = passed + held, failed + (not held)
            samples.append({"index": index, "time": self.clock.now(), "ok": held, "outcome": "passed" if held else "failed",
                            "error": None, "figures": {path: value}, "criteria": [{"criterion": criterion, "held": held}],
                            "duration_ms": 12.5})
        for index in range(len(values) + 1, len(values) + errors + 1):
            self.clock.tick(1)
            samples.append({"index": index, "time": self.clock.now(), "ok": False, "outcome": "error",
                            "error": "connection refused", "figures": {}, "criteria": [], "duration_ms": 3.0})
        decision = "NO-GO" if failed > fail_limit or (errors and not passed) else "GO"
        if decision == "GO":
            reason = f"all 1 criterion held in {passed} of {len(samples)} samples"
        elif not passed and not failed:
            reason = f"the probe could not measure in any of {errors} samples: connection refused"
        else:
            bad = ", ".join(f"{v:g}" for v in values if v >= limit)
            reason = f"{criterion} did not hold in {failed} of {passed + failed} measured samples ({path} was {bad})"
        gate = {"id": f"{name}-id", "name": name, "phase": phase, "component": component, "checklist_ref": "3.2",
                "mode": mode, "enforced": mode == "enforce", "decision": decision, "reason": reason, "host": "sandbox",
                "source": "probe", "probe_module": "emp.deploy.webhook_probe",
                "criteria": [{"criterion": criterion, "outcome": "held" if not failed and not errors else "failed",
                              "held": passed, "failed": failed, "errors": 0, "evaluated": passed + failed}],
                "samples": samples,
                "counts": {"planned": len(samples), "taken": len(samples), "passed": passed, "failed": failed,
                           "errors": errors, "no_data": 0},
                "limits": {"failure_limit": fail_limit, "consecutive_error_limit": 3, "on_no_data": "fail"},
                "interval_s": 1, "stopped_early": False, "started": started, "ended": self.clock.now(),
                "duration_s": float(len(samples)), "redacted": False}
        self.add("gate", **gate)
        return gate

    def phase(self, phase: str, component: str, gates: list[tuple], decision: str | None = None) -> None:
        started = self.clock.now()
        self.add("phase_start", phase=phase, component=component, play=f"Phase {phase} · {component}")
        self.clock.tick(0.5)
        self.add("release", component=component, version="1.1.0", previous="1.0.0", changed=True, run_id=self.run_id,
                 host="sandbox", phase=phase)
        nogo = []
        for args in gates:
            gate = self.gate(args[0], phase, component, *args[1:])
            if gate["decision"] == "NO-GO" and gate["mode"] == "enforce":
                nogo.append(f"gate {gate['name']}: {gate['reason']}")
        self.clock.tick(0.5)
        ended = datetime.fromisoformat(self.clock.now().replace("Z", "+00:00"))
        duration = round((ended - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds(), 3)
        self.add("phase_end", phase=phase, component=component, play=f"Phase {phase} · {component}",
                 decision=decision or ("NO-GO" if nogo else "GO"), duration_s=duration, nogo=nogo)

    def run_end(self, decision: str, rollback: dict | None = None) -> None:
        self.clock.tick(0.2)
        duration = round((self.clock.at - START).total_seconds(), 3)
        self.add("run_end", decision=decision, duration_s=duration, interrupted=None,
                 rollback=rollback or {"triggered": False, "mode": "auto", "scope": "failed", "runner": None,
                                       "state": "not_started", "components": [], "ok": None, "duration_s": None,
                                       "budget_s": None, "within_budget": None, "why_not": "no enforced NO-GO"})

    def notify(self, target: str, event: str, sent: bool = True, status: int | None = 200, attempts: int = 1,
               outcome: str | None = None, error: str | None = None) -> None:
        """A notify record as the callback's sender thread journals it (docs/records.md)."""
        self.add("notify", target=target, event=event, outcome=outcome or ("sent" if sent else "timeout"), sent=sent,
                 status=status, attempts=attempts, statuses=[status] * attempts, waits_s=[], error=error,
                 delay_s=0.002, duration_s=0.05, message_id=None)

    def trace_export(self, sent: bool = True, spans: int = 9, events: int = 19) -> None:
        self.add("trace_export", endpoint="127.0.0.1:4318", protocol="http/protobuf",
                 outcome="sent" if sent else "unreachable", sent=sent, status=200 if sent else None, attempts=1,
                 statuses=[200 if sent else None], trace_id="5f0c" * 8, spans=spans, events=events, rejected=0,
                 error=None if sent else "cannot reach the OTLP endpoint at 127.0.0.1:4318 (POST /v1/traces)",
                 duration_s=0.04)

    def rollback(self, components: list[str], reason: str, seconds: float = 4.0, budget: float = 300) -> dict:
        command = ("ansible-playbook emp.deploy.rollback -i inventories/sandbox/hosts.yml -e "
                   + json.dumps(json.dumps({"emp_rollback_components": components, "emp_run_id": self.run_id})))
        started = self.clock.tick(0.3)
        self.add("rollback_start", components=components, scope="failed", playbook="emp.deploy.rollback",
                 reason=reason, budgets={c: budget for c in components}, runner="in_process", command=command)
        for component in components:
            self.add("rollback_play_start", play=f"Rollback · {component}", component=component)
            self.clock.tick(seconds)
            self.add("rollback_play_end", play=f"Rollback · {component}", component=component, hosts=True, failures=[],
                     duration_s=seconds)
        total = seconds * len(components)
        rollback = {"triggered": True, "mode": "auto", "scope": "failed", "runner": "in_process", "state": "finished",
                    "components": components, "playbook": "emp.deploy.rollback", "reason": reason, "ok": True,
                    "duration_s": total, "budget_s": budget * len(components), "budgets": {c: budget for c in components},
                    "within_budget": True, "started": started, "ended": self.clock.now(), "rc": 0,
                    "per_component": {c: {"ran": True, "ok": True, "failures": [], "duration_s": seconds,
                                          "budget_s": budget, "within_budget": True} for c in components},
                    "problems": []}
        self.add("rollback_end", **rollback)
        return dict(rollback, command=command)


def go_run(run_id: str = "20261203T120000Z-go0001") -> JournalBuilder:
    j = JournalBuilder(run_id)
    j.run_start()
    j.phase("infrastructure", "redis", [("redis-latency", [12, 14, 11, 13, 12])])
    j.phase("application", "webhooks", [("webhook-p95", [120, 130, 125, 140, 118]),
                                        ("webhook-errors", [0.1, 0.2, 0.0, 0.1], 1, "observe", 0, "result.error_rate")])
    j.run_end("GO")
    return j


def nogo_run(run_id: str = "20261203T120000Z-nogo01") -> JournalBuilder:
    j = JournalBuilder(run_id)
    j.run_start()
    j.phase("infrastructure", "redis", [("redis-latency", [12, 14, 11, 13, 12])])
    j.phase("application", "webhooks", [("webhook-p95", [150, 212, 305, 312, 290]),
                                        ("webhook-reachable", [], 1, "enforce", 0, "result.up", 4),
                                        ("webhook-error-rate", [0.5, 2, 3], 1, "observe", 0, "result.error_rate")])
    reason = "webhooks: gate webhook-p95 said NO-GO"
    rollback = j.rollback(["webhooks"], reason)
    j.run_end("NO-GO", rollback)
    return j


def told_run(run_id: str = "20261203T120000Z-told01", after_s: float = 90, slack_sent: bool = True) -> JournalBuilder:
    """A NO-GO run whose NO-GO notice reached Slack (or did not) ``after_s`` after the gate said NO-GO, a Teams
    notice that failed, a rollback notice, and the run exported as a trace."""
    j = JournalBuilder(run_id)
    j.run_start()
    j.phase("application", "webhooks", [("webhook-p95", [150, 312])])
    j.clock.tick(after_s)
    j.notify("slack", "nogo", sent=slack_sent, status=200 if slack_sent else None,
             error=None if slack_sent else "the Slack URL did not answer within 5 s")
    j.notify("teams", "nogo", sent=False, status=503, attempts=3, outcome="http_error",
             error="the Teams URL answered HTTP 503: try later")
    rollback = j.rollback(["webhooks"], "webhooks: gate webhook-p95 said NO-GO")
    j.notify("slack", "rollback")
    j.trace_export()
    j.run_end("NO-GO", rollback)
    return j


def watch_run(run_id: str = "20261203T120000Z-watch1", passes: int = 6) -> JournalBuilder:
    """A GO deploy, then a watch (the records of WATCH_SPEC section 5, as the callback's attach mode writes
    them) whose webhook check breaches in the last passes."""
    j = go_run(run_id)
    j.clock.tick(5)
    window = {"window_s": 86400, "started": j.clock.now(),
              "ends": (j.clock.at + timedelta(seconds=86400)).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    j.add("watch_start", mode="follow", pid=5151, playbook="/srv/deploy/playbooks/watch.yml", check_mode=False,
          limit=None, started=j.clock.now(), invocation="5151-abc123")
    verdict = "IN_PROGRESS"
    for index in range(passes):
        j.clock.tick(60)
        failures = 0.02 if index < passes - 2 else 0.4
        results = [
            {"check": "webhook-failure-ratio", "layer": "alert", "component": "webhooks", "checklist_ref": "5.1",
             "decision": "GO" if failures < 0.1 else "NO-GO", "value": failures,
             "reason": f"webhook failure ratio {failures:g} {'<' if failures < 0.1 else '>='} 0.1"},
            {"check": "worker-memory", "layer": "hourly", "component": "workers", "checklist_ref": "5.3",
             "decision": "GO" if index != 2 else "NO-DATA", "value": 120e6 if index != 2 else None,
             "reason": "resident memory within 1.5x baseline" if index != 2 else "could not measure: timeout"},
        ]
        verdict = "FAILED" if failures >= 0.1 else verdict
        j.add("watch_pass", at=j.clock.now(), layers=["alert", "hourly"], results=results, mode="follow",
              watch=dict(window, passes=index + 1, verdict=verdict, done=False), invocation="5151-abc123")
        if failures >= 0.1 and index == passes - 2:
            gate = j.gate("webhook-failure-ratio", "watch", "webhooks", [failures * 1000], limit=100,
                          path="result.failures_per_mille")
            gate["reason"] = "webhook failure ratio 0.4 >= 0.1"
    j.clock.tick(1)
    j.add("watch_end", invocation="5151-abc123", pid=5151, playbook="/srv/deploy/playbooks/watch.yml", mode="follow",
          started=window["started"], ended=j.clock.now(), passes=passes, alerts=1, verdict="FAILED", rollback=None,
          interrupted=None, failures=[], rollback_record=None, running_step=None)
    return j


def big_run(gates: int = 200, samples: int = 30, run_id: str = "20261203T120000Z-big001") -> JournalBuilder:
    """gates gates of samples samples each, spread over 4 phases; the last gate says NO-GO."""
    j = JournalBuilder(run_id)
    j.run_start()
    per_phase = max(gates // 4, 1)
    made = 0
    for number, (phase, component) in enumerate((("infrastructure", "redis"), ("telemetry", "telemetry"),
                                                 ("application", "webhooks"), ("devtools", "ngrok"))):
        count = per_phase if number < 3 else gates - made
        specs = []
        for index in range(count):
            values = [100 + (index * 7 + s * 13) % 90 for s in range(samples)]
            if made + index == gates - 1:
                values[-1] = 250
            specs.append((f"{component}-gate-{index:03d}", values))
        made += count
        j.phase(phase, component, specs)
    j.run_end("NO-GO", j.rollback(["ngrok"], "ngrok: gate said NO-GO"))
    return j
