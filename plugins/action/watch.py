# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""emp.deploy.watch: the post-deployment watch (baseline, validate, one pass of the due layers).

The documentation lives in plugins/modules/watch.py. Queries run in this process with the
Prometheus client (no module execution per check: the watch must cost little CPU per watched hour);
a check with a probe runs that module through Ansible, as emp.deploy.gate samples its probe. Each
judged check goes through the gate's own sample accounting and record, so an alert is a gate record
like every other one.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
import typing as t

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.emp.deploy.plugins.action.gate import ActionModule as GateAction
from ansible_collections.emp.deploy.plugins.action.gate import _GateRun
from ansible_collections.emp.deploy.plugins.plugin_utils import _watch as w
from ansible_collections.emp.deploy.plugins.plugin_utils._gate import (
    ERROR,
    Limits,
    change_reason,
    classify_result,
    parse_criterion,
)
from ansible_collections.emp.deploy.plugins.plugin_utils._records import (
    ENFORCE,
    GATE_RESULT_KEY,
    GO,
    NO_GO,
    RUN_ID_ENV,
    WARN,
    is_enforced_nogo,
)

display = Display()

RUN_DIR_ENV = "EMP_DEPLOY_RUN_DIR"
QUERY_PROBE = "emp.deploy.metric_query"  # what a query check is, as the gate record names its probe
LOCK_FILE = "watch.lock"
LOCK_WAIT_S = 60.0
# While waiting for the next pass, how often to look whether the controller still runs.
ALIVE_POLL_S = 1.0

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = dict(
    step=dict(type="str", required=True, choices=["baseline", "validate", "pass"]),
    run_dir=dict(type="path"),
    prometheus=dict(type="dict", required=True, options=dict(
        url=dict(type="str", required=True),
        headers=dict(type="dict", default={}, no_log=True),
        bearer_token=dict(type="str", no_log=True),
        dataset=dict(type="str"),
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
    )),
    window=dict(type="raw", default="24h"),
    alert_interval=dict(type="raw", default="60s"),
    hourly_interval=dict(type="raw", default="1h"),
    checks=dict(type="list", elements="raw", default=[]),
    baseline_queries=dict(type="dict", default={}),
    consecutive_error_limit=dict(type="int", default=3),
    wait=dict(type="bool", default=False),
)


def controller_alive() -> bool:
    """False once the ansible-playbook process that forked this worker is gone (kill -9). ansible-core >= 2.19
    runs each worker in a session of its own, so a worker would otherwise outlive it and go on watching."""
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


class _Lock:
    """One pass at a time per run folder (a follow watch and a cron pass may meet)."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.handle: t.IO[str] | None = None

    def __enter__(self) -> _Lock:
        self.handle = open(self.path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.handle.close()
                    raise AnsibleActionFail(f"emp.deploy.watch: another watch pass held {self.path} for "
                                            f"{LOCK_WAIT_S:.0f} s; is a watch of this run stuck?") from None
                time.sleep(0.2)

    def __exit__(self, *exc: t.Any) -> None:
        if self.handle is not None:
            self.handle.close()  # releases the lock


class ActionModule(GateAction):
    """The watch: emp.deploy.gate's evaluator and record, on the watch's own schedule."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        task_vars = task_vars or {}
        result = ActionBase.run(self, tmp, task_vars)  # not the gate's run: only its helpers are ours
        del tmp
        args = self._validated_args(ARGUMENT_SPEC, "emp.deploy.watch")
        try:
            window_s = w.seconds(args["window"], "window")
            intervals = {w.ALERT: w.seconds(args["alert_interval"], "alert_interval"),
                         w.HOURLY: w.seconds(args["hourly_interval"], "hourly_interval")}
            if args["consecutive_error_limit"] < 0:
                raise w.WatchError("consecutive_error_limit must not be negative")
            run_dir = self._run_dir(args)
            client = w.client_from_options(args["prometheus"])
            if args["step"] == "baseline":
                return self._baseline(result, args, client, run_dir, window_s)
            checks = w.parse_checks(args["checks"], args["consecutive_error_limit"], window_s)
        except w.WatchError as exc:
            raise AnsibleActionFail(f"emp.deploy.watch: {exc}") from None
        if args["step"] == "validate":
            return self._validate(result, checks, client, run_dir)
        return _Pass(self, task_vars, checks, client, run_dir, window_s, intervals, args["wait"]).run(result)

    @staticmethod
    def _run_dir(args: dict[str, t.Any]) -> str:
        run_dir = args["run_dir"] or os.environ.get(RUN_DIR_ENV, "")
        if not run_dir:
            raise w.WatchError(f"run_dir is required: give the run folder, or run under the emp.deploy.go_no_go "
                               f"callback, which exports {RUN_DIR_ENV}")
        if not os.path.isdir(run_dir):
            raise w.WatchError(f"run_dir {run_dir} is not a directory")
        return run_dir

    # --- step: baseline ---------------------------------------------------------------------------

    def _baseline(self, result: dict[str, t.Any], args: dict[str, t.Any], client: t.Any, run_dir: str,
                  window_s: float) -> dict[str, t.Any]:
        if not args["baseline_queries"]:
            raise w.WatchError("step baseline needs baseline_queries (name -> {query, reduce})")
        baseline = w.capture_baseline(client, args["baseline_queries"], window_s, time.time())
        path = os.path.join(run_dir, w.BASELINE_FILE)
        w.write_json(path, baseline)
        errors = {name: figure["error"] for name, figure in baseline["figures"].items() if figure["error"]}
        for name, error in errors.items():
            display.warning(f"emp.deploy.watch baseline {name}: {error}")
        result.update(changed=False, emp_watch_baseline=dict(baseline, path=path),
                      msg=f"baseline of {len(baseline['figures'])} figures over {window_s:g} s written to {path}"
                          + (f"; {len(errors)} could not be captured" if errors else ""))
        return result

    # --- step: validate ---------------------------------------------------------------------------

    def _validate(self, result: dict[str, t.Any], checks: list[w.Check], client: t.Any,
                  run_dir: str) -> dict[str, t.Any]:
        """Every query once, now: a typo in PromQL fails in seconds, not at hour 6."""
        unverified: dict[str, str] = {}
        now = time.time()
        for check in checks:
            if check.probe:
                self.plan_probe(dict(check.probe))  # an unknown module fails here, naming itself
                continue
            measured = w.run_query(client, check.query or "", now)
            if measured.fatal:
                raise AnsibleActionFail(f"emp.deploy.watch: check {check.name!r} ({check.layer}, {check.component}): "
                                        f"{measured.error}")
            if measured.error:
                unverified[check.name] = measured.error
                display.warning(f"emp.deploy.watch: check {check.name!r} could not be validated now: {measured.error}")
        state = w.load_state(os.path.join(run_dir, w.STATE_FILE))
        result.update(changed=False, emp_watch_validate={"checks": len(checks), "unverified": unverified},
                      msg=f"{len(checks) - len(unverified)} of {len(checks)} checks validated")
        if state:
            result["emp_watch"] = w.summary(state, now)
        return result

    # --- used by _Pass ----------------------------------------------------------------------------

    def plan_probe(self, probe: dict[str, t.Any]) -> dict[str, t.Any]:
        """The probe as the gate runs it (module resolved, module_defaults, check mode); fails for an unknown module."""
        return self._plan_probe(probe)

    @property
    def no_log(self) -> bool:
        return bool(self._task.no_log)

    def show(self, message: str, warning: bool = False) -> None:
        """The gate's per-sample lines at -vv only: a watch pass prints one line of its own."""
        if warning:
            display.warning(message)
        else:
            display.vv(message)


class _Pass:
    """One invocation of step pass: load or start the window, wait if asked, run the due layers."""

    def __init__(self, action: ActionModule, task_vars: dict[str, t.Any], checks: list[w.Check], client: t.Any,
                 run_dir: str, window_s: float, intervals: dict[str, float], wait: bool) -> None:
        self.action = action
        self.task_vars = task_vars
        self.checks = checks
        self.client = client
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, w.STATE_FILE)
        self.window_s = window_s
        self.intervals = intervals
        self.wait = wait
        self.gates: list[dict[str, t.Any]] = []
        self.results: list[dict[str, t.Any]] = []
        self.baseline: dict[str, t.Any] = {}
        self.planned_probes: dict[str, dict[str, t.Any]] = {}

    def run(self, result: dict[str, t.Any]) -> dict[str, t.Any]:
        for check in self.checks:  # probe modules resolved before anything is measured
            if check.probe:
                self.planned_probes[check.name] = self.action.plan_probe(dict(check.probe))
        with _Lock(self.run_dir):
            state = self._state()  # the window starts here, or resumes
        if self.wait and not state.get("done"):
            self._sleep_until(w.next_due(state, time.time()))
        with _Lock(self.run_dir):
            state = self._state()  # as the last pass (maybe another process's) left it
            now = time.time()
            layers = self._run_due(state, now)
        return self._finish(result, state, layers, now)

    @staticmethod
    def _sleep_until(due: float | None) -> None:
        while due is not None and due > time.time():
            if not controller_alive():
                raise AnsibleActionFail("emp.deploy.watch: the ansible-playbook process of this watch is gone; "
                                        "this pass stops (start the watch again to resume its window)")
            time.sleep(min(ALIVE_POLL_S, max(0.0, due - time.time())))

    def _run_due(self, state: dict[str, t.Any], now: float) -> list[str]:
        layers = w.due_layers(state, now)
        if layers:
            self.baseline = w.load_baseline(os.path.join(self.run_dir, w.BASELINE_FILE))
            try:
                for layer in layers:
                    self._run_layer(state, layer, now)
            finally:
                self.action.cleanup_remote()
            w.mark_run(state, layers, now)
            state["passes"] += 1
            if w.FINAL in layers:
                state["final"] = {"at": w.iso(now), "results": [r for r in self.results if r["layer"] == w.FINAL]}
                state["done"] = True
            state["verdict"] = w.verdict(state)
            state["updated"] = w.iso(now)
            if not controller_alive():  # a resumed watch may be running already: leave the state to it
                raise AnsibleActionFail("emp.deploy.watch: the ansible-playbook process of this watch is gone; "
                                        "this pass is not recorded")
            w.save_state(self.path, state)
        return layers

    def _state(self) -> dict[str, t.Any]:
        try:
            state = w.load_state(self.path)
        except w.WatchError as exc:
            raise AnsibleActionFail(f"emp.deploy.watch: {exc}") from None
        if state is None:
            run_id = os.environ.get(RUN_ID_ENV) or os.path.basename(os.path.normpath(self.run_dir))
            state = w.new_state(run_id, self.window_s, self.intervals, time.time())
            w.save_state(self.path, state)
        elif not state.get("done"):
            # a resumed watch keeps its window; the intervals are today's options
            state["intervals"] = dict(self.intervals)
        return state

    def _run_layer(self, state: dict[str, t.Any], layer: str, now: float) -> None:
        for check in (c for c in self.checks if c.layer == layer):
            decision, value, reason, gate = self._judge(check, now)
            self.results.append({"check": check.name, "layer": layer, "component": check.component,
                                 "checklist_ref": check.checklist_ref, "decision": decision, "value": value,
                                 "reason": reason})
            alert = w.record_outcome(state, check, decision, value, reason, now)
            if layer == w.FINAL:
                self.gates.append(gate if gate is not None else self._no_data_gate(check, [reason], layer))
            elif alert == w.BREACH and gate is not None:
                self.gates.append(gate)
                w.add_alert(state, check, alert, gate["reason"], now, enforced=is_enforced_nogo(gate))
            elif alert == w.NO_DATA_ALERT:
                errors = [e["reason"] for e in state["checks"][check.name]["recent_errors"]]
                gate = self._no_data_gate(check, errors[-(check.consecutive_error_limit + 1):], layer)
                self.gates.append(gate)
                w.add_alert(state, check, alert, gate["reason"], now, enforced=False)

    def _judge(self, check: w.Check, now: float) -> tuple[str, t.Any, str, dict[str, t.Any] | None]:
        """(decision, value, reason, gate record or None when it could not measure)."""
        sample, why = self._measure(check, now)
        if sample is None:
            return w.NO_DATA, None, why or "could not measure", None
        problem = w.baseline_problem(check, self.baseline)
        if problem:
            return w.NO_DATA, sample.get("value"), problem, None
        run = self._gate_run(check, mode=check.mode, planned=1, layer=check.layer)
        figure = self.baseline.get(check.baseline or check.name)
        run.baseline = figure if figure is not None else {}
        run.add_measured(sample, time.monotonic())
        gate = run.finish({})[GATE_RESULT_KEY]
        return gate["decision"], sample.get("value"), gate["reason"], dict(gate)

    def _measure(self, check: w.Check, now: float) -> tuple[dict[str, t.Any] | None, str | None]:
        if check.probe:
            return self._probe(check)
        measured = w.run_query(self.client, check.query or "", now, check.range_s, check.reduce)
        if measured.result is None:
            return None, f"could not measure: {measured.error}"
        why = w.unmeasured_reason(measured.result)
        return (None, why) if why else (measured.result, None)

    def _probe(self, check: w.Check) -> tuple[dict[str, t.Any] | None, str | None]:
        probe = self.planned_probes[check.name]
        try:
            sample = self.action.execute_probe(probe["execute"], probe["args"], self.task_vars,
                                               probe["run_check_mode"])
        except AnsibleConnectionFailure as exc:
            sample = {"unreachable": True, "msg": to_text(exc)}
        except AnsibleError as exc:
            sample = {"failed": True, "msg": to_text(exc)}
        kind, why = classify_result(sample)
        if not kind:
            why = change_reason(probe["resolved"], sample, probe["run_check_mode"], self.action.no_log)
        return (None, f"could not measure: {why}") if (kind or why) else (sample, None)

    def _gate_run(self, check: w.Check, mode: str, planned: int, layer: str) -> _GateRun:
        args = {"name": check.name, "phase": "watch", "component": check.component,
                "checklist_ref": check.checklist_ref, "mode": mode,
                "probe": {"module": check.probe["module"] if check.probe else QUERY_PROBE}}
        criteria = [parse_criterion(c) for c in check.criteria]
        limits = Limits(failure_limit=0, consecutive_error_limit=check.consecutive_error_limit, on_no_data="fail")
        interval = self.intervals.get(layer, self.window_s)
        return _GateRun(self.action, args, criteria, limits, self.task_vars, planned, interval)

    def _no_data_gate(self, check: w.Check, errors: list[str], layer: str) -> dict[str, t.Any]:
        """A warn-mode NO-GO: recorded, never rolls back, and the watch can no longer succeed."""
        run = self._gate_run(check, mode=WARN if check.mode == ENFORCE else check.mode, planned=len(errors),
                             layer=layer)
        for error in errors:
            run.add_unmeasured(ERROR, error, time.monotonic())
        return dict(run.finish({})[GATE_RESULT_KEY])

    def _finish(self, result: dict[str, t.Any], state: dict[str, t.Any], layers: list[str],
                now: float) -> dict[str, t.Any]:
        watch = w.summary(state, now)
        result.update(changed=False, emp_watch=watch,
                      emp_watch_pass={"at": w.iso(now), "layers": layers, "results": self.results},
                      emp_gates=self.gates)
        counts = {d: sum(1 for r in self.results if r["decision"] == d) for d in w.DECISIONS}
        line = (f"watch {state['run_id']}: pass {state['passes']} ({', '.join(layers) or 'nothing due'}) "
                f"{counts[GO]} GO, {counts[NO_GO]} NO-GO, {counts[w.NO_DATA]} NO-DATA; verdict {state['verdict']}"
                + (f"; next {watch['next_due']}" if watch["next_due"] else ""))
        not_go = [f"{r['check']} {r['decision']}: {r['reason']}" for r in self.results if r["decision"] != GO]
        display.display(line + "".join(f"\n  {entry}" for entry in not_go))
        enforced = [g for g in self.gates if is_enforced_nogo(g)]
        if enforced:
            result["failed"] = True
            result["msg"] = f"{NO_GO}: " + "; ".join(f"{g['name']} ({g['component']}): {g['reason']}" for g in enforced)
        else:
            result["msg"] = line
        return result
