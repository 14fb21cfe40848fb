# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""emp.deploy.gate: samples a probe module (or takes evidence), evaluates criteria, decides GO / NO-GO.

The documentation lives in plugins/modules/gate.py, as for ansible.builtin.assert.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
import typing as t
import uuid
from collections import ChainMap
from datetime import datetime, timezone
from pathlib import Path

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure, AnsibleError
try:  # ansible-core >= 2.19: what gather_facts, package and service use
    from ansible.executor.module_common import _apply_action_arg_defaults
except ImportError:  # ansible-core 2.18
    _apply_action_arg_defaults = None
try:  # ansible-core 2.18 (removed later)
    from ansible.executor.module_common import get_action_args_with_defaults
except ImportError:
    get_action_args_with_defaults = None
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import fragment_loader
from ansible.utils.display import Display
from ansible.utils.plugin_docs import get_docstring

from ansible_collections.emp.deploy.plugins.plugin_utils import _history as history
from ansible_collections.emp.deploy.plugins.plugin_utils import _waivers as waivers
from ansible_collections.emp.deploy.plugins.plugin_utils._trust import trusted_like
from ansible_collections.emp.deploy.plugins.plugin_utils._gate import (
    BASELINE_VARIABLE,
    ERROR,
    FAILED,
    HISTORY_VARIABLE,
    NO_DATA,
    ON_NO_DATA,
    PASSED,
    SAMPLE_VARIABLE,
    WITHHELD,
    Criterion,
    CriterionError,
    CriterionOutcome,
    Limits,
    Tally,
    build_reason,
    change_reason,
    classify_result,
    decide,
    declares_read_only,
    describe_type,
    final_decision,
    first_line,
    is_task_result,
    parse_criterion,
    plain_type_names,
    plan_schedule,
    probe_check_mode,
    probe_invocation,
    probe_verdict,
    resolve_path,
)
from ansible_collections.emp.deploy.plugins.plugin_utils._records import (
    ENFORCE,
    GATE_RESULT_KEY,
    GO,
    MODES,
    ENVIRONMENT_ENV,
    NO_GO,
    RUN_DIR_ENV,
    RUN_ID_ENV,
    WAIVED,
    WAIVERS_VAR,
    WARN,
    GateRecord,
)

display = Display()

_GATE_NAMES = frozenset(("emp.deploy.gate", "gate"))


def _criteria_type(value: t.Any) -> list:
    """A conditional or a list of them; never split a string on commas as type=list would."""
    if isinstance(value, (str, bool)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"criteria must be a conditional or a list of conditionals, not {describe_type(value)}")


ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = dict(
    name=dict(type="str", required=True),
    phase=dict(type="str"),
    component=dict(type="str", required=True),
    checklist_ref=dict(type="str"),
    # checked by _criteria_type after validation, so its message is the gate's own
    criteria=dict(type="raw", required=True),
    probe=dict(type="dict", options=dict(
        module=dict(type="str", required=True),
        args=dict(type="dict", default={}),
        check_mode=dict(type="bool"),
    )),
    evidence=dict(type="raw"),
    samples=dict(type="int"),
    interval=dict(type="float"),
    duration=dict(type="float"),
    failure_limit=dict(type="int", default=0),
    consecutive_error_limit=dict(type="int", default=3),
    on_no_data=dict(type="str", default="fail", choices=list(ON_NO_DATA)),
    mode=dict(type="str", default=ENFORCE, choices=list(MODES)),
    # checked by _history.parse_options / parse_fallback, so their messages are the gate's own
    history=dict(type="raw"),
    history_fallback=dict(type="raw"),
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=64)
def _module_doc(path: str, collection: str) -> dict[str, t.Any] | None:
    """A module's DOCUMENTATION with its fragments; None when unreadable."""
    try:
        doc = get_docstring(path, fragment_loader, collection_name=collection or None, is_module=True)[0]
    except Exception:  # a module whose documentation cannot be read is not declared read-only
        return None
    return doc if isinstance(doc, dict) else None


def _read_only_cache_entry(path: str, collection: str) -> str | None:
    """Where this run keeps whether a module is read-only: in the run's local temporary directory,
    which every worker of the run shares (as Ansible's own AnsiballZ cache does), keyed by the file's
    path, size and modification time. None when the module file cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = hashlib.sha256(f"{path}\0{collection}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    return os.path.join(C.DEFAULT_LOCAL_TMP, "emp_gate_read_only", key)


def probe_is_read_only(path: str, collection: str) -> bool:
    """Whether the module's documentation declares it read-only; its documentation (100-200 ms to
    read with fragments) is read once per module per run, not once per gate task."""
    entry = _read_only_cache_entry(path, collection)
    if entry:
        try:
            with open(entry, encoding="ascii") as handle:
                return handle.read() == "true"
        except OSError:
            pass
    read_only = declares_read_only(_module_doc(path, collection))
    if entry:
        try:
            os.makedirs(os.path.dirname(entry), exist_ok=True)
            handle_fd, partial = tempfile.mkstemp(dir=os.path.dirname(entry))
            with os.fdopen(handle_fd, "w", encoding="ascii") as handle:
                handle.write("true" if read_only else "false")
            os.replace(partial, entry)  # atomic: a worker reading at the same time sees all or nothing
        except OSError:
            pass  # the cache only saves time
    return read_only


class ActionModule(ActionBase):
    """Decides GO / NO-GO from a sampled probe module or from evidence."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    @classmethod
    def finalize_task_arg(cls, name: str, value: t.Any, templar: t.Any, context: t.Any) -> t.Any:
        """ansible-core >= 2.19: leave criteria untemplated (they are evaluated per sample), as assert does for `that`."""
        if name != "criteria":
            return super().finalize_task_arg(name, value, templar, context)  # pylint: disable=no-member
        if isinstance(value, str) and value.strip().startswith(("{{", "{%")):
            # `criteria: "{{ my_criteria }}"` resolves to the list without templating its items
            try:
                resolved = templar.resolve_to_container(value)
            except AnsibleError:
                return value
            if isinstance(resolved, list):
                return resolved
        return value

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        raw_args = self._task.args
        if "probe" in raw_args and "evidence" in raw_args:
            raise AnsibleActionFail("emp.deploy.gate takes exactly one of probe and evidence, got both")
        if "probe" not in raw_args and "evidence" not in raw_args:
            raise AnsibleActionFail("emp.deploy.gate needs either probe ({module, args}) or evidence")
        if "probe" in raw_args and not isinstance(raw_args["probe"], t.Mapping):
            raise AnsibleActionFail(f"probe must be a mapping ({{module, args}}), not {describe_type(raw_args['probe'])}")

        args = self._validated_args()
        written = self._parse_criteria([self._expanded(c) for c in self._raw_criteria(args["criteria"])])
        found = self._history_baseline(args, written)
        criteria, skipped = history.split_criteria(written, found)
        limits = Limits(failure_limit=args["failure_limit"], consecutive_error_limit=args["consecutive_error_limit"],
                        on_no_data=args["on_no_data"])
        if limits.failure_limit < 0 or limits.consecutive_error_limit < 0:
            raise AnsibleActionFail("failure_limit and consecutive_error_limit must not be negative")
        with_evidence = "evidence" in raw_args
        if with_evidence:
            if any(args[key] is not None for key in ("samples", "interval", "duration")):
                raise AnsibleActionFail("samples, interval and duration apply to probe, not to evidence "
                                        "(evidence is evaluated once)")
            planned, interval = 1, 0.0
        else:
            try:
                schedule = plan_schedule(args["samples"], args["interval"], args["duration"])
            except ValueError as exc:
                raise AnsibleActionFail(f"emp.deploy.gate {args['name']!r}: {exc}") from exc
            planned, interval = schedule.samples, schedule.interval
            args["probe"] = self._plan_probe(args["probe"])

        gate = _GateRun(self, args, criteria, limits, task_vars, planned, interval)
        gate.waiver = self._waiver_of(args["name"], task_vars)
        gate.history, gate.skipped_criteria = found, skipped
        # a skipped criterion's own figures are still recorded: they are the history of later runs
        gate.skipped_paths = [p for c in written if c not in criteria for p in c.paths if p not in history.history_paths(c)]
        if with_evidence:
            gate.run_evidence(args["evidence"])
        else:
            gate.run_probe(args["probe"])
        return gate.finish(result)

    # --- validation before any sampling ---------------------------------------------------------

    @staticmethod
    def _expanded(criterion: t.Any) -> t.Any:
        """A relative threshold (``result.x <=+10%``) as the criterion it stands for, trusted as the written one was."""
        expanded = history.expand_relative(criterion)
        return criterion if expanded == criterion else trusted_like(criterion, expanded)

    def _history_baseline(self, args: t.Mapping[str, t.Any], criteria: list[Criterion]) -> history.Baseline | None:
        """The gate's baseline from the history index (history option), or None without the option; fails before
        any sampling on a bad option, or on a criterion that reads history without it."""
        reads_history = [c.text for c in criteria if history.uses_history(c.paths)]
        if args.get("history") is None:
            if reads_history:
                raise AnsibleActionFail(f"emp.deploy.gate {args['name']!r}: criterion {reads_history[0]!r} reads "
                                        f"history, but the gate has no history option (history: {{runs: 5}})")
            if args.get("history_fallback") is not None:
                raise AnsibleActionFail(f"emp.deploy.gate {args['name']!r}: history_fallback needs the history option")
            return None
        try:
            options = history.parse_options(args["history"])
            fallback = history.parse_fallback(args.get("history_fallback"))
        except history.HistoryError as exc:
            raise AnsibleActionFail(f"emp.deploy.gate {args['name']!r}: {exc}") from None
        if not reads_history:
            raise AnsibleActionFail(f"emp.deploy.gate {args['name']!r}: the history option is set, but no criterion "
                                    f"reads history (history.<figure>, or a relative threshold such as <=+10%)")
        run_dir = os.environ.get(RUN_DIR_ENV)
        environment = os.environ.get(ENVIRONMENT_ENV)
        if not run_dir or not environment:
            raise AnsibleActionFail(f"emp.deploy.gate {args['name']!r}: history needs the emp.deploy.go_no_go "
                                    f"callback, which keeps the history index beside its run records "
                                    f"({RUN_DIR_ENV} or {ENVIRONMENT_ENV} is not set)")
        return history.lookup(Path(run_dir).parent, environment, args["name"], options, fallback,
                              exclude_run=os.environ.get(RUN_ID_ENV))

    def _waiver_of(self, name: str, task_vars: t.Mapping[str, t.Any]) -> waivers.Waiver | None:
        """The waiver in force for this gate (emp_waivers); an expired one is ignored with a warning."""
        try:
            parsed = waivers.parse_waivers(task_vars.get(WAIVERS_VAR))
        except waivers.WaiverError as exc:
            raise AnsibleActionFail(str(exc)) from None
        active, expired = waivers.waiver_for(parsed, name, datetime.now(timezone.utc))
        if expired is not None:
            self.show(f"gate {name}: {waivers.expired_warning(expired)}", warning=True)
        return active

    def _validated_args(self, spec: dict[str, dict[str, t.Any]] | None = None,
                        action: str = "emp.deploy.gate") -> dict[str, t.Any]:
        """The options checked against the spec (ARGUMENT_SPEC); messages name types in plain words."""
        try:
            dummy, args = self.validate_argument_spec(argument_spec=spec or ARGUMENT_SPEC)
        except AnsibleActionFail as exc:
            # name the action as users write it, not its Python module
            message = to_text(exc.message).replace(f"({self._load_name})", f"({action})")
            raise AnsibleActionFail(plain_type_names(message)) from None
        return args

    def _raw_criteria(self, validated: t.Any) -> list:
        """ansible-core 2.18 templated task args already; take `criteria` as written, as assert does."""
        raw = validated
        if not hasattr(self._templar, "evaluate_conditional"):
            try:
                raw = self._task.untemplated_args["criteria"]
            except (AttributeError, KeyError):
                raw = validated
            if isinstance(raw, str):
                raw = self._templar.template(raw)
        try:
            return _criteria_type(raw)
        except TypeError as exc:
            raise AnsibleActionFail(str(exc)) from None

    def _parse_criteria(self, raw: list) -> list[Criterion]:
        if not raw:
            raise AnsibleActionFail("emp.deploy.gate needs at least one criterion")
        parsed = []
        for expression in raw:
            try:
                parsed.append(parse_criterion(expression))
            except CriterionError as exc:
                raise AnsibleActionFail(str(exc)) from exc
        return parsed

    def _plan_probe(self, probe: dict[str, t.Any]) -> dict[str, t.Any]:
        """The probe as it will be sampled: resolved module, args over module_defaults, the module
        to execute, and whether the samples run in check mode. Fails before any sampling."""
        name = probe["module"]
        context = self._shared_loader_obj.module_loader.find_plugin_with_context(
            name, collection_list=self._task.collections)
        if not context.resolved:
            raise AnsibleActionFail(f"unknown probe module {name!r}: no module of that name is installed "
                                    f"(use its FQCN, e.g. emp.deploy.redis_health)")
        resolved = context.resolved_fqcn
        if resolved in _GATE_NAMES or name in _GATE_NAMES:
            raise AnsibleActionFail("a gate cannot use emp.deploy.gate as its probe")
        try:
            execute, module_args = probe_invocation(resolved, self._with_module_defaults(resolved, probe["args"] or {}))
        except ValueError as exc:
            raise AnsibleActionFail(str(exc)) from None
        if execute == resolved:
            execute = name  # as written, so a library/ module of the same short name still wins where it would
        read_only = probe_is_read_only(context.plugin_resolved_path, context.plugin_resolved_collection or "")
        check_mode = probe_check_mode(probe.get("check_mode"), read_only, self.run_check_mode)
        return dict(probe, args=module_args, execute=execute, resolved=resolved, read_only=read_only,
                    run_check_mode=check_mode)

    def _with_module_defaults(self, resolved_module: str, probe_args: dict[str, t.Any]) -> dict[str, t.Any]:
        """The probe's args over the play's module_defaults for it (group/emp.deploy.probes too),
        as ansible.builtin.gather_facts does for the fact modules it runs."""
        if _apply_action_arg_defaults is not None:
            return _apply_action_arg_defaults(resolved_module, self._task, dict(probe_args), self._templar)
        return get_action_args_with_defaults(
            resolved_module, dict(probe_args), self._task.module_defaults, self._templar,
            action_groups=self._task._parent._play._action_groups)

    # --- helpers used by _GateRun ----------------------------------------------------------------

    @property
    def run_check_mode(self) -> bool:
        """Whether the gate task itself runs in check mode (--check or the check_mode keyword)."""
        return bool(self._task.check_mode)

    def evaluate(self, criterion: Criterion, variables: t.Mapping[str, t.Any]) -> bool:
        """One conditional over the sample, with assert's semantics on either templating engine."""
        if isinstance(criterion.expression, bool):
            return criterion.expression
        templar = self._templar.copy_with_new_env(available_variables=variables)
        if hasattr(templar, "evaluate_conditional"):  # ansible-core >= 2.19
            return bool(templar.evaluate_conditional(criterion.expression))
        from ansible.playbook.conditional import Conditional  # ansible-core 2.18

        conditional = Conditional(loader=self._loader)
        conditional.when = [criterion.expression]
        return bool(conditional.evaluate_conditional(templar=templar, all_vars=variables))

    def execute_probe(self, module: str, module_args: dict[str, t.Any], task_vars: dict[str, t.Any],
                      check_mode: bool) -> dict[str, t.Any]:
        """Runs the probe through Ansible's normal module execution (remote hosts, any module)."""
        saved = self._task.check_mode
        self._task.check_mode = check_mode
        try:
            return self._execute_module(module_name=module, module_args=dict(module_args), task_vars=task_vars)
        finally:
            self._task.check_mode = saved

    def show(self, message: str, warning: bool = False) -> None:
        if warning:
            display.warning(message)
        else:
            display.display(message)

    def cleanup_remote(self) -> None:
        tmpdir = getattr(self._connection._shell, "tmpdir", None)
        if tmpdir:
            self._remove_tmp_path(tmpdir)


class _GateRun:
    """The state of one gate evaluation: samples taken, tallies, the criteria outcomes."""

    def __init__(self, action: ActionModule, args: dict[str, t.Any], criteria: list[Criterion], limits: Limits,
                 task_vars: dict[str, t.Any], planned: int, interval: float) -> None:
        self.action = action
        self.args = args
        self.criteria = criteria
        self.limits = limits
        self.task_vars = task_vars
        self.interval = interval
        self.tally = Tally(planned=planned)
        self.outcomes = [CriterionOutcome(criterion) for criterion in criteria]
        self.samples: list[dict[str, t.Any]] = []
        self.unhealthy: list[str] = []
        self.baseline: t.Any = None
        self.with_evidence = False
        self.probe: dict[str, t.Any] = {}
        self.stopped_early = False
        self.decision: str | None = None
        self.waiver: waivers.Waiver | None = None
        self.history: history.Baseline | None = None
        self.skipped_criteria: list[dict[str, t.Any]] = []
        self.skipped_paths: list[str] = []
        self.started = _now()
        self.started_mono = time.monotonic()
        self.host = to_text(task_vars.get("inventory_hostname", ""))
        # no_log: what the gate measured (figures, the probe's words) appears in no output and no record
        self.redacted = bool(action._task.no_log)

    @property
    def label(self) -> str:
        return f"gate {self.args['name']} [{self.host}]"

    def run_evidence(self, evidence: t.Any) -> None:
        self.with_evidence = True
        started = time.monotonic()
        if evidence is None or (isinstance(evidence, (str, list, dict)) and not evidence):
            self._record(None, NO_DATA, "evidence is empty", started)
            return
        if is_task_result(evidence):
            kind, why = classify_result(evidence)
            if kind:
                self._record(evidence, kind, why, started)
                return
        self._record_measured(evidence, started)

    def run_probe(self, probe: dict[str, t.Any]) -> None:
        self.probe = probe
        module, module_args, check_mode = probe["module"], probe["args"], probe["run_check_mode"]
        n = self.tally.planned
        self.action.show(f"{self.label}: sampling {module} {n} time{'s' if n != 1 else ''}"
                         + (f" every {self.interval:g} s" if n > 1 else "")
                         + (" in check mode" if check_mode else "")
                         + f" (failure_limit {self.limits.failure_limit}, "
                         f"consecutive_error_limit {self.limits.consecutive_error_limit})")
        try:
            for index in range(n):
                if index:
                    # keep the schedule anchored to the start, so slow probes do not stretch the window
                    delay = self.started_mono + index * self.interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                started = time.monotonic()
                try:
                    sample = self.action.execute_probe(probe["execute"], module_args, self.task_vars, check_mode)
                except AnsibleConnectionFailure as exc:
                    sample = {"unreachable": True, "msg": to_text(exc)}
                except AnsibleError as exc:
                    sample = {"failed": True, "msg": to_text(exc)}
                kind, why = self._classify_sample(probe["resolved"], sample, check_mode)
                if kind:
                    self._record(sample, kind, why, started, check_mode=check_mode)
                else:
                    self._record_measured(sample, started, check_mode=check_mode)
                self.decision = decide(self.tally, self.limits)
                if self.decision is not None:
                    self.stopped_early = self.tally.remaining > 0
                    break
        finally:
            self.action.cleanup_remote()

    def add_measured(self, sample: t.Any, started: float) -> None:
        """One sample judged by the criteria (for emp.deploy.watch, which measures on its own schedule)."""
        self._record_measured(sample, started)

    def add_unmeasured(self, kind: str, why: str | None, started: float) -> None:
        """One sample that could not measure (ERROR or NO_DATA), as the gate counts it."""
        self._record(None, kind, why, started)

    def _classify_sample(self, module: str, sample: dict[str, t.Any], check_mode: bool) -> tuple[str | None, str | None]:
        """(ERROR | NO_DATA | None, why): a probe that changed (or would change) the target measured nothing."""
        kind, why = classify_result(sample)
        if kind:
            return kind, why
        why = change_reason(module, sample, check_mode, self.redacted)
        if why and not check_mode:
            self.tally.target_changed = why  # the gate stops here: later samples would measure its own repair
        return (ERROR, why) if why else (None, None)

    def _variables(self, sample: t.Any) -> ChainMap:
        own = {SAMPLE_VARIABLE: sample, BASELINE_VARIABLE: self.baseline}
        if self.history is not None:
            own[HISTORY_VARIABLE] = self.history.values
        return ChainMap(own, self.task_vars)

    def _skipped_figures(self, sample: t.Any) -> dict[str, t.Any]:
        variables = self._variables(sample)
        return {path: resolve_path(variables, path) for path in self.skipped_paths}

    def _record_measured(self, sample: t.Any, started: float, check_mode: bool | None = None) -> None:
        if not self.outcomes:  # every criterion was skipped (too little history): nothing to judge, never a pass
            self._record(sample, NO_DATA, self.skipped_criteria[0]["reason"], started,
                         figures=self._skipped_figures(sample), check_mode=check_mode)
            return
        if self.baseline is None:
            self.baseline = sample
        variables = self._variables(sample)
        figures = self._skipped_figures(sample)
        checks: list[dict[str, t.Any]] = []
        all_held = True
        for outcome in self.outcomes:
            for path in outcome.criterion.paths:
                figures[path] = resolve_path(variables, path)
            try:
                held = self.action.evaluate(outcome.criterion, variables)
                error = None
            except Exception as exc:  # a criterion that cannot evaluate on this sample fails it
                held, error = False, first_line(to_text(exc))
            shown_error = WITHHELD if error and self.redacted else error
            checks.append({"criterion": outcome.criterion.text, "held": held,
                           **({"error": shown_error} if shown_error else {})})
            if held:
                outcome.held += 1
            else:
                all_held = False
                if error:
                    outcome.errors += 1
                    outcome.last_error = error
                else:
                    outcome.failed += 1
                outcome.failing_figures.append({path: figures.get(path) for path in outcome.criterion.paths})
        verdict = probe_verdict(sample) if isinstance(sample, t.Mapping) else None
        if verdict:
            self.unhealthy.append(verdict)
        ok = all_held and not verdict
        self._record(sample, PASSED if ok else FAILED, verdict, started, figures=figures, checks=checks,
                     check_mode=check_mode)

    def _record(self, sample: t.Any, kind: str, why: str | None, started: float,
                figures: dict[str, t.Any] | None = None, checks: list[dict[str, t.Any]] | None = None,
                check_mode: bool | None = None) -> None:
        self.tally.add(kind, why)
        if kind == NO_DATA:
            self.tally.last_error = why
        shown_why = WITHHELD if why and self.redacted else why
        entry: dict[str, t.Any] = {
            "index": self.tally.taken,
            "time": _now(),
            "ok": kind == PASSED,
            "outcome": kind,
            "error": shown_why if kind in (ERROR, NO_DATA) else None,
            # the figures the criteria read, withheld under no_log
            "figures": {} if self.redacted else (figures or {}),
            "criteria": checks or [],
            "duration_ms": round((time.monotonic() - started) * 1000.0, 1),
        }
        if check_mode is not None:
            entry["check_mode"] = check_mode
        if kind == FAILED and why:
            entry["problem"] = shown_why
        self.samples.append(entry)
        self.action.show(self._progress_line(entry))

    def _progress_line(self, entry: dict[str, t.Any]) -> str:
        head = f"{self.label} sample {entry['index']}/{self.tally.planned}: "
        if entry["outcome"] == PASSED:
            status = "ok"
        elif entry["outcome"] == FAILED:
            failed = [c["criterion"] for c in entry["criteria"] if not c["held"]]
            status = "FAILED " + "; ".join(failed + ([entry["problem"]] if entry.get("problem") else []))
        elif entry["outcome"] == ERROR:
            status = f"ERROR could not measure: {entry['error']}"
        else:
            status = f"no data: {entry['error']}"
        shown = ", ".join(f"{path}={value}" for path, value in list(entry["figures"].items())[:4])
        tail = f" ({shown})" if shown else ""
        if self.tally.failed or self.tally.errors:
            tail += f"  [{self.tally.failed} failed, {self.tally.errors} errors]"
        return head + status + tail

    def _check_mode_hint(self) -> str:
        """Why a probe that only skipped ran in check mode at all, and what to do about it."""
        probe = self.probe
        forced = (probe and probe["run_check_mode"] and probe.get("check_mode") is None and not probe["read_only"]
                  and not self.action.run_check_mode)
        if not forced or not self.tally.no_data or self.tally.passed + self.tally.failed:
            return ""
        return (f"; {probe['module']} ran in check mode because its documentation does not declare it read-only "
                f"(set probe.check_mode: false for a probe that changes nothing)")

    def finish(self, result: dict[str, t.Any]) -> dict[str, t.Any]:
        if self.decision is None:
            self.decision = final_decision(self.tally, self.limits)
        reason = build_reason(self.decision, self.tally, self.limits, self.outcomes, self.unhealthy,
                              self.with_evidence, self.stopped_early, self.redacted) + self._check_mode_hint()
        if self.skipped_criteria and self.outcomes:
            reason += f"; {len(self.skipped_criteria)} criteri{'a' if len(self.skipped_criteria) != 1 else 'on'} " \
                      f"skipped: {self.skipped_criteria[0]['reason']}"
        mode = self.args["mode"]
        ended = _now()
        gate: GateRecord = {
            "id": uuid.uuid4().hex,
            "name": self.args["name"],
            "phase": self.args["phase"],
            "component": self.args["component"],
            "checklist_ref": self.args["checklist_ref"],
            "mode": mode,
            "enforced": mode == ENFORCE,
            "decision": self.decision,
            "reason": reason,
            "host": self.host,
            "source": "evidence" if self.with_evidence else "probe",
            "probe_module": None if self.with_evidence else self.args["probe"]["module"],
            "criteria": [outcome.as_dict(self.redacted) for outcome in self.outcomes] + self.skipped_criteria,
            "samples": self.samples,
            "counts": {"planned": self.tally.planned, "taken": self.tally.taken, "passed": self.tally.passed,
                       "failed": self.tally.failed, "errors": self.tally.errors, "no_data": self.tally.no_data},
            "limits": {"failure_limit": self.limits.failure_limit,
                       "consecutive_error_limit": self.limits.consecutive_error_limit,
                       "on_no_data": self.limits.on_no_data},
            "interval_s": self.interval,
            "stopped_early": self.stopped_early,
            "started": self.started,
            "ended": ended,
            "duration_s": round(time.monotonic() - self.started_mono, 3),
            "redacted": self.redacted,
        }
        if self.history is not None:
            past = self.history.as_record()
            if self.redacted:  # the past runs' figures are this gate's figures too
                past["figures"] = {path: WITHHELD for path in past["figures"]}
            gate["history"] = past
        if self.waiver is not None:
            waivers.waive(t.cast(dict, gate), self.waiver)
        result.update({"changed": False, GATE_RESULT_KEY: gate})
        headline = f"{self.label}: {self.decision} ({mode}) - {reason}"
        if self.waiver is not None:
            result["msg"] = f"{WAIVED}: {gate['reason']}"
            self.action.show(f"{self.label}: {WAIVED} ({mode}) - {gate['reason']}", warning=True)
        elif self.decision == GO:
            result["msg"] = f"{GO}: {reason}"
            self.action.show(headline)
        elif mode == ENFORCE:
            result["failed"] = True
            result["msg"] = f"{NO_GO}: {reason}"
            if self.redacted:
                # Ansible hides the failed task's message under no_log; this line says which gate, without values
                self.action.show(headline)
        elif mode == WARN:
            result["msg"] = f"{NO_GO} (warn, not enforced): {reason}"
            self.action.show(headline, warning=True)
        else:
            result["msg"] = f"observe: would have decided {NO_GO}: {reason}"
            self.action.show(f"{self.label}: observe mode, would have decided {NO_GO} - {reason}")
        return result
