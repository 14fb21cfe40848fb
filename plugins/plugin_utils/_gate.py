# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""GO/NO-GO decision rules of emp.deploy.gate, free of any Ansible runtime so they unit-test alone.

Sample accounting (documented in plugins/modules/gate.py): a probe that failed without returning
measurements is an *error* (counts towards consecutive_error_limit), and so is a sample whose probe
reported changed: a gate observes, it never repairs. A sample that measured but whose criteria do not
hold, or whose probe says healthy: false, is a *failure* (counts towards failure_limit). A skipped
probe (check mode, a module without check mode support) or empty evidence is *no data*.
"""

from __future__ import annotations

import math
import re
import typing as t
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from ansible_collections.emp.deploy.plugins.plugin_utils import _records

# The decisions and modes are the run record's; the gate's names for them stay for code importing them from here.
GO = _records.GO
NO_GO = _records.NO_GO
MODES = _records.MODES

ON_NO_DATA = ("fail", "pass")

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
NO_DATA = "no_data"

# Variables a criterion may use besides the play's: the sample, and the first measured sample.
SAMPLE_VARIABLE = "result"
BASELINE_VARIABLE = "baseline"
# With the gate's history option: the figures of past runs (docs/history.md, _history.py).
HISTORY_VARIABLE = "history"

# Keys every module result may carry that are not measurements: a failed result made only of
# these did not measure anything.
_NOT_MEASUREMENTS = frozenset((
    "changed", "failed", "msg", "invocation", "exception", "module_stderr", "module_stdout",
    "warnings", "deprecations", "skipped", "skip_reason", "unreachable", "healthy", "problems",
    "reachable", "error", "target", "duration_ms", "attempts", "retries", "item", "ansible_loop_var",
    "stdout_lines", "stderr_lines",
))

_PARSER = Environment()

# What the gate shows instead of a value it measured when the task has no_log.
WITHHELD = "withheld (no_log)"

# --- the probe must not change the target ---------------------------------------------------------

# The attribute a module's DOCUMENTATION sets (support: full), beside check_mode support: full, to
# declare that it never changes its target, so the gate may run it outside check mode.
READ_ONLY_ATTRIBUTE = "read_only"

# Modules that report changed on every run because they cannot know what the command did. A gate
# runs them outside check mode only when probe.check_mode is false (the user vouches that the
# command is read-only), and then their changed flag says nothing about the target.
_CHANGE_UNKNOWN = frozenset(("command", "shell", "raw", "script"))
_BUILTIN_PREFIXES = ("ansible.builtin.", "ansible.legacy.")


def builtin_name(module: str) -> str | None:
    """'command' for ansible.builtin.command or ansible.legacy.command, else None."""
    for prefix in _BUILTIN_PREFIXES:
        if module.startswith(prefix):
            return module[len(prefix):]
    return None


def declares_read_only(doc: t.Mapping[str, t.Any] | None) -> bool:
    """Whether a module's documentation says it never changes its target (see READ_ONLY_ATTRIBUTE)."""
    attributes = (doc or {}).get("attributes") or {}
    if not isinstance(attributes, t.Mapping):
        return False

    def full(name: str) -> bool:
        entry = attributes.get(name)
        return isinstance(entry, t.Mapping) and entry.get("support") == "full"

    return full("check_mode") and full(READ_ONLY_ATTRIBUTE)


def probe_check_mode(explicit: bool | None, read_only: bool, run_check_mode: bool) -> bool:
    """Whether one sample runs in check mode: probe.check_mode when given, else the run's mode for a
    probe documented as read-only, else check mode (so a probe that could change the target does not)."""
    if explicit is not None:
        return explicit
    return run_check_mode if read_only else True


def change_reason(module: str, sample: t.Mapping[str, t.Any], check_mode: bool, redacted: bool = False) -> str | None:
    """Why a sample that reports changed is an error sample, or None when it changed nothing."""
    if not sample.get("changed"):
        return None
    if not check_mode and builtin_name(module) in _CHANGE_UNKNOWN:
        return None
    detail = WITHHELD if redacted else _change_detail(sample)
    if check_mode:
        return f"the probe would change the target (nothing was changed, it ran in check mode): {module} {detail}"
    return f"the probe changed the target: {module} {detail}"


def _change_detail(sample: t.Mapping[str, t.Any]) -> str:
    """The probe's own words for what it changed: its actions (as ngrok_tunnel reports them), else its message."""
    actions = sample.get("actions")
    if isinstance(actions, list) and actions:
        return first_line("; ".join(str(action) for action in actions))
    if sample.get("msg"):
        return first_line(sample["msg"])
    return "reported changed: true"


def probe_invocation(module: str, args: t.Mapping[str, t.Any]) -> tuple[str, dict[str, t.Any]]:
    """The module to execute and its args, as the command and shell actions would pass them.

    `cmd` becomes the free-form command (ansible-core 2.18 does that when it loads a task, and its
    command module has no `cmd` option), and shell is the command module with `_uses_shell`, as the
    shell action runs it. Raises ValueError for args those actions refuse too.
    """
    fixed = dict(args)
    builtin = builtin_name(module)
    if builtin not in ("command", "shell"):
        return module, fixed
    if "cmd" in fixed:
        if fixed.get("_raw_params"):
            raise ValueError(f"{module}: give the command either as cmd or as _raw_params, not both")
        fixed["_raw_params"] = fixed.pop("cmd")
    if builtin == "shell":
        fixed["_uses_shell"] = True
        return "ansible.legacy.command", fixed
    return module, fixed


# --- plain words for types in messages ------------------------------------------------------------

_TYPE_WORDS = (("bool", "a boolean"), ("int", "a number"), ("float", "a number"), ("dict", "a mapping"),
               ("mapping", "a mapping"), ("list", "a list"), ("sequence", "a list"), ("tuple", "a list"),
               ("set", "a list"), ("str", "a string"), ("text", "a string"), ("unicode", "a string"),
               ("bytes", "a string"), ("date", "a date"), ("time", "a time"))
# a class as Python prints it (<class 'ansible...._AnsibleTaggedList'>, <class 'dict'>), an internal class's bare
# name, or a Python type name after "of type" (as the argument validator of ansible-core >= 2.19 writes it)
_TYPE_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>|\b(_?Ansible(?:Tagged|Unsafe|Vault)\w*|AnsibleUnicode|"
                        r"AnsibleMapping|AnsibleSequence)\b|(?<=of type )(str|dict|list|int|float|bool)\b")


def describe_type(value: t.Any) -> str:
    """'a number', 'a mapping', ... for a value, never the name of an internal class."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (str, bytes)):
        return "a string"
    if isinstance(value, t.Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    return "a value of an unsupported type"


def plain_type_names(message: str) -> str:
    """A validation message with Ansible's internal types (_AnsibleTaggedInt, AnsibleUnsafeText...) in plain words."""

    def word(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group).lower()
        for part, plain in _TYPE_WORDS:
            if part in name:
                return plain
        return "a value"

    return _TYPE_NAME.sub(word, message)


class CriterionError(ValueError):
    """A criterion that cannot be a conditional (wrong type or Jinja syntax)."""


@dataclass(frozen=True)
class Criterion:
    """One conditional and the figures it reads, as dotted paths such as result.latency_ms.p95."""

    expression: t.Any  # str, or bool as assert allows
    paths: tuple[str, ...]

    @property
    def text(self) -> str:
        return str(self.expression)


def parse_criterion(expression: t.Any) -> Criterion:
    """Checks the syntax of one criterion and finds the figures it reads; raises CriterionError."""
    if isinstance(expression, bool):
        return Criterion(expression, ())
    if not isinstance(expression, str) or not expression.strip():
        raise CriterionError(f"criterion {expression!r} must be a non-empty string (a conditional, as in "
                             f"ansible.builtin.assert) or a boolean, not {describe_type(expression)}")
    source = expression if "{{" in expression or "{%" in expression else "{{ (" + expression + ") }}"
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError as exc:
        raise CriterionError(f"criterion {expression!r} does not template: {exc.message}") from exc
    return Criterion(expression, tuple(_figure_paths(tree)))


def _figure_paths(tree: nodes.Node) -> list[str]:
    """Outermost attribute/index chains rooted at result, baseline or history, in order of appearance."""
    found: list[str] = []
    inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner:
            continue
        path = _chain(node, inner)
        if path and path.split(".", 1)[0].split("[", 1)[0] in (SAMPLE_VARIABLE, BASELINE_VARIABLE, HISTORY_VARIABLE) \
                and path not in found:
            found.append(path)
    return found


def _chain(node: nodes.Node, inner: set[int]) -> str | None:
    """'result.clients.by_name["emp-api"]' for a Getattr/Getitem chain; marks the inner nodes as seen."""
    parts: list[str] = []
    current = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append("." + current.attr)
        elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
            parts.append(f"[{current.arg.value!r}]")
        elif isinstance(current, nodes.Name):
            parts.append(current.name)
            break
        else:
            return None
        current = current.node
        inner.add(id(current))
    return "".join(reversed(parts))


def resolve_path(variables: t.Mapping[str, t.Any], path: str) -> t.Any:
    """The value at a dotted/indexed path, or None when any step is missing."""
    value: t.Any = variables
    for step in _split_path(path):
        try:
            if isinstance(value, t.Mapping):
                value = value[step]
            elif isinstance(value, (list, tuple)) and isinstance(step, int):
                value = value[step]
            else:
                return None
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _split_path(path: str) -> list[t.Any]:
    steps: list[t.Any] = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]"):
            literal = part[1:-1]
            steps.append(int(literal) if literal.lstrip("-").isdigit() else literal.strip("'\""))
        else:
            steps.append(part)
    return steps


def is_task_result(value: t.Any) -> bool:
    """Whether evidence looks like a registered task result (so the sample rules apply to it)."""
    return isinstance(value, t.Mapping) and any(key in value for key in ("failed", "skipped", "unreachable", "rc", "changed"))


def classify_result(result: t.Mapping[str, t.Any]) -> tuple[str | None, str | None]:
    """(ERROR | NO_DATA | None, why) for a probe result; None means it measured something."""
    if result.get("unreachable"):
        return ERROR, f"host unreachable: {first_line(result.get('msg'))}"
    if result.get("skipped"):
        return NO_DATA, first_line(result.get("msg") or result.get("skip_reason") or "probe skipped")
    if result.get("reachable") is False:
        return ERROR, first_line(result.get("error") or result.get("msg") or _first_problem(result) or "target not reachable")
    if result.get("failed") and ("module_stderr" in result or str(result.get("msg", "")).startswith("MODULE FAILURE")):
        # the module crashed or did not return JSON (ansible-core 2.18 adds the crash's rc)
        return ERROR, f"probe crashed: {last_line(result.get('module_stderr')) or first_line(result.get('msg'))}"
    if result.get("failed") and not measurement_keys(result):
        if not result.get("msg") and result.get("exception"):
            return ERROR, f"probe crashed: {exception_text(result['exception'])}"
        return ERROR, first_line(result.get("msg") or "probe failed")
    return None, None


def measurement_keys(result: t.Mapping[str, t.Any]) -> list[str]:
    return [key for key in result if key not in _NOT_MEASUREMENTS and not str(key).startswith("_ansible")]


def _first_problem(result: t.Mapping[str, t.Any]) -> str | None:
    problems = result.get("problems")
    if isinstance(problems, list) and problems:
        return str(problems[0])
    return None


def probe_verdict(result: t.Mapping[str, t.Any]) -> str | None:
    """Why the probe itself says the sample is bad (failed or healthy: false), or None."""
    if result.get("healthy") is False or result.get("failed"):
        return first_line(_first_problem(result) or result.get("msg") or "probe reported unhealthy")
    return None


def exception_text(exception: t.Any) -> str:
    """The message of a module's uncaught exception: ansible-core >= 2.19 passes an error summary object."""
    event = getattr(exception, "event", None)
    message = getattr(event, "msg", None)
    if message:
        return str(message)
    return last_line(exception) or "unknown error"


def last_line(value: t.Any, limit: int = 300) -> str:
    """The last non-empty line, where a traceback names its exception."""
    lines = [line for line in str(value or "").splitlines() if line.strip()]
    return first_line(lines[-1], limit) if lines else ""


def first_line(value: t.Any, limit: int = 300) -> str:
    text = str(value if value is not None else "").strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class Schedule:
    samples: int
    interval: float


def plan_schedule(samples: int | None, interval: float | None, duration: float | None) -> Schedule:
    """samples every interval seconds, or spread over duration seconds; raises ValueError."""
    if samples is not None and samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if interval is not None and interval < 0:
        raise ValueError(f"interval must not be negative, got {interval}")
    if duration is None:
        return Schedule(samples or 1, 10.0 if interval is None else float(interval))
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if samples is not None and interval is not None:
        raise ValueError("give at most two of samples, interval and duration: with duration, "
                         "samples or interval is derived from the other")
    if samples is not None:
        return Schedule(samples, float(duration) / (samples - 1) if samples > 1 else 0.0)
    step = 10.0 if interval is None else float(interval)
    if step <= 0:
        raise ValueError("interval must be positive when duration is given")
    # a sample at the start and one at the end of the window
    return Schedule(math.floor(duration / step + 1e-9) + 1, step)


@dataclass
class Limits:
    failure_limit: int = 0
    consecutive_error_limit: int = 3
    on_no_data: str = "fail"


@dataclass
class Tally:
    planned: int
    passed: int = 0
    failed: int = 0
    errors: int = 0
    no_data: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    outcomes: list[str] = field(default_factory=list)
    # why the first sample that changed the target (outside check mode) did: the gate stops there, NO-GO
    target_changed: str | None = None

    @property
    def taken(self) -> int:
        return len(self.outcomes)

    @property
    def remaining(self) -> int:
        return max(0, self.planned - self.taken)

    def add(self, outcome: str, error: str | None = None) -> None:
        self.outcomes.append(outcome)
        if outcome == ERROR:
            self.errors += 1
            self.consecutive_errors += 1
            self.last_error = error or self.last_error
            return
        if outcome == NO_DATA:
            self.no_data += 1
            return
        self.consecutive_errors = 0
        if outcome == PASSED:
            self.passed += 1
        else:
            self.failed += 1


def decide(tally: Tally, limits: Limits) -> str | None:
    """The decision once it can no longer change, else None (keep sampling)."""
    if tally.target_changed or tally.failed > limits.failure_limit \
            or tally.consecutive_errors > limits.consecutive_error_limit:
        return NO_GO
    if tally.remaining == 0:
        return final_decision(tally, limits)
    # GO is certain only if every remaining sample failing or erroring could not reach a limit.
    if (tally.passed > 0
            and tally.failed + tally.remaining <= limits.failure_limit
            and tally.consecutive_errors + tally.remaining <= limits.consecutive_error_limit):
        return GO
    return None


def final_decision(tally: Tally, limits: Limits) -> str:
    if tally.target_changed or tally.failed > limits.failure_limit \
            or tally.consecutive_errors > limits.consecutive_error_limit:
        return NO_GO
    if tally.passed > 0:
        return GO
    if tally.failed or tally.errors:
        # a probe that errors every time (or never passes) never yields GO
        return NO_GO
    return GO if limits.on_no_data == "pass" else NO_GO


@dataclass
class CriterionOutcome:
    """How one criterion fared over the samples, with the figures of the samples where it failed."""

    criterion: Criterion
    held: int = 0
    failed: int = 0
    errors: int = 0
    failing_figures: list[dict[str, t.Any]] = field(default_factory=list)
    last_error: str | None = None

    def as_dict(self, redacted: bool = False) -> dict[str, t.Any]:
        evaluated = self.held + self.failed + self.errors
        if not evaluated:
            outcome = "not evaluated"
        elif self.failed or self.errors:
            outcome = "failed"
        else:
            outcome = "held"
        data: dict[str, t.Any] = {"criterion": self.criterion.text, "outcome": outcome, "held": self.held,
                                  "failed": self.failed, "errors": self.errors, "evaluated": evaluated}
        if self.last_error:
            data["error"] = WITHHELD if redacted else self.last_error
        return data


def format_figure(value: t.Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "missing"
    text = str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def describe_failures(outcome: CriterionOutcome, measured: int, redacted: bool = False) -> str:
    """'result.latency_ms.p95 < 200 did not hold in 3 of 5 samples (result.latency_ms.p95 was 312, 290, 305)';
    without the figures and errors when redacted."""
    count = outcome.failed + outcome.errors
    sentence = f"{outcome.criterion.text} did not hold in {count} of {measured} measured sample{'s' if measured != 1 else ''}"
    if redacted:
        return sentence
    figures: list[str] = []
    for path in outcome.criterion.paths:
        values = [format_figure(sample.get(path)) for sample in outcome.failing_figures if path in sample]
        if values:
            shown = ", ".join(values[:5]) + (", …" if len(values) > 5 else "")
            figures.append(f"{path} was {shown}")
    if figures:
        sentence += " (" + "; ".join(figures) + ")"
    if outcome.last_error and not outcome.failed:
        sentence += f": {outcome.last_error}"
    return sentence


def build_reason(decision: str, tally: Tally, limits: Limits, outcomes: list[CriterionOutcome],
                 unhealthy: list[str], evidence: bool, stopped_early: bool, redacted: bool = False) -> str:
    """The sentence a person can act on, with figures; with none of them, nor the probe's words, when redacted."""
    if redacted:
        tally = dataclass_replace(tally, last_error=WITHHELD if tally.last_error else None)
    measured = tally.passed + tally.failed
    what = "the evidence" if evidence else "the probe"
    parts: list[str] = []
    if tally.target_changed:
        # every later sample would measure what the probe itself repaired
        parts.append(f"{tally.target_changed}; a gate observes and never repairs, so it stopped at the first sample "
                     f"that changed the target (let a task before the gate make the target present)")
    elif tally.consecutive_errors > limits.consecutive_error_limit:
        parts.append(f"{what} could not measure in {tally.consecutive_errors} consecutive samples "
                     f"(consecutive_error_limit {limits.consecutive_error_limit}): {tally.last_error}")
    elif measured == 0 and tally.errors:
        parts.append(f"{what} could not measure in any of {tally.taken} sample{'s' if tally.taken != 1 else ''}: {tally.last_error}")
    elif measured == 0:
        parts.append(f"no data: {tally.no_data} of {tally.taken} sample{'s' if tally.taken != 1 else ''} produced nothing to "
                     f"evaluate ({tally.last_error or 'skipped'}); on_no_data is {limits.on_no_data}")
    if unhealthy:
        # the probe's own sentence says most: lead with it
        lead = "its problems are " + WITHHELD if redacted else unhealthy[0]
        parts.append(f"{lead} (the probe reported unhealthy in {len(unhealthy)} of {measured} measured sample"
                     f"{'s' if measured != 1 else ''})")
    failing = sorted((o for o in outcomes if o.failed or o.errors), key=lambda o: -(o.failed + o.errors))
    for outcome in failing:
        if unhealthy and outcome.criterion.paths == (f"{SAMPLE_VARIABLE}.healthy",) and not outcome.errors:
            continue  # "result.healthy did not hold" only repeats the probe's verdict
        parts.append(describe_failures(outcome, measured, redacted))
    if decision == GO:
        criteria = f"{len(outcomes)} criteri{'a' if len(outcomes) != 1 else 'on'}"
        held = f"all {criteria} held in {tally.passed} of {tally.taken} sample{'s' if tally.taken != 1 else ''}"
        if measured == 0:
            held = parts.pop(0) if parts else "no data"
        elif tally.failed:
            held = (f"criteria held in {tally.passed} of {measured} measured samples; {tally.failed} failed "
                    f"within failure_limit {limits.failure_limit}")
        elif tally.errors:
            held += f" ({tally.errors} could not measure, within consecutive_error_limit {limits.consecutive_error_limit})"
        sentence = held + ("; " + "; ".join(parts) if parts and measured else "")
    else:
        if not parts:
            parts.append(f"no sample passed ({tally.failed} failed, {tally.errors} errors, {tally.no_data} without data)")
        sentence = "; ".join(parts)
        if tally.failed > limits.failure_limit:
            sentence += f" (failure_limit {limits.failure_limit})"
    if stopped_early and tally.remaining:
        sentence += f"; stopped after {tally.taken} of {tally.planned} samples, the decision could no longer change"
    return sentence
