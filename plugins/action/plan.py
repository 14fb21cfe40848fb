# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""emp.deploy.plan: prints what the deployment would do, on the controller, touching no host.

The documentation lives in plugins/modules/plan.py, as for ansible.builtin.assert.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars

from ansible_collections.emp.deploy.plugins.plugin_utils import _fleet as fleet
from ansible_collections.emp.deploy.plugins.plugin_utils import _plan as P
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R
from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import OptionError, parse_budgets, parse_duration
from ansible_collections.emp.deploy.plugins.plugin_utils._trust import trust_as_template

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
CALLBACK = "emp.deploy.go_no_go"

ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = dict(
    playbook=dict(type="path", default=str(COLLECTION_ROOT / "playbooks" / "deploy.yml")),
    rollback_playbook=dict(type="path", default=str(COLLECTION_ROOT / "playbooks" / "rollback.yml")),
    roles_dir=dict(type="path", default=str(COLLECTION_ROOT / "roles")),
    rollback_budgets=dict(type="list", elements="str"),
    rollback_default_budget=dict(type="str"),
    batch=dict(type="raw"),
    max_fail_percentage=dict(type="raw"),
)


def resolve_pattern(pattern: str, groups: t.Mapping[str, t.Sequence[str]]) -> list[str]:
    """Hosts of an inventory pattern: names and groups joined by ',' or ':', with '!' and '&' (no regexes)."""
    everyone = list(groups.get("all", []))
    selected: list[str] = []
    for raw in pattern.replace(":", ",").split(","):
        term = raw.strip()
        if not term:
            continue
        kind, name = (term[0], term[1:]) if term[0] in "!&" else ("", term)
        hosts = everyone if name in ("all", "*") else list(groups.get(name, [name] if name in everyone else []))
        if kind == "!":
            selected = [h for h in selected if h not in hosts]
        elif kind == "&":
            selected = [h for h in selected if h in hosts]
        else:
            selected += [h for h in hosts if h not in selected]
    return selected


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        task_vars = task_vars or {}
        budgets, default_budget = self._budgets(args)
        load = self._load
        playbook = Path(args["playbook"])
        if not playbook.is_file():
            raise AnsibleActionFail(f"emp.deploy.plan: the playbook {playbook} does not exist")
        rollbacks = P.rollback_plays(load, Path(args["rollback_playbook"]))
        batch, max_fail = self._fleet_options(args)
        phases: list[dict[str, t.Any]] = []
        for play in P.phase_plays(load, playbook):
            component = self._component(play, Path(args["roles_dir"]), rollbacks, task_vars)
            component["batches"] = fleet.batch_sizes(batch, len(component["hosts"])) if batch else (
                [len(component["hosts"])] if component["hosts"] else [])
            component["batch"] = batch
            component["max_fail_percentage"] = max_fail
            component["rollback_budget_s"] = budgets.get(play.component, default_budget)
            component["unsafe"] = P.unsafe_reasons(component)
            if not phases or phases[-1]["phase"] != play.phase:
                phases.append({"phase": play.phase, "components": []})
            phases[-1]["components"].append(component)
        plan = {"playbook": str(playbook), "phases": phases,
                "unsafe": [r for phase in phases for c in phase["components"] for r in c["unsafe"]]}
        text = P.render(plan)
        result.update(changed=False, plan=plan, safe=not plan["unsafe"], unsafe=plan["unsafe"], msg=text)
        self._display.display(text)
        return result

    # --- pieces ---------------------------------------------------------------------------------------

    def _load(self, path: Path) -> t.Any:
        return self._loader.load_from_file(str(path))

    def _fleet_options(self, args: t.Mapping[str, t.Any]) -> tuple[list[int | str] | None, int | None]:
        """emp_batch and emp_max_fail_percentage as the phase plays' serial reads them: the run's extra vars,
        unless given here; checked as the go_no_go callback checks them."""
        extra: dict[str, t.Any] = {}
        if args["batch"] is None or args["max_fail_percentage"] is None:
            extra = dict(load_extra_vars(self._loader) or {})
        batch = args["batch"] if args["batch"] is not None else extra.get(R.BATCH_VAR)
        max_fail = args["max_fail_percentage"] if args["max_fail_percentage"] is not None else extra.get(R.MAX_FAIL_VAR)
        try:
            return (fleet.parse_batch(batch) if batch is not None else None,
                    fleet.parse_max_fail_percentage(max_fail) if max_fail is not None else None)
        except fleet.FleetOptionError as exc:
            raise AnsibleActionFail(f"emp.deploy.plan: {exc}") from exc

    def _budgets(self, args: t.Mapping[str, t.Any]) -> tuple[dict[str, float], float]:
        """The go_no_go callback's rollback budgets (its configuration), unless given here."""
        configured: dict[str, t.Any] = {}
        try:
            configured = C.config.get_plugin_options("callback", CALLBACK) or {}
        except Exception:  # pylint: disable=broad-exception-caught  # the callback's defaults apply
            configured = {}
        items = args["rollback_budgets"] if args["rollback_budgets"] is not None else configured.get("rollback_budgets")
        default = args["rollback_default_budget"] or configured.get("rollback_default_budget") or 300
        try:
            return parse_budgets(items), parse_duration(default, "rollback_default_budget")
        except OptionError as exc:
            raise AnsibleActionFail(f"emp.deploy.plan: {exc}") from exc

    def _template(self, variables: dict[str, t.Any], value: t.Any) -> t.Any:
        self._templar.available_variables = variables
        if isinstance(value, str):
            value = trust_as_template(value)
        return self._templar.template(value)

    def _expression(self, variables: dict[str, t.Any], expression: str) -> t.Any:
        return self._template(variables, "{{ " + expression + " }}")

    def _component(self, play: P.PhasePlay, roles_dir: Path, rollbacks: dict[str, tuple[str, str | None]],
                   task_vars: dict[str, t.Any]) -> dict[str, t.Any]:
        load = self._load
        role_dir = roles_dir / (play.role or "")
        defaults = P.load_vars_file(load, role_dir / "defaults" / "main.yml") if play.role else {}
        role_vars = P.load_vars_file(load, role_dir / "vars" / "main.yml") if play.role else {}
        tasks = P.role_tasks(load, role_dir) if play.role else P.RoleTasks()
        rollback_play, rollback_role = rollbacks.get(play.component, ("", None))
        hosts = resolve_pattern(str(self._template(dict(task_vars), play.hosts) or ""), task_vars.get("groups", {}))
        component: dict[str, t.Any] = {
            "component": play.component, "play": play.play, "role": play.role, "hosts": hosts, "releases": [],
            "readiness": "release" in tasks.includes_roles, "gates": [], "rollback_play": rollback_play or None,
            "rollback_verification": bool(rollback_role and P.role_tasks(load, roles_dir / rollback_role,
                                                                         "rollback.yml").gates),
        }
        hostvars = task_vars.get("hostvars")
        for host in hosts:
            raw = hostvars.raw_get(host) if hostvars is not None and hasattr(hostvars, "raw_get") else {}
            variables = {**task_vars, **defaults, **dict(raw or {}), **play.vars, **role_vars,
                         "inventory_hostname": host}
            self._add_host(component, play.role or play.component, tasks, variables, host)
        return component

    def _add_host(self, component: dict[str, t.Any], role: str, tasks: P.RoleTasks,
                  variables: dict[str, t.Any], host: str) -> None:
        try:
            releases = self._expression(variables, f"{role}_releases | default([])") or []
            enabled = self._expression(variables, f"{role}_enabled | default(true)")
        except Exception as exc:  # pylint: disable=broad-exception-caught  # shown in the plan, not a crash
            component.setdefault("problems", []).append(f"{host}: releases could not be read: {exc}")
            releases, enabled = [], True
        for release in releases if str(enabled).lower() not in ("false", "0", "no") else []:
            entry = {"host": host, "name": release.get("name"), "version": release.get("version"),
                     "strategy": release.get("strategy", "symlink")}
            if entry not in component["releases"]:
                component["releases"].append(entry)
        for gate in tasks.gates:
            for spec in self._gate_specs(gate, variables, host):
                if R.is_readiness_gate(spec):
                    continue  # the rollback readiness check, shown as such, not a soak gate
                if all(spec["name"] != g["name"] for g in component["gates"]):
                    component["gates"].append(spec)

    def _gate_specs(self, gate: P.GateTask, variables: dict[str, t.Any], host: str) -> list[dict[str, t.Any]]:
        scope = {**variables, **gate.vars}
        try:
            items = self._template(scope, gate.loop) if gate.loop is not None else [None]
        except Exception:  # pylint: disable=broad-exception-caught
            items = [None]
        specs = []
        for item in items or []:
            item_scope = {**scope, gate.loop_var: item} if gate.loop is not None else scope
            args = gate.args
            try:
                samples, interval, duration = (self._template(item_scope, args.get(k))
                                               for k in ("samples", "interval", "duration"))
                window: t.Any = P.soak_window(samples, interval, duration)
                if samples in (None, "") and duration not in (None, ""):
                    spacing = float(interval) if interval not in (None, "") else P.GATE_DEFAULT_INTERVAL
                    samples = int(float(duration) // spacing) + 1
                spec = {"name": str(self._template(item_scope, args.get("name"))), "host": host,
                        "mode": str(self._template(item_scope, args.get("mode", "enforce"))),
                        "probe": (args.get("probe") or {}).get("module") if args.get("probe") else "evidence",
                        "criteria": [str(c) for c in self._template(item_scope, args.get("criteria")) or []],
                        "samples": int(samples or 1), "soak_window_s": window, "task": gate.task}
            except Exception as exc:  # pylint: disable=broad-exception-caught  # shown in the plan, not a crash
                spec = {"name": gate.task, "host": host, "mode": "?", "probe": "?", "criteria": [],
                        "samples": 0, "soak_window_s": f"unknown ({exc})", "task": gate.task}
            specs.append(spec)
        return specs
