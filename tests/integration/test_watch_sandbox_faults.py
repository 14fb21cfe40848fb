"""The watch after GO end to end: the real `ansible-playbook playbooks/watch.yml` (default checks and
thresholds, the sandbox inventory, the go_no_go callback attached to a real GO deploy run) against a
sandbox whose Prometheus scrapes the services, one fault class at a time (tests/watch_sandbox.py).

- A healthy short window ends SUCCESS, every final criterion GO.
- Each runtime fault raises the alert of its check for its component: webhook-failures, worker-memory-leak
  (the hourly memory trend), jobs-stalled, redis-drop, telemetry-export; api-latency fails the final API
  p95 target (the checklist has no immediate alert for it). The webhook case rolls back for real (the
  restart clears the fault); the others record the rollback plan of exactly the alerted component.

Windows, intervals and lookbacks are compressed (alerts every 2 s); each watch takes well under a minute.
One sandbox and one deploy for the module; each case watches a copy of the GO run and starts from the
deployed state (Sandbox.reset).
"""
from __future__ import annotations

import pytest

from watch_sandbox import FAULTS, Sandbox

from sandbox.prometheus import PrometheusEngine

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.skipif(PrometheusEngine.binary() is None, reason="the prometheus binary is missing")]

WINDOW = "20s"  # the healthy and api-latency windows, and the deploy's baseline window
ALERT_CASES = ["webhook-failures", "worker-memory-leak", "jobs-stalled", "redis-drop", "telemetry-export"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("watch-sandbox"))
    try:
        box.up(WINDOW, settle_s=20)  # the baseline window before the deploy holds data
        yield box
    finally:
        box.down()


@pytest.fixture
def fresh(sandbox):
    sandbox.reset()
    yield sandbox
    sandbox.cli("fault", "clear")


def gates_of(watch, decision):
    return [(g["name"], g["component"]) for g in watch.records("gate") if g["decision"] == decision]


def test_healthy_window_ends_success(fresh):
    watch = fresh.watch(fresh.new_run("healthy"), window=WINDOW, alert="2s", hourly="10s")

    section = watch.summary["watch"]
    assert watch.rc == 0 and section["verdict"] == "SUCCESS", (section, watch.output[-4000:])
    assert section["alerts"] == [] and section["window_s"] == 20
    finals = [g for g in watch.records("gate") if g["phase"] == "watch"]
    assert finals and {g["decision"] for g in finals} == {"GO"}, finals
    assert not watch.summary["rollback"].get("triggered"), watch.summary["rollback"]
    assert watch.records("watch_end")[-1]["verdict"] == "SUCCESS"


@pytest.mark.parametrize("fault", ALERT_CASES)
def test_fault_raises_the_alert_of_its_check(fresh, fault):
    _args, check, component = FAULTS[fault]
    # the memory trend is an hourly check: its "hour" is 10 s here; the stall alert looks back 10 s
    extra = {"watch_jobs_stalled_after": "10s"} if fault == "jobs-stalled" else {}
    hourly = "10s" if fault == "worker-memory-leak" else "1m"
    rollback = "auto" if fault == "webhook-failures" else "plan"
    fresh.fault(fault)

    watch = fresh.watch(fresh.new_run(fault), window="2m", alert="2s", hourly=hourly, rollback=rollback, **extra)

    section = watch.summary["watch"]
    alerts = [(a["check"], a["component"]) for a in section["alerts"]]
    assert (check, component) in alerts, (alerts, watch.output[-4000:])
    assert section["verdict"] == "FAILED" and watch.rc == 2, (section["verdict"], watch.rc)
    assert (check, component) in gates_of(watch, "NO-GO")
    rollback = watch.summary["rollback"]
    assert rollback["trigger"] == "watch" and component in rollback["components"], rollback
    assert set(rollback["components"]) == {c for _check, c in alerts}, rollback
    if rollback["mode"] == "auto":
        assert rollback["ok"] and rollback["per_component"][component]["ok"], rollback
        # the rollback restarted the faulty release: the fault went with it
        assert fault not in fresh.cli("fault", "list")


def test_api_latency_fails_the_final_p95_target(fresh):
    _args, check, component = FAULTS["api-latency"]
    fresh.fault("api-latency")

    watch = fresh.watch(fresh.new_run("api-latency"), window=WINDOW, alert="2s", hourly="1m", rollback="plan")

    section = watch.summary["watch"]
    assert section["verdict"] == "FAILED" and watch.rc == 2, (section, watch.output[-4000:])
    assert (check, component) in gates_of(watch, "NO-GO")
    [p95] = [g for g in watch.records("gate") if g["name"] == check]
    assert "watch_api_p95_max_s" in p95["reason"], p95
    assert component in watch.summary["rollback"]["components"]
