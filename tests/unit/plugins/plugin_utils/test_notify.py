"""Notifications without Ansible: option parsing, the payload builders (Slack Block Kit, the Teams
Adaptive Card envelope, the Standard Webhooks event), notices built from a run's record, scrubbing.
(Sending to real receivers is tested in tests/integration/test_go_no_go_notify.py.)"""
from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from ansible_collections.emp.deploy.plugins.module_utils import _webhook_signatures as signatures
from ansible_collections.emp.deploy.plugins.plugin_utils import _notify as N
from ansible_collections.emp.deploy.plugins.plugin_utils import _notify_payloads as P
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr

SLACK_URL = "https://hooks.slack.example/services/T0/B0/sEcReT"


def notice(**changes) -> P.Notice:
    base = {"event": P.NOGO, "severity": P.BAD, "title": "NO-GO: release 2.4 <b>", "summary": "Run r1 decided NO-GO & more",
            "run_id": "r1", "at": "2026-12-03T16:00:00.000Z", "facts": [("Release", "2.4"), ("Run", "r1")],
            "details": ["Gate p95 (api): p95 < 200 did not hold (p95 was 312)"], "data": {"reasons": ["x"]}}
    base.update(changes)
    return P.Notice(**base)


# --- payloads -------------------------------------------------------------------------------------


def test_slack_payload_is_block_kit_with_an_escaped_text_fallback():
    payload = P.slack(notice())
    assert payload["text"] == "NO-GO: release 2.4 &lt;b&gt;: Run r1 decided NO-GO &amp; more"
    blocks = payload["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "divider", "section", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "NO-GO: release 2.4 <b>", "emoji": True}
    assert blocks[1]["text"]["type"] == "mrkdwn" and blocks[1]["text"]["text"].startswith(":red_circle: Run r1")
    assert blocks[2]["fields"] == [{"type": "mrkdwn", "text": "*Release*\n2.4"}, {"type": "mrkdwn", "text": "*Run*\nr1"}]
    assert "p95 was 312" in blocks[4]["text"]["text"]


def test_slack_payload_keeps_within_block_kit_limits():
    payload = P.slack(notice(title="T" * 400, details=["d" * 5000] * 40, facts=[(f"k{i}", "v") for i in range(20)]))
    blocks = payload["blocks"]
    assert len(blocks[0]["text"]["text"]) == 150
    assert len(blocks) <= 50 and all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert len(blocks[2]["fields"]) == 10


def test_teams_payload_is_the_workflow_adaptive_card_envelope():
    payload = P.teams(notice(severity=P.GOOD))
    assert payload["type"] == "message" and set(payload) == {"type", "attachments"}
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive" and attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"], card["$schema"]) == (
        "AdaptiveCard", "1.4", "http://adaptivecards.io/schemas/adaptive-card.json")
    assert card["body"][0] == {"type": "TextBlock", "text": "NO-GO: release 2.4 <b>", "size": "Large",
                               "weight": "Bolder", "wrap": True, "color": "Good"}
    assert {"type": "FactSet", "facts": [{"title": "Release", "value": "2.4"}, {"title": "Run", "value": "r1"}]} \
        in card["body"]


def test_webhook_payload_is_a_standard_webhooks_event_and_its_signature_verifies():
    payload = P.webhook(notice())
    assert payload["type"] == "emp.deploy.nogo" and payload["timestamp"] == "2026-12-03T16:00:00.000Z"
    assert payload["data"]["reasons"] == ["x"] and payload["data"]["run_id"] == "r1"
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
               "webhook-signature": signatures.sign_standard(secret, "msg_1", stamp, body)}
    assert Webhook(secret).verify(body, headers) == payload
    assert signatures.verify("standard-webhooks", secret, headers, body) == (signatures.VALID, "")


# --- options --------------------------------------------------------------------------------------


def test_no_url_means_no_target_and_defaults():
    options = N.parse_options({})
    assert options == N.NotifyOptions((), 5.0, 2)


def test_events_per_target_and_a_default_for_the_others():
    options = N.parse_options({"notify_slack_url": SLACK_URL, "notify_teams_url": "https://teams.example/x?sig=s3",
                               "notify_events": "slack=nogo,rollback; nogo , watch_alert"})
    events = {t.kind: t.events for t in options.targets}
    assert events == {"slack": {"nogo", "rollback"}, "teams": {"nogo", "watch_alert"}}
    everything = N.parse_options({"notify_slack_url": SLACK_URL, "notify_events": "slack=all"})
    assert everything.targets[0].events == set(P.EVENTS)


@pytest.mark.parametrize(("raw", "message"), [
    ({"notify_slack_url": "hooks.slack.example/sEcReT"}, "notify_slack_url (EMP_DEPLOY_NOTIFY_SLACK_URL): the Slack URL"),
    ({"notify_webhook_url": SLACK_URL}, "need a whsec_ secret"),
    ({"notify_webhook_secret": "whsec_AAAA"}, "a secret without notify_webhook_url"),
    ({"notify_webhook_url": SLACK_URL, "notify_webhook_secret": "sEcReT"}, "not a Standard Webhooks secret"),
    ({"notify_slack_url": SLACK_URL, "notify_events": "slack="}, "an empty event list"),
    ({"notify_slack_url": SLACK_URL, "notify_events": "pager=all"}, "'pager' is not a target"),
    ({"notify_slack_url": SLACK_URL, "notify_events": "slack=go slack=nogo"}, "slack is named twice"),
    ({"notify_slack_url": SLACK_URL, "notify_events": "go nogo"}, "two items without a target"),
    ({"notify_slack_url": SLACK_URL, "notify_timeout": "2m"}, "120 s is not between 0 and 60 s"),
    ({"notify_slack_url": SLACK_URL, "notify_timeout": "soon"}, "notify_timeout (EMP_DEPLOY_NOTIFY_TIMEOUT)"),
    ({"notify_slack_url": SLACK_URL, "notify_retries": "-1"}, "not a number of retries from 0 to 5"),
])
def test_bad_options_name_the_option_and_never_the_url_or_secret(raw, message):
    with pytest.raises(rr.OptionError) as caught:
        N.parse_options(raw)
    assert message in str(caught.value)
    assert "sEcReT" not in str(caught.value) and "hooks.slack.example" not in str(caught.value)


def test_scrub_hides_url_parts_and_the_secret():
    target = N.Target("teams", "https://prod.example:443/workflows/abc123/run?api-version=1&sig=s3cr3t", secret=None)
    text = "failed for prod.example:443 /workflows/abc123/run?api-version=1&sig=s3cr3t"
    cleaned = N.scrub(text, target)
    assert "s3cr3t" not in cleaned and "abc123" not in cleaned and "prod.example" not in cleaned
    assert "<the Teams URL>" in cleaned
    assert "s3cr3t" not in repr(target)


# --- notices from a run's record ------------------------------------------------------------------


def recorder(tmp_path: Path, **options) -> rr.RunRecorder:
    rec = rr.RunRecorder(rr.validate_options({"report_dir": str(tmp_path), **options}), "run-7")
    rec.start(playbook="/x/deploy.yml", check_mode=True, emp_release="2.4.0", rollback_run=False)
    return rec


def nogo_gate() -> dict:
    return {"id": "g1", "name": "p95", "component": "api", "phase": "application", "mode": R.ENFORCE,
            "decision": R.NO_GO, "reason": "p95 < 200 did not hold in 2 of 2 samples (p95 was 312, 305)",
            "criteria": [{"criterion": "p95 < 200", "outcome": "failed", "held": 0, "failed": 2, "errors": 0,
                          "evaluated": 2}, {"criterion": "ok", "outcome": "held"}],
            "samples": [{"outcome": "failed", "figures": {"p95": 312}}, {"outcome": "failed", "figures": {"p95": 305}}]}


def test_nogo_notice_carries_the_reason_the_figures_and_the_rollback_to_come(tmp_path):
    rec = recorder(tmp_path)
    gate = nogo_gate()
    rec.start_phase("application", "api", "Phase api")
    rec.add_gate(dict(gate), "h1")
    made = N.nogo_notice(rec, rec.enforced_nogo(), [gate])
    assert made.title == "NO-GO: release 2.4.0" and made.severity == P.BAD
    assert "decided NO-GO (check mode)" in made.summary and "Rolling back api now." in made.summary
    assert made.details == ["Gate p95 (api, application): p95 < 200 did not hold in 2 of 2 samples (p95 was 312, 305)"
                            " · last failing sample: p95=305"]
    evidence = made.data["gates"][0]
    assert evidence["criteria"] == [{"criterion": "p95 < 200", "failed": 2, "errors": 0, "evaluated": 2}]
    assert ("Check mode", "yes: nothing was changed") in made.facts


def test_a_redacted_gate_gives_no_figures_to_a_notice():
    evidence = N.gate_evidence({**nogo_gate(), "redacted": True})
    assert evidence["reason"] == "redacted (no_log)" and evidence["figures"] == {} and evidence["criteria"] == []


def test_rollback_notice_says_ok_and_the_budget(tmp_path):
    rec = recorder(tmp_path)
    rec.rollback = {"components": ["api"], "ok": False, "duration_s": 12.5, "budget_s": 300, "within_budget": True,
                    "per_component": {"api": {"ran": True, "ok": False, "duration_s": 12.5, "budget_s": 300}},
                    "problems": ["rollback of api failed: verify said NO-GO"], "state": R.ROLLBACK_FINISHED}
    made = N.rollback_notice(rec)
    assert made.title == "Rollback FAILED: release 2.4.0" and made.severity == P.BAD
    assert "The rollback of api (check mode) FAILED in 12.5 s (budget 300 s)." == made.summary
    assert made.details == ["api: failed, 12.5 s of 300 s", "Problem: rollback of api failed: verify said NO-GO"]


def test_a_watch_verdict_is_sent_once(tmp_path):
    rec = recorder(tmp_path)
    sent: list[P.Notice] = []
    notices = N.RunNotices(N.parse_options({"notify_slack_url": SLACK_URL}), rec, watch=True)
    assert notices.notifier is not None
    notices.notifier.send = sent.append  # type: ignore[method-assign]  # what would go out, not how
    notices.watch_ending({"verdict": R.IN_PROGRESS})
    assert sent == []
    notices.watch_ending({"verdict": R.SUCCESS, "passes": 24, "window_s": 86400, "alerts": []})
    assert [n.title for n in sent] == ["Watch SUCCESS: release 2.4.0"]
    (tmp_path / "run-7" / "summary.json").write_text(json.dumps({"watch": {"verdict": R.SUCCESS}}))
    again = N.RunNotices(N.parse_options({"notify_slack_url": SLACK_URL}), rec, watch=True)
    again.notifier.send = sent.append  # type: ignore[method-assign,union-attr]
    again.watch_ending({"verdict": R.SUCCESS})
    assert len(sent) == 1  # a later invocation repeating the verdict sends nothing


# --- the sender against real loopback servers ---------------------------------------------------


def test_drain_gives_up_what_a_stalled_receiver_holds_and_journals_each_notice_once():
    from misbehaving_http import MisbehavingServer, drip_headers

    records: list[dict] = []
    with MisbehavingServer([("POST", "/.*", drip_headers(interval=0.5))]) as stalled:
        options = N.parse_options({"notify_slack_url": f"{stalled.url}/slack", "notify_timeout": "1",
                                   "notify_retries": "0"})
        notifier = N.Notifier(options, lambda kind, **data: records.append({"type": kind, **data}))
        notifier.send(notice(event=P.NOGO))
        notifier.send(notice(event=P.ROLLBACK))
        notifier.drain()
        assert [r["event"] for r in sorted(records, key=lambda r: r["event"])] == ["nogo", "rollback"]
        thread = notifier._threads["slack"]
    thread.join(5)  # the stalled server is gone: whatever was in flight has ended now
    assert not thread.is_alive()
    assert len(records) == 2  # a notice given up by drain is not journaled again by its sender
    assert all(r["type"] == R.NOTIFY and r["sent"] is False and r["outcome"] in (N.TIMEOUT, N.UNFINISHED, N.NOT_SENT)
               for r in records)
    assert all(f"127.0.0.1:{stalled.port}" not in json.dumps(r) for r in records)


def test_a_refused_connection_is_retried_and_recorded_as_unreachable():
    from servers import free_port

    records: list[dict] = []
    options = N.parse_options({"notify_slack_url": f"http://127.0.0.1:{free_port()}/x", "notify_retries": "1"})
    notifier = N.Notifier(options, lambda kind, **data: records.append(data))
    notifier.send(notice())
    notifier.drain()
    (record,) = records
    assert (record["outcome"], record["attempts"], record["waits_s"], record["sent"]) == (N.UNREACHABLE, 2, [1.0], False)
    assert record["error"].startswith("unreachable: the Slack URL: ") and "127.0.0.1" not in record["error"]


@pytest.mark.parametrize(("mode", "says"), [
    ("plan", "Rollback of api planned, not run (rollback=plan)."),
    ("off", "No rollback (rollback=off); api stay as deployed."),
])
def test_nogo_notice_says_what_happens_next_for_a_failed_step(tmp_path, mode, says):
    rec = recorder(tmp_path, rollback=mode)
    rec.start_phase("application", "api", "Phase api")
    rec.add_failure("h1", "Apply migrations", "ansible.builtin.command", "exit 1", unreachable=False)
    made = N.nogo_notice(rec, rec.enforced_nogo(), [])
    assert made.summary.endswith(says)
    assert made.details == ["Step Apply migrations on h1 (api): exit 1"]
    assert made.data["failures"][0]["task"] == "Apply migrations" and made.data["gates"] == []
