# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deployment plan (emp.deploy.plan): what deploy.yml would do, read from the playbooks and roles.

Reads, never runs: the phase plays of the deploy playbook (in order, with emp_phase/emp_component and the
role they include), each role's GO/NO-GO gate tasks (following its import_tasks/include_tasks of literal
files), the rollback playbook's play per component and its verification gates. The action plugin templates
what it found with each host's variables; this module also computes soak windows, flags what is unsafe and
renders the text. See docs/safety.md.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field
from pathlib import Path

GATE_ACTIONS = ("emp.deploy.gate", "gate")
INCLUDE_ACTIONS = ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks", "import_tasks", "include_tasks")
INCLUDE_ROLE_ACTIONS = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")
PLAYBOOK_IMPORTS = ("ansible.builtin.import_playbook", "import_playbook")
# emp.deploy.gate's own defaults (plugins/modules/gate.py)
GATE_DEFAULT_INTERVAL = 10.0

Loader = t.Callable[[Path], t.Any]


@dataclass
class PhasePlay:
    play: str
    hosts: t.Any
    phase: str
    component: str
    role: str | None
    vars: dict[str, t.Any]


@dataclass
class GateTask:
    """One emp.deploy.gate task of a role, with the vars of the includes that led to it."""

    task: str
    args: dict[str, t.Any]
    vars: dict[str, t.Any]
    loop: t.Any = None
    loop_var: str = "item"
    when: t.Any = None


@dataclass
class RoleTasks:
    gates: list[GateTask] = field(default_factory=list)
    # the roles it includes (emp.deploy.release: its rollback readiness check runs before each release)
    includes_roles: list[str] = field(default_factory=list)


def as_list(value: t.Any) -> list[t.Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def action_of(task: t.Mapping[str, t.Any], actions: tuple[str, ...]) -> str | None:
    return next((name for name in actions if name in task), None)


def role_name(value: t.Any) -> str | None:
    """'emp.deploy.webhooks' or 'webhooks' -> 'webhooks'; None for anything templated."""
    name = str((value or {}).get("name") if isinstance(value, dict) else value or "")
    if not name or "{{" in name:
        return None
    return name.rsplit(".", 1)[-1]


def phase_plays(load: Loader, playbook: Path) -> list[PhasePlay]:
    """The plays with emp_phase and emp_component, in the order the playbook (and its imports) runs them."""
    plays: list[PhasePlay] = []
    for play in as_list(load(playbook)):
        if not isinstance(play, dict):
            continue
        imported = action_of(play, PLAYBOOK_IMPORTS)
        if imported:
            target = str(play[imported])
            if "{{" not in target:
                plays += phase_plays(load, playbook.parent / target)
            continue
        variables = play.get("vars") or {}
        if not (isinstance(variables, dict) and variables.get("emp_phase") and variables.get("emp_component")):
            continue
        role = next((role_name(task[a]) for task in as_list(play.get("tasks")) if isinstance(task, dict)
                     for a in INCLUDE_ROLE_ACTIONS if a in task), None)
        plays.append(PhasePlay(str(play.get("name") or ""), play.get("hosts"), str(variables["emp_phase"]),
                               str(variables["emp_component"]), role, dict(variables)))
    return plays


def role_tasks(load: Loader, role_dir: Path, entry: str = "main.yml",
               inherited: dict[str, t.Any] | None = None, seen: set[Path] | None = None) -> RoleTasks:
    """The gate tasks reachable from tasks/<entry> through includes of literal files."""
    found = RoleTasks()
    seen = set() if seen is None else seen
    path = role_dir / "tasks" / entry
    if path in seen or not path.is_file():
        return found
    seen.add(path)
    for task in as_list(load(path)):
        if not isinstance(task, dict):
            continue
        variables = {**(inherited or {}), **(task.get("vars") or {})}
        included = action_of(task, INCLUDE_ACTIONS)
        if included and "{{" not in str(task[included]):
            inner = role_tasks(load, role_dir, str(task[included]), variables, seen)
            found.gates += inner.gates
            found.includes_roles += inner.includes_roles
            continue
        role_action = action_of(task, INCLUDE_ROLE_ACTIONS)
        if role_action:
            name = role_name(task[role_action])
            if name and name not in found.includes_roles:
                found.includes_roles.append(name)
            continue
        gate = action_of(task, GATE_ACTIONS)
        if gate:
            loop_control = task.get("loop_control") or {}
            found.gates.append(GateTask(str(task.get("name") or ""), dict(task[gate] or {}), variables,
                                        task.get("loop"), str(loop_control.get("loop_var") or "item"),
                                        task.get("when")))
    return found


def rollback_plays(load: Loader, playbook: Path) -> dict[str, tuple[str, str | None]]:
    """component -> (rollback play name, the role whose rollback tasks it runs)."""
    plays: dict[str, tuple[str, str | None]] = {}
    for play in phase_plays(load, playbook):
        plays.setdefault(play.component, (play.play, play.role))
    return plays


def load_vars_file(load: Loader, path: Path) -> dict[str, t.Any]:
    data = load(path) if path.is_file() else None
    return dict(data) if isinstance(data, dict) else {}


def soak_window(samples: t.Any, interval: t.Any, duration: t.Any) -> float:
    """The seconds a gate samples for, as emp.deploy.gate derives them (the first sample at 0)."""
    if duration not in (None, ""):
        return float(duration)
    count = int(samples) if samples not in (None, "") else 1
    spacing = float(interval) if interval not in (None, "") else GATE_DEFAULT_INTERVAL
    return max(count - 1, 0) * spacing


def unsafe_reasons(component: dict[str, t.Any]) -> list[str]:
    """What makes a component unsafe to deploy: no gate, no rollback play, a soak longer than its budget."""
    reasons = []
    name = component["component"]
    if not component["gates"]:
        reasons.append(f"{name} has no GO/NO-GO gate: nothing would stop a bad release")
    if not component["rollback_play"]:
        reasons.append(f"{name} has no rollback play: a NO-GO could not be rolled back")
    budget = component.get("rollback_budget_s")
    for gate in component["gates"]:
        window = gate.get("soak_window_s")
        if isinstance(window, (int, float)) and budget is not None and window > budget:
            reasons.append(f"{name}: gate {gate['name']} soaks {window:g} s, longer than its rollback budget "
                           f"{budget:g} s")
    return reasons


def render(plan: dict[str, t.Any]) -> str:
    """The plan as text, phases in order; unsafe components are flagged on their line and at the end."""
    lines = [f"EMP DEPLOYMENT PLAN · {plan['playbook']} · nothing was run, no host was touched"]
    for phase in plan["phases"]:
        lines.append(f"Phase {phase['phase']}")
        for component in phase["components"]:
            flag = "  UNSAFE" if component["unsafe"] else ""
            lines.append(f"  {component['component']}{flag} · {component['play']}")
            lines.append(f"    hosts: {', '.join(component['hosts']) or 'none (no host matches)'}")
            if component.get("batch"):
                lines.append(f"    {batches_line(component)}")
            releases = [f"{r['name']} {r['version']} ({r['strategy']})" for r in component["releases"]]
            lines.append(f"    release: {', '.join(releases) or 'nothing to release (step skipped)'}"
                         + ("; rollback readiness checked before each release" if component["readiness"] else ""))
            for gate in component["gates"]:
                lines.append(f"    gate {gate['name']} · {gate['mode']} · probe {gate['probe']} · soak "
                             f"{_seconds(gate['soak_window_s'])} ({gate['samples']} samples)")
                for criterion in gate["criteria"]:
                    lines.append(f"      - {criterion}")
            if not component["gates"]:
                lines.append("    gate: none")
            lines.append(f"    rollback: {component['rollback_play'] or 'none'} · budget "
                         f"{_seconds(component['rollback_budget_s'])}")
            lines += [f"    ! {reason}" for reason in component["unsafe"]]
    unsafe = [reason for phase in plan["phases"] for c in phase["components"] for reason in c["unsafe"]]
    lines.append(f"UNSAFE: {len(unsafe)} problem{'s' if len(unsafe) != 1 else ''}" if unsafe else "Safe: every component "
                 "has a gate, a rollback play and a soak within its rollback budget")
    lines += [f"  - {reason}" for reason in unsafe]
    return "\n".join(lines)


def batches_line(component: t.Mapping[str, t.Any]) -> str:
    """How the component's hosts would be released in batches (emp_batch), and what stops the rollout."""
    sizes = component["batches"]
    max_fail = component.get("max_fail_percentage")
    stop = ("the first NO-GO host stops the run" if max_fail is None
            else f"up to {max_fail} % of a batch's hosts may say NO-GO before the run stops")
    shown = ", ".join(str(item) if isinstance(item, int) else repr(item) for item in component["batch"])
    if not sizes:
        return f"batches: none (no host) · emp_batch [{shown}]"
    return (f"batches: {len(sizes)} of {', '.join(str(size) for size in sizes)} host{'s' if sum(sizes) != 1 else ''} "
            f"(emp_batch [{shown}]), each judged before the next starts; {stop}")


def _seconds(value: t.Any) -> str:
    return f"{value:g} s" if isinstance(value, (int, float)) else str(value)
