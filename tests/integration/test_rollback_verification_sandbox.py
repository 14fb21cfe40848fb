"""The verification gate after every rollback, and readiness before GO, against the sandbox (a temporary
state directory) through the real `ansible-playbook deploy.yml`, the webhooks phase only (the other
components' host patterns match nothing):

1. webhook 1.1.0-404 is NO-GO; the rollback returns to 1.0.0 and the webhooks' own gate, enforced over a
   short window, says GO: per_component.webhooks.verified is true, the rollback ok.
2. the previous release itself is broken (its release.json now carries the 404 fault, same version): the
   rollback returns to it, the verification gate says NO-GO, and the rollback record says so.
3. the previous release is missing: readiness says NO-GO before anything changed (current untouched,
   no new release folder), and nothing is rolled back.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from test_deploy_sandbox import current, deploy, sandbox_state  # noqa: F401  # pylint: disable=unused-import  # the fixture

pytestmark = pytest.mark.timeout(420)

ONLY_WEBHOOKS = {f"emp_{c}_hosts": "!all" for c in ("database", "redis", "telemetry", "workers", "ngrok")}


def test_rollback_is_verified_by_the_components_own_gate(sandbox_state):
    proc, summary, journal = deploy(sandbox_state, "verified", emp_sandbox_webhook_version="1.1.0-404",
                                    **ONLY_WEBHOOKS)

    assert proc.returncode == 2, proc.stdout[-6000:]
    assert [(g["name"], g["decision"]) for g in summary["gates"]] == [("webhooks-processing", "NO-GO")]
    rollback = summary["rollback"]
    assert rollback["components"] == ["webhooks"] and rollback["ok"], rollback
    webhooks = rollback["per_component"]["webhooks"]
    assert webhooks["verified"] is True, webhooks
    assert [(g["name"], g["decision"], g["mode"]) for g in webhooks["verification"]] == [
        ("webhooks-processing", "GO", "enforce")]
    (gate,) = [r for r in journal if r["type"] == "rollback_gate"]
    assert gate["decision"] == "GO" and gate["counts"]["taken"] == 2  # the short window: 2 samples
    assert current(sandbox_state, "webhook") == "releases/1.0.0"


def test_rollback_to_a_broken_previous_release_fails_its_verification(sandbox_state):
    if current(sandbox_state, "webhook") != "releases/1.0.0":
        pytest.skip("needs the rollback of the previous test")
    manifest = sandbox_state / "releases/webhook/releases/1.0.0/release.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "faults": ["routes_404"]}))  # same version, broken service

    proc, summary, _journal = deploy(sandbox_state, "unverified", emp_sandbox_webhook_version="1.1.0-404",
                                     **ONLY_WEBHOOKS)

    assert proc.returncode == 2, proc.stdout[-6000:]
    rollback = summary["rollback"]
    webhooks = rollback["per_component"]["webhooks"]
    assert webhooks["verified"] is False and not rollback["ok"], rollback
    (verification,) = webhooks["verification"]
    assert verification["decision"] == "NO-GO" and "404" in verification["reason"], verification
    assert any("rollback of webhooks failed: gate webhooks-processing" in p for p in rollback["problems"]), rollback
    assert current(sandbox_state, "webhook") == "releases/1.0.0"
    manifest.write_text(json.dumps(data))


def test_missing_previous_release_is_no_go_before_any_change(sandbox_state):
    releases = sandbox_state / "releases/webhook/releases"
    shutil.move(releases / "1.0.0", sandbox_state / "webhook-1.0.0-aside")  # current points at nothing now
    try:
        proc, summary, _journal = deploy(sandbox_state, "unready", emp_sandbox_webhook_version="1.1.0",
                                         **ONLY_WEBHOOKS)
    finally:
        shutil.move(sandbox_state / "webhook-1.0.0-aside", releases / "1.0.0")

    assert proc.returncode == 2, proc.stdout[-6000:]
    (gate,) = summary["gates"]
    assert gate["name"] == "rollback-ready-webhook" and gate["decision"] == "NO-GO", gate
    assert gate["reason"].startswith("cannot roll back webhooks: previous release 1.0.0 is missing"), gate
    assert summary["releases"] == [] and not summary["rollback"]["triggered"], summary["rollback"]
    assert os.readlink(sandbox_state / "releases/webhook/current") == "releases/1.0.0"
    assert not (releases / "1.1.0").exists()
