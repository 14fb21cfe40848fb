# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The post-deployment watch of emp.deploy.watch, free of any Ansible runtime so it unit-tests alone.

A watch has one window (started .. ends) recorded in <run_dir>/watch.json. Each layer runs on a grid
anchored at the start: alert checks every alert interval from the start, hourly checks every hourly
interval after the start, final checks once at the end. A pass runs every layer whose latest grid slot
has not run yet, so missed slots (a cron job every 5 minutes, a watch killed for an hour) coalesce into
one run instead of a burst, and a restarted watch resumes the same window.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ansible_collections.emp.deploy.plugins.module_utils._prometheus import (
    PromClient,
    PromError,
    parse_duration,
    reduce_values,
)
from ansible_collections.emp.deploy.plugins.plugin_utils._gate import (
    BASELINE_VARIABLE,
    CriterionError,
    first_line,
    parse_criterion,
)
from ansible_collections.emp.deploy.plugins.plugin_utils._records import GO, NO_GO

SCHEMA_VERSION = 1
STATE_FILE = "watch.json"
BASELINE_FILE = "baseline.json"

ALERT = "alert"
HOURLY = "hourly"
FINAL = "final"
LAYERS = (ALERT, HOURLY, FINAL)

NO_DATA = "NO-DATA"
DECISIONS = (GO, NO_GO, NO_DATA)

IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILED = "FAILED"

BREACH = "breach"
NO_DATA_ALERT = "no_data"

REDUCERS = ("last", "min", "max", "avg", "sum", "increase")
# A range query asks for about this many points, whatever its length (Prometheus caps a series at 11,000).
RANGE_POINTS = 240
# The state keeps this many recent errors per check: enough to show a NO-DATA alert's streak.
KEPT_ERRORS = 10


class WatchError(ValueError):
    """Bad watch options or an unreadable state file: the task fails with this sentence."""


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(value: t.Any, what: str) -> float:
    """A positive duration in seconds from '24h', '90s', 300..."""
    try:
        parsed = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise WatchError(f"{what}: {exc}") from None
    if not parsed > 0:
        raise WatchError(f"{what} must be a positive duration, got {value!r}")
    return float(parsed)


# --- the checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One watched check: a PromQL query (or a probe module) and the criteria its answer must meet."""

    name: str
    layer: str
    component: str
    checklist_ref: str | None
    criteria: tuple[t.Any, ...]
    query: str | None = None
    probe: dict[str, t.Any] | None = None
    range_s: float | None = None
    reduce: str = "last"
    consecutive_error_limit: int = 3
    mode: str = "enforce"
    baseline: str | None = None  # the baseline.json figure bound as `baseline`

    @property
    def reads_baseline(self) -> bool:
        return any(BASELINE_VARIABLE in (path.split(".", 1)[0].split("[", 1)[0] for path in parse_criterion(c).paths)
                   for c in self.criteria)

    @property
    def reads_baseline_value(self) -> bool:
        """A criterion compares with the baseline's figure (not only its series labels, as new_error_patterns)."""
        return any(path == f"{BASELINE_VARIABLE}.value" or path.startswith(f"{BASELINE_VARIABLE}.value")
                   for c in self.criteria for path in parse_criterion(c).paths)


_CHECK_KEYS = frozenset(("name", "layer", "component", "checklist_ref", "query", "probe", "range", "reduce",
                         "criteria", "consecutive_error_limit", "mode", "baseline"))


def parse_checks(raw: t.Any, default_limit: int, window_s: float) -> list[Check]:
    """The checks option as Check objects; raises WatchError naming the check and what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise WatchError("checks must be a non-empty list of checks")
    checks: list[Check] = []
    for index, item in enumerate(raw):
        check = _parse_check(item, index, default_limit, window_s)
        if any(other.name == check.name for other in checks):
            raise WatchError(f"check {check.name!r} is given twice: check names must be unique")
        checks.append(check)
    return checks


def _parse_check(item: t.Any, index: int, default_limit: int, window_s: float) -> Check:
    if not isinstance(item, t.Mapping):
        raise WatchError(f"checks[{index}] must be a mapping, not {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise WatchError(f"checks[{index}] needs a name")
    where = f"check {name!r}"
    unknown = sorted(set(item) - _CHECK_KEYS)
    if unknown:
        raise WatchError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_CHECK_KEYS))})")
    layer = item.get("layer", ALERT)
    if layer not in LAYERS:
        raise WatchError(f"{where}: layer must be one of {', '.join(LAYERS)}, got {layer!r}")
    if not item.get("component"):
        raise WatchError(f"{where} needs a component (what an alert rolls back)")
    query, probe = item.get("query"), item.get("probe")
    if bool(query) == bool(probe):
        raise WatchError(f"{where} needs exactly one of query (PromQL) and probe ({{module, args}})")
    if probe is not None and (not isinstance(probe, t.Mapping) or not probe.get("module")):
        raise WatchError(f"{where}: probe must be a mapping with a module (and args)")
    criteria = item.get("criteria")
    if isinstance(criteria, (str, bool)):
        criteria = [criteria]
    if not isinstance(criteria, list) or not criteria:
        raise WatchError(f"{where} needs criteria (a conditional or a list of them)")
    for criterion in criteria:
        try:
            parse_criterion(criterion)
        except CriterionError as exc:
            raise WatchError(f"{where}: {exc}") from None
    reduce = item.get("reduce") or "last"
    if reduce not in REDUCERS:
        raise WatchError(f"{where}: reduce must be one of {', '.join(REDUCERS)}, got {reduce!r}")
    limit = item.get("consecutive_error_limit", default_limit)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise WatchError(f"{where}: consecutive_error_limit must be a number >= 0, got {limit!r}")
    mode = item.get("mode") or "enforce"
    if mode not in ("enforce", "warn", "observe"):
        raise WatchError(f"{where}: mode must be enforce, warn or observe, got {mode!r}")
    range_s = None
    if item.get("range"):
        range_s = window_s if item["range"] == "window" else seconds(item["range"], f"{where}: range")
    return Check(name=name, layer=layer, component=str(item["component"]), checklist_ref=item.get("checklist_ref"),
                 criteria=tuple(criteria), query=query or None,
                 probe={"module": probe["module"], "args": dict(probe.get("args") or {}),
                        **({"check_mode": probe["check_mode"]} if "check_mode" in probe else {})} if probe else None,
                 range_s=range_s, reduce=reduce, consecutive_error_limit=limit, mode=mode,
                 baseline=item.get("baseline") or name)


# --- the state file ------------------------------------------------------------------------------------


def new_state(run_id: str, window_s: float, intervals: dict[str, float], now: float) -> dict[str, t.Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "window_s": window_s,
        "started": iso(now),
        "started_epoch": now,
        "ends": iso(now + window_s),
        "ends_epoch": now + window_s,
        "intervals": dict(intervals),
        "last_run": {layer: None for layer in LAYERS},  # epoch of the grid slot each layer last ran for
        "passes": 0,
        "checks": {},
        "alerts": [],
        "final": None,
        "verdict": IN_PROGRESS,
        "done": False,
        "updated": iso(now),
    }


def load_state(path: str) -> dict[str, t.Any] | None:
    """The recorded watch, None when there is none yet; WatchError when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise WatchError(f"cannot read the watch state {path}: {exc} (move it away to start a new window)") from None
    if not isinstance(state, dict) or state.get("schema_version") != SCHEMA_VERSION:
        raise WatchError(f"{path} is not a watch state of schema version {SCHEMA_VERSION}")
    return state


def save_state(path: str, state: t.Mapping[str, t.Any]) -> None:
    """Atomically: a watch killed while writing leaves the previous pass's state, never half of one."""
    write_json(path, state)


def write_json(path: str, data: t.Any) -> None:
    directory = os.path.dirname(path) or "."
    handle_fd, partial = tempfile.mkstemp(dir=directory, prefix=".watch-", suffix=".tmp")
    try:
        with os.fdopen(handle_fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def check_counters(state: dict[str, t.Any], check: Check) -> dict[str, t.Any]:
    return state["checks"].setdefault(check.name, {
        "layer": check.layer, "component": check.component, "runs": 0, "go": 0, "no_go": 0, "no_data": 0,
        "consecutive_errors": 0, "recent_errors": [], "alerted": None, "last": None,
    })


# --- scheduling ----------------------------------------------------------------------------------------


def slot(state: t.Mapping[str, t.Any], layer: str, now: float) -> float | None:
    """The latest grid time of a layer at `now` (None when the layer has no slot yet or any more)."""
    started, ends = state["started_epoch"], state["ends_epoch"]
    if layer == FINAL:
        return ends if now >= ends else None
    interval = state["intervals"][layer]
    first = 0 if layer == ALERT else 1  # alerts at the start; the first hourly check one interval in
    index = math.floor((min(now, ends) - started) / interval + 1e-9)
    if index < first:
        return None
    at = started + index * interval
    if at >= ends:  # the end of the window is the final layer's
        index = math.ceil((ends - started) / interval - 1e-9) - 1
        at = started + index * interval
        if index < first:
            return None
    return at


def due_layers(state: t.Mapping[str, t.Any], now: float) -> list[str]:
    """The layers to run now: those whose latest slot has not run yet."""
    if state.get("done"):
        return []
    if now >= state["ends_epoch"]:  # alert and hourly slots left over at the end are the final layer's now
        return [] if state["last_run"].get(FINAL) is not None else [FINAL]
    due = []
    for layer in LAYERS:
        at = slot(state, layer, now)
        last = state["last_run"].get(layer)
        if at is not None and (last is None or last < at):
            due.append(layer)
    return due


def next_due(state: t.Mapping[str, t.Any], now: float) -> float | None:
    """When the next layer is due (now, when one is due already); None once the watch is done."""
    if state.get("done"):
        return None
    if due_layers(state, now):
        return now
    started, ends = state["started_epoch"], state["ends_epoch"]
    candidates = [ends]
    for layer in (ALERT, HOURLY):
        interval = state["intervals"][layer]
        following = started + (math.floor((now - started) / interval + 1e-9) + 1) * interval
        if following < ends:
            candidates.append(following)
    return min(candidates)


def mark_run(state: dict[str, t.Any], layers: t.Iterable[str], now: float) -> None:
    for layer in layers:
        state["last_run"][layer] = slot(state, layer, now)


# --- outcomes ------------------------------------------------------------------------------------------


def record_outcome(state: dict[str, t.Any], check: Check, decision: str, value: t.Any, reason: str,
                   now: float) -> str | None:
    """Counts one result; returns the kind of alert it raises (BREACH, NO_DATA_ALERT) or None.

    A check alerts once per streak: it is re-armed when it passes again. A NO-DATA alert follows the
    gate's accounting, after more than consecutive_error_limit consecutive passes that could not measure.
    """
    counters = check_counters(state, check)
    counters["runs"] += 1
    counters["last"] = {"at": iso(now), "decision": decision, "value": value, "reason": reason}
    if decision == NO_DATA:
        counters["no_data"] += 1
        counters["consecutive_errors"] += 1
        counters["recent_errors"] = (counters["recent_errors"] + [{"at": iso(now), "reason": reason}])[-KEPT_ERRORS:]
        if (check.layer != FINAL and counters["alerted"] is None
                and counters["consecutive_errors"] > check.consecutive_error_limit):
            counters["alerted"] = NO_DATA_ALERT
            return NO_DATA_ALERT
        return None
    counters["consecutive_errors"] = 0
    counters["recent_errors"] = []
    if decision == GO:
        counters["go"] += 1
        counters["alerted"] = None
        return None
    counters["no_go"] += 1
    if check.layer != FINAL and counters["alerted"] != BREACH:
        counters["alerted"] = BREACH
        return BREACH
    return None


def add_alert(state: dict[str, t.Any], check: Check, kind: str, reason: str, now: float,
              enforced: bool) -> dict[str, t.Any]:
    alert = {"check": check.name, "component": check.component, "layer": check.layer, "kind": kind,
             "reason": reason, "at": iso(now), "enforced": enforced}
    state["alerts"].append(alert)
    if enforced and kind == BREACH:
        # the component is rolled back (or a rollback is planned): this window's outcome is decided
        state["done"] = True
    return alert


def verdict(state: t.Mapping[str, t.Any]) -> str:
    """FAILED after any alert or a final criterion that is not GO; SUCCESS only at the end with none."""
    if state["alerts"]:
        return FAILED
    final = state.get("final")
    if final is None:
        return IN_PROGRESS
    return SUCCESS if final["results"] and all(r["decision"] == GO for r in final["results"]) else FAILED


# --- measuring -----------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """What one query answered, as emp.deploy.metric_query returns it, or why it could not measure."""

    result: dict[str, t.Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    fatal: bool = False  # bad PromQL or refused credentials: not a passing outage
    duration_ms: float = 0.0
    extra: dict[str, t.Any] = field(default_factory=dict)


def client_from_options(prometheus: t.Mapping[str, t.Any]) -> PromClient:
    url = prometheus.get("url")
    if not url:
        raise WatchError("prometheus.url is required (the Prometheus HTTP API root, e.g. http://127.0.0.1:9090)")
    try:
        return PromClient(url, headers=prometheus.get("headers") or None,
                          bearer_token=prometheus.get("bearer_token") or None, dataset=prometheus.get("dataset") or None,
                          timeout=float(prometheus.get("timeout") or 10.0),
                          validate_certs=prometheus.get("validate_certs", True), ca_path=prometheus.get("ca_path") or None)
    except ValueError as exc:
        raise WatchError(f"prometheus: {exc}") from None


def result_dict(answer: t.Any) -> dict[str, t.Any]:
    """A PromResult as the dict metric_query returns (what criteria see as `result`)."""
    return {"result_type": answer.result_type, "series": answer.series, "empty": answer.empty,
            "value": answer.value, "special": answer.special, "warnings": list(answer.warnings or []),
            "healthy": True}


def run_query(client: t.Any, promql: str, now: float, range_s: float | None = None,
              reduce: str = "last") -> Measurement:
    """One query: instant at `now`, or over the `range_s` seconds before it reduced by `reduce`."""
    try:
        if range_s:
            step = max(1.0, range_s / RANGE_POINTS)
            answer = client.query_range(promql, start=now - range_s, end=now, step=step)
            result = result_dict(answer)
            if len(answer.series) == 1:
                values = [float(point[1]) for point in answer.series[0]["values"] if _finite(point[1])]
                result["value"] = reduce_values(values, reduce) if values else None
        else:
            result = result_dict(client.query(promql, at=now))
    except PromError as exc:
        return Measurement(error=str(exc), error_kind=exc.kind, fatal=not exc.retryable)
    return Measurement(result=result)


def _finite(value: t.Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def unmeasured_reason(result: t.Mapping[str, t.Any]) -> str | None:
    """Why a query answer cannot be judged: no series (never a silent 0), NaN/Inf, several series."""
    if result.get("empty"):
        return "could not measure: the query returned no series (nothing scraped, or no such metric)"
    if result.get("special"):
        return f"could not measure: the query returned {result['special']}"
    if result.get("value") is None:
        count = len(result.get("series") or [])
        return f"could not measure: the query returned {count} series, not one figure (aggregate it, e.g. max(...))"
    return None


# --- the baseline --------------------------------------------------------------------------------------


def capture_baseline(client: t.Any, queries: t.Mapping[str, t.Any], window_s: float, now: float) -> dict[str, t.Any]:
    """Every baseline query over the window before now; an error is recorded in its figure, never raised."""
    figures: dict[str, t.Any] = {}
    for name, spec in queries.items():
        spec = {"query": spec} if isinstance(spec, str) else dict(spec or {})
        reduce = spec.get("reduce") or "avg"
        figure: dict[str, t.Any] = {"query": spec.get("query"), "reduce": reduce, "value": None, "empty": None,
                                    "special": None, "labels": [], "error": None}
        if not spec.get("query") or reduce not in REDUCERS:
            figure["error"] = f"baseline {name!r} needs a query and reduce in {', '.join(REDUCERS)}"
        else:
            measured = run_query(client, spec["query"], now, window_s, reduce)
            if measured.result is None:
                figure["error"] = measured.error
            else:
                answer = measured.result
                figure.update(value=answer["value"], empty=answer["empty"], special=answer["special"],
                              labels=[series.get("labels", {}) for series in answer["series"][:200]])
        figures[name] = figure
    return {"schema_version": SCHEMA_VERSION, "captured": iso(now), "window_s": window_s,
            "start": iso(now - window_s), "end": iso(now), "figures": figures}


def load_baseline(path: str) -> dict[str, t.Any]:
    """The baseline figures by name; {} when none were captured (a criterion reading one is then NO-DATA)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    figures = data.get("figures") if isinstance(data, dict) else None
    return figures if isinstance(figures, dict) else {}


def baseline_problem(check: Check, figures: t.Mapping[str, t.Any]) -> str | None:
    """Why a check that compares with its baseline cannot: no figure, or the capture failed."""
    if not check.reads_baseline:
        return None
    figure = figures.get(check.baseline or check.name)
    if figure is None:
        return f"could not measure: no baseline figure {check.baseline!r} (baseline.json missing or without it)"
    if figure.get("error"):
        return f"could not measure: the baseline {check.baseline!r} was not captured: {first_line(figure['error'])}"
    if check.reads_baseline_value and figure.get("value") is None:
        # no samples over the baseline window (a store that just started), or NaN/Inf: no figure to compare with
        why = f"it was {figure['special']}" if figure.get("special") else "its query returned no data over the baseline window"
        return f"could not measure: the baseline {check.baseline!r} has no figure ({why})"
    return None


def summary(state: t.Mapping[str, t.Any], now: float) -> dict[str, t.Any]:
    """emp_watch: the watch as a task returns it."""
    due = next_due(state, now)
    return {"run_id": state["run_id"], "window_s": state["window_s"], "started": state["started"],
            "ends": state["ends"], "passes": state["passes"], "checks": state["checks"],
            "alerts": state["alerts"], "verdict": state["verdict"], "done": bool(state.get("done")),
            "next_due": iso(due), "intervals": state["intervals"]}
