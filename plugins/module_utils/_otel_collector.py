# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""OpenTelemetry collector checks: the health_check extension and the export-failure self-metrics."""

from __future__ import annotations

import json
import re

from ansible_collections.emp.deploy.plugins.module_utils._http import DeadlineLike, HttpClient, HttpFailure, where

# otelcol_exporter_send_failed_spans, ..._metric_points, ..._log_records and enqueue_failed_*,
# with the _total suffix newer collectors add, or without it (collectors before v0.106).
FAILURE_COUNTER = re.compile(r"^(otelcol_exporter_(?:send_failed|enqueue_failed)_(?:spans|metric_points|log_records))"
                             r"(?:_total)?$")
FAILURE_FAMILIES = tuple(f"otelcol_exporter_{kind}_{unit}" for kind in ("send_failed", "enqueue_failed")
                         for unit in ("spans", "metric_points", "log_records"))


class CollectorError(Exception):
    """The collector endpoint could not be read at all."""


def parse_sample_line(line: str) -> tuple[str, float] | None:
    """(metric name, value) of one Prometheus text exposition line; None for comments and blanks."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        rest = _after_labels(line, brace)
    else:
        name, dummy, rest = line.partition(" ")
    fields = rest.split()
    if not name or not fields:
        return None
    try:
        return name, float(fields[0])
    except ValueError:
        return None


def _after_labels(line: str, brace: int) -> str:
    """The text after a label set, honouring quoted values that contain '}' or spaces."""
    quoted = escaped = False
    for index in range(brace + 1, len(line)):
        char = line[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return line[index + 1:]
    return ""


def failure_counters(text: str) -> tuple[dict, bool]:
    """Sums of every export-failure counter family (suffix dropped), and whether any otelcol_ series exist."""
    totals: dict[str, float] = {}
    saw_otelcol = False
    for line in text.splitlines():
        sample = parse_sample_line(line)
        if sample is None:
            continue
        name, value = sample
        saw_otelcol = saw_otelcol or name.startswith("otelcol_")
        match = FAILURE_COUNTER.match(name)
        if match:
            family = match.group(1)
            totals[family] = totals.get(family, 0.0) + value
    return totals, saw_otelcol


def read_failure_counters(http: HttpClient, url: str, deadline: DeadlineLike) -> dict:
    try:
        answer = http.request("GET", url, deadline=deadline, headers={"Accept": "text/plain"})
    except HttpFailure as exc:
        raise CollectorError(f"collector self-metrics unreadable: {exc.sentence('the collector')}") from None
    if answer.status != 200:
        raise CollectorError(f"collector self-metrics at {where(url)} answered HTTP {answer.status}")
    counters, saw_otelcol = failure_counters(answer.body.decode("utf-8", "replace"))
    if not saw_otelcol:
        raise CollectorError(f"{where(url)} shows no otelcol_* series: it is not a collector's self-metrics endpoint")
    return counters


def counter_growth(before: dict, after: dict) -> dict:
    """Per family: before, after, growth (a family absent on both reads counts as 0 and is left out)."""
    report = {}
    for family in FAILURE_FAMILIES:
        if family in before or family in after:
            first, last = before.get(family, 0.0), after.get(family, 0.0)
            report[family] = {"before": _number(first), "after": _number(last), "growth": _number(last - first)}
    return report


def _number(value: float):
    return int(value) if float(value).is_integer() else round(value, 3)


def check_health(http: HttpClient, url: str, deadline: DeadlineLike) -> dict:
    """GET the health_check extension: {url, http_status, status, healthy, error}."""
    report: dict = {"url": where(url), "http_status": None, "status": None, "healthy": False, "error": None}
    try:
        answer = http.request("GET", url, deadline=deadline, headers={"Accept": "application/json"})
    except HttpFailure as exc:
        report["error"] = exc.sentence("the collector")
        return report
    report["http_status"] = answer.status
    try:
        body = json.loads(answer.body.decode("utf-8")) if answer.body else {}
        report["status"] = body.get("status") if isinstance(body, dict) else None
    except ValueError:
        report["status"] = answer.body[:200].decode("utf-8", "replace").strip() or None
    report["healthy"] = answer.status == 200
    return report
