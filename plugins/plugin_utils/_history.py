# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The history index: every gate's figures from past runs, and baselines computed from them (docs/history.md).

The go_no_go callback appends one compact JSON line per gate record to
``<report_dir>/.history.<environment>.<gate>.jsonl`` (run id, release, decision, the run's value of each
figure its criteria read). A gate with ``history: {runs, decision, aggregate}`` reads only its own file to
get ``history.<figure>``: the aggregate of that figure over the last ``runs`` runs that decided ``decision``.
Pure Python, no Ansible import.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import statistics
import typing as t
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._gate import HISTORY_VARIABLE, Criterion

# beside the run folders, as the file lock is: a file whose name is no run id, never a folder a reader lists
HISTORY_PREFIX = ".history"
AGGREGATES = ("median", "p90", "max")
HISTORY_KEYS = ("runs", "decision", "aggregate")
DEFAULT_RUNS = 5
MAX_RUNS = 1000
_RESULT_PREFIX = "result."
# "result.latency_ms.p95 <=+10%": the figure, a comparison, a signed change (in % or in the figure's unit)
_RELATIVE = re.compile(r"^\s*result((?:\.[A-Za-z_]\w*)+)\s*(<=|>=|<|>)\s*([+-]\d+(?:\.\d+)?)\s*(%?)\s*$")


class HistoryError(ValueError):
    """A bad history option, fallback or relative threshold: the message names it."""


@dataclass(frozen=True)
class HistoryOptions:
    runs: int = DEFAULT_RUNS
    decision: str = R.GO
    aggregate: str = "median"


@dataclass
class Baseline:
    """What a gate compares with: ``values`` as ``history`` sees them, where they came from, and why not."""

    options: HistoryOptions
    found: int  # runs found with the decision asked for
    run_ids: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    source: str = "history"  # history, fallback, or none (too few runs and no fallback)
    reason: str | None = None  # why the history is not used, when it is not

    @property
    def values(self) -> dict[str, t.Any]:
        return nested(self.figures)

    def as_record(self) -> dict[str, t.Any]:
        return {"runs": self.options.runs, "decision": self.options.decision, "aggregate": self.options.aggregate,
                "found": self.found, "run_ids": list(self.run_ids), "figures": dict(self.figures),
                "source": self.source, "reason": self.reason}


# --- options -------------------------------------------------------------------------------------------


def parse_options(value: t.Any) -> HistoryOptions:
    """``history: {runs: 5, decision: GO, aggregate: median | p90 | max}``; raises HistoryError."""
    if not isinstance(value, t.Mapping):
        raise HistoryError(f"history: a mapping {{runs, decision, aggregate}}, not {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in HISTORY_KEYS)
    if unknown:
        raise HistoryError(f"history: unknown key {', '.join(unknown)} (it has {', '.join(HISTORY_KEYS)})")
    runs = value.get("runs", DEFAULT_RUNS)
    if isinstance(runs, bool) or not isinstance(runs, int) and not (isinstance(runs, str) and runs.isdigit()):
        raise HistoryError(f"history.runs: {runs!r} is not a whole number")
    if not 1 <= int(runs) <= MAX_RUNS:
        raise HistoryError(f"history.runs: {runs} is not between 1 and {MAX_RUNS}")
    decision = str(value.get("decision", R.GO))
    if decision not in (R.GO, R.NO_GO):
        raise HistoryError(f"history.decision: {decision!r} is not one of {R.GO}, {R.NO_GO}")
    aggregate = str(value.get("aggregate", "median"))
    if aggregate not in AGGREGATES:
        raise HistoryError(f"history.aggregate: {aggregate!r} is not one of {', '.join(AGGREGATES)}")
    return HistoryOptions(int(runs), decision, aggregate)


def parse_fallback(value: t.Any) -> dict[str, float]:
    """``history_fallback: {latency_ms.p95: 250}``: the value of each figure when the history is too short."""
    if value is None:
        return {}
    if not isinstance(value, t.Mapping):
        raise HistoryError(f"history_fallback: a mapping of figure to number, not {type(value).__name__}")
    fallback = {}
    for key, number in value.items():
        figure = str(key)[len(_RESULT_PREFIX):] if str(key).startswith(_RESULT_PREFIX) else str(key)
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise HistoryError(f"history_fallback.{key}: {number!r} is not a finite number")
        fallback[figure] = float(number)
    return fallback


def expand_relative(criterion: t.Any) -> t.Any:
    """``result.x <=+10%`` -> ``result.x <= history.x * 1.1``; ``result.x >=-5`` -> ``result.x >= history.x + -5``.
    Anything else is returned as it is."""
    if not isinstance(criterion, str):
        return criterion
    match = _RELATIVE.match(criterion)
    if match is None:
        return criterion
    path, operator, change, percent = match.groups()
    number = float(change)
    if percent:
        return f"result{path} {operator} {HISTORY_VARIABLE}{path} * {1 + number / 100:g}"
    return f"result{path} {operator} {HISTORY_VARIABLE}{path} + {number:g}"


def history_paths(criterion: Criterion) -> list[str]:
    """The paths of a criterion that read history ('history.latency_ms.p95')."""
    return [p for p in criterion.paths if p.startswith(HISTORY_VARIABLE + ".")]


def uses_history(paths: t.Iterable[str]) -> list[str]:
    """The history figures a criterion reads ('latency_ms.p95' for history.latency_ms.p95)."""
    prefix = HISTORY_VARIABLE + "."
    return [p[len(prefix):] for p in paths if p.startswith(prefix)]


# --- the index -----------------------------------------------------------------------------------------


def gate_file(report_dir: Path, environment: str, gate: str) -> Path:
    """One file per environment and gate, ``<report_dir>/.history.<environment>.<gate>.jsonl`` (each part
    percent-encoded, dots too), so a lookup reads that gate's lines only and no run folder is mistaken for it."""
    return report_dir / f"{HISTORY_PREFIX}.{_file_part(environment)}.{_file_part(gate)}.jsonl"


def _file_part(name: str) -> str:
    return quote(name, safe="").replace(".", "%2E") or "_"


def run_figures(gate: t.Mapping[str, t.Any]) -> dict[str, float]:
    """The run's value of each numeric figure the criteria read on ``result``: the median over its measured samples."""
    if gate.get("redacted"):
        return {}
    values: dict[str, list[float]] = {}
    for sample in gate.get("samples") or []:
        if not isinstance(sample, t.Mapping) or sample.get("outcome") not in ("passed", "failed"):
            continue
        for path, value in (sample.get("figures") or {}).items():
            number = _as_number(value)
            if str(path).startswith(_RESULT_PREFIX) and number is not None:
                values.setdefault(str(path)[len(_RESULT_PREFIX):], []).append(number)
    return {path: round(statistics.median(numbers), 6) for path, numbers in values.items()}


def _as_number(value: t.Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def entry_of(gate: t.Mapping[str, t.Any], run_id: str, release: t.Any, versions: t.Sequence[str]) -> dict[str, t.Any]:
    """One compact line of the index for one gate record."""
    waiver = gate.get("waiver") if isinstance(gate.get("waiver"), t.Mapping) else None
    return {"run_id": run_id, "ts": gate.get("ended"), "gate": gate.get("name"), "host": gate.get("host"),
            "component": gate.get("component"), "release": release, "versions": list(versions),
            "decision": gate.get("decision"),
            "measured_decision": waiver.get("measured_decision") if waiver else gate.get("decision"),
            "figures": run_figures(gate)}


def append_entry(path: Path, entry: t.Mapping[str, t.Any]) -> None:
    """Appends one line atomically: one write of the whole line under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)  # closing releases the lock


def read_entries(path: Path) -> list[dict[str, t.Any]]:
    """The index lines of one gate, oldest first; a line cut by a kill is skipped."""
    return list(reversed(list(newest_first(path))))


def newest_first(path: Path) -> t.Iterator[dict[str, t.Any]]:
    """The index lines of one gate, newest first, each parsed only when it is reached (a baseline of the last few
    runs parses only their lines); a line cut by a kill is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in reversed(data.split(b"\n")):
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


# --- baselines -----------------------------------------------------------------------------------------


def aggregate(values: t.Sequence[float], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "p90":
        ordered = sorted(values)
        rank = 0.9 * (len(ordered) - 1)  # linear interpolation between closest ranks
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return float(statistics.median(values))


def baseline(entries: t.Iterable[t.Mapping[str, t.Any]], options: HistoryOptions, exclude_run: str | None = None
             ) -> Baseline:
    """The last ``options.runs`` runs that decided ``options.decision`` among ``entries`` (newest first), and each
    figure's aggregate over them. A run with several entries (one per host) counts once, all its entries' figures
    kept (a run's entries are written together, so the walk stops at the first entry of one run too many)."""
    chosen: list[str] = []
    figures: dict[str, list[float]] = {}
    for entry in entries:
        run_id = str(entry.get("run_id"))
        if run_id == exclude_run or entry.get("decision") != options.decision:
            continue
        if run_id not in chosen:
            if len(chosen) == options.runs:
                break
            chosen.append(run_id)
        for path, value in (entry.get("figures") or {}).items():
            number = _as_number(value)
            if number is not None:
                figures.setdefault(str(path), []).append(number)
    values = {path: round(aggregate(numbers, options.aggregate), 6) for path, numbers in figures.items()}
    return Baseline(options, len(chosen), chosen, values)


def lookup(report_dir: Path, environment: str, gate: str, options: HistoryOptions, fallback: t.Mapping[str, float],
           exclude_run: str | None = None) -> Baseline:
    """The baseline of a gate from the index, with the fallback when too few runs are recorded."""
    found = baseline(newest_first(gate_file(report_dir, environment, gate)), options, exclude_run)
    if found.found >= options.runs:
        return found
    short = (f"history has {found.found} of the {options.runs} {options.decision} runs needed for gate {gate} in "
             f"environment {environment}")
    if fallback:
        found.figures, found.source, found.reason = dict(fallback), "fallback", f"{short}: history_fallback used"
    else:
        found.figures, found.source, found.reason = {}, "none", short
    return found


def nested(figures: t.Mapping[str, float]) -> dict[str, t.Any]:
    """{'latency_ms.p95': 1} -> {'latency_ms': {'p95': 1}}, so a criterion reads history.latency_ms.p95."""
    tree: dict[str, t.Any] = {}
    for path, value in figures.items():
        node = tree
        *parents, last = path.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[last] = value
    return tree


def skip_reason(missing: t.Sequence[str], found: Baseline) -> str:
    """Why a criterion that reads history was not evaluated."""
    if found.source == "none":
        return f"{found.reason}; the criterion was skipped (history_fallback gives a value to judge it against)"
    where = "history_fallback" if found.source == "fallback" else (
        f"the last {found.found} {found.options.decision} runs")
    return f"no value of {', '.join('history.' + m for m in missing)} in {where}; the criterion was skipped"


def split_criteria(criteria: t.Sequence[Criterion], found: Baseline | None
                   ) -> tuple[list[Criterion], list[dict[str, t.Any]]]:
    """(the criteria to evaluate, the skipped ones as criteria records): a criterion that reads a history figure
    the baseline has no value for is skipped with its reason, never evaluated against nothing."""
    active: list[Criterion] = []
    skipped: list[dict[str, t.Any]] = []
    values = found.figures if found is not None else {}
    for criterion in criteria:
        missing = [path for path in uses_history(criterion.paths) if path not in values]
        if missing and found is not None:
            skipped.append({"criterion": criterion.text, "outcome": "skipped", "held": 0, "failed": 0, "errors": 0,
                            "evaluated": 0, "reason": skip_reason(missing, found)})
        else:
            active.append(criterion)
    return active, skipped
