# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Figures and problems of emp.deploy.webhook_probe, computed from what the receiver recorded."""

from __future__ import annotations

import json
from datetime import datetime

from ansible_collections.emp.deploy.plugins.module_utils._webhook_signatures import INVALID, MISSING, VALID, verify

REQUIRED_FIELDS = ("event_type", "event_id", "timestamp", "webhook_id", "data")
JOB_FIELD_EVENTS = frozenset(("job_submitted", "update_job_progress", "complete_job", "job_failed", "cancel_job"))
# Events one successful probe job produces; trigger=job expects each subscribed one per job.
PER_JOB_EVENTS = ("job_submitted", "update_job_progress", "complete_job")
USER_AGENT_PREFIX = "EMP-Job-Queue-Webhook/"
SIGNATURE_HEADERS = {"emp": "X-Webhook-Signature", "github": "X-Hub-Signature-256",
                     "standard-webhooks": "webhook-signature"}
MAX_ERRORS_KEPT = 5
GAP_TOLERANCE = 0.8      # a retry gap may be 20 % shorter than configured (timer granularity)
GAP_SLACK_MS = 25.0


def parse_body(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        return None


def payload_errors(delivery, webhook_id: str, events: list) -> list:
    """What is wrong with one delivery's body and headers against the EMP delivery contract."""
    body = parse_body(delivery.body)
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    errors = []
    missing = [name for name in REQUIRED_FIELDS if name not in body]
    if missing:
        errors.append("missing field(s) %s" % ", ".join(missing))
    event_type = body.get("event_type")
    if "event_type" in body and event_type not in events:
        errors.append("event_type %r is not one of the subscribed events %s" % (event_type, ", ".join(events)))
    if "webhook_id" in body and body["webhook_id"] != webhook_id:
        errors.append("webhook_id %r is not the probe webhook %r" % (body["webhook_id"], webhook_id))
    if "timestamp" in body and (isinstance(body["timestamp"], bool)
                                or not isinstance(body["timestamp"], (int, float, str))):
        errors.append("timestamp is neither a number nor a string")
    data = body.get("data")
    if "data" in body and not isinstance(data, dict):
        errors.append("data is not an object")
    elif isinstance(data, dict) and event_type in JOB_FIELD_EVENTS and "job_id" not in data:
        errors.append("data.job_id is missing from a %s event" % event_type)
    headers = delivery.headers
    agent = headers.get("user-agent", "")
    if not agent.startswith(USER_AGENT_PREFIX):
        errors.append("User-Agent %r is not %s*" % (agent, USER_AGENT_PREFIX))
    if "application/json" not in headers.get("content-type", ""):
        errors.append("Content-Type %r is not application/json" % headers.get("content-type", ""))
    for header, expected in (("x-webhook-event", event_type), ("x-webhook-id", webhook_id),
                             ("x-event-id", body.get("event_id"))):
        if headers.get(header) != expected:
            errors.append("%s header %r differs from %r" % (header, headers.get(header), expected))
    return errors


def _timestamp_seconds(value):
    """A delivery timestamp (epoch ms number or ISO 8601 string) in epoch seconds, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def expected_gap_ms(retry_config: dict, failed_attempt: int) -> float:
    delay = retry_config["initial_delay_ms"] * retry_config["backoff_multiplier"] ** (failed_attempt - 1)
    return float(min(delay, retry_config["max_delay_ms"]))


def _median(values: list) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


class Expectation:
    """What the trigger should produce and when each piece was triggered."""

    def __init__(self, trigger: str, events: list, count: int):
        self.trigger = trigger
        self.events = list(events)
        self.count = count
        self.trigger_times: list[float] = []  # trigger=test: time.monotonic() before each POST /webhooks/:id/test
        self.jobs: dict[str, float] = {}      # trigger=job: job id -> time.monotonic() before its submission

    @property
    def job_events(self) -> list:
        return [e for e in self.events if e in PER_JOB_EVENTS]

    @property
    def expected(self) -> int:
        if self.trigger == "test":
            return len(self.trigger_times) * len(self.events) if self.trigger_times else self.count * len(self.events)
        if self.trigger == "job":
            return max(len(self.jobs), self.count) * len(self.job_events)
        return self.count

    def key_of(self, event_id: str, body):
        """The expectation slot a delivered event fills, or None for an unrelated event."""
        if self.trigger != "job":
            return event_id
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return None
        job_id = body["data"].get("job_id")
        if job_id not in self.jobs or body.get("event_type") not in self.job_events:
            return None
        return (job_id, body["event_type"])


def group_by_event(deliveries: list) -> dict:
    grouped: dict[str, list] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.event_id, []).append(delivery)
    return grouped


def fulfilled(deliveries: list, expectation: Expectation) -> int:
    """Expected slots with a successful delivery so far (used while waiting)."""
    slots = set()
    for event_id, attempts in group_by_event(deliveries).items():
        if any(a.ok for a in attempts):
            slot = expectation.key_of(event_id, parse_body(attempts[0].body) if expectation.trigger == "job" else None)
            if slot is not None:
                slots.add(slot)
    return len(slots)


class Analysis:
    def __init__(self, deliveries: list, expectation: Expectation, webhook_id: str, scheme: str, secret: str,
                 fail_first: int, retry_config: dict):
        self.deliveries = deliveries
        self.expectation = expectation
        self.webhook_id = webhook_id
        self.scheme = scheme
        self.secret = secret
        self.fail_first = fail_first
        self.retry_config = retry_config
        self.grouped = group_by_event(deliveries)
        self.bodies = {event_id: parse_body(attempts[0].body) for event_id, attempts in self.grouped.items()}
        self.slots: dict = {}  # slot -> event id of its first delivered event
        self.unrelated = 0
        self.repeated = 0  # another event id for a filled slot: the same job event sent twice
        for event_id in self.grouped:
            slot = expectation.key_of(event_id, self.bodies[event_id])
            if slot is None:
                self.unrelated += 1
            elif slot not in self.slots:
                self.slots[slot] = event_id
            elif slot[1] != "update_job_progress":  # progress legitimately repeats
                self.repeated += 1

    # ------------------------------------------------------------------ delivery figures
    def delivery_figures(self) -> dict:
        expected = self.expectation.expected
        related = list(self.slots.values())
        succeeded = sum(1 for event_id in related if any(a.ok for a in self.grouped[event_id]))
        duplicates = 0
        for attempts in self.grouped.values():
            seen_ok = False
            for attempt in attempts:
                if seen_ok:
                    duplicates += 1
                seen_ok = seen_ok or attempt.ok
        duplicates += self.repeated
        return {
            "deliveries_expected": expected,
            "deliveries_received": min(len(related), expected) if expected else len(related),
            "deliveries_succeeded": min(succeeded, expected) if expected else succeeded,
            "attempts_received": len(self.deliveries),
            "duplicates": duplicates,
            "unrelated_events": self.unrelated,
            "success_rate": round(min(succeeded, expected) / float(expected), 4) if expected else None,
        }

    def latencies_ms(self) -> list:
        firsts = [(self.grouped[event_id][0], slot, event_id) for slot, event_id in self.slots.items()]
        firsts.sort(key=lambda item: item[0].arrived)
        values = []
        if self.expectation.trigger == "test":
            per_trigger = max(len(self.expectation.events), 1)
            for index, (first, _slot, _event_id) in enumerate(firsts):
                trigger_index = index // per_trigger
                if trigger_index < len(self.expectation.trigger_times):
                    values.append((first.arrived - self.expectation.trigger_times[trigger_index]) * 1000.0)
        elif self.expectation.trigger == "job":
            for first, slot, _event_id in firsts:
                values.append((first.arrived - self.expectation.jobs[slot[0]]) * 1000.0)
        else:
            for first, _slot, event_id in firsts:
                body = self.bodies.get(event_id)
                sent = _timestamp_seconds(body.get("timestamp")) if isinstance(body, dict) else None
                if sent is not None:
                    values.append((first.arrived_wall - sent) * 1000.0)
        return [max(value, 0.0) for value in values]

    # ------------------------------------------------------------------ signatures and payloads
    def signature_figures(self) -> dict:
        figures: dict = {"scheme": self.scheme, "checked": 0, "valid": 0, "invalid": 0, "missing": 0, "reasons": []}
        if self.scheme == "none":
            return figures
        for delivery in self.deliveries:
            outcome, reason = verify(self.scheme, self.secret, delivery.headers, delivery.body)
            figures["checked"] += 1
            figures[{VALID: "valid", INVALID: "invalid", MISSING: "missing"}[outcome]] += 1
            if reason and reason not in figures["reasons"] and len(figures["reasons"]) < MAX_ERRORS_KEPT:
                figures["reasons"].append(reason)
        return figures

    def payload_figures(self) -> dict:
        figures: dict = {"checked": 0, "valid": 0, "invalid": 0, "errors": []}
        for delivery in self.deliveries:
            errors = payload_errors(delivery, self.webhook_id, self.expectation.events)
            figures["checked"] += 1
            figures["invalid" if errors else "valid"] += 1
            for error in errors:
                if error not in figures["errors"] and len(figures["errors"]) < MAX_ERRORS_KEPT:
                    figures["errors"].append(error)
        return figures

    # ------------------------------------------------------------------ retries
    def retry_figures(self) -> dict:
        figures: dict = {"fail_first": self.fail_first, "events_checked": 0, "events_recovered": 0,
                         "events_not_retried": 0, "same_event_id": None, "gaps_ms": [], "expected_gaps_ms": [],
                         "growing": None}
        if self.fail_first <= 0:
            return figures
        gaps_by_position: list[list[float]] = [[] for _position in range(self.fail_first)]
        for event_id in self.slots.values():
            attempts = self.grouped[event_id]
            figures["events_checked"] += 1
            recovered = len(attempts) > self.fail_first and attempts[self.fail_first].ok
            if recovered:
                figures["events_recovered"] += 1
            elif len(attempts) <= self.fail_first:
                figures["events_not_retried"] += 1
            for position in range(min(self.fail_first, len(attempts) - 1)):
                gap = attempts[position + 1].arrived - attempts[position].arrived
                gaps_by_position[position].append(gap * 1000.0)
        checked = figures["events_checked"]
        figures["same_event_id"] = checked > 0 and figures["events_recovered"] == checked
        figures["gaps_ms"] = [round(_median(gaps), 1) for gaps in gaps_by_position if gaps]
        figures["expected_gaps_ms"] = [expected_gap_ms(self.retry_config, n) for n in range(1, self.fail_first + 1)]
        # Growth is only required where the configured delays grow (not once max_delay_ms caps them).
        pairs = [(gap, figures["gaps_ms"][i + 1]) for i, gap in enumerate(figures["gaps_ms"][:-1])
                 if figures["expected_gaps_ms"][i + 1] > figures["expected_gaps_ms"][i]]
        if pairs:
            figures["growing"] = all(later > earlier for earlier, later in pairs)
        return figures

    def retry_problems(self, figures: dict) -> list:
        problems: list[str] = []
        if self.fail_first <= 0:
            return problems
        checked = figures["events_checked"]
        if checked and figures["events_recovered"] < checked:
            missing = checked - figures["events_recovered"]
            problems.append("%d of %d events were not redelivered with the same event id after the receiver "
                            "answered 500 to the first %d attempt(s)" % (missing, checked, self.fail_first))
        for index, (gap, expected) in enumerate(zip(figures["gaps_ms"], figures["expected_gaps_ms"]), start=1):
            if gap < expected * GAP_TOLERANCE - GAP_SLACK_MS:
                problems.append("retry gap %d was %.0f ms, shorter than the configured %.0f ms"
                                % (index, gap, expected))
        if figures["growing"] is False:
            problems.append("retry gaps do not grow (%s ms) although backoff_multiplier is %s" % (
                " then ".join("%.0f" % g for g in figures["gaps_ms"]), self.retry_config["backoff_multiplier"]))
        return problems
