"""What can be checked of awx/ without an AWX: the job templates name playbooks that exist and pass
--syntax-check, every variable they (and their surveys, the workflow's nodes and the schedules) set is
documented in an argument spec, every credential injector feeds an option the plugins read, and the
release workflow is acyclic with every failure path reaching a rollback."""
from __future__ import annotations

import ast
import os
import re
import subprocess

import pytest
import yaml

from awx_config import credential_type, load_configs, template
from conftest import BIN, ROOT

CONFIGS = load_configs()
TEMPLATES = {t["name"]: t for t in CONFIGS["controller_templates"]}
(WORKFLOW,) = CONFIGS["controller_workflows"]
NODES = {node["identifier"]: node for node in WORKFLOW["workflow_nodes"]}


def documented_options() -> dict[str, dict]:
    """Every variable an argument spec documents: the roles' and the playbooks' own."""
    options: dict[str, dict] = {}
    for spec in [*ROOT.glob("roles/*/meta/argument_specs.yml"), ROOT / "playbooks/meta/argument_specs.yml"]:
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            options.update(entry.get("options", {}))
    return options


OPTIONS = documented_options()


def variables_set() -> list[tuple[str, str, object]]:
    """(where, variable, value) for every variable awx/configs/ sets on a job."""
    found = []
    for t in CONFIGS["controller_templates"]:
        found += [(t["name"], k, v) for k, v in (t.get("extra_vars") or {}).items()]
        found += [(t["name"] + " survey", q["variable"], q.get("default")) for q in t.get("survey_spec", {}).get("spec", [])]
    for node in WORKFLOW["workflow_nodes"]:
        found += [("node " + node["identifier"], k, v) for k, v in (node.get("extra_data") or {}).items()]
    for schedule in CONFIGS["controller_schedules"]:
        found += [(schedule["name"], k, v) for k, v in (schedule.get("extra_data") or {}).items()]
    return found


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_names_a_playbook_that_passes_syntax_check(name):
    playbook = TEMPLATES[name]["playbook"]
    assert (ROOT / playbook).is_file(), f"{name}: {playbook} does not exist in the project"
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", playbook], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_apply_playbook_passes_syntax_check_without_the_configuration_collection():
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "awx/apply.yml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_variable_set_is_documented_and_its_value_allowed():
    assert variables_set(), "awx/configs/ sets no variable at all: the test would check nothing"
    for where, name, value in variables_set():
        assert name in OPTIONS, f"{where} sets {name}, which no argument spec documents"
        choices = OPTIONS[name].get("choices")
        values = value if isinstance(value, list) else [value]
        if choices and value not in ("", None):
            assert set(values) <= set(choices), f"{where}: {name}={value!r} is not one of {choices}"


def test_survey_choices_are_the_documented_ones():
    for t in CONFIGS["controller_templates"]:
        for question in t.get("survey_spec", {}).get("spec", []):
            if question["type"] in ("multiselect", "multiplechoice"):
                assert set(question["choices"]) == set(OPTIONS[question["variable"]]["choices"]), question


def plugin_env_vars() -> set[str]:
    """Environment variables the plugins' own documentation lists for an option (env entries)."""
    names: set[str] = set()
    for path in ROOT.glob("plugins/*/*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
                for option in (yaml.safe_load(node.value.value).get("options") or {}).values():
                    names |= {entry["name"] for entry in option.get("env", [])}
    return names


def fallbacks() -> set[str]:
    """Environment variables module code really reads through env_fallback."""
    found: set[str] = set()
    for path in ROOT.glob("plugins/module_utils/*.py"):
        found |= set(re.findall(r"env_fallback, \[\"(\w+)\"\]", path.read_text()))
    return found


def doc_fragment_env_vars() -> set[str]:
    """E(NAME) in doc fragments, for options the module_utils read with env_fallback."""
    found: set[str] = set()
    for path in ROOT.glob("plugins/doc_fragments/*.py"):
        found |= set(re.findall(r"E\((\w+)\)", path.read_text())) & fallbacks()
    return found


def test_every_credential_injector_maps_to_an_option_the_plugins_read():
    ctype = credential_type(CONFIGS)
    fields = {field["id"] for field in ctype["inputs"]["fields"]}
    extra_vars, env = ctype["injectors"]["extra_vars"], ctype["injectors"]["env"]
    assert extra_vars and env
    for name in extra_vars:
        assert name in OPTIONS, f"the credential injects extra var {name}, which no role documents"
    documented_env = plugin_env_vars() | doc_fragment_env_vars()
    for name in env:
        assert name in documented_env, f"the credential injects ${name}, which no plugin documents"
    for template_text in [*extra_vars.values(), *env.values()]:
        assert set(re.findall(r"{{\s*(\w+)\s*}}", template_text)) <= fields, template_text
    secret_fields = {f["id"] for f in ctype["inputs"]["fields"] if f.get("secret")}
    assert {"redis_password", "dash0_token", "webhook_secret", "ngrok_authtoken"} <= secret_fields


def test_templates_use_the_credential_and_objects_that_the_configuration_defines():
    credentials = {c["name"]: c for c in CONFIGS["controller_credentials"]}
    notifications = {n["name"] for n in CONFIGS["controller_notifications"]}
    projects = {p["name"] for p in CONFIGS["controller_projects"]}
    environments = {e["name"] for e in CONFIGS["controller_execution_environments"]}
    for t in CONFIGS["controller_templates"]:
        assert t["project"] in projects and t["execution_environment"] in environments, t["name"]
        for credential in t["credentials"]:
            assert credentials[credential]["credential_type"] == credential_type(CONFIGS)["name"]
        for key in ("notification_templates_success", "notification_templates_error"):
            assert set(t.get(key, [])) <= notifications
    assert set(credentials["EMP deployment"]["inputs"]) == {f["id"] for f in credential_type(CONFIGS)["inputs"]["fields"]}
    for schedule in CONFIGS["controller_schedules"]:
        assert schedule["unified_job_template"] in TEMPLATES
        assert re.fullmatch(r"DTSTART:\d{8}T\d{6}Z RRULE:FREQ=\w+(;\w+=\w+)*", schedule["rrule"]), schedule["rrule"]
        assert schedule["extra_data"]["watch_mode"] == "once"
        assert template(CONFIGS, schedule["unified_job_template"])["ask_variables_on_launch"] is True


def edges(node: dict, kind: str) -> list[str]:
    return [link["identifier"] for link in node.get("related", {}).get(kind, [])]


def successors(identifier: str) -> list[str]:
    node = NODES[identifier]
    return edges(node, "success_nodes") + edges(node, "failure_nodes") + edges(node, "always_nodes")


def is_rollback(identifier: str) -> bool:
    ujt = NODES[identifier]["unified_job_template"]
    return ujt["type"] == "job_template" and TEMPLATES[ujt["name"]]["playbook"] == "playbooks/rollback.yml"


def test_the_workflow_graph_is_acyclic_and_names_real_templates():
    for identifier, node in NODES.items():
        ujt = node["unified_job_template"]
        assert ujt["type"] in ("job_template", "workflow_approval"), identifier
        if ujt["type"] == "job_template":
            assert ujt["name"] in TEMPLATES, identifier
            if node.get("extra_data"):  # AWX refuses node extra data a template does not prompt for
                assert TEMPLATES[ujt["name"]].get("ask_variables_on_launch"), identifier
        assert set(successors(identifier)) <= set(NODES), identifier
    visiting, done = set(), set()

    def visit(identifier: str) -> None:
        assert identifier not in visiting, f"the workflow has a cycle through {identifier}"
        if identifier in done:
            return
        visiting.add(identifier)
        for child in successors(identifier):
            visit(child)
        visiting.discard(identifier)
        done.add(identifier)
    roots = set(NODES) - {child for identifier in NODES for child in successors(identifier)}
    assert roots == {"predeploy"}
    visit("predeploy")
    assert done == set(NODES), f"unreachable nodes: {set(NODES) - done}"


def success_chain() -> list[str]:
    chain, current = [], "predeploy"
    while current:
        chain.append(NODES[current]["unified_job_template"]["name"])
        following = edges(NODES[current], "success_nodes")
        assert len(following) <= 1
        current = following[0] if following else ""
    return chain


def test_the_success_path_is_predeploy_approval_phases_1_to_4_then_the_watch():
    assert success_chain() == ["EMP deploy · predeploy", "EMP deploy · approve the release",
                               "EMP deploy · phase 1 infrastructure", "EMP deploy · phase 2 telemetry",
                               "EMP deploy · phase 3 application", "EMP deploy · phase 4 devtools", "EMP deploy · watch"]
    approval = NODES["approval"]["unified_job_template"]
    assert approval["type"] == "workflow_approval" and approval["timeout"] > 0


def phase_components(playbook: str) -> set[str]:
    """The emp_component of every play of a phase playbook."""
    plays = yaml.safe_load((ROOT / playbook).read_text())
    return {play["vars"]["emp_component"] for play in plays if "emp_component" in play.get("vars", {})}


def test_every_failure_path_of_a_phase_reaches_a_rollback_of_its_components_which_notifies():
    phases = [i for i, n in NODES.items() if n["unified_job_template"]["type"] == "job_template"
              and TEMPLATES[n["unified_job_template"]["name"]]["playbook"].startswith("playbooks/phase")]
    assert len(phases) == 4
    for identifier in phases:
        failure = edges(NODES[identifier], "failure_nodes")
        assert failure, f"{identifier} has no failure path"
        for target in failure:
            assert is_rollback(target), f"{identifier} fails to {target}, not a rollback"
            playbook = TEMPLATES[NODES[identifier]["unified_job_template"]["name"]]["playbook"]
            assert set(NODES[target]["extra_data"]["emp_rollback_components"]) == phase_components(playbook)
            rollback = TEMPLATES[NODES[target]["unified_job_template"]["name"]]
            assert rollback["notification_templates_success"] and rollback["notification_templates_error"]
    # the nodes that change nothing (predeploy, the approval) or roll back in their own job (the watch)
    # have no failure path, and nothing else lacks one
    assert {i for i in NODES if not edges(NODES[i], "failure_nodes") and not is_rollback(i)} == \
        {"predeploy", "approval", "watch"}
