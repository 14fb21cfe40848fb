# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What worker_probe reads and decides, without I/O: the pm2 process list, ComfyUI's and Ollama's
answers and a completed job's records, each turned into figures and problem sentences.

Every parser raises ``Garbage`` for an answer that does not have the documented shape, so the
probe says it could not measure instead of passing on missing data.
"""

from __future__ import annotations

import json
import re
from typing import Any

# pm2 statuses (pm2/lib/API/schema.json): only "online" runs
ONLINE = "online"


class Garbage(ValueError):
    """An answer that is not what the API documents; the text says what was wrong."""


def load_json(body: bytes | str, what: str) -> Any:
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Garbage(f"{what} is not JSON ({_first_line(body)})") from exc


def _first_line(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    line = " ".join(text.strip().split())[:60]
    return f"it starts with {line!r}" if line else "it is empty"


# --- pm2 -----------------------------------------------------------------------------------------

def jlist_text(stdout: str) -> str:
    """The JSON of `pm2 jlist` output; pm2 may print notices (a daemon it spawned) before it."""
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*\[\s*(\{|\]|$)", line):  # "[{", "[]" or a lone "[": not a "[PM2] ..." notice
            return "\n".join(lines[index:])
    return stdout


def parse_jlist(document: Any) -> dict[str, dict]:
    """`pm2 jlist` -> {name: {status, restart_time, memory, cpu, uptime_ms, pm_id}}; Garbage otherwise."""
    if not isinstance(document, list):
        raise Garbage(f"the pm2 process list is a JSON {type(document).__name__}, not a list")
    processes: dict[str, dict] = {}
    for index, app in enumerate(document):
        if not isinstance(app, dict) or not isinstance(app.get("name"), str) or not isinstance(app.get("pm2_env"), dict):
            raise Garbage(f"entry {index} of the pm2 process list has no name and pm2_env")
        env: dict = app["pm2_env"]
        monit: dict = app["monit"] if isinstance(app.get("monit"), dict) else {}
        status, restarts = env.get("status"), env.get("restart_time", 0)
        if not isinstance(status, str) or not _is_number(restarts):
            raise Garbage(f"pm2 app {app['name']} has no pm2_env.status or a restart_time that is not a number")
        name = app["name"] if app["name"] not in processes else f"{app['name']}[{app.get('pm_id')}]"
        # pm2 keeps an app's environment in pm2_env.env (and merges it into pm2_env itself)
        env_vars: dict = env["env"] if isinstance(env.get("env"), dict) else {}
        processes[name] = {"pm_id": app.get("pm_id"), "status": status, "restart_time": int(restarts),
                           "memory": int(monit["memory"]) if _is_number(monit.get("memory")) else 0,
                           "cpu": monit.get("cpu") if _is_number(monit.get("cpu")) else None,
                           "uptime_ms": env.get("pm_uptime") if _is_number(env.get("pm_uptime")) else None,
                           "connector": env_vars.get("CONNECTOR") or env.get("CONNECTOR")}
    return processes


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pm2_figures(first: dict[str, dict], last: dict[str, dict], expected: list[str], window_s: float) -> dict:
    """Figures of the last snapshot; with a window (two snapshots), restarts and memory growth within it."""
    watched = expected or sorted(last)
    missing = [name for name in watched if name not in last]
    not_online = [name for name in watched if name in last and last[name]["status"] != ONLINE]
    figures: dict = {
        "processes": last, "expected": watched, "total": len(last),
        "online": sum(1 for p in last.values() if p["status"] == ONLINE),
        "missing": missing, "not_online": not_online,
        "statuses": {name: last[name]["status"] for name in not_online},
        # EMP worker apps carry their connector type in the CONNECTOR variable
        "connectors": sorted({p["connector"] for p in last.values() if p["connector"] and p["status"] == ONLINE}),
        "restarts": sum(p["restart_time"] for p in last.values()),
        "memory_max_bytes": max((p["memory"] for p in last.values()), default=0),
        "memory_total_bytes": sum(p["memory"] for p in last.values()),
        "window_s": round(window_s, 3),
    }
    if window_s > 0:
        both = [name for name in last if name in first]
        restarted = {name: last[name]["restart_time"] - first[name]["restart_time"] for name in both
                     if last[name]["restart_time"] != first[name]["restart_time"]}
        growth = {name: round(100.0 * (last[name]["memory"] - first[name]["memory"]) / first[name]["memory"], 2)
                  for name in both if first[name]["memory"] > 0}
        figures["restarts_in_window"] = sum(max(count, 0) for count in restarted.values())
        figures["restarted"] = restarted
        figures["memory_growth_pct"] = max(growth.values(), default=None)
        figures["memory_growth_by_process"] = growth
    return figures


def pm2_problems(figures: dict, max_restarts: int | None, max_growth_pct: float | None) -> list[str]:
    problems = []
    if not figures["processes"]:
        problems.append("pm2 lists no process at all")
    if figures["missing"]:
        problems.append(f"{len(figures['missing'])} of {len(figures['expected'])} expected pm2 processes are not "
                        f"listed: {', '.join(figures['missing'])}")
    if figures["not_online"]:
        shown = ", ".join(f"{name} ({status})" for name, status in figures["statuses"].items())
        problems.append(f"{len(figures['not_online'])} of {len(figures['expected'])} expected pm2 processes are not "
                        f"online: {shown}")
    window = figures["window_s"]
    if max_restarts is not None and figures.get("restarts_in_window", 0) > max_restarts:
        shown = ", ".join(f"{name} +{count}" for name, count in figures["restarted"].items())
        problems.append(f"{figures['restarts_in_window']} pm2 restarts within {window:g} s > {max_restarts} ({shown})")
    growth = figures.get("memory_growth_pct")
    if max_growth_pct is not None and growth is not None and growth > max_growth_pct:
        worst = max(figures["memory_growth_by_process"], key=figures["memory_growth_by_process"].get)
        problems.append(f"memory of pm2 process {worst} grew {growth:g} % within {window:g} s > {max_growth_pct:g} %")
    return problems


# --- ComfyUI -------------------------------------------------------------------------------------

def parse_system_stats(document: Any) -> dict:
    if not isinstance(document, dict) or not isinstance(document.get("system"), dict):
        raise Garbage("ComfyUI /system_stats has no 'system' object")
    system, devices = document["system"], document.get("devices")
    if not isinstance(devices, list):
        raise Garbage("ComfyUI /system_stats has no 'devices' list")
    return {"version": system.get("comfyui_version"), "python_version": str(system.get("python_version", "")).split(" ", maxsplit=1)[0],
            "os": system.get("os"), "devices": [d.get("name") for d in devices if isinstance(d, dict)]}


def parse_object_info(document: Any) -> dict[str, str]:
    """/object_info -> {node class: python_module}; custom nodes have python_module custom_nodes.<pack>."""
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise Garbage("ComfyUI /object_info is not an object of node classes")
    return {name: str(info.get("python_module") or "") for name, info in document.items()}


def comfyui_figures(stats: dict, nodes: dict[str, str], expected: list[str]) -> dict:
    custom = sorted(name for name, module in nodes.items() if module.startswith("custom_nodes"))
    return dict(stats, nodes_total=len(nodes), custom_nodes=custom, expected_nodes=list(expected),
                missing_nodes=[name for name in expected if name not in nodes])


def comfyui_problems(figures: dict) -> list[str]:
    missing = figures["missing_nodes"]
    if not missing:
        return []
    return [f"{len(missing)} of {len(figures['expected_nodes'])} expected ComfyUI nodes are not in /object_info "
            f"({figures['nodes_total']} nodes listed): {', '.join(missing)}"]


# --- Ollama --------------------------------------------------------------------------------------

def model_name(name: str) -> str:
    """Ollama's canonical name: a model without a tag is model:latest."""
    return name if ":" in name else f"{name}:latest"


def parse_tags(document: Any) -> list[str]:
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise Garbage("Ollama /api/tags has no 'models' list")
    names = []
    for entry in document["models"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name") or entry.get("model"), str):
            raise Garbage("an entry of Ollama /api/tags has no name")
        names.append(model_name(entry.get("name") or entry["model"]))
    return names


def missing_models(listed: list[str], expected: list[str]) -> list[str]:
    return [name for name in expected if model_name(name) not in listed]


def parse_generate(document: Any, model: str) -> dict:
    if not isinstance(document, dict) or not isinstance(document.get("response"), str):
        raise Garbage(f"Ollama /api/generate with {model} answered without a 'response' text")
    return {"done": document.get("done") is True, "response_chars": len(document["response"]),
            "total_duration_ms": round(document["total_duration"] / 1e6, 3)
            if _is_number(document.get("total_duration")) else None}


def ollama_problems(figures: dict) -> list[str]:
    problems = []
    if figures["missing_models"]:
        problems.append(f"{len(figures['missing_models'])} of {len(figures['expected_models'])} expected Ollama "
                        f"models are not in /api/tags ({len(figures['models'])} listed): "
                        f"{', '.join(figures['missing_models'])}")
    generate = figures.get("generate")
    if generate and not generate["ok"]:
        problems.append(generate["error"])
    return problems


# --- a completed job's records -------------------------------------------------------------------

def attestation_key(job_id: str, job: dict, kind: str = "completion") -> str:
    """The attestation of the EMP contract: worker:completion:[job-id:{workflow}:]step-id:{job}:attempt:{n}
    (n = retry_count + 1) for a completed job, worker:failure:...:permanent for one that failed for good."""
    workflow = job.get("workflow_id") or ""
    prefix = f"worker:{kind}:job-id:{workflow}:" if workflow else f"worker:{kind}:"
    if kind == "failure":
        return f"{prefix}step-id:{job_id}:permanent"
    retries = str(job.get("retry_count") or "0")
    return f"{prefix}step-id:{job_id}:attempt:{int(retries) + 1 if retries.isdigit() else 1}"


def saved_asset(job: dict) -> tuple[dict | None, str | None]:
    """metadata.saved_asset of the job's result, and the worker's asset_error if it gave one."""
    try:
        result = json.loads(job.get("result") or "null")
    except ValueError:
        return None, "the job's result is not JSON"
    metadata = result.get("metadata") if isinstance(result, dict) else None
    if not isinstance(metadata, dict):
        return None, "the job's result has no metadata"
    asset = metadata.get("saved_asset")
    return (asset if isinstance(asset, dict) and (asset.get("url") or asset.get("path")) else None,
            metadata.get("asset_error"))


def attestation_problem(raw: str | None, job_id: str, key: str, kind: str = "completion") -> str | None:
    """Why the attestation does not record the job (completed, or failed for good), or None."""
    if raw is None:
        return f"no {kind} attestation for job {job_id}: {key} does not exist"
    try:
        record = json.loads(raw)
    except ValueError:
        return f"the attestation {key} is not JSON"
    if not isinstance(record, dict) or record.get("job_id") != job_id:
        return f"the attestation {key} is not about job {job_id}"
    if kind == "completion" and record.get("status") != "completed":
        return f"the attestation {key} does not record job {job_id} as completed (status {record.get('status')})"
    return None


def job_problems(figures: dict) -> list[str]:
    job_id, status, expected = figures["job_id"], figures.get("status"), figures["expect_status"]
    if status != expected:
        return [figures.get("wait_error") or f"job {job_id} ended {status}, expected {expected}"]
    problems = []
    asset = figures.get("asset")
    if expected == "completed" and figures["expect_asset"] and asset is not None:
        if not asset["saved"]:
            reason = f": {asset['error']}" if asset.get("error") else ""
            problems.append(f"job {job_id} completed without a saved asset (no metadata.saved_asset){reason}")
        elif asset.get("found") is False:
            problems.append(f"the asset of job {job_id} is not where the job says: {asset['check_error']}")
    if figures["attestation"]["problem"]:
        problems.append(figures["attestation"]["problem"])
    return problems
