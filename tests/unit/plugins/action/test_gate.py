"""Unit tests of emp.deploy.gate's decision rules (plugins/plugin_utils/_gate.py) and its option parsing."""
from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.action import gate as action
from ansible_collections.emp.deploy.plugins.plugin_utils import _gate as g


# --- criteria ------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, paths", [
    ("result.latency_ms.p95 < 200", ("result.latency_ms.p95",)),
    ("result.clients.by_name['emp-api'] >= 1", ("result.clients.by_name['emp-api']",)),
    ("result.clients.connected - baseline.clients.connected <= limit", ("result.clients.connected", "baseline.clients.connected")),
    ("result.healthy and result.rc == 0", ("result.healthy", "result.rc")),
    ("(result.stdout_lines | last | from_json).n == 0", ("result.stdout_lines",)),
    ("other.value > 1", ()),
])
def test_parse_criterion_finds_the_figures_it_reads(expression, paths):
    assert g.parse_criterion(expression).paths == paths


def test_parse_criterion_accepts_booleans_like_assert():
    assert g.parse_criterion(True).expression is True


@pytest.mark.parametrize("bad", ["result.x <", "result.x ==== 1", "{{ result.x", "result.(x)"])
def test_a_criterion_that_does_not_template_is_rejected_with_its_text(bad):
    with pytest.raises(g.CriterionError, match="does not template"):
        g.parse_criterion(bad)


@pytest.mark.parametrize("bad", [None, 3, {"that": "x"}, "", "   "])
def test_a_criterion_of_the_wrong_type_is_rejected(bad):
    with pytest.raises(g.CriterionError, match="must be a non-empty string"):
        g.parse_criterion(bad)


def test_criteria_type_wraps_one_string_and_never_splits_on_commas():
    assert action._criteria_type("result.x in [1, 2]") == ["result.x in [1, 2]"]
    assert action._criteria_type(["a", "b"]) == ["a", "b"]
    with pytest.raises(TypeError):
        action._criteria_type({"a": 1})


def test_resolve_path_walks_dicts_lists_and_quoted_keys():
    data = {"result": {"clients": {"by_name": {"emp-api": 2}}, "list": [5, 6]}}
    assert g.resolve_path(data, "result.clients.by_name['emp-api']") == 2
    assert g.resolve_path(data, "result.list[1]") == 6
    assert g.resolve_path(data, "result.missing.deeper") is None
    assert g.resolve_path(data, "result.list[9]") is None


# --- sample accounting ---------------------------------------------------------------------------

@pytest.mark.parametrize("result, kind", [
    ({"unreachable": True, "msg": "ssh: connect refused"}, g.ERROR),
    ({"failed": True, "msg": "MODULE FAILURE", "module_stderr": "Traceback"}, g.ERROR),
    ({"failed": True, "msg": "MODULE FAILURE\nSee stdout/stderr", "module_stderr": "Traceback", "rc": 1}, g.ERROR),
    ({"failed": True, "reachable": False, "error": "Redis at 127.0.0.1:1 refused", "healthy": False}, g.ERROR),
    ({"skipped": True, "msg": "remote module does not support check mode"}, g.NO_DATA),
    ({"failed": True, "msg": "p95 too high", "latency_ms": {"p95": 312}, "healthy": False}, None),
    ({"changed": False, "rc": 0, "stdout": "1"}, None),
])
def test_classify_result_errors_only_when_nothing_was_measured(result, kind):
    assert g.classify_result(result)[0] == kind


def test_probe_verdict_prefers_the_probes_own_problem_sentence():
    assert g.probe_verdict({"healthy": False, "problems": ["client 'emp-api' has 0 connections"]}) == \
        "client 'emp-api' has 0 connections"
    assert g.probe_verdict({"healthy": True}) is None
    assert g.probe_verdict({"failed": True, "msg": "threshold broke", "x": 1}) == "threshold broke"


# --- schedule ------------------------------------------------------------------------------------

@pytest.mark.parametrize("samples, interval, duration, expected", [
    (None, None, None, (1, 10.0)),
    (5, 2, None, (5, 2.0)),
    (None, 30, 1800, (61, 30.0)),
    (None, 60, 1800, (31, 60.0)),
    (4, None, 3, (4, 1.0)),
    (1, None, 60, (1, 0.0)),
])
def test_plan_schedule(samples, interval, duration, expected):
    schedule = g.plan_schedule(samples, interval, duration)
    assert (schedule.samples, schedule.interval) == expected


@pytest.mark.parametrize("samples, interval, duration, message", [
    (0, None, None, "at least 1"),
    (None, -1, None, "negative"),
    (3, 1, 10, "at most two"),
    (None, None, -5, "positive"),
    (None, 0, 10, "positive"),
])
def test_plan_schedule_rejects_impossible_windows(samples, interval, duration, message):
    with pytest.raises(ValueError, match=message):
        g.plan_schedule(samples, interval, duration)


# --- decisions -----------------------------------------------------------------------------------

def run(outcomes, planned=None, **limits):
    tally = g.Tally(planned=planned or len(outcomes))
    decision = None
    for outcome in outcomes:
        tally.add(outcome, "boom" if outcome == g.ERROR else None)
        decision = g.decide(tally, g.Limits(**limits))
        if decision:
            break
    return decision or g.final_decision(tally, g.Limits(**limits)), tally


P, F, E, N = g.PASSED, g.FAILED, g.ERROR, g.NO_DATA


@pytest.mark.parametrize("outcomes, limits, decision, taken", [
    ([P, P, P], {}, g.GO, 3),
    ([P, F, P], {}, g.NO_GO, 2),                        # failure_limit 0: the first failure decides
    ([P, F, P, P], {"failure_limit": 1}, g.GO, 4),
    ([F, F, P, P], {"failure_limit": 1}, g.NO_GO, 2),
    ([E, E, E, E, P], {}, g.NO_GO, 4),                  # 4 consecutive errors > consecutive_error_limit 3
    ([E, E, E, P, P], {}, g.GO, 5),
    ([E, E, E], {}, g.NO_GO, 3),                        # never measured: never GO
    ([E], {"consecutive_error_limit": 10}, g.NO_GO, 1),
    ([F], {"failure_limit": 5}, g.NO_GO, 1),            # within the limit, but nothing ever passed
    ([N, N], {}, g.NO_GO, 2),
    ([N, N], {"on_no_data": "pass"}, g.GO, 2),
    ([N, P], {}, g.GO, 2),
    ([E, P, E, P, E, P], {"consecutive_error_limit": 1}, g.GO, 6),
])
def test_decisions_follow_the_argo_style_limits(outcomes, limits, decision, taken):
    got, tally = run(outcomes, **limits)
    assert got == decision
    assert tally.taken == taken


def test_go_stops_early_once_remaining_samples_cannot_reach_a_limit():
    got, tally = run([P, P, P, P, P], planned=5, failure_limit=5, consecutive_error_limit=5)
    assert got == g.GO and tally.taken == 1


def test_go_never_stops_early_with_failure_limit_zero():
    got, tally = run([P] * 5, failure_limit=0)
    assert got == g.GO and tally.taken == 5


def test_an_erroring_probe_never_yields_go_whatever_the_limits():
    for limit in range(0, 6):
        got, dummy = run([E] * 5, failure_limit=limit, consecutive_error_limit=limit)
        assert got == g.NO_GO


# --- reasons -------------------------------------------------------------------------------------

def outcome_with(criterion, held, failing_values):
    parsed = g.parse_criterion(criterion)
    outcome = g.CriterionOutcome(parsed, held=held, failed=len(failing_values))
    outcome.failing_figures = [{parsed.paths[0]: value} for value in failing_values]
    return outcome


def test_reason_quotes_the_failing_figures_and_counts():
    tally = g.Tally(planned=5)
    for outcome in (F, P, F, P, F):
        tally.add(outcome)
    reason = g.build_reason(g.NO_GO, tally, g.Limits(failure_limit=3),
                            [outcome_with("result.latency_ms.p95 < 200", 2, [312, 290.5, 305])], [], False, False)
    assert reason.startswith("result.latency_ms.p95 < 200 did not hold in 3 of 5 measured samples")
    assert "result.latency_ms.p95 was 312, 290.5, 305" in reason


def test_reason_leads_with_the_probes_problem_when_unhealthy():
    tally = g.Tally(planned=3)
    tally.add(F)
    reason = g.build_reason(g.NO_GO, tally, g.Limits(), [outcome_with("result.healthy", 0, [False])],
                            ["client 'emp-toy' has 0 connections, expected at least 1"], False, True)
    assert reason.startswith("client 'emp-toy' has 0 connections, expected at least 1")
    assert "result.healthy did not hold" not in reason
    assert "stopped after 1 of 3 samples" in reason


def test_reason_for_errors_names_the_last_error():
    tally = g.Tally(planned=4)
    for dummy in range(4):
        tally.add(E, "Redis at 127.0.0.1:1 refused the connection")
    reason = g.build_reason(g.NO_GO, tally, g.Limits(), [], [], False, False)
    assert "could not measure in 4 consecutive samples" in reason
    assert "127.0.0.1:1 refused" in reason


def test_reason_for_go_counts_samples():
    tally = g.Tally(planned=3)
    for dummy in range(3):
        tally.add(P)
    outcomes = [g.CriterionOutcome(g.parse_criterion("result.ok"), held=3)]
    assert g.build_reason(g.GO, tally, g.Limits(), outcomes, [], False, False) == "all 1 criterion held in 3 of 3 samples"


def test_criterion_outcome_as_dict():
    outcome = g.CriterionOutcome(g.parse_criterion("result.a > 1"), held=2, failed=1)
    assert outcome.as_dict() == {"criterion": "result.a > 1", "outcome": "failed", "held": 2, "failed": 1,
                                 "errors": 0, "evaluated": 3}
    assert g.CriterionOutcome(g.parse_criterion("result.a")).as_dict()["outcome"] == "not evaluated"


# --- evaluation with the real templating engine of the running ansible-core ----------------------

def _trusted(text):
    try:
        from ansible.template import trust_as_template  # ansible-core >= 2.19
    except ImportError:
        return text
    return trust_as_template(text)


@pytest.fixture
def gate_action():
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play_context import PlayContext
    from ansible.playbook.task import Task
    from ansible.template import Templar

    loader = DataLoader()
    return action.ActionModule(task=Task(), connection=None, play_context=PlayContext(), loader=loader,
                               templar=Templar(loader=loader), shared_loader_obj=None)


@pytest.mark.compat
@pytest.mark.parametrize("criterion, sample, expected", [
    ("result.latency_ms.p95 < 200", {"latency_ms": {"p95": 312}}, False),
    ("result.latency_ms.p95 < 200", {"latency_ms": {"p95": 12.5}}, True),
    ("result.clients.by_name['emp-api'] >= limit", {"clients": {"by_name": {"emp-api": 3}}}, True),
    ("result.clients.connected - baseline.clients.connected <= 2", {"clients": {"connected": 9}}, False),
])
def test_evaluate_binds_result_baseline_and_play_variables(gate_action, criterion, sample, expected):
    from collections import ChainMap

    variables = ChainMap({"result": sample, "baseline": {"clients": {"connected": 5}}}, {"limit": 1})
    assert gate_action.evaluate(g.parse_criterion(_trusted(criterion)), variables) is expected


@pytest.mark.compat
def test_evaluate_raises_on_a_criterion_that_cannot_evaluate(gate_action):
    with pytest.raises(Exception, match="undefined|has no attribute"):
        gate_action.evaluate(g.parse_criterion(_trusted("result.missing.deeper > 1")), {"result": {}})


# --- a gate never changes what it measures -------------------------------------------------------

LIBRARY = Path(__file__).resolve().parents[3] / "integration" / "files" / "gate_library"


def _doc(path: Path) -> dict:
    from ansible.plugins.loader import fragment_loader
    from ansible.utils.plugin_docs import get_docstring

    return get_docstring(str(path), fragment_loader, collection_name=None, is_module=True)[0]


@pytest.mark.compat
def test_read_only_is_read_from_the_modules_own_documentation():
    import ansible.modules.command

    assert g.declares_read_only(_doc(LIBRARY / "sequence_probe.py")) is True
    assert g.declares_read_only(_doc(LIBRARY / "writer_probe.py")) is False  # check_mode full, no read_only
    assert g.declares_read_only(_doc(Path(ansible.modules.command.__file__))) is False


@pytest.mark.parametrize("attributes, read_only", [
    ({"check_mode": {"support": "full"}, "read_only": {"support": "full"}}, True),
    ({"check_mode": {"support": "partial"}, "read_only": {"support": "full"}}, False),
    ({"check_mode": {"support": "full"}, "read_only": {"support": "none"}}, False),
    ({"check_mode": {"support": "full"}}, False),
    ("not a mapping", False),
    (None, False),
])
def test_declares_read_only_needs_full_check_mode_and_the_read_only_attribute(attributes, read_only):
    assert g.declares_read_only({"attributes": attributes}) is read_only


@pytest.mark.parametrize("explicit, read_only, run_check, expected", [
    (None, False, False, True),     # not declared read-only: check mode, whatever the run
    (None, False, True, True),
    (None, True, False, False),     # declared read-only: as the run goes
    (None, True, True, True),
    (False, False, True, False),    # probe.check_mode wins over everything
    (True, True, False, True),
])
def test_probe_check_mode_precedence(explicit, read_only, run_check, expected):
    assert g.probe_check_mode(explicit, read_only, run_check) is expected


def test_change_reason_names_the_module_and_what_it_did():
    assert g.change_reason("emp.deploy.ngrok_tunnel", {"changed": True, "actions": ["recreated tunnel api"]}, False) == \
        "the probe changed the target: emp.deploy.ngrok_tunnel recreated tunnel api"
    assert g.change_reason("x.y.z", {"changed": True, "msg": "restarted"}, True) == \
        "the probe would change the target (nothing was changed, it ran in check mode): x.y.z restarted"
    assert g.change_reason("x.y.z", {"changed": True}, False) == "the probe changed the target: x.y.z reported changed: true"
    assert g.change_reason("x.y.z", {"changed": True, "msg": "S3CRET"}, False, redacted=True) == \
        "the probe changed the target: x.y.z withheld (no_log)"
    assert g.change_reason("x.y.z", {"changed": False, "msg": "ok"}, False) is None


def test_commands_run_outside_check_mode_say_changed_without_knowing():
    sample = {"changed": True, "rc": 0, "stdout": "1"}
    for module in ("ansible.builtin.command", "ansible.legacy.shell", "ansible.builtin.raw"):
        assert g.change_reason(module, sample, False) is None
        assert g.change_reason(module, sample, True) is not None
    assert g.change_reason("community.general.command_like", sample, False) is not None


def test_a_changed_target_is_no_go_at_once_whatever_the_limits():
    tally = g.Tally(planned=5)
    tally.add(P)
    tally.add(E, "the probe changed the target: x")
    limits = g.Limits(failure_limit=5, consecutive_error_limit=5)
    assert g.decide(tally, limits) == g.GO  # an error sample alone is within these limits
    tally.target_changed = "the probe changed the target: x"
    assert g.decide(tally, limits) == g.NO_GO
    assert g.final_decision(tally, limits) == g.NO_GO
    reason = g.build_reason(g.NO_GO, tally, limits, [], [], False, True)
    assert reason.startswith("the probe changed the target: x; a gate observes and never repairs")


@pytest.mark.parametrize("module, args, expected", [
    ("ansible.builtin.command", {"cmd": "echo 1", "chdir": "/"}, ("ansible.builtin.command", {"_raw_params": "echo 1", "chdir": "/"})),
    ("ansible.builtin.command", {"argv": ["echo"]}, ("ansible.builtin.command", {"argv": ["echo"]})),
    ("ansible.builtin.shell", {"cmd": "echo $HOME"}, ("ansible.legacy.command", {"_raw_params": "echo $HOME", "_uses_shell": True})),
    ("emp.deploy.redis_health", {"cmd": "PING"}, ("emp.deploy.redis_health", {"cmd": "PING"})),
])
def test_probe_invocation_runs_command_and_shell_as_their_actions_do(module, args, expected):
    assert g.probe_invocation(module, args) == expected


def test_probe_invocation_refuses_cmd_with_raw_params():
    with pytest.raises(ValueError, match="either as cmd or as _raw_params"):
        g.probe_invocation("ansible.builtin.command", {"cmd": "a", "_raw_params": "b"})


# --- no_log ------------------------------------------------------------------------------------------

def test_a_redacted_reason_has_no_figures_no_probe_words_and_no_errors():
    tally = g.Tally(planned=3)
    tally.add(F)
    tally.add(E, "psql: password S3CRET rejected")
    failing = outcome_with("result.stdout == 'x'", 0, ["S3CRET"])
    failing.last_error = "'S3CRET' is not a version"
    reason = g.build_reason(g.NO_GO, tally, g.Limits(), [failing], ["S3CRET leaked"], False, False, redacted=True)
    assert "S3CRET" not in reason
    assert "result.stdout == 'x' did not hold in 1 of 1 measured sample" in reason
    assert "its problems are withheld (no_log)" in reason
    assert failing.as_dict(redacted=True)["error"] == "withheld (no_log)"
    assert "S3CRET" in g.build_reason(g.NO_GO, tally, g.Limits(), [failing], ["S3CRET leaked"], False, False)


# --- plain words for types -----------------------------------------------------------------------

@pytest.mark.parametrize("value, word", [
    (5, "a number"), (2.5, "a number"), (True, "a boolean"), ("x", "a string"), ({"a": 1}, "a mapping"),
    ([1], "a list"), (None, "null"),
])
def test_describe_type(value, word):
    assert g.describe_type(value) == word


@pytest.mark.parametrize("message, plain", [
    ("not _AnsibleTaggedDict", "not a mapping"),
    ("not _AnsibleTaggedInt", "not a number"),
    ("of type AnsibleUnsafeText", "of type a string"),
    ("<class 'ansible.module_utils._internal._datatag._AnsibleTaggedList'> cannot be converted to a dict",
     "a list cannot be converted to a dict"),
    ("argument 'x' is of type <class 'AnsibleUnicode'> and", "argument 'x' is of type a string and"),
    ("argument 'x' is of type dict and", "argument 'x' is of type a mapping and"),
    ("value of mode must be one of: enforce, got: 3", "value of mode must be one of: enforce, got: 3"),
])
def test_plain_type_names(message, plain):
    assert g.plain_type_names(message) == plain


@pytest.mark.compat
def test_plain_type_names_covers_the_running_ansible_cores_own_types():
    """The classes this ansible-core wraps task values in are named in plain words, however printed."""
    try:
        from ansible._internal._datatag._tags import Origin  # ansible-core >= 2.19

        values = [Origin(path="/p.yml", line_num=1, col_num=1).tag(value) for value in (5, "s", {"a": 1}, [1])]
    except ImportError:  # ansible-core 2.18
        from ansible.parsing.yaml.objects import AnsibleMapping, AnsibleSequence, AnsibleUnicode

        values = [AnsibleUnicode("s"), AnsibleMapping({"a": 1}), AnsibleSequence([1])]
    internal = [value for value in values if type(value).__name__ not in ("int", "str", "dict", "list")]
    assert internal, "this ansible-core wraps no value: the test proves nothing"
    for value in internal:
        cls = type(value)
        word = g.describe_type(value)
        assert g.plain_type_names(f"not {cls.__name__}") == f"not {word}"
        assert g.plain_type_names(f"<class '{cls.__module__}.{cls.__name__}'> cannot") == f"{word} cannot"


FRAGMENT = """
class ModuleDocFragment:
    PROBE = r\"\"\"
options: {}
attributes:
  check_mode: {description: Same in check mode., support: full}
  read_only: {description: Never changes its target., support: full}
\"\"\"
"""

PROBE_MODULE = """
DOCUMENTATION = r\"\"\"
module: probe
short_description: A probe
description: A probe.
options: {}
extends_documentation_fragment: [testns.testcol.attributes.probe]
\"\"\"
"""


@pytest.mark.compat
def test_a_read_only_declaration_in_a_collections_doc_fragment_counts(tmp_path):
    """The gate's reader merges doc fragments, as the collection's probes declare their attributes there."""
    import subprocess
    import sys

    collection = tmp_path / "ansible_collections" / "testns" / "testcol"
    (collection / "plugins" / "doc_fragments").mkdir(parents=True)
    (collection / "plugins" / "modules").mkdir()
    (collection / "plugins" / "doc_fragments" / "attributes.py").write_text(FRAGMENT)
    (collection / "plugins" / "modules" / "probe.py").write_text(PROBE_MODULE)
    root = Path(__file__).resolve().parents[4]
    script = (
        "from ansible.plugins.loader import init_plugin_loader\n"
        f"init_plugin_loader([{str(tmp_path)!r}, {str(root / 'collections')!r}])\n"
        "from ansible.plugins.loader import module_loader\n"
        "from ansible_collections.emp.deploy.plugins.action.gate import _module_doc\n"
        "from ansible_collections.emp.deploy.plugins.plugin_utils._gate import declares_read_only\n"
        "context = module_loader.find_plugin_with_context('testns.testcol.probe')\n"
        "print(declares_read_only(_module_doc(context.plugin_resolved_path, context.plugin_resolved_collection)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


def test_read_only_is_read_once_per_module_per_run(tmp_path, monkeypatch):
    """The answer is kept in the run's local temporary directory, shared by every worker process."""
    monkeypatch.setattr(action.C, "DEFAULT_LOCAL_TMP", str(tmp_path), raising=False)
    probe = LIBRARY / "sequence_probe.py"
    action._module_doc.cache_clear()
    assert action.probe_is_read_only(str(probe), "") is True
    assert len(list((tmp_path / "emp_gate_read_only").iterdir())) == 1

    def unreadable(*args):
        raise AssertionError("the documentation was read again")

    action._module_doc.cache_clear()  # as in another worker process of the same run
    monkeypatch.setattr(action, "_module_doc", unreadable)
    assert action.probe_is_read_only(str(probe), "") is True
    # another run (its own temporary directory) reads the documentation again
    monkeypatch.setattr(action.C, "DEFAULT_LOCAL_TMP", str(tmp_path / "next-run"), raising=False)
    with pytest.raises(AssertionError, match="read again"):
        action.probe_is_read_only(str(probe), "")
