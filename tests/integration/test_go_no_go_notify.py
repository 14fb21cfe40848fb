"""Notifications of the emp.deploy.go_no_go callback in real ansible-playbook runs, received by real
HTTP receivers on free loopback ports that the tests start (tests/notify_receiver.py) or stalled
servers (tests/misbehaving_http.py).

The deploy and rollback playbooks are those of test_go_no_go_runs.py: a database phase that says GO,
a redis phase whose gate says NO-GO (312 against < 200), then the rollback of redis.
"""
from __future__ import annotations

import base64
import secrets

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import ROOT, run_playbook
from misbehaving_http import MisbehavingServer, drip_headers
from notify_receiver import Receiver
from test_go_no_go_runs import DB_GATE, DB_PHASE, deploy

GO_DEPLOY = DB_PHASE + DB_GATE


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def release(run) -> str:
    """How notices name the run: its release label (the inventory sets one), else its run id."""
    label = run.summary["emp_release"]
    return f"release {label}" if label else f"run {run.summary['run_id']}"


def notify_records(run) -> list[dict]:
    return [r for r in run.journal if r["type"] == "notify"]


def by(records: list[dict], target: str, event: str) -> dict:
    (record,) = [r for r in records if r["target"] == target and r["event"] == event]
    return record


@pytest.mark.compat
def test_a_nogo_with_rollback_notifies_slack_teams_and_a_signed_webhook(tmp_path, receiver):
    secret = whsec()
    env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/slack/T000/B000/XXXX"),
           "EMP_DEPLOY_NOTIFY_TEAMS_URL": receiver.url("/teams?sig=topsecretsig"),
           "EMP_DEPLOY_NOTIFY_WEBHOOK_URL": receiver.url("/hook"),
           "EMP_DEPLOY_NOTIFY_WEBHOOK_SECRET": secret}
    run = deploy(tmp_path, env=env, args=["-vvv"])
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert run.summary["rollback"]["ok"] is True

    slack = [r.json() for r in receiver.at("/slack/T000/B000/XXXX")]
    assert [m["blocks"][0]["text"]["text"] for m in slack] == ["NO-GO: " + release(run), "Rollback OK: " + release(run)]
    nogo = slack[0]
    assert nogo["text"].startswith(f"NO-GO: {release(run)}: Run {run.summary['run_id']} decided NO-GO") and "Rolling back redis now" in nogo["text"]
    kinds = [b["type"] for b in nogo["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "context" and "divider" in kinds
    detail = " ".join(b["text"]["text"] for b in nogo["blocks"] if b["type"] == "section" and "text" in b)
    assert "redis-gate" in detail and "312" in detail and "result.stdout=312" in detail
    fields = [f["text"] for b in nogo["blocks"] if b["type"] == "section" for f in b.get("fields", [])]
    assert f"*Run*\n{run.summary['run_id']}" in fields
    rollback_text = slack[1]["text"]
    assert "The rollback of redis finished OK in" in rollback_text and "(budget 300 s)" in rollback_text

    (teams_nogo, teams_rollback) = [r.json() for r in receiver.at("/teams?sig=topsecretsig")]
    for message in (teams_nogo, teams_rollback):
        assert message["type"] == "message"
        (attachment,) = message["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    body = teams_nogo["attachments"][0]["content"]["body"]
    assert body[0]["text"] == "NO-GO: " + release(run) and body[0]["color"] == "Attention"
    facts = {f["title"]: f["value"] for b in body if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Run"] == run.summary["run_id"]

    hooks = receiver.at("/hook")
    assert len(hooks) == 2
    verified = [Webhook(secret).verify(h.body, h.headers) for h in hooks]
    assert [v["type"] for v in verified] == ["emp.deploy.nogo", "emp.deploy.rollback"]
    evidence = verified[0]["data"]["gates"][0]
    assert evidence["name"] == "redis-gate" and evidence["figures"] == {"result.stdout": "312"}
    assert evidence["criteria"][0]["criterion"] == "result.stdout | int < 200"
    assert verified[0]["data"]["rollback"] == {"mode": "auto", "components": ["redis"]}
    assert verified[1]["data"]["rollback"]["ok"] is True
    with pytest.raises(Exception):  # a tampered body does not verify
        Webhook(secret).verify(hooks[0].body.replace(b"redis", b"REDIS"), hooks[0].headers)

    # every send journaled, before run_end; the NO-GO notice arrived before the rollback notice
    records = notify_records(run)
    expected = {(target, event) for target in ("slack", "teams", "webhook") for event in ("nogo", "rollback")}
    assert {(r["target"], r["event"]) for r in records} == expected
    assert all(r["sent"] and r["status"] == 200 and r["attempts"] == 1 and r["outcome"] == "sent" for r in records)
    assert by(records, "webhook", "nogo")["message_id"] == hooks[0].headers["webhook-id"]
    assert run.kinds[-1] == "run_end"
    assert hooks[0].at < receiver.at("/hook")[1].at
    # no URL and no secret anywhere: not in the -vvv output, not in the journal, the summary or the reports
    texts = [run.stdout, run.proc.stderr] + [path.read_text() for path in run.dir.iterdir() if path.is_file()]
    assert {"journal.jsonl", "summary.json", "report.html"} <= {path.name for path in run.dir.iterdir()}
    for text in texts:
        for hidden in (secret, "topsecretsig", "XXXX", f"127.0.0.1:{receiver.port}"):
            assert hidden not in text


def test_event_filters_per_target(tmp_path, receiver):
    env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/slack"), "EMP_DEPLOY_NOTIFY_TEAMS_URL": receiver.url("/teams"),
           "EMP_DEPLOY_NOTIFY_EVENTS": "slack=rollback;teams=nogo,go"}
    run = deploy(tmp_path, env=env)
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert [r.json()["blocks"][0]["text"]["text"].split(":")[0] for r in receiver.at("/slack")] == ["Rollback OK"]
    assert [r.json()["attachments"][0]["content"]["body"][0]["text"].split(":")[0]
            for r in receiver.at("/teams")] == ["NO-GO"]
    assert [(r["target"], r["event"]) for r in notify_records(run)] == [("teams", "nogo"), ("slack", "rollback")]


def test_options_from_ansible_cfg_with_blank_separated_events(tmp_path, receiver):
    config = tmp_path / "ansible.cfg"
    config.write_text(f"""[defaults]
collections_path = {ROOT / "collections"}
callbacks_enabled = emp.deploy.go_no_go
interpreter_python = auto_silent
retry_files_enabled = false

[callback_go_no_go]
notify_slack_url = {receiver.url("/slack")}
notify_teams_url = {receiver.url("/teams")}
notify_events = slack=nogo teams=rollback ; ';' starts a comment in ansible.cfg
notify_timeout = 3s
""")
    run = deploy(tmp_path, env={"ANSIBLE_CONFIG": str(config)})
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert [(r["target"], r["event"], r["sent"]) for r in notify_records(run)] == [
        ("slack", "nogo", True), ("teams", "rollback", True)]


def test_a_go_run_notifies_go_at_its_end(tmp_path, receiver):
    env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/slack"), "EMP_DEPLOY_NOTIFY_EVENTS": "nogo,go"}
    run = deploy(tmp_path, GO_DEPLOY, env=env)
    assert run.proc.returncode == 0, run.stdout[-3000:]
    (message,) = [r.json() for r in receiver.at("/slack")]
    assert message["text"].startswith(f"GO: {release(run)}: Run {run.summary['run_id']} decided GO: 1 gate")
    (record,) = notify_records(run)
    assert record["event"] == "go" and record["sent"] is True
    assert run.kinds[-2:] == ["notify", "run_end"]


def test_a_receiver_that_answers_500_is_retried_within_bounds_and_recorded(tmp_path):
    script = {"/flaky": [(500, {})], "/down": [(503, {})] * 10}
    with Receiver(script) as receiver:
        env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/flaky"), "EMP_DEPLOY_NOTIFY_TEAMS_URL": receiver.url("/down"),
               "EMP_DEPLOY_NOTIFY_EVENTS": "nogo", "EMP_DEPLOY_NOTIFY_RETRIES": "1", "EMP_DEPLOY_NOTIFY_TIMEOUT": "3"}
        run = deploy(tmp_path, env=env, args=["-vvv"])
        assert run.proc.returncode == 2, run.stdout[-3000:]
        assert len(receiver.at("/flaky")) == 2  # 500, then 200
        where = f"127.0.0.1:{receiver.port}"  # failures are told without the URL, also at -vvv
        assert where not in run.stdout + run.proc.stderr + (run.dir / "journal.jsonl").read_text()
        assert len(receiver.at("/down")) == 2  # 503 twice: one retry and no more
    records = notify_records(run)
    flaky, down = by(records, "slack", "nogo"), by(records, "teams", "nogo")
    assert (flaky["sent"], flaky["statuses"], flaky["attempts"], flaky["waits_s"]) == (True, [500, 200], 2, [1.0])
    assert (down["sent"], down["status"], down["attempts"], down["outcome"]) == (False, 503, 2, "http_error")
    assert down["error"].startswith("the Teams URL answered HTTP 503")
    assert "emp.deploy.go_no_go: teams nogo notice not sent: the Teams URL answered HTTP 503" in run.stdout
    assert "slack nogo notice not sent" not in run.stdout
    assert run.summary["rollback"]["ok"] is True and run.kinds[-1] == "run_end"


def test_a_429_with_retry_after_is_honoured(tmp_path):
    with Receiver({"/slack": [(429, {"Retry-After": "2"})]}) as receiver:
        env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/slack"), "EMP_DEPLOY_NOTIFY_EVENTS": "nogo"}
        run = deploy(tmp_path, env=env)
        first, second = receiver.at("/slack")
    record = by(notify_records(run), "slack", "nogo")
    assert (record["sent"], record["statuses"], record["waits_s"]) == (True, [429, 200], [2.0])
    assert second.at - first.at >= 2.0  # not sooner than asked


def test_a_retry_after_beyond_the_cap_is_given_up_and_recorded(tmp_path):
    with Receiver({"/slack": [(429, {"Retry-After": "3600"})]}) as receiver:
        run = deploy(tmp_path, env={"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/slack"),
                                    "EMP_DEPLOY_NOTIFY_EVENTS": "nogo"})
        assert len(receiver.at("/slack")) == 1
    record = by(notify_records(run), "slack", "nogo")
    assert (record["sent"], record["status"], record["attempts"]) == (False, 429, 1)
    assert "asked to wait 3600 s (Retry-After), longer than the 10 s" in record["error"]


def test_a_receiver_that_never_answers_is_journaled_as_timeout_and_the_run_finishes(tmp_path):
    with MisbehavingServer([("POST", "/.*", drip_headers(interval=1.0))]) as stalled:
        env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": f"{stalled.url}/slack", "EMP_DEPLOY_NOTIFY_TIMEOUT": "1"}
        run = deploy(tmp_path, env=env)
        assert stalled.paths  # it was asked
    assert run.proc.returncode == 2, run.stdout[-3000:]
    assert run.summary["rollback"]["ok"] is True and run.kinds[-1] == "run_end"
    records = notify_records(run)
    nogo = by(records, "slack", "nogo")
    assert (nogo["sent"], nogo["outcome"], nogo["status"], nogo["attempts"]) == (False, "timeout", None, 1)
    assert nogo["error"] == "the Slack URL did not answer within 1 s"
    assert "slack nogo notice not sent: the Slack URL did not answer within 1 s" in run.stdout
    # the rollback notice had at most the drain's bounded wait: journaled whatever became of it
    assert by(records, "slack", "rollback")["sent"] is False


@pytest.mark.parametrize(("env", "expected"), [
    ({"EMP_DEPLOY_NOTIFY_SLACK_URL": "ftp://hooks.example/T0/B0/SECRETPART"},
     "notify_slack_url (EMP_DEPLOY_NOTIFY_SLACK_URL): the Slack URL cannot be used"),
    ({"EMP_DEPLOY_NOTIFY_WEBHOOK_URL": "https://example.invalid/hook", "EMP_DEPLOY_NOTIFY_WEBHOOK_SECRET": "SECRETPART"},
     "notify_webhook_secret (EMP_DEPLOY_NOTIFY_WEBHOOK_SECRET): not a Standard Webhooks secret"),
    ({"EMP_DEPLOY_NOTIFY_WEBHOOK_URL": "https://example.invalid/SECRETPART"},
     "notify_webhook_secret (EMP_DEPLOY_NOTIFY_WEBHOOK_SECRET): the webhook URL is set"),
    ({"EMP_DEPLOY_NOTIFY_SLACK_URL": "https://example.invalid/SECRETPART", "EMP_DEPLOY_NOTIFY_EVENTS": "slack=nogoo"},
     "notify_events (EMP_DEPLOY_NOTIFY_EVENTS): 'nogoo' is not an event"),
    ({"EMP_DEPLOY_NOTIFY_SLACK_URL": "https://example.invalid/SECRETPART", "EMP_DEPLOY_NOTIFY_EVENTS": "teams=all"},
     "notify_events (EMP_DEPLOY_NOTIFY_EVENTS): names teams, but the Teams URL is not set"),
    ({"EMP_DEPLOY_NOTIFY_SLACK_URL": "https://example.invalid/SECRETPART", "EMP_DEPLOY_NOTIFY_TIMEOUT": "0"},
     "notify_timeout (EMP_DEPLOY_NOTIFY_TIMEOUT): 0 s is not between 0 and 60 s"),
    ({"EMP_DEPLOY_NOTIFY_SLACK_URL": "https://example.invalid/SECRETPART", "EMP_DEPLOY_NOTIFY_RETRIES": "9"},
     "notify_retries (EMP_DEPLOY_NOTIFY_RETRIES): '9' is not a number of retries from 0 to 5"),
])
def test_bad_notify_options_stop_the_run_with_exit_5_naming_the_option(tmp_path, env, expected):
    reports = tmp_path / "reports"
    (tmp_path / "deploy.yml").write_text(GO_DEPLOY)
    proc = run_playbook(tmp_path / "deploy.yml", env={**env, "EMP_DEPLOY_REPORT_DIR": str(reports)}, args=["-vvv"])
    assert proc.returncode == 5
    output = proc.stdout + proc.stderr
    assert expected in " ".join(output.split()), output[-2000:]
    assert "TASK [Database gate]" not in output and not reports.exists()  # stopped before any task and record
    assert "SECRETPART" not in output


def test_a_watch_alert_its_rollback_and_the_verdict_are_notified_and_the_verdict_once(tmp_path, receiver):
    from test_go_no_go_watch import ALERT, FOLLOW, ONCE, journal_of, play, summary_of, watch
    from test_go_no_go_watch import deploy as deploy_go

    deploy_go(tmp_path, "deploy-1")
    assert receiver.requests == []  # that deploy had no notification configured
    env = {"EMP_DEPLOY_NOTIFY_SLACK_URL": receiver.url("/slack")}
    proc = watch(tmp_path, play(FOLLOW, [{}, {"alerts": [ALERT]}, {}]), env=env, emp_watch_rollback="auto")
    assert proc.returncode == 2, proc.stdout[-3000:]
    titles = [r.json()["blocks"][0]["text"]["text"] for r in receiver.at("/slack")]
    release = "release " + summary_of(tmp_path, "deploy-1")["emp_release"]  # the watched deploy's
    assert titles == ["Watch alert: webhook_failures (webhooks)", f"Rollback OK after a watch alert: {release}",
                      f"Watch FAILED: {release}"]
    alert = receiver.at("/slack")[0].json()["text"]
    assert "webhook failures 40 % &gt; 5 %" in alert and "rolled back when this watch invocation ends" in alert
    records = [r for r in journal_of(tmp_path, "deploy-1") if r["type"] == "notify"]
    assert [r["event"] for r in records] == ["watch_alert", "rollback", "watch_verdict"]
    assert all(r["sent"] and r["invocation"] for r in records)

    # a later invocation that only repeats the final verdict notifies nothing new
    proc = watch(tmp_path, play(ONCE, [{}]), env=env)
    verdicts = [r for r in receiver.at("/slack") if r.json()["blocks"][0]["text"]["text"].startswith("Watch FAILED")]
    assert len(verdicts) == 1, proc.stdout[-2000:]
