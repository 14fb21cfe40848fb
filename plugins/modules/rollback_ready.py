#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: rollback_ready
short_description: Prove a release can be rolled back, before it is released
version_added: 0.3.0
description:
  - Reads, never writes, what a rollback of the release would need, and says whether it is there.
  - "V(symlink) strategy: the release a rollback would return to (the one C(current) points at now, or the
    recorded previous one when O(version) is current already, or O(rollback_to)) is a folder under
    C(<base_dir>/releases/), and its C(release.json), when it has one, records that same version."
  - "V(command) strategy: a rollback command is configured (O(rollback_command)) and the current-version
    command answered (O(current_version_rc) 0 and a non-empty O(current_version))."
  - "O(requires): a database backup (O(backup_path), a non-empty file or folder) or a down migration
    (O(down_migration_command)) the user declared as required is there."
  - A first release (no C(current) and nothing recorded) has nothing to return to; it is ready, and
    RV(first_release) says so.
  - Never fails for what it finds; RV(ready) and RV(problems) say it. The P(emp.deploy.release#role) role
    turns a not-ready answer into a NO-GO gate record (M(emp.deploy.gate) with the result as evidence)
    before anything changes.
author:
  - emp.deploy maintainers (@emp-deploy)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: It only reads; check mode checks exactly as a normal run does.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  read_only:
    description: Never changes its target, so M(emp.deploy.gate) may sample it as the task runs, outside check mode.
    support: full
options:
  name:
    description: The service's name, for messages.
    type: str
    required: true
  component:
    description: The deployment component, for messages. Defaults to O(name).
    type: str
  strategy:
    description: How the service is released (see M(emp.deploy.release)); V(none) checks only O(requires).
    type: str
    choices: [symlink, command, none]
    default: symlink
  version:
    description: The version about to be released.
    type: str
    default: ""
  base_dir:
    description: V(symlink) strategy; the folder holding C(releases/), C(current) and C(.emp-release.json).
    type: path
  rollback_to:
    description: The version a rollback is told to return to instead of the previous one.
    type: str
    default: ""
  rollback_command:
    description: V(command) strategy; the rollback command as configured (only whether it is empty is checked).
    type: str
    default: ""
  current_version:
    description: V(command) strategy; what the current-version command printed (its first line).
    type: str
    default: ""
  current_version_rc:
    description: V(command) strategy; the current-version command's exit code (unset when it did not run).
    type: int
  requires:
    description:
      - What a database rollback needs and the user declared required.
      - V(backup_or_down_migration) is satisfied by either.
    type: str
    choices: [none, backup, down_migration, backup_or_down_migration]
    default: none
  backup_path:
    description: The backup a database rollback restores (a file or folder that must exist and not be empty).
    type: path
  down_migration_command:
    description: The down migration (or reverse script) a database rollback runs; configured when not empty.
    type: str
    default: ""
seealso:
  - module: emp.deploy.release
    description: Releases and rolls back.
  - module: emp.deploy.gate
    description: Judges this module's result as evidence.
"""

EXAMPLES = r"""
- name: Can webhook 1.1.0 be rolled back?
  emp.deploy.rollback_ready:
    name: webhook
    component: webhooks
    version: 1.1.0
    base_dir: /srv/emp/webhook
  register: webhook_ready

- name: NO-GO before anything changes when it cannot
  emp.deploy.gate:
    name: rollback-ready-webhook
    component: webhooks
    evidence: "{{ webhook_ready }}"
    criteria: [result.ready]
  when: not webhook_ready.ready
"""

RETURN = r"""
ready:
  description: Whether a rollback has everything it needs.
  returned: always
  type: bool
  sample: false
healthy:
  description: Same as RV(ready), for M(emp.deploy.gate).
  returned: always
  type: bool
  sample: false
problems:
  description: Why not, one sentence each, the first naming the component.
  returned: always
  type: list
  elements: str
  sample: ["cannot roll back webhooks: previous release 1.0.0 is missing (/srv/emp/webhook/releases/1.0.0 does not exist)"]
target:
  description: The version a rollback would return to (V(symlink) and V(command) strategies), null when none.
  returned: always
  type: str
  sample: 1.0.0
first_release:
  description: True when nothing was released before, so a rollback has nothing to return to.
  returned: always
  type: bool
  sample: false
checks:
  description: Every check made, with C(check), C(ok) and C(detail).
  returned: always
  type: list
  elements: dict
  sample: [{check: previous_release_present, ok: true, detail: /srv/emp/webhook/releases/1.0.0}]
"""

import json
import os
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils._release import (
    RELEASES_DIR,
    STATE_FILE_NAME,
    ReleaseError,
    current_version,
    read_json,
)

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "name": {"type": "str", "required": True},
    "component": {"type": "str"},
    "strategy": {"type": "str", "choices": ["symlink", "command", "none"], "default": "symlink"},
    "version": {"type": "str", "default": ""},
    "base_dir": {"type": "path"},
    "rollback_to": {"type": "str", "default": ""},
    "rollback_command": {"type": "str", "default": "", "no_log": True},
    "current_version": {"type": "str", "default": ""},
    "current_version_rc": {"type": "int"},
    "requires": {"type": "str", "default": "none",
                 "choices": ["none", "backup", "down_migration", "backup_or_down_migration"]},
    "backup_path": {"type": "path"},
    "down_migration_command": {"type": "str", "default": "", "no_log": True},
}


class Readiness:
    """Collects the checks; each failed one is a problem sentence that names the component."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.checks: list[dict[str, t.Any]] = []
        self.problems: list[str] = []
        self.target: str | None = None
        self.first_release = False

    def check(self, name: str, ok: bool, detail: str, problem: str = "") -> bool:
        self.checks.append({"check": name, "ok": ok, "detail": detail})
        if not ok:
            self.problems.append(f"cannot roll back {self.component}: {problem or detail}")
        return ok

    # --- symlink strategy -----------------------------------------------------------------------

    def symlink(self, base_dir: str, version: str, rollback_to: str) -> None:
        try:
            state = read_json(os.path.join(base_dir, STATE_FILE_NAME))
        except ReleaseError as exc:
            self.check("state_readable", False, str(exc))
            return
        running = current_version(base_dir)
        target = rollback_to or self.symlink_target(running, version, state)
        if target is None:
            return
        self.target = target
        release_dir = os.path.join(base_dir, RELEASES_DIR, target)
        if self.check("previous_release_present", os.path.isdir(release_dir), release_dir,
                      f"previous release {target} is missing ({release_dir} does not exist)"):
            self.check_recorded_version(release_dir, target)

    def symlink_target(self, running: str, version: str, state: t.Mapping[str, t.Any]) -> str | None:
        """What a rollback after this release returns to; None when there is nothing to prove."""
        if running and running != version:
            return running
        if running == version:
            # nothing is switched; a rollback of this version would return to the recorded previous one
            previous = state.get("previous")
            self.checks.append({"check": "already_current", "ok": True, "detail": f"{version} is current already"})
            return str(previous) if previous else None
        recorded = state.get("current")
        if recorded:  # the state says a release runs, but current is gone: what would a rollback restore?
            return str(recorded)
        self.first_release = True
        self.checks.append({"check": "first_release", "ok": True, "detail": "nothing released before"})
        return None

    def check_recorded_version(self, release_dir: str, target: str) -> None:
        manifest = os.path.join(release_dir, "release.json")
        if not os.path.exists(manifest):
            self.checks.append({"check": "previous_release_intact", "ok": True,
                                "detail": f"{release_dir} records no version (no release.json)"})
            return
        try:
            with open(manifest, encoding="utf-8") as handle:
                recorded = json.load(handle).get("version")
        except (OSError, ValueError, AttributeError) as exc:
            self.check("previous_release_intact", False, f"{manifest}: {exc}",
                       f"previous release {target} is corrupted ({manifest} is unreadable: {exc})")
            return
        self.check("previous_release_intact", recorded == target, f"{manifest} records version {recorded}",
                   f"previous release {target} is corrupted ({manifest} records version {recorded!r})")

    # --- command strategy -----------------------------------------------------------------------

    def command(self, rollback_command: str, answer: str, rc: int | None) -> None:
        self.check("rollback_command_configured", bool(rollback_command.strip()),
                   "a rollback command is configured" if rollback_command.strip() else "no rollback command",
                   "no rollback command is configured (release_rollback_command)")
        answered = rc == 0 and bool(answer.strip())
        self.check("current_version_answers", answered, f"the current-version command said {answer.strip()!r} (rc {rc})",
                   f"its current-version command did not answer (rc {rc}, output {answer.strip()!r})")
        if answered:
            self.target = answer.strip()

    # --- database requirements -------------------------------------------------------------------

    def database(self, requires: str, backup_path: str | None, down_migration: str) -> None:
        if requires == "none":
            return
        backup_ok, backup_detail = backup_present(backup_path)
        down_ok = bool(down_migration.strip())
        down_detail = "a down migration is configured" if down_ok else "no down migration is configured"
        if requires == "backup":
            self.check("backup_present", backup_ok, backup_detail, f"the required backup is absent ({backup_detail})")
        elif requires == "down_migration":
            self.check("down_migration_configured", down_ok, down_detail,
                       "the required down migration is not configured (database_rollback_command)")
        else:
            self.check("backup_or_down_migration", backup_ok or down_ok, f"{backup_detail}; {down_detail}",
                       f"neither a backup nor a down migration is there ({backup_detail}; {down_detail})")


def backup_present(path: str | None) -> tuple[bool, str]:
    if not path:
        return False, "no backup path given (database_backup_path)"
    if os.path.isfile(path):
        return (os.path.getsize(path) > 0, f"{path} ({os.path.getsize(path)} bytes)")
    if os.path.isdir(path):
        return (bool(os.listdir(path)), f"{path} ({len(os.listdir(path))} entries)")
    return False, f"{path} does not exist"


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    readiness = Readiness(params["component"] or params["name"])
    if params["strategy"] == "symlink":
        if not params["base_dir"]:
            module.fail_json(msg=f"emp.deploy.rollback_ready {params['name']}: the symlink strategy needs base_dir")
        readiness.symlink(params["base_dir"], params["version"], params["rollback_to"])
    elif params["strategy"] == "command":
        readiness.command(params["rollback_command"], params["current_version"], params["current_version_rc"])
    readiness.database(params["requires"], params["backup_path"], params["down_migration_command"])
    ready = not readiness.problems
    module.exit_json(changed=False, ready=ready, healthy=ready, problems=readiness.problems,
                     target=readiness.target, first_release=readiness.first_release, checks=readiness.checks,
                     msg="ready to roll back" if ready else readiness.problems[0])


if __name__ == "__main__":
    main()
