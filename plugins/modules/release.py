#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: release
short_description: Switch a service's release and record it, in one atomic step
version_added: 0.2.0
description:
  - "V(symlink) strategy (the ansistrano layout C(<base_dir>/releases/<version>/) and C(<base_dir>/current)):
    writes the release manifest, switches C(current) to the release atomically (a new link renamed over the
    old one), records the change in C(<base_dir>/.emp-release.json), verifies C(current) and removes
    releases beyond O(keep) (never the current or the previous one). Rollback switches back to the
    recorded previous release (or O(rollback_to))."
  - "V(command) strategy: the service is released by the user's commands (run by the
    P(emp.deploy.release#role) role); this module records the change in O(state_file) and reports it."
  - "The state file holds C(current), C(previous), C(rolled_back_from), C(changed_at), C(run_id) and the
    C(history) of changes (the newest 20). The whole step (read, decide, switch, verify, record) holds an
    exclusive lock (C(flock) on C(<state file>.lock)) and the file is replaced by rename, so two deployments
    of the same service running at once wait for each other: neither verifies the other's switch as its
    own, and no history entry is lost."
  - Returns RV(emp_release_step) at the top level of its result, which the P(emp.deploy.go_no_go#callback)
    callback journals, so a rollback of this run knows which components the run really switched.
  - Releasing the version that is already current changes nothing. With O(action=rollback) and
    O(version), only that (bad) version is rolled back; when another version is current nothing is done.
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.attributes.action
attributes:
  check_mode:
    support: full
    details: Nothing is written; C(changed) and RV(emp_release_step) say what would be switched.
  diff_mode:
    support: full
    details: The version C(current) points at, before and after.
options:
  name:
    description: The service's name, for messages and the state file.
    type: str
    required: true
  component:
    description: The deployment component the service belongs to, recorded in RV(emp_release_step). Defaults to O(name).
    type: str
  strategy:
    description: How the service is released (see the description).
    type: str
    choices: [symlink, command]
    default: symlink
  action:
    description: V(deploy) a version or V(rollback) to the previous one.
    type: str
    choices: [deploy, rollback]
    default: deploy
  version:
    description:
      - The version to deploy (required to deploy). With O(action=rollback), the bad version to roll back
        from; the rollback does nothing when another version is current. One folder name.
    type: str
    default: ""
  base_dir:
    description: V(symlink) strategy; the folder holding C(releases/), C(current) and C(.emp-release.json).
    type: path
  src:
    description:
      - V(symlink) strategy; a folder on the target whose files are copied into the release folder (only the
        files that are missing or differ). Optional.
      - The P(emp.deploy.release#role) role copies a folder from the controller with M(ansible.builtin.copy)
        instead.
    type: path
  manifest:
    description:
      - V(symlink) strategy; written as C(release.json) into the release folder when not empty (after O(src),
        so it wins over a C(release.json) there).
    type: dict
    default: {}
  keep:
    description: V(symlink) strategy; how many releases to keep (the current and previous ones always stay).
    type: int
    default: 5
  rollback_to:
    description:
      - The version to roll back to instead of the recorded previous one.
      - V(command) strategy with O(action=rollback); the version the rollback command restored.
    type: str
    default: ""
  state_file:
    description: V(command) strategy; the state file to record in.
    type: path
  running_version:
    description: V(command) strategy; the version that ran before the role's command.
    type: str
    default: ""
  switched:
    description:
      - V(command) strategy; whether the role's command changed the release (and it was verified). When
        false, nothing is recorded and the step is reported unchanged.
    type: bool
    default: false
  run_id:
    description: The deployment run's id, recorded in the state file and in RV(emp_release_step).
    type: str
    default: ""
  host:
    description: The inventory host name recorded in RV(emp_release_step) (the role passes C(inventory_hostname)).
    type: str
    default: ""
notes:
  - The P(emp.deploy.release#role) role calls this module; use the role to also copy the release files,
    restart the service and run a verify command.
seealso:
  - module: emp.deploy.gate
    description: Gates the release over a soak window.
"""

EXAMPLES = r"""
- name: Switch the webhook service to 1.1.0 and record it
  emp.deploy.release:
    name: webhook
    component: webhooks
    version: 1.1.0
    base_dir: /srv/emp/webhook
    manifest: {service: webhook, version: 1.1.0}
    run_id: "{{ lookup('ansible.builtin.env', 'EMP_DEPLOY_RUN_ID') }}"
    host: "{{ inventory_hostname }}"
  register: webhook_release

- name: Roll 1.1.0 back to the recorded previous release (nothing to do when 1.1.0 is not current)
  emp.deploy.release:
    name: webhook
    action: rollback
    version: 1.1.0
    base_dir: /srv/emp/webhook
"""

RETURN = r"""
name:
  description: The service's name.
  returned: always
  type: str
  sample: webhook
strategy:
  description: The strategy used.
  returned: always
  type: str
  sample: symlink
action:
  description: The action done.
  returned: always
  type: str
  sample: deploy
version:
  description: The version current after this step (a rollback's target, or the one left current).
  returned: always
  type: str
  sample: 1.1.0
current:
  description: Same as RV(version).
  returned: always
  type: str
  sample: 1.1.0
previous:
  description: For a deploy, the release before it (the recorded previous one when nothing changed); for a rollback, the bad version it replaced.
  returned: always
  type: str
  sample: 1.0.0
state_file:
  description: The state file.
  returned: always
  type: str
  sample: /srv/emp/webhook/.emp-release.json
removed:
  description: Release folders removed beyond O(keep).
  returned: always
  type: list
  elements: str
  sample: [/srv/emp/webhook/releases/0.9.0]
emp_release_step:
  description: What this step switched, for the run record (C(changed) false when nothing was switched).
  returned: always
  type: dict
  sample: {component: webhooks, version: 1.1.0, previous: 1.0.0, changed: true, run_id: 20260101T000000-ab12, host: web1}
"""

import os
import socket
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils._release import (
    RELEASES_DIR,
    STATE_FILE_NAME,
    ReleaseError,
    check_version_name,
    copy_tree,
    current_version,
    locked,
    old_releases,
    read_json,
    record_change,
    remove_trees,
    switch_current,
    utc_now,
    write_manifest,
)

# the task result key the go_no_go callback journals (plugins/plugin_utils/_records.py RELEASE_RESULT_KEY)
RELEASE_RESULT_KEY = "emp_release_step"

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "name": {"type": "str", "required": True},
    "component": {"type": "str"},
    "strategy": {"type": "str", "choices": ["symlink", "command"], "default": "symlink"},
    "action": {"type": "str", "choices": ["deploy", "rollback"], "default": "deploy"},
    "version": {"type": "str", "default": ""},
    "base_dir": {"type": "path"},
    "src": {"type": "path"},
    "manifest": {"type": "dict", "default": {}},
    "keep": {"type": "int", "default": 5},
    "rollback_to": {"type": "str", "default": ""},
    "state_file": {"type": "path"},
    "running_version": {"type": "str", "default": ""},
    "switched": {"type": "bool", "default": False},
    "run_id": {"type": "str", "default": ""},
    "host": {"type": "str", "default": ""},
}


class Release:
    """One release step: decides, switches (unless in check mode), records and reports."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.name: str = self.params["name"]
        self.check_mode = module.check_mode

    def fail(self, message: str) -> t.NoReturn:
        self.module.fail_json(msg=f"emp.deploy.release {self.name}: {message}")
        raise SystemExit(1)  # fail_json has exited already; this tells the type checker so

    def entry(self, action: str, version: str, previous: str) -> dict[str, t.Any]:
        entry = {"version": version, "at": utc_now(), "action": action, "run_id": self.params["run_id"]}
        if action == "rollback" or self.params["strategy"] == "command":
            entry["from"] = previous
        return entry

    def record(self, state_file: str, action: str, version: str, previous: str,
               recorded_previous: str | None) -> None:
        update = {"name": self.name, "strategy": self.params["strategy"], "current": version,
                  "previous": recorded_previous, "rolled_back_from": previous if action == "rollback" else None,
                  "changed_at": utc_now(), "run_id": self.params["run_id"]}
        if not self.check_mode:
            record_change(state_file, update, self.entry(action, version, previous))

    # --- symlink strategy -------------------------------------------------------------------------

    def symlink(self) -> dict[str, t.Any]:
        base_dir = self.params["base_dir"]
        if not base_dir:
            self.fail("the symlink strategy needs base_dir")
        state_file = os.path.join(base_dir, STATE_FILE_NAME)
        if not self.check_mode:
            os.makedirs(base_dir, mode=0o755, exist_ok=True)
        # decide, switch, verify and record as one step: a concurrent release of the same service waits,
        # so it never verifies this one's switch as its own nor loses this one's history entry
        with locked(state_file, enabled=not self.check_mode):
            state = read_json(state_file)
            running = current_version(base_dir)
            if self.params["action"] == "deploy":
                return self.symlink_deploy(base_dir, state_file, state, running)
            return self.symlink_rollback(base_dir, state_file, state, running)

    def symlink_deploy(self, base_dir: str, state_file: str, state: dict[str, t.Any],
                       running: str) -> dict[str, t.Any]:
        version = self.params["version"]
        check_version_name(version, "version")
        release_dir = os.path.join(base_dir, RELEASES_DIR, version)
        files_changed = bool(self.params["src"]) and copy_tree(self.params["src"], release_dir, self.check_mode)
        manifest_changed = bool(self.params["manifest"]) and write_manifest(
            release_dir, self.params["manifest"], self.check_mode)
        previous = running if running not in ("", version) else state.get("previous")
        switched = running != version
        removed: list[str] = []
        if switched:
            if not self.check_mode:
                if not os.path.isdir(release_dir):
                    os.makedirs(release_dir, mode=0o755, exist_ok=True)
                switch_current(base_dir, version)
                self.verify(base_dir, version)
            self.record(state_file, "deploy", version, running, previous)
            removed = old_releases(base_dir, self.params["keep"], (version, running))
            if not self.check_mode:
                remove_trees(removed)
        changed = files_changed or manifest_changed or switched
        return self.result("deploy", version, previous, switched, changed, state_file, running, removed)

    def symlink_rollback(self, base_dir: str, state_file: str, state: dict[str, t.Any],
                         running: str) -> dict[str, t.Any]:
        bad = self.params["version"]
        needed = not bad or running == bad
        if not needed:
            return self.result("rollback", running, running, False, False, state_file, running, [])
        target = self.params["rollback_to"] or state.get("previous") or ""
        if not target:
            self.fail(f"no previous release recorded in {state_file} (current is {running or 'none'}), "
                      "and rollback_to is not set; cannot roll back.")
        check_version_name(target, "the version to roll back to")
        target_dir = os.path.join(base_dir, RELEASES_DIR, target)
        if not os.path.isdir(target_dir):
            self.fail(f"cannot roll back to {target}: {target_dir} does not exist.")
        switched = running != target
        if switched:
            if not self.check_mode:
                switch_current(base_dir, target)
                self.verify(base_dir, target)
            self.record(state_file, "rollback", target, running, None)
        return self.result("rollback", target, running, switched, switched, state_file, running, [])

    def verify(self, base_dir: str, version: str) -> None:
        now = current_version(base_dir)
        if now != version:
            self.fail(f"{base_dir}/current points at {now or 'nothing'}, expected {RELEASES_DIR}/{version}.")

    # --- command strategy -------------------------------------------------------------------------

    def command(self) -> dict[str, t.Any]:
        state_file = self.params["state_file"]
        if not state_file:
            self.fail("the command strategy needs state_file")
        running, switched = self.params["running_version"], self.params["switched"]
        if switched and not self.check_mode:
            os.makedirs(os.path.dirname(state_file) or ".", mode=0o755, exist_ok=True)
        with locked(state_file, enabled=switched and not self.check_mode):
            return self.command_record(state_file, running, switched)

    def command_record(self, state_file: str, running: str, switched: bool) -> dict[str, t.Any]:
        state = read_json(state_file)
        if self.params["action"] == "deploy":
            version = self.params["version"]
            previous = running if running not in ("", version) else state.get("previous")
            if switched:
                self.record(state_file, "deploy", version, running, running or None)
            return self.result("deploy", version, previous, switched, switched, state_file, running, [])
        target = self.params["rollback_to"] if switched else running
        if switched:
            self.record(state_file, "rollback", target, running, None)
        return self.result("rollback", target, running, switched, switched, state_file, running, [])

    # --- result -------------------------------------------------------------------------------------

    def result(self, action: str, version: str, previous: str | None, switched: bool, changed: bool,
               state_file: str, running: str, removed: list[str]) -> dict[str, t.Any]:
        step = {"component": self.params["component"] or self.name, "version": version,
                "previous": previous or None, "changed": switched, "run_id": self.params["run_id"],
                "host": self.params["host"] or socket.gethostname()}
        result: dict[str, t.Any] = {
            "changed": changed, "name": self.name, "strategy": self.params["strategy"], "action": action,
            "version": version, "current": version, "previous": previous or None, "state_file": state_file,
            "removed": removed, RELEASE_RESULT_KEY: step,
        }
        if self.module._diff:
            result["diff"] = {"before": {"current": running}, "after": {"current": version},
                              "before_header": f"{self.name} current", "after_header": f"{self.name} current"}
        return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    release = Release(module)
    try:
        result = release.symlink() if module.params["strategy"] == "symlink" else release.command()
    except ReleaseError as exc:
        release.fail(str(exc))
    except OSError as exc:
        release.fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
