"""The ansible-core internals the in-process rollback relies on, checked on every supported
ansible-core (this file runs on 2.21 and, with -m compat, on 2.18). If one of these fails on a new
ansible-core, the callback falls back to a child ansible-playbook (see test_rollback_runner.py)."""
from __future__ import annotations

import pytest

from ansible_collections.emp.deploy.plugins.plugin_utils import _executor_adapter as adapter

pytestmark = pytest.mark.compat


@pytest.fixture
def executor(tmp_path):
    from ansible import context
    from ansible.executor.playbook_executor import PlaybookExecutor
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.context_objects import CLIArgs
    from ansible.vars.manager import VariableManager

    saved = context.CLIARGS
    context.CLIARGS = CLIArgs({"listhosts": False, "listtasks": False, "listtags": False, "syntax": False,
                               "start_at_task": None, "forks": 1})
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[])
    variable_manager = VariableManager(loader=loader, inventory=inventory)
    variable_manager._extra_vars = {"from_deploy": 1}
    yield PlaybookExecutor(playbooks=[str(tmp_path / "none.yml")], inventory=inventory,
                           variable_manager=variable_manager, loader=loader, passwords={})
    context.CLIARGS = saved


def test_the_executor_parts_the_adapter_uses_exist(executor):
    inventory, variable_manager, loader, passwords = adapter._executor_parts(executor)
    assert passwords == {} and inventory is not None and loader is not None
    assert variable_manager._extra_vars == {"from_deploy": 1}  # private, and replaced for the rollback
    assert dict(variable_manager.extra_vars) == {"from_deploy": 1}


def test_the_running_executor_is_found_on_the_stack(executor):
    class Fake:
        def run(self):
            return adapter.running_playbook_executor()

    def as_ansible_calls_us(self):  # the PlaybookExecutor's frame holds it as ``self``
        return Fake().run()

    assert as_ansible_calls_us(executor) is executor
    assert adapter.running_playbook_executor() is None


def test_cliargs_can_be_swapped_for_a_whole_run_and_restored(executor):
    from ansible import context

    before = context.CLIARGS
    assert adapter.cli_args()["forks"] == 1
    with pytest.raises(adapter.InProcessUnavailable, match="PlaybookExecutor was not found"):
        adapter.run_in_process("rollback.yml", {"emp_rollback_components": ["redis"]})
    assert context.CLIARGS is before


def test_an_executor_without_the_expected_parts_is_reported_as_unavailable():
    class NotAnExecutor:
        passwords = {}

    with pytest.raises(adapter.InProcessUnavailable, match="lacks"):
        adapter._executor_parts(NotAnExecutor())
