"""The plan's pure parts: soak windows as emp.deploy.gate derives them, the unsafe flags, the text, and the
phase plays and gate tasks read from the collection's own playbooks and roles."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.emp.deploy.plugins.plugin_utils import _plan as P

ROOT = Path(__file__).resolve().parents[4]


def load(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("samples, interval, duration, window", [
    (None, None, None, 0), (3, 1, None, 2), (5, 60, None, 240), ("5", "60", None, 240), (None, 5, 1800, 1800),
    (1, 60, None, 0), (3, None, None, 20)])
def test_soak_window(samples, interval, duration, window):
    assert P.soak_window(samples, interval, duration) == window


def component(**changes):
    base = {"component": "webhooks", "play": "p", "hosts": ["h"], "releases": [], "readiness": True,
            "gates": [{"name": "g", "mode": "enforce", "probe": "m", "criteria": ["result.healthy"], "samples": 3,
                       "soak_window_s": 120.0}], "rollback_play": "Rollback · webhooks", "rollback_budget_s": 300.0}
    base.update(changes)
    return base


def test_unsafe_reasons_each_case_and_none_when_safe():
    assert P.unsafe_reasons(component()) == []
    assert P.unsafe_reasons(component(gates=[])) == ["webhooks has no GO/NO-GO gate: nothing would stop a bad release"]
    assert P.unsafe_reasons(component(rollback_play=None)) == [
        "webhooks has no rollback play: a NO-GO could not be rolled back"]
    assert P.unsafe_reasons(component(rollback_budget_s=60.0)) == [
        "webhooks: gate g soaks 120 s, longer than its rollback budget 60 s"]
    assert P.unsafe_reasons(component(rollback_budget_s=120.0)) == []  # equal is within the budget


def test_render_flags_unsafe_components_and_totals():
    unsafe = component(gates=[], unsafe=["webhooks has no GO/NO-GO gate: nothing would stop a bad release"])
    text = P.render({"playbook": "deploy.yml", "phases": [{"phase": "application", "components": [unsafe]}]})
    assert "  webhooks  UNSAFE · p" in text and "    gate: none" in text
    assert text.splitlines()[-2:] == ["UNSAFE: 1 problem",
                                      "  - webhooks has no GO/NO-GO gate: nothing would stop a bad release"]
    safe = P.render({"playbook": "deploy.yml", "phases": [{"phase": "application", "components": [
        component(unsafe=[])]}]})
    assert safe.splitlines()[-1].startswith("Safe:") and "gate g · enforce · probe m · soak 120 s (3 samples)" in safe


@pytest.mark.parametrize(("batch", "sizes", "max_fail", "line"), [
    ([1, "10%", "100%"], [1, 20, 179], None,
     "batches: 3 of 1, 20, 179 hosts (emp_batch [1, '10%', '100%']), each judged before the next starts; "
     "the first NO-GO host stops the run"),
    ([5], [5, 5, 2], 0,
     "batches: 3 of 5, 5, 2 hosts (emp_batch [5]), each judged before the next starts; "
     "up to 0 % of a batch's hosts may say NO-GO before the run stops"),
    (["50%"], [1], 10,
     "batches: 1 of 1 host (emp_batch ['50%']), each judged before the next starts; "
     "up to 10 % of a batch's hosts may say NO-GO before the run stops"),
    ([1], [], None, "batches: none (no host) · emp_batch [1]"),
])
def test_batches_line(batch, sizes, max_fail, line):
    assert P.batches_line({"batch": batch, "batches": sizes, "max_fail_percentage": max_fail}) == line


def test_render_shows_batches_only_for_a_fleet_rollout():
    fleet = component(unsafe=[], batch=[1, "100%"], batches=[1, 9], max_fail_percentage=None)
    text = P.render({"playbook": "deploy.yml", "phases": [{"phase": "application", "components": [fleet]}]})
    assert "    batches: 2 of 1, 9 hosts (emp_batch [1, '100%'])" in text
    plain = P.render({"playbook": "deploy.yml", "phases": [{"phase": "application", "components": [
        component(unsafe=[], batch=None, batches=[10])]}]})
    assert "batches:" not in plain


def test_the_collections_deploy_playbook_phases_gates_and_rollback_plays():
    plays = P.phase_plays(load, ROOT / "playbooks" / "deploy.yml")
    assert [(p.phase, p.component, p.role) for p in plays] == [
        ("infrastructure", "database", "database"), ("infrastructure", "redis", "redis"),
        ("telemetry", "telemetry", "telemetry"), ("application", "webhooks", "webhooks"),
        ("application", "workers", "workers"), ("devtools", "ngrok", "ngrok")]
    rollbacks = P.rollback_plays(load, ROOT / "playbooks" / "rollback.yml")
    assert sorted(rollbacks) == sorted(p.component for p in plays)
    for play in plays:
        tasks = P.role_tasks(load, ROOT / "roles" / str(play.role))
        assert tasks.gates, play.component
        assert "release" in tasks.includes_roles, play.component  # readiness runs before each release
        # after every rollback, the component's own gate verifies the previous release
        assert P.role_tasks(load, ROOT / "roles" / str(play.role), "rollback.yml").gates, play.component
