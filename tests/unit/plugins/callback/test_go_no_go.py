"""Unit tests of the emp.deploy.go_no_go callback: journal, atomic summary, options, bookkeeping.

The plugin is loaded through Ansible's real plugin loader (so its documented options apply); plays,
task results and stats are small stand-ins shaped like ansible-core's (2.18 `_result`/`_host`/`_task`
and 2.19+ `result`/`host`/`task`). Real runs are in tests/integration/test_go_no_go*.py.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import pytest

from ansible_collections.emp.deploy.plugins.callback import go_no_go as cb
from ansible_collections.emp.deploy.plugins.plugin_utils import _run_recorder as rr


# --- stand-ins -----------------------------------------------------------------------------------

class Named:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class VariableManager:
    def __init__(self, extra_vars=None):
        self.extra_vars = extra_vars or {}


class Play(Named):
    def __init__(self, name, variables=None, extra_vars=None):
        super().__init__(name)
        self.vars = variables or {}
        self._vm = VariableManager(extra_vars)

    def get_variable_manager(self):
        return self._vm


class Task(Named):
    action = "ansible.builtin.command"


class Result:
    """Shaped like ansible-core 2.18's TaskResult."""

    def __init__(self, data, host="sandbox", task="a task"):
        self._result = data
        self._host = Named(host)
        self._task = Task(task)


class ResultV219:
    """Shaped like ansible-core 2.19+'s CallbackTaskResult."""

    def __init__(self, data, host="sandbox", task="a task"):
        self.result = data
        self.host = Named(host)
        self.task = Task(task)


class Stats:
    processed = {"sandbox": 1}

    def summarize(self, host):
        return {"ok": 1, "failures": 0}


def gate(name, component, decision="GO", mode="enforce", gate_id=None):
    return {"id": gate_id or f"{name}-id", "name": name, "phase": "infrastructure", "component": component,
            "mode": mode, "enforced": mode == "enforce", "decision": decision, "reason": f"{name} reason",
            "duration_s": 1.5, "started": "t0", "ended": "t1", "samples": [], "criteria": []}


class Loader:
    """Registers the plugin's documented options with Ansible's config manager, as the plugin loader
    does, then instantiates it (the collection is already imported as a plain package here)."""

    name = "emp.deploy.go_no_go"

    def __init__(self):
        import yaml
        from ansible import constants as C

        if not C.config.has_configuration_definition("callback", self.name):
            options = yaml.safe_load(cb.DOCUMENTATION)["options"]
            C.config.initialize_plugin_configuration_definitions("callback", self.name, options)

    def get(self, name):
        assert name == self.name
        plugin = cb.CallbackModule()
        plugin._load_name = self.name
        return plugin


@pytest.fixture(scope="module")
def loader():
    return Loader()


@pytest.fixture(autouse=True)
def restore_process_state(monkeypatch):
    """The callback patches sys.exit, installs signal handlers and exports the run id in the process
    running it; its watcher process is left out here (tests/unit/plugins/plugin_utils test it)."""
    for name in ("EMP_DEPLOY_ROLLBACK_OF", "EMP_DEPLOY_ROLLBACK_EVENTS", "EMP_DEPLOY_RUN_ID", "EMP_DEPLOY_RUN_DIR",
                 "EMP_DEPLOY_RUN_ID_OWNER"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "exit", sys.exit)
    monkeypatch.setattr(rr.RunRecorder, "watch", lambda self: None)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.fixture
def callback(loader, tmp_path):
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options(direct={"report_dir": str(tmp_path / "reports"), "rollback": "off"})
    return plugin


def start(plugin, *plays):
    plugin.v2_playbook_on_start(Named("deploy.yml"))
    for play in plays:
        plugin.v2_playbook_on_play_start(play)


def read_run(tmp_path):
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return journal, summary


# --- files ---------------------------------------------------------------------------------------

def test_journal_lines_are_complete_json_as_soon_as_written(tmp_path):
    journal = rr.Journal(tmp_path / "run" / "journal.jsonl")
    journal.write({"type": "a", "text": "é" * 10})
    # readable before close: the record was written whole and fsynced
    assert json.loads((tmp_path / "run" / "journal.jsonl").read_text())["text"] == "é" * 10
    journal.write({"type": "b", "value": object()})  # unserialisable values become strings
    journal.close()
    lines = (tmp_path / "run" / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["a", "b"]


def test_journal_appends_from_concurrent_writers_without_mixing_lines(tmp_path):
    path = tmp_path / "journal.jsonl"
    journals = [rr.Journal(path) for dummy in range(4)]

    def write_many(journal, writer):
        for index in range(50):
            journal.write({"w": writer, "i": index, "pad": "x" * 500})

    threads = [threading.Thread(target=write_many, args=(journal, writer)) for writer, journal in enumerate(journals)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 200


def test_summary_is_replaced_atomically_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "summary.json"
    rr.write_json_atomically(target, {"decision": "GO"})
    rr.write_json_atomically(target, {"decision": "NO-GO"})
    assert json.loads(target.read_text()) == {"decision": "NO-GO"}
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]


# --- options -------------------------------------------------------------------------------------

def test_budgets_default_to_the_checklist_and_accept_overrides_with_units():
    assert rr.parse_budgets(None) == {"redis": 300, "webhooks": 300, "telemetry": 600, "database": 900}
    assert rr.parse_budgets(["redis=60", "ngrok=30"])["redis"] == 60
    assert rr.parse_budgets(["toy=5m", "a=90s", "b=1h", "c=1.5m", "d=250ms"]) == {
        **rr.DEFAULT_BUDGETS, "toy": 300, "a": 90, "b": 3600, "c": 90, "d": 0.25}


@pytest.mark.parametrize("bad, message", [("redis", "is not component=duration"), ("=30", "is not component=duration"),
                                          ("redis=", "is not a duration"), ("redis=ten", "is not a duration"),
                                          ("redis=-1", "is not a duration"), ("redis=5 minutes", "is not a duration")])
def test_malformed_budgets_are_rejected(bad, message):
    with pytest.raises(rr.OptionError, match=message):
        rr.parse_budgets([bad])


def test_documented_options_and_their_environment_variables(loader, monkeypatch, tmp_path):
    monkeypatch.setenv("EMP_DEPLOY_ROLLBACK", "plan")
    monkeypatch.setenv("EMP_DEPLOY_ROLLBACK_SCOPE", "run")
    monkeypatch.setenv("EMP_DEPLOY_REPORT_DIR", str(tmp_path))
    monkeypatch.setenv("EMP_DEPLOY_ROLLBACK_PLAYBOOK", "/srv/rollback.yml")
    monkeypatch.setenv("EMP_DEPLOY_ROLLBACK_BUDGETS", "redis=60,database=120")
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options()
    assert plugin.get_option("rollback") == "plan"
    assert plugin.get_option("rollback_scope") == "run"
    assert plugin.get_option("report_dir") == str(tmp_path)
    assert plugin.get_option("rollback_playbook") == "/srv/rollback.yml"
    assert rr.parse_budgets(plugin.get_option("rollback_budgets"))["database"] == 120
    assert plugin.CALLBACK_TYPE == "notification" and plugin.CALLBACK_NEEDS_ENABLED


def test_an_unknown_rollback_mode_stops_the_run_but_never_unloads_the_callback(loader, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EMP_DEPLOY_ROLLBACK", "sometimes")
    monkeypatch.setenv("EMP_DEPLOY_REPORT_DIR", str(tmp_path))
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options()  # loading succeeds: the callback judges its options itself
    with pytest.raises(SystemExit) as stopped:
        start(plugin, Play("p", {"emp_phase": "x", "emp_component": "y"}))
    assert stopped.value.code == 5
    err = " ".join(capsys.readouterr().err.split())  # ansible-core 2.18 wraps long errors
    assert "rollback: 'sometimes' is not one of auto, plan, off" in err


# --- bookkeeping ---------------------------------------------------------------------------------

def test_gates_are_found_in_loops_once_each():
    data = {"results": [{"emp_gate": gate("a", "redis")}, {"skipped": True}, {"emp_gate": gate("b", "redis")}]}
    assert [g["name"] for g in rr.gates_in(data)] == ["a", "b"]
    assert rr.gates_in({"emp_gate": {"no": "decision"}}) == []


@pytest.mark.parametrize("result_type", [Result, ResultV219])
def test_a_go_run_records_phases_and_gates(callback, tmp_path, result_type):
    start(callback, Play("Phase 1 db", {"emp_phase": "infrastructure", "emp_component": "database"},
                         {"emp_release": "2025.09.27"}))
    callback.v2_runner_on_ok(result_type({"emp_gate": gate("db", "database")}))
    # the same gate seen again (item callback, then the loop's final result) is recorded once
    callback.v2_runner_item_on_ok(result_type({"emp_gate": gate("db", "database")}))
    callback.v2_runner_on_ok(result_type({"changed": False}))
    callback.v2_playbook_on_stats(Stats())
    journal, summary = read_run(tmp_path)
    assert [r["type"] for r in journal] == ["run_start", "phase_start", "gate", "phase_end", "run_end"]
    assert journal[0]["emp_release"] == "2025.09.27"
    assert summary["decision"] == "GO"
    assert summary["gates"][0]["name"] == "db"
    assert summary["phases"][0]["decision"] == "GO"
    assert summary["rollback"]["triggered"] is False


def test_a_failed_step_inside_a_phase_is_a_nogo_for_its_component(callback, tmp_path):
    start(callback, Play("Phase 1 redis", {"emp_phase": "infrastructure", "emp_component": "redis"}))
    callback.v2_runner_on_failed(Result({"failed": True, "msg": "restart failed\nsecond line"}, task="Restart api"))
    callback.v2_runner_on_failed(Result({"failed": True, "msg": "ignored"}), ignore_errors=True)
    callback.v2_playbook_on_stats(Stats())
    journal, summary = read_run(tmp_path)
    assert summary["decision"] == "NO-GO"
    (failure,) = summary["failures"]
    assert failure == {**failure, "component": "redis", "task": "Restart api", "msg": "restart failed",
                       "reason": "deployment step failed"}
    assert summary["rollback"]["why_not"] == "rollback is off"
    assert "step_failed" in [r["type"] for r in journal]


def test_warn_and_observe_nogo_do_not_fail_the_run(callback, tmp_path):
    start(callback, Play("p", {"emp_phase": "x", "emp_component": "redis"}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("w", "redis", "NO-GO", mode="warn")}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("o", "redis", "NO-GO", mode="observe")}))
    callback.v2_playbook_on_stats(Stats())
    dummy, summary = read_run(tmp_path)
    assert summary["decision"] == "GO"
    assert [g["decision"] for g in summary["gates"]] == ["NO-GO", "NO-GO"]


def release(component):
    return {"changed": True, "emp_release_step": {"component": component, "version": "2", "previous": "1",
                                                  "changed": True, "run_id": "r", "host": "sandbox"}}


@pytest.mark.parametrize("scope, expected", [("failed", ["redis"]), ("run", ["webhooks", "redis", "database"])])
def test_rollback_components_in_reverse_order_of_deployment(callback, scope, expected):
    callback.set_options(direct={"rollback_scope": scope, "rollback": "off"})
    start(callback, Play("db", {"emp_phase": "infrastructure", "emp_component": "database"}))
    callback.v2_runner_on_ok(Result(release("database")))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("db", "database")}))
    callback.v2_playbook_on_play_start(Play("redis", {"emp_phase": "infrastructure", "emp_component": "redis"}))
    callback.v2_runner_on_ok(Result(release("redis")))
    callback.v2_runner_on_failed(Result({"failed": True, "emp_gate": gate("r", "redis", "NO-GO")}))
    callback.v2_playbook_on_play_start(Play("webhooks", {"emp_phase": "application", "emp_component": "webhooks"}))
    callback.v2_runner_item_on_ok(Result({"results": [release("webhooks")]}))
    # a phase that started but whose release step never ran (tags, --start-at-task) is not rolled back
    callback.v2_playbook_on_play_start(Play("telemetry", {"emp_phase": "application", "emp_component": "telemetry"}))
    assert callback._recorder.rollback_components() == expected


def test_plan_mode_records_the_exact_command_and_runs_nothing(loader, tmp_path):
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options(direct={"report_dir": str(tmp_path / "reports"), "rollback": "plan"})
    start(plugin, Play("redis", {"emp_phase": "infrastructure", "emp_component": "redis"}))
    plugin.v2_runner_on_failed(Result({"failed": True, "emp_gate": gate("r", "redis", "NO-GO")}))
    plugin.v2_playbook_on_stats(Stats())
    dummy, summary = read_run(tmp_path)
    assert summary["rollback"]["mode"] == "plan"
    assert summary["rollback"]["components"] == ["redis"]
    assert "ansible-playbook emp.deploy.rollback" in summary["rollback"]["command"]
    assert '"emp_rollback_components": ["redis"]' in summary["rollback"]["command"]
    assert summary["rollback"].get("ok") is None


def test_an_enforced_nogo_keeps_the_exit_code_non_zero(callback, monkeypatch):
    start(callback, Play("redis", {"emp_phase": "infrastructure", "emp_component": "redis"}))
    callback.v2_runner_on_failed(Result({"failed": True, "emp_gate": gate("r", "redis", "NO-GO")}))
    callback.v2_playbook_on_stats(Stats())
    with pytest.raises(SystemExit) as exited:
        sys.exit(0)
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        sys.exit(4)
    assert exited.value.code == 4


def test_a_rollback_run_never_rolls_back_itself(callback, tmp_path):
    start(callback, Play("redis", {"emp_phase": "rollback", "emp_component": "redis"},
                         {"emp_rollback_components": ["redis"]}))
    callback.v2_runner_on_failed(Result({"failed": True, "msg": "could not restore"}))
    callback.v2_playbook_on_stats(Stats())
    dummy, summary = read_run(tmp_path)
    assert summary["rollback_run"] is True
    assert summary["rollback"]["triggered"] is False
    assert "never rolls back itself" in summary["rollback"]["why_not"]


def test_its_own_errors_never_break_the_run(callback, capsys):
    start(callback, Play("p", {"emp_phase": "x", "emp_component": "y"}))

    class Broken:
        @property
        def result(self):
            raise RuntimeError("broken result object")

        _result = result

    callback.v2_runner_on_ok(Broken())  # must not raise
    callback.v2_runner_on_ok(Broken())
    out = capsys.readouterr()
    assert (out.out + out.err).count("emp.deploy.go_no_go: v2_runner_on_ok failed") == 1


def test_the_run_id_comes_from_the_extra_var_first(callback, tmp_path, monkeypatch):
    monkeypatch.setenv("EMP_DEPLOY_RUN_ID", "from-env")
    start(callback, Play("p", {}, {"emp_run_id": "from-extra-var"}))
    callback.v2_playbook_on_stats(Stats())
    assert [p.name for p in (tmp_path / "reports").iterdir() if p.is_dir()] == ["from-extra-var"]
    assert os.environ["EMP_DEPLOY_RUN_ID"] == "from-extra-var"  # exported for every task of the run


def test_the_run_id_comes_from_the_environment_without_the_extra_var(callback, tmp_path, monkeypatch):
    monkeypatch.setenv("EMP_DEPLOY_RUN_ID", "from-env")
    start(callback, Play("p", {}, {}))
    callback.v2_playbook_on_stats(Stats())
    assert [p.name for p in (tmp_path / "reports").iterdir() if p.is_dir()] == ["from-env"]
    journal, summary = read_run(tmp_path)
    assert summary["run_id"] == "from-env" and {r["run_id"] for r in journal} == {"from-env"}


def test_a_new_run_id_is_exported_to_the_run(callback, tmp_path):
    start(callback, Play("p", {}, {}))
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    assert os.environ["EMP_DEPLOY_RUN_ID"] == run_dir.name
    assert os.environ["EMP_DEPLOY_RUN_DIR"] == str(run_dir) and os.path.isabs(os.environ["EMP_DEPLOY_RUN_DIR"])


def test_a_nested_run_exports_its_own_run_folder_with_its_own_id(callback, tmp_path, monkeypatch):
    parent = tmp_path / "reports" / "parent-run"
    monkeypatch.setenv("EMP_DEPLOY_RUN_ID", "parent-run")
    monkeypatch.setenv("EMP_DEPLOY_RUN_DIR", str(parent))
    monkeypatch.setenv("EMP_DEPLOY_RUN_ID_OWNER", f"{os.getpid() + 1}:parent-run")  # exported by another process
    start(callback, Play("p", {}, {}))
    assert os.environ["EMP_DEPLOY_RUN_ID"] != "parent-run"
    assert os.environ["EMP_DEPLOY_RUN_DIR"] == str(tmp_path / "reports" / os.environ["EMP_DEPLOY_RUN_ID"])


@pytest.mark.parametrize("source", ["extra_var", "env"])
@pytest.mark.parametrize("bad", ["../../escape", "a/b", "..", ".hidden", "", "x" * 129])
def test_an_unsafe_run_id_stops_the_run(callback, tmp_path, monkeypatch, source, bad):
    if source == "env":
        monkeypatch.setenv("EMP_DEPLOY_RUN_ID", bad)
        play = Play("p", {}, {})
    else:
        play = Play("p", {}, {"emp_run_id": bad})
    if bad == "":  # empty means unset: a new id
        start(callback, play)
        assert len(list((tmp_path / "reports").iterdir())) == 1
        return
    with pytest.raises(SystemExit) as stopped:
        start(callback, play)
    assert stopped.value.code == 5
    assert not (tmp_path / "reports").exists() and not list(tmp_path.parent.rglob("escape"))


@pytest.mark.parametrize("option, value", [("rollback_budgets", ["redis=soon"]), ("rollback_default_budget", "x"),
                                           ("rollback_budgets", ["redis"])])
def test_a_malformed_option_stops_the_run_at_its_start(loader, tmp_path, option, value, capsys):
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options(direct={"report_dir": str(tmp_path / "reports"), option: value})
    with pytest.raises(SystemExit) as stopped:
        start(plugin, Play("p", {"emp_phase": "x", "emp_component": "y"}))
    assert stopped.value.code == 5
    assert option in capsys.readouterr().err


def test_sigterm_handler_closes_the_journal_only_in_the_process_that_installed_it(callback, tmp_path, monkeypatch):
    start(callback, Play("p", {"emp_phase": "x", "emp_component": "y"}))
    calls = []
    callback._previous_handlers[15] = lambda signum, frame: calls.append(signum)
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked worker
    callback._on_signal(15, None)
    assert calls == [15] and not callback._recorder.finished
    monkeypatch.undo()
    callback._on_signal(15, None)
    assert calls == [15, 15]
    journal, summary = read_run(tmp_path)
    assert summary["interrupted"] == "SIGTERM" and summary["decision"] == "interrupted"
    assert [r["type"] for r in journal][-2:] == ["run_interrupted", "run_end"]


def test_an_ignored_enforced_nogo_is_recorded_but_neither_fails_nor_rolls_back(callback, tmp_path):
    start(callback, Play("redis", {"emp_phase": "infrastructure", "emp_component": "redis"}))
    callback.v2_runner_on_failed(Result({"failed": True, "emp_gate": gate("r", "redis", "NO-GO")}), ignore_errors=True)
    callback.v2_playbook_on_stats(Stats())
    dummy, summary = read_run(tmp_path)
    assert summary["decision"] == "GO"
    assert summary["gates"][0]["ignored"] is True and summary["failures"] == []


class FailedStats(Stats):
    def summarize(self, host):
        return {"ok": 1, "failures": 1}


def test_a_failure_outside_any_phase_is_no_go_only_if_the_run_failed_and_never_rolls_back(callback, tmp_path):
    original_exit = sys.exit
    start(callback, Play("Pre-flight", {}))
    callback.v2_runner_on_failed(Result({"failed": True, "msg": "probe said no"}, task="Check"))
    callback.v2_playbook_on_stats(Stats())  # the failure was rescued: the host ended without failures
    dummy, summary = read_run(tmp_path)
    assert summary["decision"] == "GO" and summary["failures"][0]["component"] is None
    assert summary["rollback"]["triggered"] is False
    assert sys.exit is original_exit  # the exit code is left alone


def test_a_run_that_failed_outside_any_phase_is_no_go(loader, tmp_path):
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options(direct={"report_dir": str(tmp_path / "reports")})
    start(plugin, Play("Pre-flight", {}))
    plugin.v2_runner_on_failed(Result({"failed": True, "msg": "probe said no"}, task="Check"))
    plugin.v2_playbook_on_stats(FailedStats())
    dummy, summary = read_run(tmp_path)
    assert summary["decision"] == "NO-GO"
    assert summary["reasons"] == ["outside any phase: deployment step failed: Check on sandbox: probe said no"]
    assert summary["rollback"]["triggered"] is False


class GateTask(Task):
    action = "emp.deploy.gate"


def test_a_gate_censored_by_no_log_is_recorded_redacted_with_its_decision(callback, tmp_path):
    start(callback, Play("redis", {"emp_phase": "infrastructure", "emp_component": "redis"}))
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified", "changed": False}
    passed, failed = Result(dict(censored), task="Quiet gate"), Result(dict(censored), task="Secret gate")
    passed._task, failed._task = GateTask("Quiet gate"), GateTask("Secret gate")
    callback.v2_playbook_on_task_start(passed._task, False)
    callback.v2_runner_on_ok(passed)
    callback.v2_playbook_on_task_start(failed._task, False)
    callback.v2_runner_on_failed(failed)
    callback.v2_playbook_on_stats(Stats())
    dummy, summary = read_run(tmp_path)
    assert [(g["name"], g["decision"], g["redacted"]) for g in summary["gates"]] == [
        ("Quiet gate", "GO", True), ("Secret gate", "NO-GO", True)]
    assert summary["decision"] == "NO-GO" and summary["failures"] == []


# --- run kinds: the predeploy run -------------------------------------------------------------------

def test_a_deploy_run_says_so(callback, tmp_path):
    start(callback, Play("db", {"emp_phase": "infrastructure", "emp_component": "database"}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("db", "database")}))
    callback.v2_playbook_on_stats(Stats())
    journal, summary = read_run(tmp_path)
    assert journal[0]["run_kind"] == summary["run_kind"] == "deploy"
    assert summary["skipped_checks"] == []


def test_a_predeploy_run_records_its_kind_and_never_rolls_back_an_enforced_nogo(loader, tmp_path, monkeypatch):
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options(direct={"report_dir": str(tmp_path / "reports"), "rollback": "auto"})
    ran = []
    monkeypatch.setattr(cb.runner, "RollbackRunner", lambda *a, **k: ran.append(a))
    start(plugin, Play("Predeploy · preflight", {"emp_run_kind": "predeploy"}),
          Play("Predeploy · Redis & database layer", {"emp_phase": "predeploy", "emp_component": "redis-database"}))
    plugin.v2_runner_on_failed(Result({"failed": True, "emp_gate": gate("db", "redis-database", "NO-GO")}))
    plugin.v2_playbook_on_stats(Stats())
    journal, summary = read_run(tmp_path)
    assert journal[0]["run_kind"] == summary["run_kind"] == "predeploy"
    assert summary["decision"] == "NO-GO"
    assert summary["rollback"]["triggered"] is False
    assert summary["rollback"]["why_not"] == "a predeploy run never rolls back: it released nothing"
    assert not [r for r in journal if r["type"].startswith("rollback")]
    assert ran == []
    with pytest.raises(SystemExit) as exited:  # the exit code of a NO-GO deploy run
        sys.exit(0)
    assert exited.value.code == 2


def test_an_unknown_run_kind_stops_the_run(loader, tmp_path, capsys):
    plugin = loader.get("emp.deploy.go_no_go")
    plugin.set_options(direct={"report_dir": str(tmp_path / "reports")})
    with pytest.raises(SystemExit) as exited:
        start(plugin, Play("p", {"emp_run_kind": "{{ kind }}"}))
    assert exited.value.code == 5
    shown = capsys.readouterr()
    # ansible-core 2.18 wraps the error line at the terminal width: compare with whitespace collapsed
    assert "emp_run_kind: '{{ kind }}' is not one of deploy, predeploy" in " ".join((shown.err + shown.out).split())


def test_skipped_checks_are_recorded_once_each_never_as_gates(callback, tmp_path):
    start(callback, Play("p", {"emp_phase": "predeploy", "emp_component": "redis-database"}))
    skipped = {"name": "predeploy-redis-reconnect", "checklist_ref": "testing/redis/reconnect", "reason": "not run"}
    item = {"emp_check_skipped": skipped, "changed": False}
    callback.v2_runner_item_on_ok(Result(item))
    callback.v2_runner_on_ok(Result({"results": [item], "changed": False}))
    callback.v2_runner_on_ok(Result({"emp_gate": gate("db", "redis-database")}))
    callback.v2_playbook_on_stats(Stats())
    journal, summary = read_run(tmp_path)
    assert [r["checklist_ref"] for r in journal if r["type"] == "check_skipped"] == ["testing/redis/reconnect"]
    assert summary["skipped_checks"] == [{"name": "predeploy-redis-reconnect", "checklist_ref": "testing/redis/reconnect",
                                          "component": "redis-database", "phase": "predeploy", "host": "sandbox",
                                          "reason": "not run"}]
    assert [g["name"] for g in summary["gates"]] == ["db"]
