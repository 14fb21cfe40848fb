"""execution-environment.yml without a container engine.

1. `tools/ee-context` (make ee-context) renders the build context with `ansible-builder create`: it holds the
   collection artifact built from this checkout, its pins are those of requirements/, and nothing of the
   tests or the sandbox is inside.
2. The EE-equivalent: a fresh venv made of exactly the context's Python requirements (the EE's ansible-core
   and ansible-runner pins plus requirements.txt), the artifact installed with `ansible-galaxy collection
   install`, and the full deploy run from there against a sandbox. If the EE's dependency list missed
   anything a plugin imports, a probe, the gate or the callback would fail here. This is the slow test of
   the file (a venv from scratch, pip's cache reused); it runs once, in `make integration`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT
from test_deploy_sandbox import sandbox_cli

pytestmark = pytest.mark.timeout(1200)

EE = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
ARTIFACT = f"emp-deploy-{VERSION}.tar.gz"
# what must never ship in the EE: the repository's test and sandbox trees, venvs, run records
EXCLUDED = re.compile(r"^(sandbox|tests|bench|tools|extensions/molecule|awx|collections|requirements|\.venv[^/]*|\.tmp"
                      r"|deploy-reports)(/|$)")


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file (extras dropped)."""
    found = {}
    for line in path.read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?==(\S+)", line.strip()):
            found[m.group(1).lower()] = m.group(3)
    return found


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ee") / "context"
    proc = subprocess.run([str(ROOT / "tools/ee-context"), str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def install_refs(context: Path) -> list[str]:
    """The ansible-core and ansible-runner requirements the Containerfile installs."""
    containerfile = (context / "Containerfile").read_text()
    return re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile, re.M).group(1).split()


def test_the_context_holds_the_built_artifact_the_pinned_requirements_and_no_test_or_sandbox_file(context):
    build = context / "_build"
    artifact = build / "collections" / ARTIFACT
    assert artifact.is_file(), sorted(p.name for p in build.rglob("*"))
    assert yaml.safe_load((build / "requirements.yml").read_text()) == {
        "collections": [{"name": f"collections/{ARTIFACT}", "type": "file"}]}
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["version"] == VERSION and "plugins/action/gate.py" in names
    assert [n for n in names if EXCLUDED.match(n)] == []
    in_context = [str(p.relative_to(context)) for p in context.rglob("*")]
    assert not [p for p in in_context if re.search(r"(^|/)(tests|sandbox|conftest\.py|test_[^/]*\.py)(/|$)", p)]

    # the pins are requirements/'s: ansible-core and ansible-runner as in dev.txt, the plugins' packages as in
    # requirements.txt (the file the context copies verbatim) and constraints.txt
    dev, constraints = pins(ROOT / "requirements/dev.txt"), pins(ROOT / "requirements/constraints.txt")
    refs = dict(ref.split("==") for ref in install_refs(context))
    assert refs == {"ansible-core": dev["ansible-core"], "ansible-runner": dev["ansible-runner"]}
    assert (build / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    plugin_pins = pins(build / "requirements.txt")
    assert plugin_pins and all(constraints.get(name) == version for name, version in plugin_pins.items()), plugin_pins
    assert (build / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


def test_the_full_deploy_runs_from_a_venv_made_of_exactly_the_ees_requirements(context, tmp_path):
    python = run([str(ROOT / "tools/find-python")], timeout=30).stdout.strip()
    venv = tmp_path / "ee-venv"
    run([python, "-m", "venv", str(venv)], timeout=120)
    # exactly the EE's Python requirements; pip's cache is reused (no --no-cache-dir)
    run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", str(context / "_build/requirements.txt"), *install_refs(context)], timeout=600)
    collections = tmp_path / "collections"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "EMP_", "VIRTUAL_ENV"))}
    env.update({"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
                "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1"})
    # a neutral configuration: the checkout's ansible.cfg would resolve emp.deploy to the checkout
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {collections}\n"
                                          "callbacks_enabled = emp.deploy.go_no_go\n")
    run([str(venv / "bin/ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections),
         str(context / "_build/collections" / ARTIFACT)], timeout=120, env=env, cwd=tmp_path)
    listed = json.loads(run([str(venv / "bin/ansible-galaxy"), "collection", "list", "emp.deploy", "--format", "json"],
                            timeout=60, env=env, cwd=tmp_path).stdout)
    assert list(listed) == [str(collections / "ansible_collections")]

    state = tmp_path / "sandbox"
    sandbox_cli(state, "up")
    try:
        reports = tmp_path / "reports"
        # the playbook, roles and plugins come from the installed artifact, the modules run on the venv's
        # Python (the inventory's interpreter is ansible_playbook_python); only the sandbox's own CLI, which the
        # release step calls to restart a service, runs from the test's venv: it is the target, not the EE
        proc = subprocess.run(
            [str(venv / "bin/ansible-playbook"), "emp.deploy.deploy", "-i", str(ROOT / "inventories/sandbox/hosts.yml"),
             "-e", json.dumps({"emp_sandbox_cli": f"{sys.executable} -m sandbox --state-dir {state}",
                               # a loaded 2-core machine: the Dash0 stand-in may take more than 10 s to show a canary
                               "telemetry_gate_timeout": 30})],
            capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False,
            env={**env, "EMP_SANDBOX_STATE": str(state), "EMP_DEPLOY_REPORT_DIR": str(reports),
                 "EMP_DEPLOY_RUN_ID": "ee", "ANSIBLE_PIPELINING": "1"})
        versions = json.loads(sandbox_cli(state, "status", "--json").stdout)["versions"]
    finally:
        sandbox_cli(state, "down")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = json.loads((reports / "ee" / "summary.json").read_text())
    assert summary["decision"] == "GO" and len(summary["gates"]) == 8
    assert {g["decision"] for g in summary["gates"]} == {"GO"}
    assert versions == {"api": "1.1.0", "webhook": "1.1.0", "worker": "1.1.0", "monitor": "1.1.0"}
