"""Reads awx/configs/ (the infra.aap_configuration variables) and renders the 'EMP deployment' credential
type's injectors the way AWX does: its injector templates rendered with the credential's inputs."""
from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "awx" / "configs"
CREDENTIAL_TYPE = "EMP deployment"


def load_configs() -> dict:
    """Every top-level variable of every file in awx/configs/ (as include_vars would load them)."""
    merged: dict = {}
    for path in sorted(CONFIGS.glob("*.yml")):
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            assert key not in merged, f"{key} is set twice in awx/configs/"
            merged[key] = value
    return merged


def credential_type(configs: dict) -> dict:
    (found,) = [t for t in configs["controller_credential_types"] if t["name"] == CREDENTIAL_TYPE]
    return found


def inject(configs: dict, inputs: dict) -> tuple[dict, dict]:
    """(extra vars, env vars) the credential type injects for these inputs; a field not given is empty,
    as AWX renders it."""
    ctype = credential_type(configs)
    fields = {field["id"]: "" for field in ctype["inputs"]["fields"]}
    unknown = set(inputs) - set(fields)
    assert not unknown, f"not fields of {CREDENTIAL_TYPE}: {sorted(unknown)}"
    fields.update(inputs)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)

    def render(section: str) -> dict:
        return {name: env.from_string(template).render(**fields)
                for name, template in ctype["injectors"].get(section, {}).items()}
    return render("extra_vars"), render("env")


def template(configs: dict, name: str) -> dict:
    (found,) = [t for t in configs["controller_templates"] if t["name"] == name]
    return found
