# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: go_no_go
type: notification
short_description: Record GO/NO-GO outcomes of a phased deployment and roll back on NO-GO
version_added: 0.1.0
description:
  - Records the run, each deployment phase (a play that sets C(emp_phase) and C(emp_component) in its
    C(vars)), every gate result (an C(emp_gate) in any task result, also in loops and delegated
    tasks, see M(emp.deploy.gate)) and every other failed or unreachable task inside a phase, which
    is a NO-GO for that phase's component ("deployment step failed"). A task that fails outside any
    phase is recorded too; it makes the run's decision NO-GO only if the run failed, and rolls nothing back.
  - "Journal: C(<report_dir>/<run_id>/journal.jsonl), one JSON object per line, flushed and fsynced as
    each record happens, so a killed run still leaves a valid record of everything up to the kill.
    C(summary.json) in the same folder is written atomically at the end of the run."
  - When the run ends with an enforced NO-GO, it runs the rollback playbook inside the same
    ansible-playbook process, with the same inventory, variables, limit and check mode, so its output
    appears in the same stream (and in AWX's job output). It passes C(emp_rollback_components) (in
    reverse order of deployment), C(emp_rollback_reason) and C(emp_run_id) as extra vars, times the
    rollback of each component against its budget and reports a failed or late rollback loudly.
  - The exit code stays non-zero whenever an enforced gate said NO-GO, even after a successful
    rollback (also when a C(block)/C(rescue) handled the failed gate). A rollback never triggers
    another rollback. A gate task with C(ignore_errors) is recorded, but its NO-GO neither fails the
    run nor rolls back (as with O(emp.deploy.gate#module:mode=warn)).
  - Prints a compact GO/NO-GO table at the end of every run.
  - It is a notification callback, never a stdout callback, so it works beside the stdout callback
    that AWX or ansible-runner force. Its own errors never break the run; they are shown as warnings.
  - The run id is the extra var C(emp_run_id) if set, else E(EMP_DEPLOY_RUN_ID), else a timestamp with
    a random suffix.
author:
  - emp.deploy maintainers (@emp-deploy)
requirements:
  - Enable it with C(callbacks_enabled = emp.deploy.go_no_go) in C(ansible.cfg) (the repository's
    C(ansible.cfg) does) or E(ANSIBLE_CALLBACKS_ENABLED).
options:
  report_dir:
    description: Folder that receives one sub-folder per run.
    type: path
    default: ./deploy-reports
    env:
      - name: EMP_DEPLOY_REPORT_DIR
    ini:
      - section: callback_go_no_go
        key: report_dir
  rollback:
    description:
      - V(auto) runs the rollback playbook when the run ends with an enforced NO-GO.
      - V(plan) records and shows the exact command that would roll back, without running it.
      - V(off) only records the NO-GO.
    type: str
    choices: [auto, plan, "off"]
    default: auto
    env:
      - name: EMP_DEPLOY_ROLLBACK
    ini:
      - section: callback_go_no_go
        key: rollback
  rollback_scope:
    description:
      - V(failed) rolls back only the components that said NO-GO; V(run) rolls back every component
        this run deployed (every phase that started).
    type: str
    choices: [failed, run]
    default: failed
    env:
      - name: EMP_DEPLOY_ROLLBACK_SCOPE
    ini:
      - section: callback_go_no_go
        key: rollback_scope
  rollback_playbook:
    description:
      - The rollback playbook, a path or a collection playbook name. It receives
        C(emp_rollback_components), C(emp_rollback_reason) and C(emp_run_id).
    type: str
    default: emp.deploy.rollback
    env:
      - name: EMP_DEPLOY_ROLLBACK_PLAYBOOK
    ini:
      - section: callback_go_no_go
        key: rollback_playbook
  rollback_budgets:
    description:
      - Time budget of each component's rollback in seconds, as C(component=seconds) items. Defaults
        from the checklist; items given here replace those components' defaults only.
    type: list
    elements: str
    default: [redis=300, webhooks=300, telemetry=600, database=900]
    env:
      - name: EMP_DEPLOY_ROLLBACK_BUDGETS
    ini:
      - section: callback_go_no_go
        key: rollback_budgets
  rollback_default_budget:
    description: Budget in seconds of a component without an entry in O(rollback_budgets).
    type: int
    default: 300
    env:
      - name: EMP_DEPLOY_ROLLBACK_DEFAULT_BUDGET
    ini:
      - section: callback_go_no_go
        key: rollback_default_budget
"""

import json
import os
import secrets
import shlex
import signal
import sys
import time
import traceback
import typing as t
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path

from ansible import context
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.callback import CallbackBase

_DEFAULT_BUDGETS = {"redis": 300, "webhooks": 300, "telemetry": 600, "database": 900}
_CHILD_ENV = "EMP_DEPLOY_ROLLBACK_OF"
_RUN_FAILED_HOSTS = 2


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _first_line(value: t.Any, limit: int = 400) -> str:
    lines = str(value if value is not None else "").strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _plain(value: t.Any) -> t.Any:
    """JSON-safe copy (tagged or unsafe strings of any ansible-core become plain str)."""
    return json.loads(json.dumps(value, default=str))


def parse_budgets(items: t.Iterable[str] | None) -> dict[str, int]:
    """'redis=300' items over the checklist defaults; raises ValueError on a malformed item."""
    budgets = dict(_DEFAULT_BUDGETS)
    for item in items or []:
        name, sep, seconds = str(item).partition("=")
        if not sep or not name.strip() or not seconds.strip().isdigit():
            raise ValueError(f"rollback budget {item!r} is not component=seconds")
        budgets[name.strip()] = int(seconds)
    return budgets


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class Journal:
    """Append-only JSON lines; each record is written whole, flushed and fsynced before returning."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def write(self, record: dict[str, t.Any]) -> None:
        data = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_json_atomically(path: Path, data: dict[str, t.Any]) -> None:
    """tmp file in the same folder, fsync, os.replace: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _never_break(method: t.Callable) -> t.Callable:
    """The callback's own errors become a warning; the deployment goes on."""

    @wraps(method)
    def wrapper(self: CallbackModule, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._warn_once(method.__name__, exc)
            return None

    return wrapper


def _task_result(result: t.Any) -> t.Mapping[str, t.Any]:
    """The result dict, from the 2.19+ CallbackTaskResult.result or the 2.18 TaskResult._result."""
    data = getattr(result, "result", None)
    if not isinstance(data, t.Mapping):
        data = getattr(result, "_result", None)
    return data if isinstance(data, t.Mapping) else {}


def _host_name(result: t.Any) -> str:
    host = getattr(result, "host", None)
    if host is None or isinstance(host, str):
        host = getattr(result, "_host", host)
    return to_text(getattr(host, "name", host) or "")


def _task_of(result: t.Any) -> t.Any:
    task = getattr(result, "task", None)
    return task if task is not None and not isinstance(task, str) else getattr(result, "_task", None)


def _is_enforced_nogo(gate: t.Mapping[str, t.Any]) -> bool:
    return gate.get("decision") == "NO-GO" and gate.get("mode") == "enforce" and not gate.get("ignored")


def _gates_in(data: t.Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every emp_gate in a result, including the per-item results of a loop."""
    found = []
    gate = data.get("emp_gate")
    if isinstance(gate, t.Mapping) and gate.get("decision"):
        found.append(dict(gate))
    items = data.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, t.Mapping):
                found.extend(_gates_in(item))
    return found


class CallbackModule(CallbackBase):
    """Records GO/NO-GO outcomes of a phased deployment and rolls back on an enforced NO-GO."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "emp.deploy.go_no_go"
    CALLBACK_NEEDS_ENABLED = True

    # The run whose rollback playbook is running right now; the rollback's own instance of this
    # callback reports into it instead of starting a run (and a rollback) of its own.
    _rollback_parent: t.ClassVar[CallbackModule | None] = None

    def __init__(self, display: t.Any = None) -> None:
        super().__init__(display=display)
        self._parent = CallbackModule._rollback_parent
        self._child_of_env = os.environ.get(_CHILD_ENV)
        self._warned: set[str] = set()
        self._journal: Journal | None = None
        self._run: dict[str, t.Any] | None = None
        self._run_dir: Path | None = None
        self._playbooks: list[str] = []
        self._phases: list[dict[str, t.Any]] = []
        self._phase: dict[str, t.Any] | None = None
        self._gates: list[dict[str, t.Any]] = []
        self._gate_ids: set[str] = set()
        self._failures: list[dict[str, t.Any]] = []
        self._rollback: dict[str, t.Any] | None = None
        self._is_rollback_run = False
        self._finished = False
        self._play_context: dict[str, t.Any] = {}
        self._prev_sigterm: t.Any = None
        self._signal_pid = 0
        # the rollback's own events, reported by the child instance
        self._rb_plays: list[dict[str, t.Any]] = []

    # --- plumbing ---------------------------------------------------------------------------------

    @property
    def _is_child(self) -> bool:
        return self._parent is not None or bool(self._child_of_env)

    def _warn_once(self, where: str, exc: BaseException) -> None:
        key = f"{where}:{type(exc).__name__}"
        if key in self._warned:
            return
        self._warned.add(key)
        self._display.warning(f"emp.deploy.go_no_go: {where} failed ({type(exc).__name__}: {exc}); "
                              f"the deployment continues without this record")
        self._display.vvv(traceback.format_exc())

    def _record(self, kind: str, **data: t.Any) -> None:
        if self._journal is None:
            return
        record = {"ts": _now(), "type": kind, "run_id": self._run["run_id"] if self._run else None}
        record.update(_plain(data))
        self._journal.write(record)

    def _option(self, name: str, default: t.Any = None) -> t.Any:
        try:
            value = self.get_option(name)
        except KeyError:
            return default
        return default if value is None else value

    # --- run and phases ---------------------------------------------------------------------------

    @_never_break
    def v2_playbook_on_start(self, playbook: t.Any) -> None:
        name = getattr(playbook, "_file_name", None) or str(playbook)
        self._playbooks.append(to_text(name))

    @_never_break
    def v2_playbook_on_play_start(self, play: t.Any) -> None:
        if self._is_child:
            self._child_play_start(play)
            return
        variable_manager = play.get_variable_manager()
        extra_vars = dict(getattr(variable_manager, "extra_vars", None) or {})
        if self._run is None:
            self._start_run(play, extra_vars)
        self._end_phase()
        phase, component = self._play_phase(play, variable_manager)
        if phase is None and component is None:
            self._phase = None
            return
        self._phase = {"phase": phase, "component": component, "play": to_text(play.get_name()),
                       "started": _now(), "started_mono": time.monotonic(), "ended": None, "nogo": [],
                       "gates": 0}
        self._phases.append(self._phase)
        self._record("phase_start", phase=phase, component=component, play=self._phase["play"])

    def _start_run(self, play: t.Any, extra_vars: dict[str, t.Any]) -> None:
        run_id = to_text(extra_vars.get("emp_run_id") or os.environ.get("EMP_DEPLOY_RUN_ID") or new_run_id())
        # a run started with emp_rollback_components is a rollback run: it never rolls back itself
        self._is_rollback_run = "emp_rollback_components" in extra_vars
        release = extra_vars.get("emp_release")
        if release is None:
            release = (play.vars or {}).get("emp_release")
        if release is None:
            release = self._inventory_release(play)
        report_dir = Path(self._option("report_dir", "./deploy-reports")).expanduser()
        self._run_dir = (report_dir / run_id).absolute()
        self._journal = Journal(self._run_dir / "journal.jsonl")
        self._run = {
            "run_id": run_id,
            "playbook": self._playbooks[0] if self._playbooks else None,
            "playbooks": list(self._playbooks),
            "check_mode": bool(context.CLIARGS.get("check", False)),
            "emp_release": release,
            "limit": context.CLIARGS.get("subset"),
            "rollback_run": self._is_rollback_run,
            "started": _now(),
            "started_mono": time.monotonic(),
            "pid": os.getpid(),
        }
        self._record("run_start", **{k: v for k, v in self._run.items() if k not in ("run_id", "started_mono")})
        self._install_signal_handler()

    def _play_phase(self, play: t.Any, variable_manager: t.Any) -> tuple[str | None, str | None]:
        play_vars = play.vars or {}
        phase, component = play_vars.get("emp_phase"), play_vars.get("emp_component")
        if any(isinstance(v, str) and "{{" in v for v in (phase, component)):
            from ansible.template import Templar

            templar = Templar(loader=play.get_loader(), variables=variable_manager.get_vars(play=play))
            phase, component = templar.template(phase), templar.template(component)
        return (to_text(phase) if phase is not None else None, to_text(component) if component is not None else None)

    @staticmethod
    def _inventory_release(play: t.Any) -> t.Any:
        """emp_release as the inventory (group_vars, host_vars) sets it for the first host, templated."""
        try:
            from ansible.template import Templar

            variable_manager = play.get_variable_manager()
            hosts = variable_manager._inventory.get_hosts("all")
            if not hosts:
                return None
            variables = variable_manager.get_vars(play=play, host=hosts[0], include_hostvars=False)
            release = variables.get("emp_release")
            if isinstance(release, str) and "{{" in release:
                release = Templar(loader=play.get_loader(), variables=variables).template(release)
            return to_text(release) if release is not None else None
        except Exception:  # pylint: disable=broad-exception-caught  # a missing label must never break the run
            return None

    def _end_phase(self) -> None:
        phase = self._phase
        if phase is None or phase["ended"]:
            return
        phase["ended"] = _now()
        phase["duration_s"] = round(time.monotonic() - phase.pop("started_mono"), 3)
        if phase["nogo"]:
            phase["decision"] = "NO-GO"
        elif phase["gates"]:
            phase["decision"] = "GO"
        else:
            phase["decision"] = "no gate"
        self._record("phase_end", phase=phase["phase"], component=phase["component"], play=phase["play"],
                     decision=phase["decision"], duration_s=phase["duration_s"], nogo=phase["nogo"])

    # --- task results -----------------------------------------------------------------------------

    @_never_break
    def v2_runner_on_ok(self, result: t.Any) -> None:
        self._collect_gates(result)

    @_never_break
    def v2_runner_item_on_ok(self, result: t.Any) -> None:
        self._collect_gates(result)

    @_never_break
    def v2_runner_item_on_failed(self, result: t.Any) -> None:
        task = _task_of(result)
        self._collect_gates(result, ignored=bool(getattr(task, "ignore_errors", False)))

    @_never_break
    def v2_runner_on_failed(self, result: t.Any, ignore_errors: bool = False) -> None:
        found = self._collect_gates(result, ignored=ignore_errors)
        if ignore_errors or found:
            return
        self._step_failed(result, unreachable=False)

    @_never_break
    def v2_runner_on_unreachable(self, result: t.Any) -> None:
        self._step_failed(result, unreachable=True)

    def _collect_gates(self, result: t.Any, ignored: bool = False) -> int:
        data = _task_result(result)
        if "emp_gate" not in data and "results" not in data:
            return 0  # the common case, kept cheap
        gates = _gates_in(data)
        delegated = data.get("_ansible_delegated_vars") or {}
        for gate in gates:
            if self._is_child:
                self._parent_call("_child_gate", gate)
                continue
            gate_id = gate.get("id") or f"{gate.get('name')}:{gate.get('started')}:{gate.get('host')}"
            if gate_id in self._gate_ids:
                continue
            self._gate_ids.add(gate_id)
            gate.setdefault("host", _host_name(result))
            if ignored and gate.get("decision") == "NO-GO":
                # ignore_errors on an enforced gate: recorded, but it neither fails the run nor rolls back
                gate["ignored"] = True
            if delegated.get("ansible_host") or delegated.get("ansible_delegated_host"):
                gate["delegated_to"] = delegated.get("ansible_delegated_host") or delegated.get("ansible_host")
            self._add_gate(gate)
        return len(gates)

    def _add_gate(self, gate: dict[str, t.Any]) -> None:
        if gate.get("phase") is None and self._phase:
            gate["phase"] = self._phase["phase"]
        keys = ("id", "name", "phase", "component", "checklist_ref", "mode", "enforced", "decision", "reason", "host",
                "delegated_to", "started", "ended", "duration_s", "counts", "ignored")
        summary = {key: gate.get(key) for key in keys}
        self._gates.append(summary)
        if self._phase is not None:
            self._phase["gates"] += 1
            if _is_enforced_nogo(gate):
                self._phase["nogo"].append(f"gate {gate.get('name')}: {gate.get('reason')}")
        self._record("gate", **gate)

    def _step_failed(self, result: t.Any, unreachable: bool) -> None:
        if self._is_child:
            self._parent_call("_child_failure", result, unreachable)
            return
        data = _task_result(result)
        task = _task_of(result)
        failure = {
            "phase": self._phase["phase"] if self._phase else None,
            "component": self._phase["component"] if self._phase else None,
            "host": _host_name(result),
            "task": to_text(task.get_name()) if task is not None else None,
            "action": to_text(getattr(task, "action", "")) if task is not None else None,
            "unreachable": unreachable,
            "msg": _first_line(data.get("msg") or data.get("stderr") or data.get("module_stderr") or
                               ("host unreachable" if unreachable else "task failed")),
            "reason": "deployment step failed" if not unreachable else "host unreachable during deployment",
        }
        self._failures.append(failure)
        if self._phase is not None:
            self._phase["nogo"].append(f"{failure['reason']}: {failure['task']} on {failure['host']}: {failure['msg']}")
        self._record("step_failed", **failure)

    # --- end of run -------------------------------------------------------------------------------

    @_never_break
    def v2_playbook_on_stats(self, stats: t.Any) -> None:
        if self._is_child:
            self._parent_call("_child_stats", stats)
            return
        if self._run is None or self._finished:
            return
        self._end_phase()
        self._phase = None
        if any(_is_enforced_nogo(g) for g in self._gates):
            # the gate task failed the run already; keep it failed even if a rescue handled it
            self._keep_exit_code_nonzero()
        enforced_nogo = self._enforced_nogo()
        components = self._rollback_components()
        if enforced_nogo and components and not self._is_rollback_run:
            self._roll_back(components)
        elif enforced_nogo:
            self._rollback = self._no_rollback("a rollback run never rolls back itself" if self._is_rollback_run
                                               else "no phase component to roll back")
        failed_elsewhere = self._failed_outside_phases(stats)
        self._finish(stats, decision="NO-GO" if enforced_nogo or failed_elsewhere else "GO",
                     extra_reasons=failed_elsewhere)

    def _enforced_nogo(self) -> list[str]:
        """NO-GO reasons that roll back: enforced gates, failed steps inside a phase."""
        reasons = [f"{g['component']}: gate {g['name']} said NO-GO: {g['reason']}" for g in self._gates
                   if _is_enforced_nogo(g)]
        reasons += [f"{f['component']}: {f['reason']}: {f['task']} on {f['host']}: {f['msg']}"
                    for f in self._failures if f["component"]]
        return reasons

    def _failed_outside_phases(self, stats: t.Any) -> list[str]:
        """A run that failed outside any phase is no GO either (nothing to roll back, though)."""
        outside = [f for f in self._failures if not f["component"]]
        failed_hosts = {host for host, summary in self._host_stats(stats).items()
                        if summary.get("failures") or summary.get("unreachable")}
        return [f"outside any phase: {f['reason']}: {f['task']} on {f['host']}: {f['msg']}"
                for f in outside if f["host"] in failed_hosts]

    def _nogo_components(self) -> list[str]:
        failed = {g["component"] for g in self._gates if _is_enforced_nogo(g)}
        failed |= {f["component"] for f in self._failures if f["component"]}
        return [c for c in failed if c]

    def _deployed_components(self) -> list[str]:
        order: list[str] = []
        for phase in self._phases:
            if phase["component"] and phase["component"] not in order:
                order.append(phase["component"])
        return order

    def _rollback_components(self) -> list[str]:
        """Reverse order of deployment; components seen only in a gate come last."""
        deployed = self._deployed_components()
        nogo = set(self._nogo_components())
        wanted = set(deployed) | nogo if self._option("rollback_scope", "failed") == "run" else nogo
        ordered = [c for c in reversed(deployed) if c in wanted]
        return ordered + sorted(c for c in wanted if c not in ordered)

    def _no_rollback(self, why: str) -> dict[str, t.Any]:
        return {"triggered": False, "mode": self._option("rollback", "auto"),
                "scope": self._option("rollback_scope", "failed"), "components": [], "ok": None,
                "duration_s": None, "budget_s": None, "within_budget": None, "why_not": why}

    def _rollback_reason(self) -> str:
        return "; ".join(self._enforced_nogo())[:2000]

    def _rollback_command(self, playbook: str, extra_vars: dict[str, t.Any]) -> str:
        argv = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "ansible-playbook", playbook]
        if os.path.basename(argv[0]) != "ansible-playbook":
            argv[0] = "ansible-playbook"
        for source in context.CLIARGS.get("inventory") or ():
            argv += ["-i", to_text(source)]
        if context.CLIARGS.get("subset"):
            argv += ["--limit", to_text(context.CLIARGS["subset"])]
        if context.CLIARGS.get("check"):
            argv.append("--check")
        argv += ["-e", json.dumps(extra_vars)]
        return shlex.join(argv)

    def _roll_back(self, components: list[str]) -> None:
        mode = self._option("rollback", "auto")
        scope = self._option("rollback_scope", "failed")
        budgets = parse_budgets(self._option("rollback_budgets"))
        default_budget = int(self._option("rollback_default_budget", 300))
        budget_of = {c: budgets.get(c, default_budget) for c in components}
        playbook = to_text(self._option("rollback_playbook", "emp.deploy.rollback"))
        extra_vars = {"emp_rollback_components": components, "emp_rollback_reason": self._rollback_reason(),
                      "emp_run_id": self._run["run_id"]}
        rollback: dict[str, t.Any] = {
            "triggered": mode != "off", "mode": mode, "scope": scope, "components": components,
            "playbook": playbook, "reason": extra_vars["emp_rollback_reason"], "ok": None, "duration_s": None,
            "budget_s": sum(budget_of.values()), "budgets": budget_of, "within_budget": None,
            "command": self._rollback_command(playbook, extra_vars),
        }
        self._rollback = rollback
        if mode == "off":
            rollback["why_not"] = "rollback is off"
            self._record("rollback_skipped", **rollback)
            return
        if mode == "plan":
            self._record("rollback_planned", **rollback)
            self._display.display(f"emp.deploy.go_no_go: NO-GO; rollback planned, not run. To roll back "
                                  f"{', '.join(components)}:\n  {rollback['command']}", color="bright purple")
            return
        self._record("rollback_start", components=components, scope=scope, playbook=playbook,
                     reason=rollback["reason"], budgets=budget_of)
        self._display.banner(f"EMP ROLLBACK [{', '.join(components)}] (run {self._run['run_id']})")
        started = time.monotonic()
        rollback["started"] = _now()
        try:
            rc, error = self._run_rollback_playbook(playbook, extra_vars)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            rc, error = None, f"{type(exc).__name__}: {exc}"
        ended = time.monotonic()
        rollback["ended"] = _now()
        rollback["duration_s"] = round(ended - started, 3)
        rollback["rc"] = rc
        per_component = self._per_component_rollback(components, budget_of, ended)
        rollback["per_component"] = per_component
        not_run = [c for c in components if not per_component[c]["ran"]]
        failed_components = [c for c in components if per_component[c]["failures"]]
        rollback["ok"] = rc == 0 and error is None and not not_run and not failed_components
        rollback["within_budget"] = (rollback["duration_s"] <= rollback["budget_s"]
                                     and all(p["within_budget"] is not False for p in per_component.values()))
        problems = []
        if error:
            problems.append(f"the rollback playbook could not run: {error}")
        if rc not in (0, None):
            problems.append(f"the rollback playbook ended with rc {rc}")
        problems += [f"no rollback play ran for {c} (does {playbook} have one?)" for c in not_run]
        problems += [f"rollback of {c} failed: {per_component[c]['failures'][0]}" for c in failed_components]
        if not rollback["within_budget"]:
            late = [f"{c} took {p['duration_s']} s > budget {p['budget_s']} s" for c, p in per_component.items()
                    if p["within_budget"] is False]
            problems.append("rollback overran its budget: " + ("; ".join(late) if late else
                            f"{rollback['duration_s']} s > {rollback['budget_s']} s"))
        rollback["problems"] = problems
        self._record("rollback_end", **{k: v for k, v in rollback.items() if k != "command"})
        for problem in problems:
            self._display.error(f"emp.deploy.go_no_go: ROLLBACK PROBLEM: {problem}")

    def _run_rollback_playbook(self, playbook: str, extra_vars: dict[str, t.Any]) -> tuple[int | None, str | None]:
        """The rollback playbook in this process: same inventory, variables, loader, passwords, check mode."""
        from ansible.executor.playbook_executor import PlaybookExecutor
        from ansible.utils.context_objects import CLIArgs
        from ansible.utils.unsafe_proxy import wrap_var

        executor = _running_playbook_executor()
        if executor is None:
            return None, "the running PlaybookExecutor was not found (ansible-playbook only)"
        variable_manager = executor._variable_manager
        saved_extra = variable_manager._extra_vars
        saved_cliargs = context.CLIARGS
        saved_env = os.environ.get(_CHILD_ENV)
        child_args = dict(saved_cliargs)
        # the rollback must run whole: no start-at-task, step prompts or tag filters of the deploy
        child_args.update(start_at_task=None, step=False, tags=("all",), skip_tags=(), listhosts=False,
                          listtasks=False, listtags=False, syntax=False)
        merged = dict(saved_extra)
        merged.update(wrap_var(extra_vars))
        CallbackModule._rollback_parent = self
        os.environ[_CHILD_ENV] = self._run["run_id"]
        try:
            variable_manager._extra_vars = merged
            context.CLIARGS = CLIArgs(child_args)
            child = PlaybookExecutor(playbooks=[playbook], inventory=executor._inventory,
                                     variable_manager=variable_manager, loader=executor._loader,
                                     passwords=executor.passwords)
            rc = child.run()
        finally:
            context.CLIARGS = saved_cliargs
            variable_manager._extra_vars = saved_extra
            CallbackModule._rollback_parent = None
            if saved_env is None:
                os.environ.pop(_CHILD_ENV, None)
            else:
                os.environ[_CHILD_ENV] = saved_env
        return (rc if isinstance(rc, int) else 0), None

    def _per_component_rollback(self, components: list[str], budget_of: dict[str, int], ended: float) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {}
        for component in components:
            plays = [p for p in self._rb_plays if p["component"] == component and p["hosts"]]
            duration = round(sum((p.get("ended_mono") or ended) - p["started_mono"] for p in plays), 3) if plays else None
            failures = [f for p in plays for f in p["failures"]]
            result[component] = {
                "ran": bool(plays), "ok": bool(plays) and not failures, "failures": failures,
                "duration_s": duration, "budget_s": budget_of[component],
                "within_budget": None if duration is None else duration <= budget_of[component],
            }
        return result

    # --- the rollback's own callback instance reports here ----------------------------------------

    def _parent_call(self, name: str, *args: t.Any) -> None:
        if self._parent is not None:
            getattr(self._parent, name)(*args)

    def _child_play_start(self, play: t.Any) -> None:
        dummy, component = self._play_phase(play, play.get_variable_manager())
        self._parent_call("_child_play", to_text(play.get_name()), component)

    @_never_break
    def v2_playbook_on_no_hosts_matched(self) -> None:
        if self._is_child:
            self._parent_call("_child_no_hosts")

    def _close_rb_play(self) -> None:
        if self._rb_plays and self._rb_plays[-1].get("ended_mono") is None:
            play = self._rb_plays[-1]
            play["ended_mono"] = time.monotonic()
            self._record("rollback_play_end", play=play["play"], component=play["component"], hosts=play["hosts"],
                         failures=play["failures"], duration_s=round(play["ended_mono"] - play["started_mono"], 3))

    def _child_play(self, name: str, component: str | None) -> None:
        self._close_rb_play()
        self._rb_plays.append({"play": name, "component": component, "hosts": True, "failures": [],
                               "started_mono": time.monotonic(), "ended_mono": None})
        self._record("rollback_play_start", play=name, component=component)

    def _child_no_hosts(self) -> None:
        if self._rb_plays:
            self._rb_plays[-1]["hosts"] = False

    def _child_gate(self, gate: dict[str, t.Any]) -> None:
        self._record("rollback_gate", **gate)
        if gate.get("decision") == "NO-GO" and gate.get("mode") == "enforce" and self._rb_plays:
            self._rb_plays[-1]["failures"].append(f"gate {gate.get('name')}: {gate.get('reason')}")

    def _child_failure(self, result: t.Any, unreachable: bool) -> None:
        data = _task_result(result)
        task = _task_of(result)
        msg = _first_line(data.get("msg") or data.get("stderr") or ("host unreachable" if unreachable else "task failed"))
        line = f"{to_text(task.get_name()) if task is not None else 'task'} on {_host_name(result)}: {msg}"
        if self._rb_plays:
            self._rb_plays[-1]["failures"].append(line)
        self._record("rollback_step_failed", task=line, unreachable=unreachable)

    def _child_stats(self, stats: t.Any) -> None:
        self._close_rb_play()

    # --- summary, table, exit code ----------------------------------------------------------------

    def _finish(self, stats: t.Any, decision: str, interrupted: str | None = None,
                extra_reasons: list[str] | None = None) -> None:
        self._finished = True
        run = self._run or {}
        summary = {
            "run_id": run.get("run_id"),
            "decision": decision,
            "playbook": run.get("playbook"),
            "check_mode": run.get("check_mode"),
            "emp_release": run.get("emp_release"),
            "limit": run.get("limit"),
            "rollback_run": run.get("rollback_run"),
            "started": run.get("started"),
            "ended": _now(),
            "duration_s": round(time.monotonic() - run["started_mono"], 3) if run.get("started_mono") else None,
            "reasons": self._enforced_nogo() + (extra_reasons or []),
            "phases": [{k: v for k, v in p.items() if k != "started_mono"} for p in self._phases],
            "gates": self._gates,
            "failures": self._failures,
            "rollback": self._rollback or self._no_rollback("no enforced NO-GO"),
            "hosts": self._host_stats(stats),
            "journal": str(self._journal.path) if self._journal else None,
        }
        if interrupted:
            summary["interrupted"] = interrupted
        self._record("run_end", decision=decision, duration_s=summary["duration_s"],
                     rollback=summary["rollback"], interrupted=interrupted)
        if self._run_dir is not None:
            write_json_atomically(self._run_dir / "summary.json", _plain(summary))
        if not interrupted:
            self._print_table(summary)
        if self._journal:
            self._journal.close()
            self._journal = None

    @staticmethod
    def _host_stats(stats: t.Any) -> dict[str, t.Any]:
        hosts = {}
        for host in sorted(getattr(stats, "processed", {}) or {}):
            try:
                hosts[host] = dict(stats.summarize(host))
            except Exception:  # pylint: disable=broad-exception-caught
                continue
        return hosts

    def _print_table(self, summary: dict[str, t.Any]) -> None:
        rows = [("PHASE", "COMPONENT", "GATE", "MODE", "DECISION", "TIME", "REASON")]
        for gate in summary["gates"]:
            reason = _first_line(gate.get("reason"), 110)
            rows.append((gate.get("phase") or "-", gate.get("component") or "-", gate.get("name") or "-",
                         gate.get("mode") or "-", gate.get("decision") or "-", f"{gate.get('duration_s') or 0:.1f}s", reason))
        for failure in summary["failures"]:
            rows.append((failure.get("phase") or "-", failure.get("component") or "-", _first_line(failure.get("task"), 30),
                         "step", "NO-GO" if failure.get("component") else "failed", "-", _first_line(failure.get("msg"), 110)))
        lines = [f"EMP GO/NO-GO  run {summary['run_id']}  decision {summary['decision']}"
                 + ("  (check mode)" if summary.get("check_mode") else "")]
        if len(rows) > 1:
            widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
            for row in rows:
                lines.append("  " + "  ".join(str(row[i]).ljust(widths[i]) for i in range(6)) + "  " + row[6])
        else:
            lines.append("  no gates and no failed deployment steps in this run")
        rollback = summary["rollback"]
        if rollback.get("triggered") and rollback.get("mode") == "auto":
            state = "ok" if rollback.get("ok") else "FAILED"
            budget = "within budget" if rollback.get("within_budget") else "OVER BUDGET"
            lines.append(f"  rollback [{', '.join(rollback['components'])}] ({rollback['scope']}): {state} in "
                         f"{rollback.get('duration_s')} s, {budget} ({rollback.get('budget_s')} s)")
            lines += [f"  ROLLBACK PROBLEM: {problem}" for problem in rollback.get("problems") or []]
        elif rollback.get("mode") == "plan" and rollback.get("components"):
            lines.append(f"  rollback planned, not run: {rollback.get('command')}")
        elif summary["decision"] == "NO-GO":
            lines.append(f"  no rollback: {rollback.get('why_not')}")
        if self._run_dir is not None:
            lines.append(f"  report: {self._run_dir / 'summary.json'}")
        color = "bright green" if summary["decision"] == "GO" else "bright red"
        self._display.display("\n".join(lines), color=color)

    def _keep_exit_code_nonzero(self) -> None:
        """An enforced NO-GO is a failed run even if the play rescued the gate and rolled back fine."""
        original = sys.exit
        if getattr(original, "_emp_go_no_go", False):
            return

        def exit_nonzero(code: t.Any = 0) -> None:
            original(_RUN_FAILED_HOSTS if code in (0, None) else code)

        exit_nonzero._emp_go_no_go = True  # type: ignore[attr-defined]
        sys.exit = exit_nonzero

    # --- a killed run still closes its journal properly -------------------------------------------

    def _install_signal_handler(self) -> None:
        try:
            self._prev_sigterm = signal.getsignal(signal.SIGTERM)
            self._signal_pid = os.getpid()
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # not the main thread: keep the journal without this record
            self._prev_sigterm = None

    def _on_sigterm(self, signum: int, frame: t.Any) -> None:
        if os.getpid() == self._signal_pid and not self._finished:
            try:
                self._end_phase()
                self._record("run_interrupted", signal="SIGTERM")
                self._finish(None, decision="NO-GO", interrupted="SIGTERM")
            except Exception:  # pylint: disable=broad-exception-caught
                pass
        previous = self._prev_sigterm
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # the default action: die of the signal, as the run would have without this handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _running_playbook_executor() -> t.Any:
    """The PlaybookExecutor whose run() is calling us (it holds the inventory, loader and passwords)."""
    from ansible.executor.playbook_executor import PlaybookExecutor

    frame = sys._getframe(1)  # pylint: disable=protected-access
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, PlaybookExecutor):
            return candidate
        frame = frame.f_back
    return None
