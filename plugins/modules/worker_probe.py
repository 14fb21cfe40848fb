#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: worker_probe
short_description: Check an EMP worker machine - pm2 processes, ComfyUI, Ollama and a completed job's asset and attestation
version_added: 0.2.0
description:
  - Probe of an EMP worker machine, for the checklist's "Worker & Job Processing" items. It checks each source
    that is configured and only those; at least one is required.
  - "B(pm2) (O(pm2_url) or O(pm2_command)): the C(pm2 jlist) process list. Every process of
    O(expected_processes) (every listed process when it is empty) must be listed and C(online). With
    O(observe_s) the probe takes a second snapshot that many seconds after the first and measures, within that
    window, the restarts (C(pm2_env.restart_time) increases) and each process's memory growth
    (C(monit.memory)), judged by O(max_restarts) and O(max_memory_growth_pct)."
  - "B(ComfyUI) (O(comfyui_url)): C(GET /system_stats) must answer its C(system) and C(devices), and every node
    class of O(expected_nodes) must be in C(GET /object_info) (custom nodes that failed to import are not)."
  - "B(Ollama) (O(ollama_url)): C(GET /api/version), C(GET /api/tags) must list every model of
    O(expected_models), and with O(generate_model) a tiny C(POST /api/generate) (C(stream=false),
    O(generate_num_predict) tokens) must answer C(done) within O(generate_timeout)."
  - "B(A completed job's records) (O(redis_url) with O(job_id), or with O(api_url) to submit a probe job of
    O(job_service) and wait up to O(job_timeout) for a worker to complete it): the job hash C(job:<id>) must say
    C(completed); its result must carry C(metadata.saved_asset) (O(expect_asset)), the asset must be where it
    says (O(asset_check)); and the attestation C(worker:completion:[job-id:<workflow>:]step-id:<id>:attempt:<n>)
    must record it as completed."
  - Each expectation that does not hold is a sentence with its figure in RV(problems) and fails the task.
    A configured source that cannot be reached, times out or answers something that is not its documented
    JSON is "could not measure" - its section says C(measured=false) with the C(error), it is named in
    RV(unmeasured), and the probe is not healthy. Nothing passes for lack of data. When no configured source
    could be measured, RV(reachable) is V(false) and M(emp.deploy.gate) counts the sample as an error.
  - "Checklist items: Worker & Job Processing (Ollama connector initialization, asset saving and attestation,
    error handling, memory leaks during processing; ComfyUI connector functions, custom nodes installed; PM2
    service management and restarts)."
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.attributes.probe
attributes:
  check_mode:
    support: full
    details:
      - Check mode reads every source as a normal run does, but submits no probe job (O(api_url)); the job's
        section then says C(skipped=true) with nothing measured, so criteria on it do not hold.
options:
  timeout:
    description:
      - Seconds each request (connect, headers and body together) and the O(pm2_command) may take; also the
        Redis connect and command timeout. The generate request has O(generate_timeout) instead.
    type: float
    default: 10.0
  validate_certs:
    description: Verify the TLS certificates of https:// URLs.
    type: bool
    default: true
  source_token:
    description:
      - Bearer token sent as C(Authorization) to O(pm2_url), O(comfyui_url) and O(ollama_url), for a proxy in
        front of them. It never appears in results or messages.
    type: str
  pm2_url:
    description:
      - URL answering the C(pm2 jlist) JSON, such as the machine health server's, for example
        C(http://worker1.internal:9090/pm2/jlist). Mutually exclusive with O(pm2_command).
    type: str
  pm2_command:
    description:
      - Command that prints the C(pm2 jlist) JSON on the host the probe runs on, run without a shell, for example
        V([pm2, jlist]) (delegate the task to the worker machine). Notices pm2 prints before the JSON are skipped.
      - Mutually exclusive with O(pm2_url).
    type: list
    elements: str
  expected_processes:
    description:
      - pm2 app names that must be listed and C(online), for example
        V([health-server, redis-worker-ollama-0, comfyui-gpu0]). Empty, every listed process must be online.
    type: list
    elements: str
    default: []
  observe_s:
    description:
      - Seconds between two pm2 snapshots; restarts and memory growth are measured within that window.
        V(0) takes one snapshot (C(pm2.restarts) and C(pm2.memory_max_bytes) can still be compared with an
        earlier sample, such as M(emp.deploy.gate)'s C(baseline)).
    type: float
    default: 0
  max_restarts:
    description: Highest acceptable number of pm2 restarts within the O(observe_s) window (all processes together).
    type: int
  max_memory_growth_pct:
    description: Highest acceptable memory growth of any pm2 process within the O(observe_s) window, in percent.
    type: float
  comfyui_url:
    description: Base URL of ComfyUI, for example C(http://worker1.internal:8188).
    type: str
  expected_nodes:
    description: Node class names that must be in ComfyUI's C(/object_info), such as the environment's custom nodes.
    type: list
    elements: str
    default: []
  ollama_url:
    description: Base URL of Ollama, for example C(http://worker1.internal:11434).
    type: str
  expected_models:
    description: Models that must be in C(/api/tags); a name without a tag means C(:latest), as in Ollama.
    type: list
    elements: str
    default: []
  generate_model:
    description: Model of the tiny C(/api/generate) check; without it, no generate is sent.
    type: str
  generate_prompt:
    description: Prompt of the generate check.
    type: str
    default: Reply with the single word OK.
  generate_num_predict:
    description: Most tokens the generate check asks for (C(options.num_predict)), to keep it cheap.
    type: int
    default: 8
  generate_timeout:
    description: Seconds the generate check may take as a whole, model loading included.
    type: float
    default: 60.0
  redis_url:
    description:
      - EMP Redis, C(redis://[[user]:password@]host[:port][/db]) (C(rediss://) for TLS), where the job's hash and
        attestation are read. Needed with O(job_id) or O(api_url). Its password never appears in output.
    type: str
  redis_password:
    description: Password for O(redis_url); it never appears in output.
    type: str
  job_id:
    description: A job to check the records of, already submitted (for example by an earlier task). Not with O(api_url).
    type: str
  api_url:
    description:
      - Base URL of the EMP API; the probe submits one probe job (C(POST /api/jobs)) of O(job_service) and waits
        for a worker to complete it. Not with O(job_id).
      - This is real work for a real worker, and its records stay like any completed job's (the attestation has no
        TTL; C(jobs:completed) expires after 24 h); C(job.job_id) names it.
    type: str
  api_token:
    description: Bearer token for O(api_url); it never appears in output.
    type: str
  job_service:
    description: C(service_required) of the probe job.
    type: str
    default: ollama
  job_payload:
    description: C(payload) of the probe job; keep it small and cheap.
    type: dict
    default: {prompt: Reply with the single word OK.}
  job_timeout:
    description: Seconds the job may take to be completed (from submission, or from the start with O(job_id)).
    type: float
    default: 60.0
  job_max_retries:
    description: C(max_retries) of the probe job; V(0) lets a failing probe job fail for good at once.
    type: int
    default: 0
  job_expect:
    description:
      - How the job must end. V(completed) - with its completion attestation (and asset, O(expect_asset)).
      - "V(failed) - for error handling, a job that cannot succeed (for example C(job_payload={model:
        no-such-model})) must fail for good within O(job_timeout), with the error on the job and the failure
        attestation C(worker:failure:[job-id:<workflow>:]step-id:<id>:permanent); no asset is expected."
    type: str
    choices: [completed, failed]
    default: completed
  expect_asset:
    description: The job's result must carry C(metadata.saved_asset), as the Ollama connector's does (O(job_expect=completed)).
    type: bool
    default: true
  asset_check:
    description:
      - How the probe makes sure the saved asset exists. V(url) GETs an C(http(s)://) asset URL, or reads a
        C(file://) one on the host the probe runs on; V(path) reads the asset's C(path) there; V(none) only checks
        that the job records an asset.
      - The file checks compare size and, when the job gives it, C(sha256).
    type: str
    choices: [url, path, none]
    default: url
notes:
  - The probe takes at most about O(observe_s) plus O(generate_timeout), O(job_timeout) and a few O(timeout)s.
  - "The restart window: O(observe_s) measures within one probe run. Over a longer soak, let M(emp.deploy.gate)
    sample the probe and compare with its first sample, C(result.pm2.restarts - baseline.pm2.restarts <= N)."
seealso:
  - module: emp.deploy.gate
    description: Samples this probe and decides GO or NO-GO.
  - module: emp.deploy.job_queue_probe
    description: Job submission, atomic claiming and worker heartbeats.
  - name: Ollama API
    description: C(/api/tags), C(/api/generate), C(/api/version).
    link: https://github.com/ollama/ollama/blob/main/docs/api.md
  - name: pm2 jlist
    description: The process list the pm2 checks read.
    link: https://pm2.keymetrics.io/docs/usage/quick-start/
"""

EXAMPLES = r"""
- name: Worker machine - pm2 apps online, no restart and under 10 % memory growth in 60 s
  emp.deploy.worker_probe:
    pm2_url: http://worker1.internal:9090/pm2/jlist
    expected_processes: [health-server, redis-worker-ollama-0, comfyui-gpu0]
    observe_s: 60
    max_restarts: 0
    max_memory_growth_pct: 10

- name: pm2 itself, on the worker machine
  emp.deploy.worker_probe:
    pm2_command: [pm2, jlist]
  delegate_to: worker1.internal

- name: ComfyUI and Ollama answer, custom nodes and models present, a tiny generate within 30 s
  emp.deploy.worker_probe:
    comfyui_url: http://worker1.internal:8188
    expected_nodes: [ImpactWildcardProcessor, EmProps_Asset_Saver]
    ollama_url: http://worker1.internal:11434
    expected_models: ["llama3.2:1b"]
    generate_model: "llama3.2:1b"
    generate_timeout: 30

# One gate per checklist line (these run against the sandbox in tests/integration/test_worker_probe.py).
- name: "Gate - testing/ollama/init: the Ollama connector's server answers, models pulled, generate works"
  emp.deploy.gate:
    name: ollama-init
    phase: predeploy
    component: workers
    checklist_ref: testing/ollama/init
    probe:
      module: emp.deploy.worker_probe
      args:
        ollama_url: "{{ ollama_url }}"
        expected_models: ["llama3.2:1b"]
        generate_model: "llama3.2:1b"
        generate_timeout: 30
    criteria:
      - result.ollama.measured
      - result.ollama.missing_models | length == 0
      - result.ollama.generate.ok

- name: "Gate - testing/ollama/assets: a probe job's asset is saved and its attestation recorded"
  emp.deploy.gate:
    name: ollama-assets
    phase: predeploy
    component: workers
    checklist_ref: testing/ollama/assets
    probe:
      module: emp.deploy.worker_probe
      args:
        redis_url: "{{ redis_url }}"
        api_url: "{{ api_url }}"
        job_service: ollama
    criteria:
      - result.job.status == 'completed'
      - result.job.asset.saved and result.job.asset.found
      - result.job.attestation.recorded

- name: "Gate - testing/ollama/errors: a job the connector cannot do fails for good, recorded, without hanging"
  emp.deploy.gate:
    name: ollama-errors
    phase: predeploy
    component: workers
    checklist_ref: testing/ollama/errors
    probe:
      module: emp.deploy.worker_probe
      args:
        redis_url: "{{ redis_url }}"
        api_url: "{{ api_url }}"
        job_service: ollama
        job_payload: {model: emp-deploy-no-such-model, prompt: hello}
        job_expect: failed
        job_timeout: 30
    criteria:
      - result.job.status == 'failed'
      - result.job.attestation.recorded
      - result.job.error_text | length > 0

- name: "Gate - testing/ollama/memory: no worker's memory grows more than 10 % over the soak"
  emp.deploy.gate:
    name: ollama-memory
    phase: predeploy
    component: workers
    checklist_ref: testing/ollama/memory
    probe:
      module: emp.deploy.worker_probe
      args:
        pm2_url: "{{ pm2_jlist_url }}"
        observe_s: 20
        max_memory_growth_pct: 10
    samples: 3
    interval: 30
    criteria:
      - result.pm2.memory_growth_pct <= 10
      - result.pm2.memory_max_bytes <= baseline.pm2.memory_max_bytes * 1.1

- name: "Gate - testing/comfyui/functions: ComfyUI answers its system stats and node list"
  emp.deploy.gate:
    name: comfyui-functions
    phase: predeploy
    component: workers
    checklist_ref: testing/comfyui/functions
    probe:
      module: emp.deploy.worker_probe
      args:
        comfyui_url: "{{ comfyui_url }}"
        expected_nodes: [KSampler, CheckpointLoaderSimple, SaveImage]
    criteria:
      - result.comfyui.measured
      - result.comfyui.devices | length > 0
      - result.comfyui.missing_nodes | length == 0

- name: "Gate - testing/comfyui/custom-nodes: every custom node of the environment is installed"
  emp.deploy.gate:
    name: comfyui-custom-nodes
    phase: predeploy
    component: workers
    checklist_ref: testing/comfyui/custom-nodes
    probe:
      module: emp.deploy.worker_probe
      args:
        comfyui_url: "{{ comfyui_url }}"
        expected_nodes: "{{ comfyui_custom_nodes }}"
    criteria:
      - result.comfyui.missing_nodes | length == 0

- name: "Gate - testing/pm2/restarts: every expected pm2 process online, no restart within a minute"
  emp.deploy.gate:
    name: pm2-restarts
    phase: predeploy
    component: workers
    checklist_ref: testing/pm2/restarts
    probe:
      module: emp.deploy.worker_probe
      args:
        pm2_url: "{{ pm2_jlist_url }}"
        expected_processes: [health-server, redis-worker-mock-0, redis-worker-ollama-sim-0]
        observe_s: 60
        max_restarts: 0
    criteria:
      - result.pm2.not_online | length == 0
      - result.pm2.restarts_in_window == 0
"""

RETURN = r"""
healthy:
  description: True when every configured source was measured and every expectation and threshold holds.
  returned: always
  type: bool
problems:
  description: One sentence per expectation or threshold that does not hold, and per source that could not be measured, with the figure.
  returned: always
  type: list
  elements: str
  sample: ["1 of 3 expected pm2 processes are not online: redis-worker-ollama-sim-0 (errored)",
           "Ollama generate with llama3.2:1b: the service at 127.0.0.1:11434 did not answer POST /api/generate within 5.0 s"]
reachable:
  description: Whether at least one configured source could be measured.
  returned: always
  type: bool
unmeasured:
  description: The configured sources (V(pm2), V(comfyui), V(ollama), V(job)) that could not be measured.
  returned: always
  type: list
  elements: str
error:
  description: Why nothing could be measured.
  returned: when not reachable
  type: str
pm2:
  description:
    - C(measured), C(source) (URL without credentials, or the command); C(processes) (name to C(status),
      C(restart_time), C(memory) bytes, C(cpu), C(uptime_ms), C(pm_id), C(connector) - the app's C(CONNECTOR)
      variable); C(expected), C(total), C(online), C(connectors) (of the online apps),
      C(missing) and C(not_online) names with their C(statuses); C(restarts) (sum of C(restart_time)),
      C(memory_max_bytes), C(memory_total_bytes), C(window_s).
    - With O(observe_s) also C(restarts_in_window), C(restarted) (name to increase), C(memory_growth_pct)
      (the largest) and C(memory_growth_by_process).
    - C(error) when not measured.
  returned: when O(pm2_url) or O(pm2_command) is given
  type: dict
  sample: {measured: true, total: 3, online: 3, missing: [], not_online: [], restarts: 0, restarts_in_window: 0,
           memory_growth_pct: 0.4, memory_max_bytes: 48078848, window_s: 5.0}
comfyui:
  description:
    - C(measured), C(version), C(python_version), C(os), C(devices) (names), C(nodes_total), C(custom_nodes) (node
      classes from C(custom_nodes.*) modules), C(expected_nodes), C(missing_nodes); C(error) when not measured.
  returned: when O(comfyui_url) is given
  type: dict
ollama:
  description:
    - C(measured), C(version), C(models) (listed names), C(expected_models), C(missing_models); C(error) when not
      measured.
    - C(generate) with O(generate_model) - C(model), C(ok), C(status) (HTTP, or null without an answer),
      C(seconds), C(done), C(response_chars), C(total_duration_ms), and C(error) when not ok.
  returned: when O(ollama_url) is given
  type: dict
job:
  description:
    - C(measured), C(job_id), C(submitted) (the probe submitted it), C(expect_status), C(status), C(worker_id),
      C(error_text) (the job's C(error)), C(seconds) (to its end), C(wait_error) (why it did not end as
      expected), C(completed_record) (in C(jobs:completed)); C(asset) - C(saved), C(url) or C(path), C(found)
      (null when not checked), C(size), C(error) (the worker's C(asset_error)), C(check_error) (with
      O(job_expect=completed)); C(attestation) - C(key) (completion, or failure with O(job_expect=failed)),
      C(recorded), C(problem).
    - C(skipped) with C(plan) in check mode when the probe would submit the job.
  returned: when O(job_id) or O(api_url) is given
  type: dict
  sample: {measured: true, job_id: 5b0c, submitted: true, status: completed, seconds: 0.4,
           asset: {saved: true, found: true, url: "file:///var/emp/assets/5b0c.txt", size: 52},
           attestation: {key: "worker:completion:step-id:5b0c:attempt:1", recorded: true, problem: null}}
duration_ms:
  description: Time the probe spent, in milliseconds.
  returned: always
  type: float
"""

import hashlib
import json
import os
import threading
import time
from urllib.parse import unquote, urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.emp.deploy.plugins.module_utils._http import (
    HttpClient,
    HttpFailure,
    url_problem,
    where,
)
from ansible_collections.emp.deploy.plugins.module_utils._redis import (
    REDIS_CONNECTION_ARGSPEC,
    connection_secrets,
    describe_target,
    explain_failure,
    open_connection,
    scrub,
    validate_connection_params,
)
from ansible_collections.emp.deploy.plugins.module_utils._resp import RespError
from ansible_collections.emp.deploy.plugins.module_utils._worker import (
    Garbage,
    attestation_key,
    attestation_problem,
    comfyui_figures,
    comfyui_problems,
    jlist_text,
    job_problems,
    load_json,
    missing_models,
    model_name,
    ollama_problems,
    parse_generate,
    parse_jlist,
    parse_object_info,
    parse_system_stats,
    parse_tags,
    pm2_figures,
    pm2_problems,
    saved_asset,
)

BODY_LIMIT = 16 * 1024 * 1024  # /object_info of a big ComfyUI is several MB
FINAL_JOB_STATUSES = ("completed", "failed", "cancelled", "timeout", "unworkable")
POLL_S = 0.2
MAX_OBSERVE_S = 3600

ARGUMENT_SPEC: dict = dict(
    timeout=dict(type="float", default=10.0),
    validate_certs=dict(type="bool", default=True),
    source_token=dict(type="str", no_log=True),
    pm2_url=dict(type="str"),
    pm2_command=dict(type="list", elements="str"),
    expected_processes=dict(type="list", elements="str", default=[]),
    observe_s=dict(type="float", default=0.0),
    max_restarts=dict(type="int"),
    max_memory_growth_pct=dict(type="float"),
    comfyui_url=dict(type="str"),
    expected_nodes=dict(type="list", elements="str", default=[]),
    ollama_url=dict(type="str"),
    expected_models=dict(type="list", elements="str", default=[]),
    generate_model=dict(type="str"),
    generate_prompt=dict(type="str", default="Reply with the single word OK."),
    generate_num_predict=dict(type="int", default=8),
    generate_timeout=dict(type="float", default=60.0),
    redis_url=dict(type="str", no_log=False),
    redis_password=dict(type="str", no_log=True),
    job_id=dict(type="str"),
    api_url=dict(type="str"),
    api_token=dict(type="str", no_log=True),
    job_service=dict(type="str", default="ollama"),
    job_payload=dict(type="dict", default={"prompt": "Reply with the single word OK."}),
    job_timeout=dict(type="float", default=60.0),
    job_max_retries=dict(type="int", default=0),
    job_expect=dict(type="str", choices=["completed", "failed"], default="completed"),
    expect_asset=dict(type="bool", default=True),
    asset_check=dict(type="str", choices=["url", "path", "none"], default="url"),
)
MUTUALLY_EXCLUSIVE = [("pm2_url", "pm2_command"), ("job_id", "api_url")]


# --- bad input -----------------------------------------------------------------------------------

def _url_problems(params: dict) -> list[str]:
    problems = []
    for name in ("pm2_url", "comfyui_url", "ollama_url", "api_url"):
        if params[name]:
            problem = url_problem(params[name])
            if problem:
                problems.append(f"{name} {where(params[name])}: {problem}")
    return problems


def _number_problems(params: dict) -> list[str]:
    problems = []
    for name in ("timeout", "generate_timeout", "job_timeout"):
        if params[name] <= 0:
            problems.append(f"{name} must be greater than 0, got {params[name]}")
    if not 0 <= params["observe_s"] <= MAX_OBSERVE_S:
        problems.append(f"observe_s must be between 0 and {MAX_OBSERVE_S}, got {params['observe_s']}")
    if params["max_restarts"] is not None and params["max_restarts"] < 0:
        problems.append(f"max_restarts must not be negative, got {params['max_restarts']}")
    if params["max_memory_growth_pct"] is not None and params["max_memory_growth_pct"] < 0:
        problems.append(f"max_memory_growth_pct must not be negative, got {params['max_memory_growth_pct']}")
    if params["job_max_retries"] < 0:
        problems.append(f"job_max_retries must not be negative, got {params['job_max_retries']}")
    if params["generate_num_predict"] < 1:
        problems.append(f"generate_num_predict must be at least 1, got {params['generate_num_predict']}")
    return problems


def _dependency_problems(params: dict) -> list[str]:
    problems = []
    pm2 = params["pm2_url"] or params["pm2_command"]
    if not pm2 and (params["expected_processes"] or params["observe_s"] or params["max_restarts"] is not None
                    or params["max_memory_growth_pct"] is not None):
        problems.append("expected_processes, observe_s, max_restarts and max_memory_growth_pct need pm2_url or pm2_command")
    if pm2 and not params["observe_s"] and (params["max_restarts"] is not None
                                            or params["max_memory_growth_pct"] is not None):
        problems.append("max_restarts and max_memory_growth_pct are judged within a window: give observe_s")
    if params["pm2_command"] is not None and not [part for part in params["pm2_command"] if part]:
        problems.append("pm2_command is empty; for example [pm2, jlist]")
    if params["expected_nodes"] and not params["comfyui_url"]:
        problems.append("expected_nodes needs comfyui_url")
    if (params["expected_models"] or params["generate_model"]) and not params["ollama_url"]:
        problems.append("expected_models and generate_model need ollama_url")
    if (params["job_id"] or params["api_url"]) and not params["redis_url"]:
        problems.append("job_id and api_url need redis_url, where the job's records are read")
    if params["redis_url"] and not (params["job_id"] or params["api_url"]):
        problems.append("redis_url is only read for a job: give job_id or api_url")
    if not any(params[name] for name in ("pm2_url", "pm2_command", "comfyui_url", "ollama_url", "redis_url")):
        problems.append("nothing to check: give pm2_url or pm2_command, comfyui_url, ollama_url, or redis_url with "
                        "job_id or api_url")
    return problems


def redis_params(params: dict) -> dict:
    """The Redis connection options of _redis.py from this module's two."""
    options = {name: spec.get("default") for name, spec in REDIS_CONNECTION_ARGSPEC.items()}
    options.update(url=params["redis_url"], password=params["redis_password"], connect_timeout=params["timeout"],
                   command_timeout=params["timeout"])
    return options


def bad_input_problems(params: dict) -> list[str]:
    """Sentences about every invalid option (nothing is sent when there is one)."""
    problems = _url_problems(params) + _number_problems(params) + _dependency_problems(params)
    if params["redis_url"]:
        problem = validate_connection_params(redis_params(params))
        if problem:
            problems.append(f"redis_url: {problem}")
    return problems


# --- the sources ---------------------------------------------------------------------------------

class Sources:
    """HTTP to every configured source, with the tokens and one deadline per request."""

    def __init__(self, params: dict, module: AnsibleModule) -> None:
        self.params = params
        self.module = module
        self.client = HttpClient(validate_certs=params["validate_certs"], user_agent="emp.deploy.worker_probe")

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get_json(self, url: str, what: str, token: str | None = None) -> object:
        answer = self.client.request("GET", url, deadline=self.params["timeout"], headers=self.headers(token),
                                     body_limit=BODY_LIMIT)
        if answer.status != 200:
            raise Garbage(f"{what} answered HTTP {answer.status}")
        return load_json(answer.body, what)

    def pm2_snapshot(self) -> dict[str, dict]:
        if self.params["pm2_url"]:
            return parse_jlist(self.get_json(self.params["pm2_url"], "the pm2 list at " + where(self.params["pm2_url"]),
                                             self.params["source_token"]))
        command = self.params["pm2_command"]
        shown = " ".join(command)
        timers: list[threading.Timer] = []
        killed = threading.Event()

        def bounded(process) -> None:  # run_command has no timeout: kill the command when it runs out
            def kill() -> None:
                killed.set()
                process.kill()
            timers.append(threading.Timer(self.params["timeout"], kill))
            timers[0].start()

        try:
            rc, out, err = self.module.run_command(command, expand_user_and_vars=False, handle_exceptions=False,
                                                   before_communicate_callback=bounded)
        except OSError as exc:
            raise Garbage(f"cannot run {shown}: {exc.strerror or exc}") from None
        finally:
            for timer in timers:
                timer.cancel()
        if killed.is_set():
            raise Garbage(f"{shown} did not finish within {self.params['timeout']:g} s")
        if rc != 0:
            said = " ".join((err or out).strip().split())[:200]
            raise Garbage(f"{shown} exited with {rc}: {said or 'no output'}")
        return parse_jlist(load_json(jlist_text(out), f"the output of {shown}"))


def unmeasured(section: dict, what: str, exc: Exception) -> str:
    section["measured"] = False
    reason = exc.sentence(what) if isinstance(exc, HttpFailure) else str(exc)
    section["error"] = reason
    return f"could not measure {what}: {reason}"


def check_pm2(sources: Sources, params: dict) -> tuple[dict, list[str]]:
    source = where(params["pm2_url"]) if params["pm2_url"] else " ".join(params["pm2_command"])
    section: dict = {"measured": True, "source": source}
    try:
        first = sources.pm2_snapshot()
        started = time.monotonic()
        last = first
        if params["observe_s"] > 0:
            time.sleep(params["observe_s"])
            last = sources.pm2_snapshot()
        section.update(pm2_figures(first, last, params["expected_processes"],
                                   time.monotonic() - started if params["observe_s"] > 0 else 0.0))
    except (HttpFailure, Garbage) as exc:
        return section, [unmeasured(section, "pm2", exc)]
    return section, pm2_problems(section, params["max_restarts"], params["max_memory_growth_pct"])


def check_comfyui(sources: Sources, params: dict) -> tuple[dict, list[str]]:
    base = params["comfyui_url"].rstrip("/")
    section: dict = {"measured": True}
    try:
        stats = parse_system_stats(sources.get_json(base + "/system_stats", "ComfyUI /system_stats",
                                                    params["source_token"]))
        nodes = parse_object_info(sources.get_json(base + "/object_info", "ComfyUI /object_info",
                                                   params["source_token"]))
    except (HttpFailure, Garbage) as exc:
        return section, [unmeasured(section, "ComfyUI", exc)]
    section.update(comfyui_figures(stats, nodes, params["expected_nodes"]))
    return section, comfyui_problems(section)


def check_ollama(sources: Sources, params: dict) -> tuple[dict, list[str]]:
    base = params["ollama_url"].rstrip("/")
    token = params["source_token"]
    section: dict = {"measured": True}
    try:
        version = sources.get_json(base + "/api/version", "Ollama /api/version", token)
        models = parse_tags(sources.get_json(base + "/api/tags", "Ollama /api/tags", token))
    except (HttpFailure, Garbage) as exc:
        return section, [unmeasured(section, "Ollama", exc)]
    section.update(version=version.get("version") if isinstance(version, dict) else None, models=models,
                   expected_models=list(params["expected_models"]),
                   missing_models=missing_models(models, params["expected_models"]))
    if params["generate_model"]:
        section["generate"] = generate(sources, params, base)
    return section, ollama_problems(section)


def generate(sources: Sources, params: dict, base: str) -> dict:
    model = model_name(params["generate_model"])
    body = json.dumps({"model": params["generate_model"], "prompt": params["generate_prompt"], "stream": False,
                       "options": {"num_predict": params["generate_num_predict"]}}).encode("utf-8")
    headers = dict(sources.headers(params["source_token"]), **{"Content-Type": "application/json"})
    figures: dict = {"model": model, "ok": False, "status": None}
    started = time.monotonic()
    try:
        answer = sources.client.request("POST", base + "/api/generate", deadline=params["generate_timeout"],
                                        body=body, headers=headers, body_limit=BODY_LIMIT)
        figures["seconds"] = round(time.monotonic() - started, 3)
        figures["status"] = answer.status
        if answer.status != 200:
            said = load_json(answer.body, "the answer") if answer.body.strip().startswith(b"{") else {}
            reason = said.get("error") if isinstance(said, dict) else None
            figures["error"] = (f"Ollama generate with {model} answered HTTP {answer.status} after "
                                f"{figures['seconds']:g} s: {reason or answer.text()[:120]}")
            return figures
        figures.update(parse_generate(load_json(answer.body, "Ollama /api/generate"), model))
    except (HttpFailure, Garbage) as exc:
        figures.setdefault("seconds", round(time.monotonic() - started, 3))
        reason = exc.sentence("the service") if isinstance(exc, HttpFailure) else str(exc)
        figures["error"] = f"Ollama generate with {model}: {reason}"
        return figures
    figures["ok"] = figures["done"]
    if not figures["ok"]:
        figures["error"] = f"Ollama generate with {model} answered without done=true after {figures['seconds']:g} s"
    return figures


# --- a completed job -----------------------------------------------------------------------------

def submit_job(sources: Sources, params: dict) -> str:
    body = json.dumps({"service_required": params["job_service"], "priority": 50, "payload": params["job_payload"],
                       "max_retries": params["job_max_retries"]}).encode("utf-8")
    headers = dict(sources.headers(params["api_token"]), **{"Content-Type": "application/json"})
    url = params["api_url"].rstrip("/") + "/api/jobs"
    answer = sources.client.request("POST", url, deadline=params["timeout"], body=body, headers=headers)
    if answer.status not in (200, 201):
        raise Garbage(f"the EMP API at {where(url)} answered HTTP {answer.status} to POST /api/jobs: {answer.text()[:120]}")
    document = load_json(answer.body, "the answer to POST /api/jobs")
    if not isinstance(document, dict) or not isinstance(document.get("job_id"), str):
        raise Garbage("the answer to POST /api/jobs has no job_id")
    return document["job_id"]


def wait_for_job(conn, job_id: str, timeout: float) -> tuple[dict, float]:
    """The job hash once its status is final, or as it is when the time runs out; and the seconds waited."""
    started = time.monotonic()
    while True:
        flat = conn.execute("HGETALL", f"job:{job_id}") or []
        job = {str(k): v for k, v in zip(flat[::2], flat[1::2])}
        if job.get("status") in FINAL_JOB_STATUSES or time.monotonic() - started >= timeout:
            return job, time.monotonic() - started
        time.sleep(POLL_S)


def asset_figures(asset: dict | None, error: str | None, params: dict, sources: Sources) -> dict:
    figures: dict = {"saved": asset is not None, "found": None, "error": error}
    if asset is None:
        return figures
    figures.update({key: asset.get(key) for key in ("url", "path", "size", "sha256") if key in asset})
    mode = params["asset_check"]
    location = asset.get("url") if mode == "url" else asset.get("path")
    if mode == "none":
        return figures
    if not location:
        figures["found"], figures["check_error"] = False, f"the saved asset has no {mode}"
        return figures
    scheme = urlsplit(location).scheme.lower() if mode == "url" else "file"
    try:
        if scheme in ("http", "https"):
            answer = sources.client.request("GET", location, deadline=params["timeout"], body_limit=1)
            figures["found"] = 200 <= answer.status < 300
            if not figures["found"]:
                figures["check_error"] = f"GET {where(location)} answered HTTP {answer.status}"
            return figures
        path = unquote(urlsplit(location).path) if mode == "url" else location
        if scheme != "file":
            raise Garbage(f"cannot check an asset URL of scheme '{scheme}'")
        figures.update(file_check(path, asset))
    except (HttpFailure, Garbage) as exc:
        figures["found"] = False
        figures["check_error"] = exc.sentence("the asset store") if isinstance(exc, HttpFailure) else str(exc)
    return figures


def file_check(path: str, asset: dict) -> dict:
    if not os.path.isfile(path):
        return {"found": False, "check_error": f"{path} does not exist on the host the probe ran on"}
    with open(path, "rb") as handle:
        data = handle.read(BODY_LIMIT + 1)
    if isinstance(asset.get("size"), int) and len(data) != asset["size"]:
        return {"found": False, "check_error": f"{path} has {len(data)} bytes, the job says {asset['size']}"}
    if asset.get("sha256") and hashlib.sha256(data).hexdigest() != asset["sha256"]:
        return {"found": False, "check_error": f"{path} does not have the sha256 the job gives"}
    return {"found": True}


def read_records(conn, section: dict, job: dict, kind: str) -> None:
    job_id = section["job_id"]
    key = attestation_key(job_id, job, kind)
    section["completed_record"] = bool(conn.execute("HEXISTS", "jobs:completed", job_id))
    problem = attestation_problem(conn.execute("GET", key), job_id, key, kind)
    section["attestation"] = {"key": key, "recorded": problem is None, "problem": problem}


def wait_problem(job_id: str, job: dict, params: dict, target: str) -> str | None:
    """Why the job did not end as expected (gone, still running, ended otherwise), or None."""
    status = job.get("status")
    if not job:
        return f"job {job_id} does not exist (no job:{job_id} hash in Redis at {target})"
    if status not in FINAL_JOB_STATUSES:
        return f"job {job_id} did not end within {params['job_timeout']:g} s (status {status})"
    if status != params["job_expect"]:
        said = f": {job.get('error')}" if job.get("error") else ""
        return f"job {job_id} ended {status}, expected {params['job_expect']}{said}"
    return None


def check_job(sources: Sources, params: dict, check_mode: bool) -> tuple[dict, list[str]]:
    section: dict = {"measured": True, "job_id": params["job_id"], "submitted": bool(params["api_url"]),
                     "expect_status": params["job_expect"], "expect_asset": params["expect_asset"]}
    if check_mode and params["api_url"]:
        # nothing to measure without the job; null figures keep criteria on it from passing
        section.update(measured=False, skipped=True, status=None, asset={"saved": None, "found": None},
                       attestation={"recorded": None},
                       plan=f"submit one {params['job_service']} job to {where(params['api_url'])} and check its records")
        return section, []
    rparams = redis_params(params)
    target = describe_target(rparams)
    kind = "completion" if params["job_expect"] == "completed" else "failure"
    conn = None
    try:
        section["job_id"] = params["job_id"] or submit_job(sources, params)
        conn = open_connection(rparams)
        job, waited = wait_for_job(conn, section["job_id"], params["job_timeout"])
        section.update(status=job.get("status"), worker_id=job.get("worker_id"), error_text=job.get("error"),
                       seconds=round(waited, 3), wait_error=wait_problem(section["job_id"], job, params, target))
        read_records(conn, section, job, kind)
    except (HttpFailure, Garbage) as exc:
        return section, [unmeasured(section, "the job", exc)]
    except RespError as exc:
        return section, [unmeasured(section, "the job", Garbage(explain_failure(exc, target, rparams)))]
    finally:
        if conn is not None:
            conn.close()
    if kind == "completion":
        asset, error = saved_asset(job)
        section["asset"] = asset_figures(asset, error, params, sources)
    return section, job_problems(section)


# --- the run -------------------------------------------------------------------------------------

def run_probe(params: dict, module: AnsibleModule) -> dict:
    check_mode = module.check_mode
    started = time.perf_counter()
    sources = Sources(params, module)
    result: dict = {"changed": False}
    problems: list[str] = []
    missing: list[str] = []
    checks = [("pm2", params["pm2_url"] or params["pm2_command"], check_pm2),
              ("comfyui", params["comfyui_url"], check_comfyui),
              ("ollama", params["ollama_url"], check_ollama)]
    for name, configured, check in checks:
        if configured:
            result[name], found = check(sources, params)
            problems += found
            if not result[name]["measured"]:
                missing.append(name)
    configured_count = sum(1 for _name, configured, _check in checks if configured)
    if params["redis_url"]:
        configured_count += 1
        result["job"], found = check_job(sources, params, check_mode)
        problems += found
        if not result["job"]["measured"] and not result["job"].get("skipped"):
            missing.append("job")
    secrets = connection_secrets(redis_params(params)) if params["redis_url"] else []
    problems = [scrub(problem, secrets) for problem in problems]
    result["unmeasured"] = missing
    result["reachable"] = len(missing) < configured_count
    if not result["reachable"]:
        result["error"] = "; ".join(problems)
    result["healthy"] = not problems
    result["problems"] = problems
    result["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    params = dict(module.params)
    problems = bad_input_problems(params)
    if problems:
        module.fail_json(msg="bad input: " + "; ".join(problems), changed=False)
    result = run_probe(params, module)
    if result["problems"]:
        module.fail_json(msg="; ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
