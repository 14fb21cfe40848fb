"""emp.deploy.worker_probe without I/O: parsing the pm2 list, ComfyUI's and Ollama's answers and a job's
records, the decisions and their sentences, and bad input."""
from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.emp.deploy.plugins.module_utils import _worker as w
from ansible_collections.emp.deploy.plugins.modules import worker_probe as probe


def app(name: str, status: str = "online", restarts: int = 0, memory: int = 100, connector: str | None = None) -> dict:
    env = {"CONNECTOR": connector} if connector else {}
    return {"name": name, "pm_id": 0, "pid": 1, "monit": {"memory": memory, "cpu": 1.5},
            "pm2_env": {"status": status, "restart_time": restarts, "pm_uptime": 1, "env": env}}


def params(**overrides) -> dict:
    values = {name: spec.get("default") for name, spec in probe.ARGUMENT_SPEC.items()}
    values.update(overrides)
    return values


def test_documentation_matches_the_argument_spec():
    documented = yaml.safe_load(probe.DOCUMENTATION)["options"]
    assert set(documented) == set(probe.ARGUMENT_SPEC)
    for name, option in probe.ARGUMENT_SPEC.items():
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("choices") == option.get("choices"), name
    assert yaml.safe_load(probe.EXAMPLES) and yaml.safe_load(probe.RETURN)


# --- pm2 -----------------------------------------------------------------------------------------

def test_jlist_parses_status_restarts_memory_and_connector():
    processes = w.parse_jlist([app("health-server"), app("redis-worker-ollama-0", "errored", 4, 300, "ollama")])
    assert processes["redis-worker-ollama-0"] == {"pm_id": 0, "status": "errored", "restart_time": 4, "memory": 300,
                                                  "cpu": 1.5, "uptime_ms": 1, "connector": "ollama"}
    assert processes["health-server"]["connector"] is None


def test_two_apps_of_one_name_are_kept_apart():
    twin = dict(app("api"), pm_id=7)
    assert list(w.parse_jlist([app("api"), twin])) == ["api", "api[7]"]


@pytest.mark.parametrize("document, said", [
    ({"apps": []}, "a JSON dict, not a list"),
    (["x"], "entry 0 of the pm2 process list has no name and pm2_env"),
    ([{"name": "a", "pm2_env": {"restart_time": 1}}], "pm2 app a has no pm2_env.status"),
    ([{"name": "a", "pm2_env": {"status": "online", "restart_time": "many"}}], "restart_time that is not a number"),
])
def test_a_list_of_another_shape_is_garbage(document, said):
    with pytest.raises(w.Garbage, match=said):
        w.parse_jlist(document)


def test_notices_before_the_jlist_json_are_skipped():
    out = "[PM2] Spawning PM2 daemon with pm2_home=/root/.pm2\n[PM2] PM2 Successfully daemonized\n[{\"name\": 1}]\n"
    assert w.jlist_text(out) == '[{"name": 1}]'
    # the first notice starts with "[" too, but is not JSON: the JSON line is the first that parses as a list start
    assert json.loads(w.jlist_text("[]")) == []


def test_every_listed_process_is_expected_when_none_are_named():
    last = w.parse_jlist([app("a"), app("b", "stopped")])
    figures = w.pm2_figures(last, last, [], 0.0)
    assert figures["expected"] == ["a", "b"] and figures["not_online"] == ["b"] and figures["online"] == 1
    assert w.pm2_problems(figures, None, None) == ["1 of 2 expected pm2 processes are not online: b (stopped)"]
    assert "restarts_in_window" not in figures


def test_missing_expected_process_is_named():
    last = w.parse_jlist([app("a")])
    figures = w.pm2_figures(last, last, ["a", "comfyui-gpu0"], 0.0)
    assert w.pm2_problems(figures, None, None) == ["1 of 2 expected pm2 processes are not listed: comfyui-gpu0"]


def test_restarts_and_memory_growth_within_the_window():
    first = w.parse_jlist([app("a", restarts=2, memory=1000), app("b", memory=1000)])
    last = w.parse_jlist([app("a", restarts=5, memory=1050), app("b", memory=1300)])
    figures = w.pm2_figures(first, last, [], 12.5)
    assert figures["restarts_in_window"] == 3 and figures["restarted"] == {"a": 3}
    assert figures["memory_growth_pct"] == 30.0 and figures["memory_growth_by_process"] == {"a": 5.0, "b": 30.0}
    assert w.pm2_problems(figures, 0, 10) == [
        "3 pm2 restarts within 12.5 s > 0 (a +3)",
        "memory of pm2 process b grew 30 % within 12.5 s > 10 %"]
    assert w.pm2_problems(figures, 3, 30) == []


def test_an_empty_list_is_a_problem():
    figures = w.pm2_figures({}, {}, [], 0.0)
    assert w.pm2_problems(figures, None, None) == ["pm2 lists no process at all"]


def test_connectors_of_online_apps_only():
    last = w.parse_jlist([app("m", connector="mock"), app("o", "errored", connector="ollama")])
    assert w.pm2_figures(last, last, [], 0.0)["connectors"] == ["mock"]


# --- ComfyUI and Ollama ----------------------------------------------------------------------------

def test_comfyui_missing_custom_node_is_named_with_the_count():
    stats = w.parse_system_stats({"system": {"comfyui_version": "0.3.40", "python_version": "3.12.1 (main)"},
                                  "devices": [{"name": "cuda:0"}]})
    nodes = w.parse_object_info({"KSampler": {"python_module": "nodes"},
                                 "ImageResizeKJ": {"python_module": "custom_nodes.ComfyUI-KJNodes"}})
    figures = w.comfyui_figures(stats, nodes, ["ImageResizeKJ", "EmProps_Asset_Saver"])
    assert figures["custom_nodes"] == ["ImageResizeKJ"] and figures["python_version"] == "3.12.1"
    assert w.comfyui_problems(figures) == [
        "1 of 2 expected ComfyUI nodes are not in /object_info (2 nodes listed): EmProps_Asset_Saver"]


@pytest.mark.parametrize("parse, document", [
    (w.parse_system_stats, {"devices": []}),
    (w.parse_system_stats, {"system": {}, "devices": {}}),
    (w.parse_object_info, ["KSampler"]),
    (w.parse_object_info, {"KSampler": "x"}),
    (w.parse_tags, {"tags": []}),
    (w.parse_tags, {"models": [{"size": 1}]}),
])
def test_answers_of_another_shape_are_garbage(parse, document):
    with pytest.raises(w.Garbage):
        parse(document)


def test_ollama_model_names_default_to_latest():
    listed = w.parse_tags({"models": [{"name": "llama3.2:1b"}, {"model": "mistral"}]})
    assert listed == ["llama3.2:1b", "mistral:latest"]
    assert w.missing_models(listed, ["mistral", "llama3.2:1b", "qwen2:7b"]) == ["qwen2:7b"]


def test_generate_answer():
    figures = w.parse_generate({"response": "OK", "done": True, "total_duration": 2500000}, "m:latest")
    assert figures == {"done": True, "response_chars": 2, "total_duration_ms": 2.5}
    with pytest.raises(w.Garbage, match="without a 'response' text"):
        w.parse_generate({"error": "x"}, "m:latest")


def test_load_json_says_what_it_got():
    with pytest.raises(w.Garbage, match=r"the thing is not JSON \(it starts with '<html>"):
        w.load_json(b"<html>oops</html>", "the thing")
    with pytest.raises(w.Garbage, match="it is empty"):
        w.load_json(b"", "the thing")


# --- a job's records -------------------------------------------------------------------------------

def test_attestation_keys_follow_the_contract():
    assert w.attestation_key("j1", {"retry_count": "0"}) == "worker:completion:step-id:j1:attempt:1"
    assert w.attestation_key("j1", {"retry_count": "2", "workflow_id": "wf"}) == \
        "worker:completion:job-id:wf:step-id:j1:attempt:3"
    assert w.attestation_key("j1", {}, "failure") == "worker:failure:step-id:j1:permanent"


def test_attestation_must_record_the_job_as_completed():
    key = "worker:completion:step-id:j1:attempt:1"
    assert w.attestation_problem(json.dumps({"job_id": "j1", "status": "completed"}), "j1", key) is None
    assert w.attestation_problem(None, "j1", key) == f"no completion attestation for job j1: {key} does not exist"
    assert "is not about job j1" in w.attestation_problem(json.dumps({"job_id": "j2"}), "j1", key)
    assert "status failed" in w.attestation_problem(json.dumps({"job_id": "j1", "status": "failed"}), "j1", key)
    assert w.attestation_problem(json.dumps({"job_id": "j1", "error": "x"}), "j1", key, "failure") is None


def test_saved_asset_from_the_result_metadata():
    result = {"metadata": {"saved_asset": {"url": "file:///a.txt", "size": 3}}}
    assert w.saved_asset({"result": json.dumps(result)}) == ({"url": "file:///a.txt", "size": 3}, None)
    failed = {"metadata": {"saved_asset": None, "asset_error": "storage down"}}
    assert w.saved_asset({"result": json.dumps(failed)}) == (None, "storage down")
    assert w.saved_asset({"result": "{"}) == (None, "the job's result is not JSON")


def job(**overrides) -> dict:
    figures = {"job_id": "j1", "status": "completed", "expect_status": "completed", "expect_asset": True,
               "asset": {"saved": True, "found": True}, "attestation": {"problem": None}}
    figures.update(overrides)
    return figures


def test_job_decisions():
    assert w.job_problems(job()) == []
    assert w.job_problems(job(asset={"saved": False, "error": "storage down"})) == [
        "job j1 completed without a saved asset (no metadata.saved_asset): storage down"]
    assert w.job_problems(job(asset={"saved": True, "found": False, "check_error": "gone"})) == [
        "the asset of job j1 is not where the job says: gone"]
    assert w.job_problems(job(expect_asset=False, asset={"saved": False})) == []
    assert w.job_problems(job(status="in_progress", wait_error="job j1 did not end within 5 s")) == [
        "job j1 did not end within 5 s"]
    assert w.job_problems(job(status="completed", expect_status="failed")) == ["job j1 ended completed, expected failed"]


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, said", [
    ({}, "nothing to check"),
    ({"pm2_url": "ftp://x/jlist"}, "pm2_url x:80/jlist: the URL scheme is 'ftp'"),
    ({"pm2_url": "http://x/", "timeout": 0}, "timeout must be greater than 0, got 0"),
    ({"pm2_url": "http://x/", "max_restarts": 0}, "judged within a window: give observe_s"),
    ({"pm2_url": "http://x/", "observe_s": -1}, "observe_s must be between 0 and 3600"),
    ({"pm2_command": []}, "pm2_command is empty"),
    ({"ollama_url": "http://x", "expected_nodes": ["A"]}, "expected_nodes needs comfyui_url"),
    ({"comfyui_url": "http://x", "generate_model": "m"}, "expected_models and generate_model need ollama_url"),
    ({"job_id": "j1"}, "job_id and api_url need redis_url"),
    ({"redis_url": "redis://x/0"}, "redis_url is only read for a job"),
    ({"redis_url": "http://x", "job_id": "j"}, "redis_url: url must start with redis://"),
])
def test_bad_options_are_named(overrides, said):
    assert any(said in problem for problem in probe.bad_input_problems(params(**overrides))), \
        probe.bad_input_problems(params(**overrides))


def test_a_redis_password_is_never_quoted_in_bad_input():
    problems = probe.bad_input_problems(params(redis_url="redis://:s3cr3t-pw@x:notaport/0", job_id="j"))
    assert problems and all("s3cr3t-pw" not in p for p in problems)
