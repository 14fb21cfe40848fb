# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a notification says, and its three wire formats (pure functions, no I/O).

A ``Notice`` is built once per event from the run's record; ``slack``, ``teams`` and ``webhook`` turn
it into the body each target expects: Slack Block Kit with its ``text`` fallback, the Adaptive Card
envelope of a Teams workflow webhook, and a Standard Webhooks event (``type``, ``timestamp``,
``data``). Formats in docs/notifications.md.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

# events, as EMP_DEPLOY_NOTIFY_EVENTS names them
NOGO = "nogo"
ROLLBACK = "rollback"
GO = "go"
WATCH_ALERT = "watch_alert"
WATCH_VERDICT = "watch_verdict"
EVENTS = (NOGO, ROLLBACK, GO, WATCH_ALERT, WATCH_VERDICT)

# severities: the colour of the card
GOOD = "good"
BAD = "bad"
WARNING = "warning"

# Slack: a header holds 150 characters, a section text 3000, a message 50 blocks.
_SLACK_HEADER = 150
_SLACK_TEXT = 3000
_MAX_DETAILS = 12
_TEAMS_COLORS = {GOOD: "Good", BAD: "Attention", WARNING: "Warning"}
_SLACK_MARKS = {GOOD: ":large_green_circle:", BAD: ":red_circle:", WARNING: ":large_orange_circle:"}
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass
class Notice:
    """One event for people: a title, one sentence, facts, detail lines, and the data for machines."""

    event: str
    severity: str
    title: str
    summary: str
    run_id: str
    at: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    data: dict[str, t.Any] = field(default_factory=dict)

    @property
    def fallback(self) -> str:
        """The plain text of the notice: Slack's ``text`` (notifications, screen readers)."""
        return f"{self.title}: {self.summary}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_escape(text: str) -> str:
    """Slack reads &, < and > as markup (links, mentions): recorded text must not become either."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(notice: Notice) -> dict[str, t.Any]:
    """Block Kit: header, the sentence, the facts as fields, one section per detail, a context line."""
    blocks: list[dict[str, t.Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(notice.title, _SLACK_HEADER), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"{_SLACK_MARKS.get(notice.severity, '')} {slack_escape(notice.summary)}".strip(), _SLACK_TEXT)}},
    ]
    if notice.facts:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{slack_escape(name)}*\n{slack_escape(value)}", 2000)}
            for name, value in notice.facts[:10]]})
    details = notice.details[:_MAX_DETAILS]
    if details:
        blocks.append({"type": "divider"})
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(slack_escape(line), _SLACK_TEXT)}}
                   for line in details]
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": slack_escape(f"emp.deploy · run {notice.run_id} · {notice.at}")}]})
    return {"text": _cut(slack_escape(notice.fallback), _SLACK_TEXT), "blocks": blocks}


def teams(notice: Notice) -> dict[str, t.Any]:
    """The message a Teams workflow webhook accepts: one Adaptive Card attachment (a bare ``text`` body
    is refused by workflows)."""
    body: list[dict[str, t.Any]] = [
        {"type": "TextBlock", "text": notice.title, "size": "Large", "weight": "Bolder", "wrap": True,
         "color": _TEAMS_COLORS.get(notice.severity, "Default")},
        {"type": "TextBlock", "text": notice.summary, "wrap": True},
    ]
    if notice.facts:
        body.append({"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in notice.facts]})
    body += [{"type": "TextBlock", "text": line, "wrap": True, "spacing": "Small"}
             for line in notice.details[:_MAX_DETAILS]]
    body.append({"type": "TextBlock", "text": f"emp.deploy · run {notice.run_id} · {notice.at}", "wrap": True,
                 "isSubtle": True, "size": "Small"})
    card = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body,
            "msteams": {"width": "Full"}}
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                                                "content": card}]}


def webhook(notice: Notice) -> dict[str, t.Any]:
    """A Standard Webhooks event: ``type``, ``timestamp`` and ``data`` (the notice for machines)."""
    data = {"event": notice.event, "run_id": notice.run_id, "severity": notice.severity, "title": notice.title,
            "summary": notice.summary}
    data.update(notice.data)
    return {"type": f"emp.deploy.{notice.event}", "timestamp": notice.at, "data": data}


BUILDERS: dict[str, t.Callable[[Notice], dict[str, t.Any]]] = {"slack": slack, "teams": teams, "webhook": webhook}
