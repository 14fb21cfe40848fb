# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every touch of ansible-core internals that the go_no_go callback needs, in one place.

Running the rollback playbook inside the running ansible-playbook process (so its tasks are in the
same output stream and in ansible-runner's event stream) needs three things ansible-core does not
offer as API: the running PlaybookExecutor (found by walking the stack), the variable manager's
private extra vars (to add the rollback's vars) and a swap of context.CLIARGS (so the rollback runs
whole, without the deploy's tags or --start-at-task). tests/unit/plugins/plugin_utils/
test_executor_adapter.py checks these on every supported ansible-core; when any of them is missing
the callback runs the rollback as a child ansible-playbook process instead (_rollback_runner.py).
"""

from __future__ import annotations

import sys
import types
import typing as t


class InProcessUnavailable(RuntimeError):
    """The rollback cannot run inside this process; the caller falls back to a child process."""


# Options of the deploy that the rollback must not inherit: it always runs whole.
_WHOLE_RUN = {"start_at_task": None, "step": False, "tags": ("all",), "skip_tags": (), "listhosts": False,
              "listtasks": False, "listtags": False, "syntax": False}


def cli_args() -> dict[str, t.Any]:
    """The command line of the running ansible-playbook (inventory, limit, check, vault ids, ...)."""
    from ansible import context

    return dict(context.CLIARGS or {})


def extra_vars_of(play: t.Any) -> dict[str, t.Any]:
    """The run's extra vars, through the variable manager's public property."""
    return dict(getattr(play.get_variable_manager(), "extra_vars", None) or {})


def running_playbook_executor() -> t.Any:
    """The PlaybookExecutor whose run() is calling us (it holds the inventory, loader and passwords)."""
    from ansible.executor.playbook_executor import PlaybookExecutor

    frame: types.FrameType | None = sys._getframe(1)  # pylint: disable=protected-access
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, PlaybookExecutor):
            return candidate
        frame = frame.f_back
    return None


def _executor_parts(executor: t.Any) -> tuple[t.Any, t.Any, t.Any, t.Any]:
    try:
        parts = (executor._inventory, executor._variable_manager, executor._loader, executor.passwords)
        parts[1]._extra_vars  # pylint: disable=pointless-statement
    except AttributeError as exc:
        raise InProcessUnavailable(f"this ansible-core's PlaybookExecutor lacks {exc.name or exc}") from exc
    return parts


def run_in_process(playbook: str, extra_vars: dict[str, t.Any],
                   on_executor_ready: t.Callable[[], None] | None = None) -> int:
    """Runs ``playbook`` in this process with the run's inventory, variables, loader and passwords.

    ``extra_vars`` are added to the run's own; the rollback runs whole (no tags or start-at-task).
    ``on_executor_ready`` runs once the rollback's task queue manager exists (it replaces the
    process's signal handlers, so the caller re-asserts its own there). Raises
    InProcessUnavailable when the running executor or its parts cannot be found.
    """
    from ansible import context
    from ansible.executor.playbook_executor import PlaybookExecutor
    from ansible.utils.context_objects import CLIArgs
    from ansible.utils.unsafe_proxy import wrap_var

    executor = running_playbook_executor()
    if executor is None:
        raise InProcessUnavailable("the running PlaybookExecutor was not found (not called from ansible-playbook)")
    inventory, variable_manager, loader, passwords = _executor_parts(executor)
    saved_extra = variable_manager._extra_vars
    saved_cliargs = context.CLIARGS
    merged = dict(saved_extra)
    merged.update(wrap_var(extra_vars))
    try:
        try:
            variable_manager._extra_vars = merged
            context.CLIARGS = CLIArgs({**dict(saved_cliargs), **_WHOLE_RUN})
            child = PlaybookExecutor(playbooks=[playbook], inventory=inventory, variable_manager=variable_manager,
                                     loader=loader, passwords=passwords)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # nothing ran yet: fall back
            raise InProcessUnavailable(f"the rollback executor could not be set up ({type(exc).__name__}: {exc})") from exc
        if on_executor_ready is not None:
            on_executor_ready()
        rc = child.run()
    finally:
        context.CLIARGS = saved_cliargs
        variable_manager._extra_vars = saved_extra
    return rc if isinstance(rc, int) else 0


# --- reading what ansible-core hands to callbacks (2.18 TaskResult, 2.19+ CallbackTaskResult) -------


def task_result(result: t.Any) -> t.Mapping[str, t.Any]:
    """The result dict, from the 2.19+ CallbackTaskResult.result or the 2.18 TaskResult._result."""
    data = getattr(result, "result", None)
    if not isinstance(data, t.Mapping):
        data = getattr(result, "_result", None)
    return data if isinstance(data, t.Mapping) else {}


def host_name(result: t.Any) -> str:
    host = getattr(result, "host", None)
    if host is None or isinstance(host, str):
        host = getattr(result, "_host", host)
    return str(getattr(host, "name", host) or "")


def task_of(result: t.Any) -> t.Any:
    task = getattr(result, "task", None)
    return task if task is not None and not isinstance(task, str) else getattr(result, "_task", None)


def delegated_host(data: t.Mapping[str, t.Any]) -> str | None:
    """The host a delegated task ran on, from the result's internal delegation vars."""
    delegated = data.get("_ansible_delegated_vars") or {}
    host = delegated.get("ansible_delegated_host") or delegated.get("ansible_host")
    return str(host) if host else None


def skipped_gate(task: t.Any, data: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What a skipped gate task says about itself: its arguments as written (a skipped task's arguments are
    never templated, so a templated one is kept as its template) and the condition that skipped it."""
    args = getattr(task, "args", None) or {}
    plain = {key: str(args[key]) if args.get(key) is not None else None
             for key in ("name", "component", "phase", "checklist_ref", "mode")}
    condition = data.get("false_condition")
    reason = f"condition false: {condition}" if condition else str(data.get("skip_reason") or "task skipped")
    return dict(plain, name=plain["name"] or str(task.get_name()), task=str(task.get_name()), reason=reason)


def play_phase(play: t.Any) -> tuple[str | None, str | None]:
    """emp_phase and emp_component of a play's vars, templated when they hold a template."""
    play_vars = play.vars or {}
    phase, component = play_vars.get("emp_phase"), play_vars.get("emp_component")
    if any(isinstance(v, str) and "{{" in v for v in (phase, component)):
        from ansible.template import Templar

        variable_manager = play.get_variable_manager()
        templar = Templar(loader=play.get_loader(), variables=variable_manager.get_vars(play=play))
        phase, component = templar.template(phase), templar.template(component)
    return (str(phase) if phase is not None else None, str(component) if component is not None else None)


def release_label(play: t.Any, extra_vars: t.Mapping[str, t.Any]) -> t.Any:
    """emp_release from the extra vars, the play, or the inventory (first host), templated."""
    return run_var(play, extra_vars, "emp_release")


def run_var(play: t.Any, extra_vars: t.Mapping[str, t.Any], name: str) -> t.Any:
    """A variable of the run from the extra vars, the play, or the inventory (first host), templated."""
    value = extra_vars.get(name)
    if value is None:
        value = (play.vars or {}).get(name)
    if value is not None:
        return value
    try:
        from ansible.template import Templar

        variable_manager = play.get_variable_manager()
        hosts = variable_manager._inventory.get_hosts("all")
        if not hosts:
            return None
        variables = variable_manager.get_vars(play=play, host=hosts[0], include_hostvars=False)
        value = variables.get(name)
        if isinstance(value, str) and "{{" in value:
            value = Templar(loader=play.get_loader(), variables=variables).template(value)
        return str(value) if value is not None else None
    except Exception:  # pylint: disable=broad-exception-caught  # a missing value must never break the run
        return None


def playbook_extra_vars(playbook: t.Any) -> dict[str, t.Any]:
    """The run's extra vars as the command line gives them, read with the playbook's loader (before any play)."""
    from ansible.utils.vars import load_extra_vars

    loader = getattr(playbook, "_loader", None)
    return dict(load_extra_vars(loader) or {}) if loader is not None else {}


def inventory_hosts(play: t.Any) -> list[str]:
    """The hosts of the run: the inventory's, restricted by the limit (--limit)."""
    inventory = play.get_variable_manager()._inventory  # pylint: disable=protected-access
    return [str(h.name) for h in inventory.get_hosts("all")]


def batch_hosts(play: t.Any) -> list[str]:
    """The hosts of the batch a play runs now (the inventory is restricted to the batch when the play starts)."""
    inventory = play.get_variable_manager()._inventory  # pylint: disable=protected-access
    return [str(h.name) for h in inventory.get_hosts(play.hosts, order=play.order)]


_NO_HOST = "\x00emp.deploy: the rollout stopped"


def run_no_host(play: t.Any) -> None:
    """The play (this batch of it) starts on no host: the inventory is restricted to a name no host has.
    Ansible restricts the inventory to each batch before the play starts, and lifts it before the next play."""
    inventory = play.get_variable_manager()._inventory  # pylint: disable=protected-access
    inventory._restriction = {_NO_HOST}  # pylint: disable=protected-access
