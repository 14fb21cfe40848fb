# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Waivers: skip one gate's verdict on the record (docs/waivers.md).

``emp_waivers: [{gate, reason, by, expires}]`` (extra vars, or a vars file given with ``-e @file``). A waived
gate still samples and records its evidence; its decision becomes ``WAIVED`` and its NO-GO blocks nothing.
The callback checks the waivers when the run starts (a malformed one, or one naming a gate the playbook does
not have, stops the run before any task); the gate action applies them. Pure Python, no Ansible import.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _plan as P
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R

WAIVER_KEYS = ("gate", "reason", "by", "expires")
REQUIRED_KEYS = ("gate", "reason", "by")
_EXPRESSION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_DEPTH = 5
PLAY_TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers")
BLOCK_KEYS = ("block", "rescue", "always")


def _mapping(value: t.Any) -> dict[str, t.Any]:
    return dict(value) if isinstance(value, dict) else {}


class WaiverError(ValueError):
    """A malformed waiver: the message names the waiver and what is wrong."""


@dataclass(frozen=True)
class Waiver:
    gate: str
    reason: str
    by: str
    expires: datetime | None  # None: until it is removed

    def expired(self, at: datetime) -> bool:
        return self.expires is not None and self.expires <= at

    def as_record(self) -> dict[str, t.Any]:
        return {"gate": self.gate, "reason": self.reason, "by": self.by, "expires": format_time(self.expires)}


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_expiry(value: t.Any, where: str) -> datetime | None:
    """ISO 8601 (a date, or a date and time; UTC when no offset is given)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WaiverError(f"{where}: expires {text!r} is not an ISO 8601 date or time "
                          f"(for example 2026-12-31 or 2026-12-31T18:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _text_field(entry: t.Mapping[str, t.Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise WaiverError(f"{where}: {key} is required (a non-empty text): "
                          + ("a waiver must say why and who decided it" if key in ("reason", "by") else "the gate to waive"))
    return value.strip()


def parse_waiver(entry: t.Any, index: int) -> Waiver:
    where = f"{R.WAIVERS_VAR}[{index}]"
    if not isinstance(entry, t.Mapping):
        raise WaiverError(f"{where}: a waiver is a mapping {{gate, reason, by, expires}}, not {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in WAIVER_KEYS)
    if unknown:
        raise WaiverError(f"{where}: unknown key {', '.join(unknown)} (a waiver has {', '.join(WAIVER_KEYS)})")
    gate = _text_field(entry, "gate", where)
    where = f"{where} (gate {gate})"
    return Waiver(gate=gate, reason=_text_field(entry, "reason", where), by=_text_field(entry, "by", where),
                  expires=parse_expiry(entry.get("expires"), where))


def parse_waivers(value: t.Any) -> list[Waiver]:
    """Every waiver checked; the first malformed one is an error. None or an empty list: no waivers."""
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        raise WaiverError(f"{R.WAIVERS_VAR}: a list of waivers {{gate, reason, by, expires}}, not {type(value).__name__}")
    waivers = [parse_waiver(entry, index) for index, entry in enumerate(value)]
    seen: set[str] = set()
    for waiver in waivers:
        if waiver.gate in seen:
            raise WaiverError(f"{R.WAIVERS_VAR}: gate {waiver.gate} is waived twice; keep one waiver per gate")
        seen.add(waiver.gate)
    return waivers


def waiver_for(waivers: t.Sequence[Waiver], gate: str, at: datetime) -> tuple[Waiver | None, Waiver | None]:
    """(the waiver in force for this gate, or None; the expired waiver for it, or None)."""
    for waiver in waivers:
        if waiver.gate == gate:
            return (None, waiver) if waiver.expired(at) else (waiver, None)
    return None, None


def expired_warning(waiver: Waiver) -> str:
    return (f"the waiver of gate {waiver.gate} by {waiver.by} expired at {format_time(waiver.expires)}; it is "
            f"ignored and the gate decides as usual")


def waive(gate: dict[str, t.Any], waiver: Waiver) -> dict[str, t.Any]:
    """The gate record with the waiver applied: decision WAIVED, what it measured kept in ``waiver``."""
    measured = gate.get("decision")
    gate["waiver"] = dict(waiver.as_record(), measured_decision=measured)
    gate["decision"] = R.WAIVED
    until = f" until {format_time(waiver.expires)}" if waiver.expires else ""
    gate["reason"] = f"waived by {waiver.by}{until} ({waiver.reason}); measured {measured}: {gate.get('reason')}"
    return gate


# --- which gates a playbook has: a waiver must name one of them ------------------------------------------


@dataclass(frozen=True)
class GateName:
    """A gate's ``name`` as written, and the variables in scope where it is written (include vars, role defaults)."""

    template: str
    variables: t.Mapping[str, t.Any]


def name_pattern(template: str, variables: t.Mapping[str, t.Any], lookup: t.Callable[[str], t.Any],
                 depth: int = 0) -> str:
    """A regular expression for the names a gate can have: each ``{{ var }}`` whose value is known before the
    run (the run's vars through ``lookup``, then the include vars and role defaults) is filled in; what
    cannot be known (a loop variable, a filter) matches any text."""
    parts: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[position:match.start()]))
        parts.append(_expression_pattern(match.group(1), variables, lookup, depth))
        position = match.end()
    parts.append(re.escape(template[position:]))
    return "".join(parts)


def _expression_pattern(expression: str, variables: t.Mapping[str, t.Any], lookup: t.Callable[[str], t.Any],
                        depth: int) -> str:
    if not _IDENTIFIER.match(expression) or depth >= _MAX_DEPTH:
        return ".+"
    value = lookup(expression)
    if value is None:
        value = variables.get(expression)
    if value is None or not isinstance(value, (str, int, float)):
        return ".+"
    return name_pattern(str(value), variables, lookup, depth + 1)


def unknown_gates(waivers: t.Sequence[Waiver], patterns: t.Sequence[str]) -> list[str]:
    """The waived gate names that no gate of the playbook can have."""
    compiled = [re.compile(f"^(?:{pattern})$") for pattern in patterns]
    return [w.gate for w in waivers if not any(p.match(w.gate) for p in compiled)]


def known_names_text(patterns: t.Sequence[str]) -> str:
    """The known gate names for a message: literal names as they are, patterns with * for the unknown part."""
    shown = sorted({re.sub(r"\\(.)", r"\1", p.replace(".+", "*")) for p in patterns})
    return ", ".join(shown) if shown else "none"


def playbook_gate_names(load: P.Loader, playbook: Path, roles_dir: Path) -> list[GateName]:
    """Every emp.deploy.gate task's name in a playbook: in its plays (blocks too), in the collection roles
    they include or import (following their includes of literal files and the roles those include) and in
    the playbooks it imports."""
    names: list[GateName] = []
    for play in P.as_list(load(playbook)):
        if not isinstance(play, dict):
            continue
        imported = P.action_of(play, P.PLAYBOOK_IMPORTS)
        if imported:
            target = str(play[imported])
            if "{{" not in target and (playbook.parent / target).is_file():
                names += playbook_gate_names(load, playbook.parent / target, roles_dir)
            continue
        play_vars = _mapping(play.get("vars"))
        for role in P.as_list(play.get("roles")):
            names += _role_gate_names(load, roles_dir, P.role_name(role), dict(play_vars), set())
        for key in PLAY_TASK_LISTS:
            names += _task_list_gate_names(load, roles_dir, play.get(key), dict(play_vars))
    return names


def _task_list_gate_names(load: P.Loader, roles_dir: Path, tasks: t.Any, variables: dict[str, t.Any]) -> list[GateName]:
    names: list[GateName] = []
    for task in P.as_list(tasks):
        if not isinstance(task, dict):
            continue
        scope = {**variables, **_mapping(task.get("vars"))}
        for key in BLOCK_KEYS:
            names += _task_list_gate_names(load, roles_dir, task.get(key), scope)
        gate = P.action_of(task, P.GATE_ACTIONS)
        if gate and isinstance(task[gate], dict) and task[gate].get("name") is not None:
            names.append(GateName(str(task[gate]["name"]), scope))
        role_action = P.action_of(task, P.INCLUDE_ROLE_ACTIONS)
        if role_action:
            names += _role_gate_names(load, roles_dir, P.role_name(task[role_action]), scope, set())
    return names


def _role_gate_names(load: P.Loader, roles_dir: Path, role: str | None, variables: dict[str, t.Any],
                     seen: set[str]) -> list[GateName]:
    if role is None or role in seen or not (roles_dir / role).is_dir():
        return []
    seen.add(role)
    defaults = P.load_vars_file(load, roles_dir / role / "defaults" / "main.yml")
    tasks = P.role_tasks(load, roles_dir / role)
    names = [GateName(str(g.args.get("name")), {**defaults, **variables, **g.vars})
             for g in tasks.gates if g.args.get("name") is not None]
    for inner in tasks.includes_roles:
        names += _role_gate_names(load, roles_dir, inner, variables, seen)
    return names
