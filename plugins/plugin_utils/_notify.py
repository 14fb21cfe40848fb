# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Notifications of the go_no_go callback: Slack, Teams and a signed webhook, sent in the background.

The callback tells ``RunNotices`` what happened (a gate, the decision, the rollback's end, the watch's
end); it builds a ``Notice`` (_notify_payloads.py) and hands it to one sender thread per target, so
the run, and above all its rollback, never waits on a slow receiver. Each request has a whole-exchange
deadline (module_utils/_http.py); 429 and 5xx answers and refused connections are retried a bounded
number of times, honouring Retry-After up to a cap. Every notice, sent or not, is journaled as a
``notify`` record. At the end of the run ``drain`` waits a bounded time for what is still pending and
journals the rest as unsent.

URLs and the secret are never printed, journaled or put in an error: messages say "the Slack URL".
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import typing as t
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ansible_collections.emp.deploy.plugins.module_utils import _http
from ansible_collections.emp.deploy.plugins.module_utils import _webhook_signatures as signatures
from ansible_collections.emp.deploy.plugins.plugin_utils import _notify_payloads as P
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import (
    OptionError, RunRecorder, first_line, now, parse_duration, redact_gate,
)

SLACK = "slack"
TEAMS = "teams"
WEBHOOK = "webhook"
TARGETS = (SLACK, TEAMS, WEBHOOK)
LABELS = {SLACK: "the Slack URL", TEAMS: "the Teams URL", WEBHOOK: "the webhook URL"}
ALL = "all"

# option name -> environment variable, for messages that name the option both ways
ENV_OF = {
    "notify_slack_url": "EMP_DEPLOY_NOTIFY_SLACK_URL",
    "notify_teams_url": "EMP_DEPLOY_NOTIFY_TEAMS_URL",
    "notify_webhook_url": "EMP_DEPLOY_NOTIFY_WEBHOOK_URL",
    "notify_webhook_secret": "EMP_DEPLOY_NOTIFY_WEBHOOK_SECRET",
    "notify_events": "EMP_DEPLOY_NOTIFY_EVENTS",
    "notify_timeout": "EMP_DEPLOY_NOTIFY_TIMEOUT",
    "notify_retries": "EMP_DEPLOY_NOTIFY_RETRIES",
}
OPTION_NAMES = tuple(ENV_OF)
URL_OPTION = {SLACK: "notify_slack_url", TEAMS: "notify_teams_url", WEBHOOK: "notify_webhook_url"}

DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 2
MAX_RETRIES = 5
# A Retry-After longer than this is not waited for: the notice would come too late to matter.
RETRY_AFTER_CAP_S = 10.0
BACKOFF_S = (1.0, 2.0, 4.0, 4.0, 4.0)
# drain waits the request timeout plus this, so a request already out can end in its own deadline
DRAIN_GRACE_S = 0.25
ANSWER_LIMIT = 2048

# outcome of a notify record
SENT = "sent"
HTTP_ERROR = "http_error"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
BAD_ANSWER = "bad_answer"
UNFINISHED = "unfinished"
NOT_SENT = "not_sent"


def _named(option: str) -> str:
    return f"{option} ({ENV_OF[option]})"


# --- options --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: str
    url: str = field(repr=False)
    events: frozenset[str] = frozenset(P.EVENTS)
    secret: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return LABELS[self.kind]


@dataclass(frozen=True)
class NotifyOptions:
    targets: tuple[Target, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES


def _text(value: t.Any) -> str:
    return "" if value is None else str(value).strip()


def _url(raw: t.Mapping[str, t.Any], kind: str) -> str:
    url = _text(raw.get(URL_OPTION[kind]))
    problem = _http.url_problem(url) if url else None
    if problem:
        raise OptionError(f"{_named(URL_OPTION[kind])}: {LABELS[kind]} cannot be used: {problem} "
                          f"(the URL itself is not shown)")
    return url


def parse_events(value: t.Any, configured: t.Collection[str]) -> dict[str, frozenset[str]]:
    """``slack=nogo,rollback;teams=all`` (items split by ';' or blanks): the events per target. An item
    without ``target=`` applies to every target that no item names; no value means every event."""
    option = _named("notify_events")
    wanted: dict[str, frozenset[str]] = {}
    default: frozenset[str] | None = None
    # blanks around ',' and '=' belong to the item; other blanks and ';' separate items
    for item in re.sub(r"\s*([,=])\s*", r"\1", _text(value)).replace(";", " ").split():
        target, sep, names = item.partition("=")
        target = target.strip().lower() if sep else ""
        events = _event_set(names if sep else item, option)
        if not sep:
            if default is not None:
                raise OptionError(f"{option}: two items without a target; write target=events items such as "
                                  f"slack=nogo,rollback;teams=all")
            default = events
            continue
        if target not in TARGETS:
            raise OptionError(f"{option}: {target[:40]!r} is not a target; write {', '.join(TARGETS)}")
        if target in wanted:
            raise OptionError(f"{option}: {target} is named twice")
        if target not in configured:
            raise OptionError(f"{option}: names {target}, but {LABELS[target]} is not set "
                              f"({_named(URL_OPTION[target])})")
        wanted[target] = events
    everything = frozenset(P.EVENTS)
    return {kind: wanted.get(kind, default if default is not None else everything) for kind in configured}


def _event_set(names: str, option: str) -> frozenset[str]:
    events = [name.strip().lower() for name in names.split(",") if name.strip()]
    if not events:
        raise OptionError(f"{option}: an empty event list; write events such as nogo,rollback or all")
    for name in events:
        if name != ALL and name not in P.EVENTS:
            raise OptionError(f"{option}: {name[:40]!r} is not an event; write {', '.join(P.EVENTS)} or {ALL}")
    return frozenset(P.EVENTS) if ALL in events else frozenset(events)


def _retries(value: t.Any) -> int:
    if value in (None, ""):
        return DEFAULT_RETRIES
    text = _text(value)
    if isinstance(value, bool) or not text.isdigit() or int(text) > MAX_RETRIES:
        raise OptionError(f"{_named('notify_retries')}: {text[:40]!r} is not a number of retries from 0 to "
                          f"{MAX_RETRIES}")
    return int(text)


def bounded_duration(value: t.Any, option: str, default: float, maximum: float) -> float:
    """A duration option (seconds or with a unit) more than 0 and at most ``maximum`` s; ``default`` when unset."""
    if value in (None, ""):
        return default
    seconds = parse_duration(value, option)
    if not 0 < seconds <= maximum:
        raise OptionError(f"{option}: {seconds:g} s is not between 0 and {maximum:g} s")
    return seconds


def _timeout(value: t.Any) -> float:
    return bounded_duration(value, _named("notify_timeout"), DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S)


def parse_options(raw: t.Mapping[str, t.Any]) -> NotifyOptions:
    """Every notification option checked when the run starts; OptionError names the option, never a URL
    or the secret."""
    urls = {kind: _url(raw, kind) for kind in TARGETS}
    secret = _text(raw.get("notify_webhook_secret"))
    if urls[WEBHOOK] and not secret:
        raise OptionError(f"{_named('notify_webhook_secret')}: the webhook URL is set, so its notices are signed "
                          f"the Standard Webhooks way and need a whsec_ secret")
    if secret and not urls[WEBHOOK]:
        raise OptionError(f"{_named('notify_webhook_secret')}: a secret without {_named('notify_webhook_url')}")
    if secret and signatures.secret_problem("standard-webhooks", secret):
        raise OptionError(f"{_named('notify_webhook_secret')}: not a Standard Webhooks secret (whsec_ followed by "
                          f"a base64 key); the value is not shown")
    configured = [kind for kind in TARGETS if urls[kind]]
    events = parse_events(raw.get("notify_events"), configured)
    timeout_s, retries = _timeout(raw.get("notify_timeout")), _retries(raw.get("notify_retries"))
    targets = tuple(Target(kind, urls[kind], events[kind], secret if kind == WEBHOOK else None) for kind in configured)
    return NotifyOptions(targets, timeout_s, retries)


# --- what never leaves the process ----------------------------------------------------------------


def scrub(text: str, target: Target) -> str:
    """``text`` without the URL (or its path, query, credentials) and the secret."""
    parts = urlsplit(target.url)
    hidden = [target.url, target.secret or "", parts.netloc, parts.query, unquote(parts.query)]
    if len(parts.path) > 1:
        hidden += [parts.path, unquote(parts.path)]
    for piece in sorted({p for p in hidden if p and len(p) >= 3}, key=len, reverse=True):
        text = text.replace(piece, f"<{target.label}>")
    return text


# --- sending --------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One notice to one target; the sender thread fills it, the journal gets it once."""

    target: Target
    event: str
    body: bytes
    queued: float
    message_id: str | None = None
    state: str = "queued"  # queued, sending, done
    attempts: int = 0
    sent: bool = False
    status: int | None = None
    outcome: str = NOT_SENT
    error: str | None = None
    waits: list[float] = field(default_factory=list)
    statuses: list[int | None] = field(default_factory=list)
    first_attempt: float | None = None
    ended: float | None = None

    def record(self) -> dict[str, t.Any]:
        start = self.first_attempt
        return {"target": self.target.kind, "event": self.event, "outcome": self.outcome, "sent": self.sent,
                "status": self.status, "attempts": self.attempts, "statuses": self.statuses, "waits_s": self.waits,
                "error": self.error,
                "delay_s": None if start is None else round(start - self.queued, 3),
                "duration_s": None if start is None or self.ended is None else round(self.ended - start, 3),
                "message_id": self.message_id}


class Notifier:
    """One daemon sender thread per target; ``send`` never blocks, ``drain`` waits a bounded time."""

    def __init__(self, options: NotifyOptions, record: t.Callable[..., None],
                 client: _http.HttpClient | None = None) -> None:
        self.options = options
        self._record = record
        self._client = client or _http.HttpClient(user_agent="emp.deploy.go_no_go")
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._queues: dict[str, deque[Delivery]] = {target.kind: deque() for target in options.targets}
        self.deliveries: list[Delivery] = []
        self._threads: dict[str, threading.Thread] = {}

    def wants(self, event: str) -> bool:
        return any(event in target.events for target in self.options.targets)

    def send(self, notice: P.Notice) -> None:
        for target in self.options.targets:
            if notice.event not in target.events or self._stop.is_set():
                continue
            payload = P.BUILDERS[target.kind](notice)
            delivery = Delivery(target, notice.event, json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                time.monotonic(), message_id=f"msg_{uuid.uuid4().hex}" if target.secret else None)
            with self._cond:
                self.deliveries.append(delivery)
                self._queues[target.kind].append(delivery)
                self._cond.notify_all()
            self._start(target)

    def _start(self, target: Target) -> None:
        if target.kind not in self._threads:
            thread = threading.Thread(target=self._serve, args=(target,), name=f"emp-deploy-notify-{target.kind}",
                                      daemon=True)
            self._threads[target.kind] = thread
            thread.start()

    def _serve(self, target: Target) -> None:
        queue = self._queues[target.kind]
        while True:
            with self._cond:
                while not queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                delivery = queue.popleft()
                delivery.state = "sending"
            try:
                self._deliver(delivery)
            except Exception as exc:  # pylint: disable=broad-exception-caught  # a notice never breaks the run
                delivery.outcome, delivery.error = BAD_ANSWER, scrub(f"{type(exc).__name__}: {exc}", target)
            delivery.ended = time.monotonic()
            with self._cond:
                if delivery.state == "sending":  # not given up by drain meanwhile
                    delivery.state = "done"
                    self._journal(delivery)
                self._cond.notify_all()

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        target = delivery.target
        if target.secret and delivery.message_id:
            stamp = int(time.time())
            headers.update({"webhook-id": delivery.message_id, "webhook-timestamp": str(stamp),
                            "webhook-signature": signatures.sign_standard(target.secret, delivery.message_id, stamp,
                                                                          delivery.body)})
        return headers

    def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(1, self.options.retries + 2):
            delivery.attempts = attempt
            if delivery.first_attempt is None:
                delivery.first_attempt = time.monotonic()
            wait = self._attempt(delivery)
            delivery.statuses.append(delivery.status)
            if wait is None or attempt > self.options.retries:
                return
            delivery.waits.append(wait)
            if self._stop.wait(wait):
                delivery.error = f"{delivery.error}; the run ended before the retry"
                return

    def _attempt(self, delivery: Delivery) -> float | None:
        """One request; the seconds to wait before retrying it, or None when it is settled."""
        target = delivery.target
        backoff = BACKOFF_S[min(delivery.attempts, len(BACKOFF_S)) - 1]
        try:
            answer = self._client.request("POST", target.url, deadline=self.options.timeout_s, body=delivery.body,
                                          headers=self._headers(delivery), body_limit=ANSWER_LIMIT)
        except _http.HttpFailure as exc:
            delivery.status = None
            if exc.kind == _http.TIMEOUT:
                # not retried: the receiver may have it already, and the run must not wait twice
                delivery.outcome = TIMEOUT
                delivery.error = f"{target.label} did not answer within {self.options.timeout_s:g} s"
                return None
            delivery.outcome = UNREACHABLE if exc.kind == _http.UNREACHABLE else BAD_ANSWER
            delivery.error = scrub(f"{exc.kind}: {target.label}: {exc.reason}", target)
            return backoff if exc.kind == _http.UNREACHABLE else None  # refused: nothing was delivered
        delivery.status = answer.status
        if answer.ok:
            delivery.sent, delivery.outcome, delivery.error = True, SENT, None
            return None
        said = first_line(answer.text(), 200)
        delivery.outcome = HTTP_ERROR
        delivery.error = scrub(f"{target.label} answered HTTP {answer.status}" + (f": {said}" if said else ""), target)
        if answer.status != 429 and answer.status < 500:
            return None  # the request itself is wrong: sending it again changes nothing
        asked = _http.retry_after_seconds(answer.header("retry-after"))
        if asked is None:
            return backoff
        if asked > RETRY_AFTER_CAP_S:
            delivery.error += (f"; it asked to wait {asked:g} s (Retry-After), longer than the {RETRY_AFTER_CAP_S:g} s "
                               f"a notice waits")
            return None
        return asked

    def _journal(self, delivery: Delivery) -> None:
        try:
            self._record(R.NOTIFY, **delivery.record())
        except Exception:  # pylint: disable=broad-exception-caught  # the journal reports its own failures
            pass

    def drain(self) -> None:
        """Waits up to the request timeout (and a moment) for pending notices, then journals the rest as
        unsent and stops the senders."""
        if not self.deliveries:
            self._stop.set()
            return
        deadline = time.monotonic() + self.options.timeout_s + DRAIN_GRACE_S
        with self._cond:
            while any(d.state != "done" for d in self.deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
            self._stop.set()
            for delivery in self.deliveries:
                if delivery.state != "done":
                    self._give_up(delivery)
            self._cond.notify_all()

    def _give_up(self, delivery: Delivery) -> None:
        label = delivery.target.label
        if delivery.state == "queued":
            delivery.outcome = NOT_SENT
            delivery.error = f"not sent: the run ended while an earlier notice to {label} was still pending"
        else:
            delivery.outcome = UNFINISHED
            so_far = f"{delivery.error}; " if delivery.error else ""
            delivery.error = f"{so_far}unfinished when the run ended (attempt {delivery.attempts}); it may still arrive"
        delivery.sent = False
        delivery.state = "done"
        delivery.ended = time.monotonic()
        self._journal(delivery)


# --- the events of a run --------------------------------------------------------------------------


def _seconds(value: t.Any) -> str:
    return "?" if value is None else f"{float(value):g} s"


def _facts(recorder: RunRecorder) -> list[tuple[str, str]]:
    run = recorder.run
    facts = [("Release", str(run.get("emp_release") or "not named")), ("Run", recorder.run_id)]
    if run.get("playbook"):
        facts.append(("Playbook", os.path.basename(str(run["playbook"]))))
    if run.get("controller"):
        facts.append(("Controller", f"{run.get('user') or '?'}@{run['controller']}"))
    if run.get("check_mode"):
        facts.append(("Check mode", "yes: nothing was changed"))
    facts.append(("Report", str(recorder.run_dir / "report.html")))
    return facts


def _elapsed(recorder: RunRecorder) -> float | None:
    started = recorder.run.get("started_mono")
    return None if started is None else round(recorder.clock() - started, 1)


def _release(recorder: RunRecorder) -> str:
    release = recorder.run.get("emp_release")
    return f"release {release}" if release else f"run {recorder.run_id}"


def _check(recorder: RunRecorder) -> str:
    return " (check mode)" if recorder.run.get("check_mode") else ""


def gate_evidence(gate: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """A NO-GO gate for a notice: reason, failing criteria, the figures of its last failing sample."""
    gate = redact_gate(gate) if gate.get("redacted") else gate
    failing = [c for c in gate.get("criteria") or [] if isinstance(c, t.Mapping) and c.get("outcome") == "failed"]
    samples = [s for s in gate.get("samples") or [] if isinstance(s, t.Mapping) and s.get("outcome") == "failed"]
    return {"name": gate.get("name"), "component": gate.get("component"), "phase": gate.get("phase"),
            "mode": gate.get("mode"), "checklist_ref": gate.get("checklist_ref"), "reason": gate.get("reason"),
            "counts": gate.get("counts"),
            "criteria": [{k: c.get(k) for k in ("criterion", "failed", "errors", "evaluated")} for c in failing],
            "figures": dict(samples[-1].get("figures") or {}) if samples else {}}


def _gate_line(evidence: t.Mapping[str, t.Any]) -> str:
    where = ", ".join(str(v) for v in (evidence.get("component"), evidence.get("phase")) if v)
    line = f"Gate {evidence.get('name')}" + (f" ({where})" if where else "") + f": {evidence.get('reason')}"
    if evidence.get("figures"):
        line += " · last failing sample: " + ", ".join(f"{k}={v}" for k, v in list(evidence["figures"].items())[:6])
    return first_line(line, 900)


def nogo_notice(recorder: RunRecorder, reasons: list[str], gates: list[dict[str, t.Any]]) -> P.Notice:
    evidence = [gate_evidence(g) for g in gates]
    steps = [f for f in recorder.failures if f.get("component")]
    mode = recorder.options.rollback
    components = recorder.rollback_components() if recorder.enforced_nogo() else []
    if recorder.run.get("rollback_run"):
        next_step = "This run is itself a rollback: nothing rolls back."
    elif recorder.run_kind == R.RUN_KIND_PREDEPLOY:
        next_step = "A predeploy run released nothing: nothing rolls back; do not deploy."
    elif not components:
        next_step = "Nothing to roll back."
    elif mode == "auto":
        next_step = f"Rolling back {', '.join(components)} now."
    elif mode == "plan":
        next_step = f"Rollback of {', '.join(components)} planned, not run (rollback=plan)."
    else:
        next_step = f"No rollback (rollback=off); {', '.join(components)} stay as deployed."
    details = [_gate_line(e) for e in evidence]
    details += [first_line(f"Step {f['task']} on {f['host']} ({f['component']}): {f['msg']}", 900) for f in steps]
    details += [first_line(r, 900) for r in reasons if not evidence and not steps]
    summary = (f"Run {recorder.run_id} decided NO-GO{_check(recorder)} after {_seconds(_elapsed(recorder))}: "
               f"{len(reasons)} reason{'s' if len(reasons) != 1 else ''}. {next_step}")
    return P.Notice(P.NOGO, P.BAD, f"NO-GO: {_release(recorder)}", summary, recorder.run_id, now(),
                    _facts(recorder), details,
                    {"decision": R.NO_GO, "release": recorder.run.get("emp_release"), "reasons": reasons,
                     "gates": evidence, "failures": steps, "check_mode": bool(recorder.run.get("check_mode")),
                     "rollback": {"mode": mode, "components": components}, "report": str(recorder.run_dir)})


def rollback_notice(recorder: RunRecorder) -> P.Notice:
    rollback = dict(recorder.rollback or {})
    components = list(rollback.get("components") or [])
    ok, within = bool(rollback.get("ok")), rollback.get("within_budget") is not False
    severity = P.GOOD if ok and within else P.WARNING if ok else P.BAD
    verdict = "finished OK" if ok else "FAILED"
    summary = (f"The rollback of {', '.join(components) or 'nothing'}{_check(recorder)} {verdict} in "
               f"{_seconds(rollback.get('duration_s'))} (budget {_seconds(rollback.get('budget_s'))}"
               f"{'' if within else ', OVER BUDGET'}).")
    details = []
    for component, outcome in (rollback.get("per_component") or {}).items():
        state = "ok" if outcome.get("ok") else "did not run" if not outcome.get("ran") else "failed"
        details.append(f"{component}: {state}, {_seconds(outcome.get('duration_s'))} of "
                       f"{_seconds(outcome.get('budget_s'))}")
    details += [first_line(f"Problem: {p}", 900) for p in rollback.get("problems") or []]
    cause = " after a watch alert" if isinstance(recorder.invocation, str) else ""
    title = f"Rollback {'OK' if ok else 'FAILED'}{cause}: {_release(recorder)}"
    kept = ("components", "ok", "duration_s", "budget_s", "within_budget", "per_component", "problems", "runner",
            "reason")
    return P.Notice(P.ROLLBACK, severity, title, summary, recorder.run_id, now(), _facts(recorder), details,
                    {"release": recorder.run.get("emp_release"), "rollback": {k: rollback.get(k) for k in kept},
                     "watch": cause != ""})


def go_notice(recorder: RunRecorder) -> P.Notice:
    gates = [g for g in recorder.gates if g.get("decision") == R.GO]
    summary = (f"Run {recorder.run_id} decided GO{_check(recorder)}: {len(gates)} gate{'s' if len(gates) != 1 else ''} "
               f"passed in {_seconds(_elapsed(recorder))}.")
    details = [f"{p.get('phase') or '-'} · {p.get('component') or '-'}: {p.get('decision')} ({p.get('gates')} gates)"
               for p in recorder.phases]
    return P.Notice(P.GO, P.GOOD, f"GO: {_release(recorder)}", summary, recorder.run_id, now(), _facts(recorder),
                    details, {"decision": R.GO, "release": recorder.run.get("emp_release"),
                              "gates": [g.get("name") for g in recorder.gates], "duration_s": _elapsed(recorder)})


def alert_notice(recorder: RunRecorder, gate: t.Mapping[str, t.Any]) -> P.Notice:
    evidence = gate_evidence(gate)
    enforced = R.is_enforced_nogo(gate)
    then = (" Its component is rolled back when this watch invocation ends." if enforced
            and recorder.options.rollback == "auto" else "")
    summary = (f"The watch after GO of run {recorder.run_id} raised {'an alert' if enforced else 'a warning'} on "
               f"{evidence['name']}: {evidence['reason']}.{then}")
    return P.Notice(P.WATCH_ALERT, P.BAD if enforced else P.WARNING,
                    f"Watch alert: {evidence['name']} ({evidence.get('component') or 'no component'})",
                    first_line(summary, 1500), recorder.run_id, now(), _facts(recorder), [_gate_line(evidence)],
                    {"alert": evidence, "enforced": enforced})


def verdict_notice(recorder: RunRecorder, state: t.Mapping[str, t.Any]) -> P.Notice:
    verdict = str(state.get("verdict"))
    alerts = [a for a in state.get("alerts") or [] if isinstance(a, t.Mapping)]
    good = verdict == R.SUCCESS
    summary = (f"The watch after GO of run {recorder.run_id} ended {verdict}: {state.get('passes')} passes over "
               f"{_seconds(state.get('window_s'))}, {len(alerts)} alert{'s' if len(alerts) != 1 else ''}.")
    details = [first_line(f"Alert {a.get('check')} ({a.get('component')}, {a.get('kind')}): {a.get('reason')}", 900)
               for a in alerts]
    return P.Notice(P.WATCH_VERDICT, P.GOOD if good else P.BAD, f"Watch {verdict}: {_release(recorder)}", summary,
                    recorder.run_id, now(), _facts(recorder), details,
                    {"verdict": verdict, "window_s": state.get("window_s"), "passes": state.get("passes"),
                     "alerts": [dict(a) for a in alerts]})


def _deploy_summary(run_dir: Path) -> dict[str, t.Any]:
    """The watched deploy's summary as it was before this invocation (its release, its verdict so far)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


class RunNotices:
    """What the callback calls: one method per moment of the run; each returns at once."""

    def __init__(self, options: NotifyOptions, recorder: RunRecorder, watch: bool = False,
                 client: _http.HttpClient | None = None) -> None:
        self.recorder = recorder
        self.watch = watch
        self.notifier = Notifier(options, recorder.record, client) if options.targets else None
        self._nogo_gates: list[dict[str, t.Any]] = []
        deploy = _deploy_summary(recorder.run_dir) if watch and self.notifier else {}
        watched = deploy.get("watch")
        self._verdict_before = watched.get("verdict") if isinstance(watched, dict) else None
        self._deploy_release = deploy.get("emp_release")

    def _send(self, event: str, build: t.Callable[[], P.Notice]) -> None:
        if self.notifier is not None and self.notifier.wants(event):
            if self.watch and self._deploy_release:
                # a watch invocation has no release of its own: its notices name the watched deploy's
                self.recorder.run.setdefault("emp_release", self._deploy_release)
            self.notifier.send(build())

    def gate(self, gate: dict[str, t.Any]) -> None:
        """A gate was recorded: an enforced NO-GO is kept for the NO-GO notice; in a watch, every NO-GO
        gate is an alert, sent now."""
        if self.notifier is None:
            return
        if self.watch and gate.get("decision") == R.NO_GO and not gate.get("ignored"):
            self._send(P.WATCH_ALERT, lambda: alert_notice(self.recorder, gate))
        elif R.is_enforced_nogo(gate):
            self._nogo_gates.append(gate)

    def decided(self, decision: str, reasons: list[str]) -> None:
        """The deploy run's decision, before any rollback: NO-GO now, GO at the end of the run."""
        if self.watch:
            return
        if decision == R.NO_GO:
            self._send(P.NOGO, lambda: nogo_notice(self.recorder, reasons, self._nogo_gates))
        elif decision == R.GO:
            self._send(P.GO, lambda: go_notice(self.recorder))

    def rolled_back(self) -> None:
        rollback = self.recorder.rollback or {}
        if rollback.get("state") == R.ROLLBACK_FINISHED:
            self._send(P.ROLLBACK, lambda: rollback_notice(self.recorder))

    def watch_ending(self, state: t.Mapping[str, t.Any]) -> None:
        """A final verdict (SUCCESS or FAILED) once: not again from a later invocation that repeats it."""
        verdict = state.get("verdict")
        if self.watch and verdict in (R.SUCCESS, R.FAILED) and verdict != self._verdict_before:
            self._send(P.WATCH_VERDICT, lambda: verdict_notice(self.recorder, state))

    def drain(self) -> None:
        if self.notifier is not None:
            self.notifier.drain()

    def records(self) -> list[dict[str, t.Any]]:
        """The notify record of every notice that is settled (after drain: all of them), in send order."""
        if self.notifier is None:
            return []
        return [d.record() for d in self.notifier.deliveries if d.state == "done"]

    def unsent(self) -> list[str]:
        """One line per notice that did not go out (after drain), for the run's output: no URL in it."""
        if self.notifier is None:
            return []
        return [f"{d.target.kind} {d.event} notice not sent: {d.error}" for d in self.notifier.deliveries
                if d.state == "done" and not d.sent]
