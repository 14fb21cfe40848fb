"""emp.deploy.worker_probe through real ansible-playbook runs against a sandbox (redis, api and the worker
machine with its pm2 list, ComfyUI and Ollama stand-ins): the healthy case, each failure class through
the sandbox's runtime faults, bad input, check mode, secrets, and one gate per checklist line of the
"Worker & job processing" play (the examples of the module's EXAMPLES)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port
from job_queue_support import playbook_run
from test_deploy_sandbox import sandbox_cli

sys.path.insert(0, str(ROOT / "tests"))
from misbehaving_http import MisbehavingServer, drip  # noqa: E402  # pylint: disable=wrong-import-position

from ansible_collections.emp.deploy.plugins.modules import worker_probe  # noqa: E402  # pylint: disable=wrong-import-position

# pylint: disable=redefined-outer-name
pytestmark = pytest.mark.timeout(300)
MODULE = "emp.deploy.worker_probe"
PROCESSES = ["health-server", "redis-worker-mock-0", "redis-worker-ollama-sim-0"]
NODES = ["KSampler", "ImpactWildcardProcessor", "ImageResizeKJ", "EmProps_Asset_Saver"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state = tmp_path_factory.mktemp("worker-probe") / "state"
    sandbox_cli(state, "up", "--only", "redis,api,worker")
    status = json.loads((state / "status.json").read_text())
    status["state"] = state
    yield status
    sandbox_cli(state, "down")


@pytest.fixture
def fault(sandbox):
    """Sets runtime faults of the sandbox for one test, and clears them after it."""
    def set_fault(name: str, *args: str) -> None:
        sandbox_cli(sandbox["state"], "fault", name, *args)
        time.sleep(1.2)  # the services poll faults.json every 0.5 s

    yield set_fault
    sandbox_cli(sandbox["state"], "fault", "clear")
    time.sleep(1.2)


def task(register: str, args: dict, **keywords) -> dict:
    return dict({"name": f"Probe {register}", MODULE: args, "register": register, "ignore_errors": True}, **keywords)


def run(tmp_path: Path, sandbox: dict, tasks: list, **kwargs) -> tuple[dict, subprocess.CompletedProcess]:
    env_args = kwargs.pop("args", [])
    results, proc = playbook_run(tmp_path, tasks, args=env_args, **kwargs)
    return results, proc


def all_sources(sandbox: dict, **overrides) -> dict:
    args = {"pm2_url": sandbox["pm2_jlist"], "expected_processes": PROCESSES,
            "comfyui_url": sandbox["comfyui"], "expected_nodes": NODES,
            "ollama_url": sandbox["ollama"], "expected_models": ["llama3.2:1b", "sandbox-sim"],
            "generate_model": "llama3.2:1b", "generate_timeout": 10,
            "redis_url": sandbox["redis"], "api_url": sandbox["api"], "job_timeout": 20}
    args.update(overrides)
    return args


def test_a_healthy_worker_machine(sandbox, tmp_path):
    results, _proc = run(tmp_path, sandbox, [
        task("all", all_sources(sandbox, observe_s=1, max_restarts=0, max_memory_growth_pct=50)),
        task("command", {"pm2_command": [sandbox["pm2_binary"], "jlist"], "expected_processes": PROCESSES},
             environment={"EMP_SANDBOX_STATE": str(sandbox["state"])}),
    ])
    result = results["all"]
    assert result["healthy"] is True, result["problems"]
    assert result["reachable"] is True and result["unmeasured"] == []
    pm2 = result["pm2"]
    assert pm2["online"] == 3 and pm2["not_online"] == [] and pm2["restarts_in_window"] == 0
    assert pm2["memory_max_bytes"] > 10_000_000 and 0.9 <= pm2["window_s"] < 5
    assert pm2["connectors"] == ["mock", "ollama-sim"]
    assert result["comfyui"]["missing_nodes"] == [] and result["comfyui"]["version"]
    assert set(NODES[1:]) <= set(result["comfyui"]["custom_nodes"])
    ollama = result["ollama"]
    assert ollama["missing_models"] == [] and ollama["version"]
    assert ollama["generate"]["ok"] is True and ollama["generate"]["status"] == 200
    job = result["job"]
    assert job["status"] == "completed" and job["submitted"] is True
    assert job["asset"]["saved"] is True and job["asset"]["found"] is True
    assert Path(job["asset"]["path"]).is_file()
    assert job["attestation"] == {"key": f"worker:completion:step-id:{job['job_id']}:attempt:1",
                                  "recorded": True, "problem": None}
    command = results["command"]
    assert command["healthy"] is True, command["problems"]
    assert sorted(command["pm2"]["processes"]) == sorted(PROCESSES)


def test_a_crashlooping_worker_is_not_online_and_restarts(sandbox, tmp_path, fault):
    fault("worker-crashloop")
    results, _proc = run(tmp_path, sandbox, [task("r", {
        "pm2_url": sandbox["pm2_jlist"], "expected_processes": PROCESSES, "observe_s": 2.2, "max_restarts": 0})])
    result = results["r"]
    assert result["healthy"] is False and result["reachable"] is True
    assert result["pm2"]["not_online"] == ["redis-worker-ollama-sim-0"]
    assert result["pm2"]["restarted"]["redis-worker-ollama-sim-0"] >= 2
    problems = "\n".join(result["problems"])
    assert "1 of 3 expected pm2 processes are not online: redis-worker-ollama-sim-0 (" in problems
    restarts = result["pm2"]["restarts_in_window"]
    assert f"{restarts} pm2 restarts within " in problems and "> 0 (redis-worker-ollama-sim-0 +" in problems


def test_a_memory_leak_is_growth_within_the_window(sandbox, tmp_path, fault):
    # 4 MB/s: whatever Ansible's start-up costs, the 256 MB cap is a minute away and 2 s add > 2 %
    fault("worker-memory-leak", "--mb-per-s", "4")
    results, _proc = run(tmp_path, sandbox, [task("r", {
        "pm2_url": sandbox["pm2_jlist"], "observe_s": 2, "max_memory_growth_pct": 1})])
    result = results["r"]
    growth = result["pm2"]["memory_growth_pct"]
    assert growth > 1, result["pm2"]
    assert any(p.startswith("memory of pm2 process ") and f"grew {growth:g} % within " in p and p.endswith("> 1 %")
               for p in result["problems"]), result["problems"]


def test_missing_custom_node_and_model(sandbox, tmp_path, fault):
    fault("comfyui-node-missing")
    fault("ollama-model-missing")
    results, _proc = run(tmp_path, sandbox, [task("r", {
        "comfyui_url": sandbox["comfyui"], "expected_nodes": NODES,
        "ollama_url": sandbox["ollama"], "expected_models": ["llama3.2:1b", "sandbox-sim"],
        "generate_model": "llama3.2:1b"})])
    result = results["r"]
    assert result["comfyui"]["missing_nodes"] == ["EmProps_Asset_Saver"]
    assert result["ollama"]["missing_models"] == ["llama3.2:1b"]
    assert result["ollama"]["generate"]["status"] == 404
    nodes_total = result["comfyui"]["nodes_total"]
    assert result["problems"] == [
        f"1 of 4 expected ComfyUI nodes are not in /object_info ({nodes_total} nodes listed): EmProps_Asset_Saver",
        "1 of 2 expected Ollama models are not in /api/tags (1 listed): llama3.2:1b",
        f"Ollama generate with llama3.2:1b answered HTTP 404 after {result['ollama']['generate']['seconds']:g} s: "
        "model 'llama3.2:1b' not found, try pulling it first"]


def test_a_slow_generate_and_ollama_down(sandbox, tmp_path, fault):
    fault("ollama-slow", "--ms", "3000")
    results, _proc = run(tmp_path, sandbox, [task("slow", {
        "ollama_url": sandbox["ollama"], "generate_model": "sandbox-sim", "generate_timeout": 1})], name="slow")
    generate = results["slow"]["ollama"]["generate"]
    assert generate["ok"] is False and generate["status"] is None and generate["seconds"] < 2.5
    assert results["slow"]["problems"] == [f"Ollama generate with sandbox-sim:latest: the service at "
                                           f"{sandbox['ollama'][7:]} did not answer POST /api/generate within 1.0 s"]
    fault("ollama-down")
    results, _proc = run(tmp_path, sandbox, [task("down", {"ollama_url": sandbox["ollama"]})], name="down")
    down = results["down"]
    assert down["reachable"] is False and down["unmeasured"] == ["ollama"] and down["ollama"]["measured"] is False
    assert down["problems"][0].startswith(f"could not measure Ollama: Ollama at {sandbox['ollama'][7:]} did not "
                                          "answer GET /api/version with HTTP"), down["problems"]


def test_missing_attestation_and_asset(sandbox, tmp_path, fault):
    fault("attestation-missing")
    fault("asset-save-fails")
    results, _proc = run(tmp_path, sandbox, [task("r", {
        "redis_url": sandbox["redis"], "api_url": sandbox["api"], "job_timeout": 20})])
    job = results["r"]["job"]
    assert job["status"] == "completed" and job["asset"]["saved"] is False and job["attestation"]["recorded"] is False
    assert results["r"]["problems"] == [
        f"job {job['job_id']} completed without a saved asset (no metadata.saved_asset): "
        "asset storage unavailable (sandbox fault asset-save-fails)",
        f"no completion attestation for job {job['job_id']}: {job['attestation']['key']} does not exist"]


def test_a_deleted_asset_is_not_found(sandbox, tmp_path):
    results, _proc = run(tmp_path, sandbox, [task("first", {
        "redis_url": sandbox["redis"], "api_url": sandbox["api"], "job_timeout": 20})], name="first")
    job = results["first"]["job"]
    Path(job["asset"]["path"]).unlink()
    results, _proc = run(tmp_path, sandbox, [task("again", {"redis_url": sandbox["redis"], "job_id": job["job_id"]})],
                         name="again")
    assert results["again"]["problems"] == [f"the asset of job {job['job_id']} is not where the job says: "
                                            f"{job['asset']['path']} does not exist on the host the probe ran on"]


def test_a_job_that_cannot_succeed_fails_for_good_with_its_record(sandbox, tmp_path):
    results, _proc = run(tmp_path, sandbox, [
        task("failed", {"redis_url": sandbox["redis"], "api_url": sandbox["api"], "job_expect": "failed",
                        "job_payload": {"model": "emp-deploy-no-such-model"}, "job_timeout": 20}),
        task("wrongly", {"redis_url": sandbox["redis"], "api_url": sandbox["api"],
                         "job_payload": {"model": "emp-deploy-no-such-model"}, "job_timeout": 20}),
    ])
    failed = results["failed"]
    assert failed["healthy"] is True, failed["problems"]
    assert failed["job"]["attestation"]["key"].startswith("worker:failure:step-id:")
    assert "model 'emp-deploy-no-such-model' not found" in failed["job"]["error_text"]
    wrongly = results["wrongly"]
    assert wrongly["problems"] == [f"job {wrongly['job']['job_id']} ended failed, expected completed: "
                                   f"{wrongly['job']['error_text']}"]


# --- bad input -------------------------------------------------------------------------------------

def test_bad_input_is_refused_before_anything_is_sent(sandbox, tmp_path):
    assets_before = sorted(os.listdir(sandbox["state"] / "assets"))
    results, _proc = run(tmp_path, sandbox, [
        task("types", {"pm2_url": sandbox["pm2_jlist"], "observe_s": "soon"}),
        task("unknown", {"pm2_url": sandbox["pm2_jlist"], "pm2_timeout": 3}),
        task("both", {"pm2_url": sandbox["pm2_jlist"], "pm2_command": ["pm2", "jlist"]}),
        task("nothing", {}),
        task("window", {"pm2_url": sandbox["pm2_jlist"], "max_restarts": 0, "redis_url": sandbox["redis"],
                        "api_url": sandbox["api"]}),
    ])
    assert "observe_s" in results["types"]["msg"] and "float" in results["types"]["msg"]
    assert "Unsupported parameters" in results["unknown"]["msg"] and "pm2_timeout" in results["unknown"]["msg"]
    assert "mutually exclusive: pm2_url|pm2_command" in results["both"]["msg"]
    assert results["nothing"]["msg"].startswith("bad input: nothing to check")
    assert results["window"]["msg"] == ("bad input: max_restarts and max_memory_growth_pct are judged within a "
                                        "window: give observe_s")
    for name in results:
        assert results[name]["failed"] is True and "pm2" not in results[name]
    assert sorted(os.listdir(sandbox["state"] / "assets")) == assets_before  # no probe job was submitted


def test_unreachable_malformed_and_slow_sources_could_not_be_measured(sandbox, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"
    with MisbehavingServer([("GET", "/pm2/jlist", (200, "text/html", b"<html>pm2 web</html>")),
                            ("GET", "/system_stats", (200, "application/json", b'{"system": {}, "devic')),
                            ("GET", "/api/version", drip(size=50, interval=0.5))]) as server:
        results, _proc = run(tmp_path, sandbox, [
            task("unreachable", {"pm2_url": nowhere + "/pm2/jlist", "comfyui_url": nowhere}),
            task("garbage", {"pm2_url": server.url + "/pm2/jlist", "comfyui_url": server.url}),
            task("timeout", {"ollama_url": server.url, "timeout": 1}),
            task("pm2_missing", {"pm2_command": ["emp-deploy-no-such-pm2", "jlist"]}),
            task("pm2_slow", {"pm2_command": ["sleep", "30"], "timeout": 1}),
            task("pm2_garbage", {"pm2_command": ["echo", "[PM2] no daemon"]}),
            task("redis_down", {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "job_id": "j1", "timeout": 1}),
        ])
    unreachable = results["unreachable"]
    assert unreachable["reachable"] is False and unreachable["unmeasured"] == ["pm2", "comfyui"]
    assert unreachable["problems"][0].startswith(f"could not measure pm2: cannot reach pm2 at {nowhere[7:]} "
                                                 "(GET /pm2/jlist)")
    garbage = results["garbage"]
    assert garbage["problems"] == [
        f"could not measure pm2: the pm2 list at {server.where}/pm2/jlist is not JSON (it starts with "
        "'<html>pm2 web</html>')",
        "could not measure ComfyUI: ComfyUI /system_stats is not JSON (it starts with '{\"system\": {}, \"devic')"]
    assert results["timeout"]["problems"] == [f"could not measure Ollama: Ollama at {server.where} did not answer "
                                              "GET /api/version within 1.0 s (0 of 50 body bytes arrived in time)"] \
        or "within 1.0 s" in results["timeout"]["problems"][0]
    assert results["pm2_missing"]["problems"][0].startswith(
        "could not measure pm2: cannot run emp-deploy-no-such-pm2 jlist: No such file or directory")
    assert results["pm2_slow"]["problems"] == ["could not measure pm2: sleep 30 did not finish within 1 s"]
    assert results["pm2_slow"]["duration_ms"] < 10000
    assert results["pm2_garbage"]["problems"] == [
        "could not measure pm2: the output of echo [PM2] no daemon is not JSON (it starts with '[PM2] no daemon')"]
    assert results["redis_down"]["problems"][0].startswith("could not measure the job: cannot connect to Redis at "
                                                           "redis://127.0.0.1:")
    for result in results.values():
        assert result["failed"] is True and result["healthy"] is False and result["reachable"] is False


# --- check mode and secrets -------------------------------------------------------------------------

def test_check_mode_reads_but_submits_no_job(sandbox, tmp_path):
    assets_before = sorted(os.listdir(sandbox["state"] / "assets"))
    results, _proc = run(tmp_path, sandbox, [task("r", all_sources(sandbox))], check=True)
    result = results["r"]
    assert result["pm2"]["online"] == 3 and result["ollama"]["generate"]["ok"] is True
    job = result["job"]
    assert job["skipped"] is True and job["measured"] is False and job["job_id"] is None
    assert job["attestation"]["recorded"] is None and "submit one ollama job" in job["plan"]
    assert result["changed"] is False
    assert sorted(os.listdir(sandbox["state"] / "assets")) == assets_before


def test_secrets_never_reach_the_output(sandbox, tmp_path):
    secrets = {"api_token": "api-token-51c9e2", "source_token": "source-token-7b1d04", "pw": "redis-pw-3e8a61"}
    redis_url = sandbox["redis"].replace("redis://", "redis://:{{ pw }}@")
    results, proc = run(tmp_path, sandbox, [
        task("ok", all_sources(sandbox, api_token="{{ api_token }}", source_token="{{ source_token }}",
                               redis_url=sandbox["redis"])),
        task("auth", {"redis_url": redis_url, "job_id": "j1", "pm2_url": sandbox["pm2_jlist"],
                      "source_token": "{{ source_token }}"}),
    ], args=["-vvv"], extra_vars=secrets)
    assert results["ok"]["healthy"] is True, results["ok"]["problems"]
    assert "could not measure the job" in results["auth"]["problems"][0]
    for secret in secrets.values():
        assert secret not in proc.stdout and secret not in proc.stderr and secret not in str(results)


# --- one gate per checklist line --------------------------------------------------------------------

def checklist_gates(sandbox: dict) -> list[dict]:
    """The module's EXAMPLES gates, with the sandbox's addresses and short windows."""
    gates = [t for t in yaml.safe_load(worker_probe.EXAMPLES) if "emp.deploy.gate" in t]
    variables = {"ollama_url": sandbox["ollama"], "comfyui_url": sandbox["comfyui"], "redis_url": sandbox["redis"],
                 "api_url": sandbox["api"], "pm2_jlist_url": sandbox["pm2_jlist"],
                 "comfyui_custom_nodes": NODES[1:]}
    tasks = []
    for gate in gates:
        spec = json.loads(json.dumps(gate["emp.deploy.gate"]))
        args = spec["probe"]["args"]
        for name, value in args.items():
            if isinstance(value, str) and value.startswith("{{"):
                args[name] = variables[value.strip("{} ")]
        if "observe_s" in args:
            args["observe_s"] = 1
        if "samples" in spec:
            spec.update(samples=2, interval=1.5)
        tasks.append({"name": gate["name"], "emp.deploy.gate": spec, "register": spec["checklist_ref"].replace("/", "_").replace("-", "_"),
                      "ignore_errors": True})
    return tasks


def test_every_checklist_gate_says_go_on_a_healthy_machine(sandbox, tmp_path):
    tasks = checklist_gates(sandbox)
    refs = sorted(t["emp.deploy.gate"]["checklist_ref"] for t in tasks)
    assert refs == ["testing/comfyui/custom-nodes", "testing/comfyui/functions", "testing/ollama/assets",
                    "testing/ollama/errors", "testing/ollama/init", "testing/ollama/memory", "testing/pm2/restarts"]
    results, _proc = run(tmp_path, sandbox, tasks)
    decisions = {name: result["emp_gate"]["decision"] for name, result in results.items()}
    assert set(decisions.values()) == {"GO"}, {n: r["emp_gate"].get("reason") for n, r in results.items()}


def test_the_checklist_gates_say_no_go_on_their_faults(sandbox, tmp_path, fault):
    for name in ("worker-crashloop", "comfyui-node-missing", "ollama-model-missing", "attestation-missing",
                 "worker-memory-leak"):
        fault(name, *(["--mb-per-s", "4"] if name == "worker-memory-leak" else []))
    results, _proc = run(tmp_path, sandbox, checklist_gates(sandbox))
    decisions = {name: result["emp_gate"]["decision"] for name, result in results.items()}
    assert decisions == {"testing_ollama_init": "NO-GO", "testing_ollama_assets": "NO-GO",
                         "testing_ollama_errors": "GO", "testing_ollama_memory": "NO-GO",
                         "testing_comfyui_functions": "GO", "testing_comfyui_custom_nodes": "NO-GO",
                         "testing_pm2_restarts": "NO-GO"}, {n: r["emp_gate"].get("reason") for n, r in results.items()}
