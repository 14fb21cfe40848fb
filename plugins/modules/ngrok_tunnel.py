#!/usr/bin/python
# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ngrok_tunnel
short_description: Keep an ngrok development tunnel up and prove that it answers through its public URL
version_added: 0.1.0
description:
  - Manages one tunnel of a running ngrok agent through the agent's local API (C(/api/tunnels)); it
    creates it when it is missing, replaces it when it forwards to the wrong upstream or with the
    wrong protocol, recreates it with O(state=restarted), removes it with O(state=absent).
  - With O(start_agent=true) it starts the agent when the API does not answer (for example after the
    agent was killed) and waits until it is ready. It writes the agent configuration (v3) when given an
    authtoken. Nothing is ever downloaded; a missing ngrok binary fails the task with a clear message.
  - "Then it proves the tunnel works: it requests the tunnel's public URL plus O(health_path) with the
    header C(ngrok-skip-browser-warning: 1), recognises ngrok's error pages (C(ERR_NGROK_3200) endpoint
    offline, C(ERR_NGROK_8012) upstream refused, C(ERR_NGROK_3004) invalid upstream response) and names
    the code in RV(problems). For O(proto=tcp) it connects to the public address instead."
  - With O(restart_on_failure=true) a failed health check makes it recreate the tunnel once (or start
    the agent again if it is gone) and check again; RV(attempts) counts the checks.
  - "Conflicts: before creating a tunnel it checks that the upstream listens and that no other tunnel
    of the agent already forwards to that upstream."
  - "How it avoids the old health script's mistakes: that script listed tunnels through the cloud API,
    compared the cloud field C(forwards_to) as a string with C(http://localhost:PORT), and never requested
    a health URL. This module reads the local agent API's C(config.addr) and compares upstreams as
    parsed (scheme, host, port) with C(localhost), C(127.0.0.1) and C(::1) treated as one host, so
    C(3331), C(localhost:3331) and C(http://127.0.0.1:3331) are the same upstream; and it always
    requests the public URL, because a listed tunnel is not necessarily a working one."
  - "Checklist items: Ngrok Health System (automatic tunnel startup and restart, health check
    monitoring, tunnel failure recovery, no conflicts with existing tunnels); External Integration
    (ngrok tunnel connectivity); phase 4 GO/NO-GO: tunnel management working in the dev environment."
author:
  - emp.deploy maintainers (@emp-deploy)
extends_documentation_fragment:
  - emp.deploy.ngrok
  - emp.deploy.attributes.action
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written, started, created or deleted; RV(actions) says what would be done and
        C(changed) whether anything would change. A tunnel that already matches is health-checked as
        in a normal run.
  diff_mode:
    support: full
    details: The tunnel's name, protocol and upstream before and after. The authtoken is never part of it.
  action_group:
    description:
      - Use C(group/emp.deploy.ngrok) in C(module_defaults) to set the agent options once for every ngrok task.
      - It is also in C(group/emp.deploy.probes), but unlike the other probes it changes things.
    support: full
    membership:
      - emp.deploy.probes
      - emp.deploy.ngrok
options:
  name:
    description: Name of the tunnel in the agent.
    type: str
    required: true
  state:
    description:
      - V(present) creates the tunnel if missing and replaces it if it forwards elsewhere.
      - V(restarted) always deletes and creates it again (a new public URL unless the agent reserves one).
      - V(absent) deletes it; an agent that is not running has no tunnels, so that is not an error.
    type: str
    choices: [present, absent, restarted]
    default: present
  addr:
    description:
      - The upstream the tunnel forwards to, as ngrok takes it, for example V(3331), V(localhost:3331),
        V(http://127.0.0.1:3331), V(https://localhost:8443) or, for TCP, V(localhost:6379).
      - Required unless O(state=absent).
    type: str
  proto:
    description: Tunnel protocol.
    type: str
    choices: [http, tcp]
    default: http
  health_check:
    description:
      - Request the public URL after making sure the tunnel exists. For O(proto=tcp) this is a TCP
        connection that must stay open for a moment (ngrok closes it at once when the upstream refuses).
    type: bool
    default: true
  health_path:
    description: Path appended to the public URL for the HTTP health check, for example V(/health).
    type: str
    default: /
  expect_status:
    description:
      - HTTP statuses that count as healthy. Without it any status below 500 that is not an ngrok error
        page counts as healthy.
    type: list
    elements: int
  expect_body:
    description: Text the health response body must contain.
    type: str
  validate_certs:
    description: Verify the certificate of an C(https://) public URL.
    type: bool
    default: true
  restart_on_failure:
    description:
      - When the health check fails, recreate the tunnel once (or start the agent again when its API no
        longer answers, which needs O(start_agent=true)) after O(recheck_delay) seconds, and check again.
    type: bool
    default: false
  recheck_delay:
    description: Seconds to wait after a failed health check before recovering and checking again.
    type: float
    default: 1.0
  tcp_settle:
    description:
      - For a TCP tunnel, seconds the health check keeps its fresh connection open waiting to see
        whether the tunnel closes it, which is what ngrok does when the upstream refuses. A close
        within this window is a failed check; a connection still open after it is healthy.
      - Never longer than what is left of O(timeout). A healthy TCP tunnel's check takes this long,
        so raise it for a distant ngrok edge or a busy agent host rather than lowering it.
    type: float
    default: 2.0
  require_upstream:
    description:
      - Refuse to create or replace the tunnel while nothing listens on the upstream. An existing tunnel
        whose upstream does not listen is never removed for that; it is reported in RV(problems).
    type: bool
    default: true
  fail_on_unhealthy:
    description:
      - Fail the task when RV(problems) is not empty after the health check (and the recovery, if any).
        All figures are returned either way.
      - In check mode a tunnel that would be created cannot be measured; that alone does not fail.
    type: bool
    default: true
notes:
  - The tunnel is created through the API, not declared in the configuration file, so a restarted agent
    does not bring it back by itself; running this module again does (with O(start_agent=true)).
  - The sandbox of this collection ships an ngrok stand-in, C(sandbox/bin/ngrok), that serves the same
    API and error pages on loopback; the integration tests run against it.
seealso:
  - name: ngrok agent API
    description: The local API this module drives.
    link: https://ngrok.com/docs/agent/api/
  - name: ngrok error codes
    description: ERR_NGROK_3200, ERR_NGROK_8012, ERR_NGROK_3004 and friends.
    link: https://ngrok.com/docs/errors/
  - module: emp.deploy.gate
    description: Samples a probe over a soak window and decides GO or NO-GO.
"""

EXAMPLES = r"""
- name: Tunnel to the API service, started with the agent if needed, proved through /health
  emp.deploy.ngrok_tunnel:
    name: api
    addr: "3331"
    health_path: /health
    expect_status: [200]
    expect_body: '"status":"ok"'
    start_agent: true
    config_path: /etc/emp/ngrok/ngrok.yml
    authtoken: "{{ vault_ngrok_authtoken }}"
    restart_on_failure: true
  register: api_tunnel

- name: Webhook test receiver and Redis (TCP) tunnels
  emp.deploy.ngrok_tunnel:
    name: "{{ item.name }}"
    addr: "{{ item.addr }}"
    proto: "{{ item.proto }}"
  loop:
    - {name: webhook-receiver, addr: "9876", proto: http}
    - {name: redis, addr: "6379", proto: tcp}

- name: Recreate a tunnel (new session)
  emp.deploy.ngrok_tunnel:
    name: api
    addr: "3331"
    state: restarted

- name: Remove it
  emp.deploy.ngrok_tunnel:
    name: api
    state: absent

- name: Set the agent options once for every ngrok task
  module_defaults:
    group/emp.deploy.ngrok:
      api_url: http://127.0.0.1:4040
      config_path: /etc/emp/ngrok/ngrok.yml
      start_agent: true
  block:
    - name: API tunnel
      emp.deploy.ngrok_tunnel:
        name: api
        addr: "3331"
        health_path: /health
"""

RETURN = r"""
public_url:
  description: Public URL of the tunnel; null when it is absent or would only be created in check mode.
  returned: always
  type: str
  sample: https://7f3a-203-0-113-7.ngrok-free.app
tunnel:
  description: The managed tunnel as the agent lists it (name, public_url, proto, addr, upstream, uri).
  returned: always
  type: dict
  sample: {name: api, public_url: "https://7f3a.ngrok-free.app", proto: https, addr: "localhost:3331",
           upstream: "localhost:3331", uri: /api/tunnels/api}
tunnels:
  description: Every tunnel of the agent after the changes, in the same shape as RV(tunnel).
  returned: always
  type: list
  elements: dict
agent:
  description:
    - The agent. C(status) is what C(/api/status) reports (C(online)); C(version) comes from the status when it
      says, else from C(ngrok version) (null when neither can tell); C(started) says whether this task started it, with its C(pid), C(log_path) and
      C(start_s) (seconds until the API answered). C(config_changed) says whether O(config_path) was
      (or would be) written.
  returned: always
  type: dict
  sample: {api_url: "http://127.0.0.1:4040", reachable: true, status: online, version: 3.24.0, started: false,
           pid: null, log_path: null, start_s: null, config_path: null, config_changed: false, tunnel_count: 3}
upstream:
  description: The wanted upstream, normalised, and whether something listens on it.
  returned: when O(state) is not V(absent)
  type: dict
  sample: {addr: "3331", upstream: "localhost:3331", host: localhost, port: 3331, listening: true, error: null}
conflicts:
  description: Other tunnels that already forward to the same upstream with the same protocol.
  returned: when O(state) is not V(absent)
  type: list
  elements: dict
health:
  description:
    - The last health check (C(method) GET or TCP, C(url), C(status), C(error_code), C(error),
      C(elapsed_ms), C(reachable)), with C(attempts), C(recovered) (a failed check passed after the
      recovery) and every check in C(checks). C(checked) is false when no check ran.
  returned: always
  type: dict
  sample: {checked: true, method: GET, url: "https://7f3a.ngrok-free.app/health", status: 200, error_code: null,
           error: null, elapsed_ms: 84.1, reachable: true, attempts: 1, recovered: false, checks: []}
attempts:
  description: Number of health checks made (2 when O(restart_on_failure) recovered or tried to).
  returned: always
  type: int
healthy:
  description: True when RV(problems) is empty.
  returned: always
  type: bool
problems:
  description: One sentence per problem found, naming the ngrok error code or the figure.
  returned: always
  type: list
  elements: str
  sample: ["GET http://127.0.0.1:41234/health answered 502 with ngrok error ERR_NGROK_8012: the agent could not
            connect to the upstream localhost:3331 (connection refused)"]
actions:
  description: What the task did, or in check mode would do, in order.
  returned: always
  type: list
  elements: str
  sample: ["started the ngrok agent (pid 4242) in 0.31 s", "created tunnel 'api' http://127.0.0.1:41234 -> localhost:3331"]
duration_ms:
  description: Time the task took, in milliseconds.
  returned: always
  type: float
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.emp.deploy.plugins.module_utils._ngrok import (
    Upstream,
    find_conflicts,
    health_url,
    judge_http_health,
    judge_tcp_health,
    parse_upstream,
    plan_tunnel,
    render_agent_config,
    summarize_tunnel,
    web_addr_from_api_url,
)
from ansible_collections.emp.deploy.plugins.module_utils._ngrok_agent import (
    NGROK_AGENT_ARGSPEC,
    AgentApi,
    AgentApiError,
    AgentUnreachable,
    agent_version,
    default_log_path,
    file_needs_update,
    port_listening,
    resolve_binary,
    spawn_agent,
    wait_until_ready,
    write_private_file,
)
from ansible_collections.emp.deploy.plugins.module_utils._ngrok_health import TCP_SETTLE_S, probe_http, probe_tcp

TUNNEL_ARGSPEC: dict = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent", "restarted"]),
    addr=dict(type="str"),
    proto=dict(type="str", default="http", choices=["http", "tcp"]),
    health_check=dict(type="bool", default=True),
    health_path=dict(type="str", default="/"),
    expect_status=dict(type="list", elements="int"),
    expect_body=dict(type="str"),
    validate_certs=dict(type="bool", default=True),
    restart_on_failure=dict(type="bool", default=False),
    recheck_delay=dict(type="float", default=1.0),
    tcp_settle=dict(type="float", default=TCP_SETTLE_S),
    require_upstream=dict(type="bool", default=True),
    fail_on_unhealthy=dict(type="bool", default=True),
)


def validate_options(params: dict) -> str | None:
    """A sentence describing the first invalid option, or None."""
    if not params["name"].strip():
        return "name must not be empty"
    for option in ("timeout", "agent_start_timeout", "tcp_settle"):
        if params[option] <= 0:
            return f"{option} must be greater than 0, got {params[option]}"
    if params["recheck_delay"] < 0:
        return f"recheck_delay must not be negative, got {params['recheck_delay']}"
    if not params["health_path"].startswith("/"):
        return f"health_path must start with '/', got '{params['health_path']}'"
    for status in params["expect_status"] or []:
        if not 100 <= status <= 599:
            return f"expect_status holds {status}, which is not an HTTP status"
    try:
        web_addr_from_api_url(params["api_url"])
    except ValueError as exc:
        return str(exc)
    return None


def directory_problem(config_path: str) -> str:
    return (f"config_path {config_path} is a directory, not the agent configuration file; give the file's path, "
            f"for example {os.path.join(config_path, 'ngrok.yml')}")


class TunnelRun:
    """One run of the module: each step records what it found and did, so failures return everything."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.name = self.params["name"]
        self.check_mode = module.check_mode
        self.started = time.monotonic()
        self.api = AgentApi(self.params["api_url"], self.params["timeout"])
        self.owns_config = bool(self.params["config_path"] and self.params["authtoken"])
        self.binary: str | None = None
        self.upstream: Upstream | None = None
        self.changed = False
        self.pending = False  # check mode: the tunnel would be created, so it cannot be measured
        self.actions: list = []
        self.problems: list = []
        self.conflicts: list = []
        self.tunnel: dict | None = None
        self.tunnels: list = []
        self.checks: list = []
        self.health_problems: list = []
        self.upstream_info: dict | None = None
        self.upstream_problem: str | None = None
        self.before: dict = {}
        self.agent: dict = {
            "api_url": self.api.base, "reachable": False, "status": None, "version": None, "started": False,
            "pid": None, "log_path": None, "start_s": None, "config_path": self.params["config_path"],
            "config_changed": False, "tunnel_count": None,
        }

    # ------------------------------------------------------------------ results
    def wanted(self) -> Upstream:
        """The parsed addr; every step that needs it runs after run() parsed it (state is not absent)."""
        if self.upstream is None:
            raise RuntimeError("the upstream is used before addr was parsed")
        return self.upstream

    def all_problems(self) -> list:
        upstream = [self.upstream_problem] if self.upstream_problem else []
        return self.problems + upstream + self.health_problems

    def result(self) -> dict:
        problems = self.all_problems()
        last = dict(self.checks[-1]) if self.checks else {}
        health = dict(last, checked=bool(self.checks), attempts=len(self.checks),
                      recovered=len(self.checks) > 1 and not self.health_problems, checks=self.checks)
        result = dict(
            changed=self.changed,
            public_url=self.tunnel.get("public_url") if self.tunnel else None,
            tunnel=summarize_tunnel(self.tunnel) if self.tunnel else None,
            tunnels=[summarize_tunnel(t) for t in self.tunnels],
            agent=self.agent,
            health=health,
            attempts=len(self.checks),
            healthy=not problems,
            problems=problems,
            actions=self.actions,
            duration_ms=round((time.monotonic() - self.started) * 1000.0, 2),
        )
        if self.params["state"] != "absent":
            result.update(upstream=self.upstream_info, conflicts=self.conflicts)
        if self.module._diff:
            result["diff"] = {"before": self.before, "after": self.after()}
        return result

    def after(self) -> dict:
        if self.params["state"] == "absent":
            return {}
        return {"name": self.name, "proto": self.params["proto"], "addr": self.params["addr"],
                "upstream": self.upstream.label if self.upstream else None}

    def fail(self, msg: str, record: bool = True) -> None:
        """Fails the task with every figure gathered so far; ``record`` adds msg to the problems."""
        result = self.result()
        result["healthy"] = False
        if record:
            result["problems"] = result["problems"] + [msg]
        self.module.fail_json(msg=msg, **result)

    def did(self, action: str) -> None:
        self.changed = True
        self.actions.append(action)

    # ------------------------------------------------------------------ agent
    def ensure_config(self) -> None:
        if not self.owns_config:
            return
        path = self.params["config_path"]
        if os.path.isdir(path):  # also in check mode: writing it would fail
            self.fail(directory_problem(path))
        content = render_agent_config(self.params["authtoken"], web_addr_from_api_url(self.params["api_url"]))
        if not file_needs_update(path, content):
            return
        self.agent["config_changed"] = True
        if self.check_mode:
            self.did(f"would write the agent configuration {path}")
            return
        try:
            write_private_file(path, content)
        except OSError as exc:
            self.fail(f"cannot write the agent configuration {path}: {exc.strerror or exc}")
        self.did(f"wrote the agent configuration {path} (mode 0600)")

    def start_agent(self, why: str) -> bool:
        """Starts the agent; False in check mode, where it only says it would."""
        if not self.params["start_agent"]:
            self.fail(f"{why}; set start_agent=true (with config_path) to let this module start it")
        if self.check_mode:
            self.did(f"would start the ngrok agent with {self.params['config_path']}: {why}")
            return False
        config_path = self.params["config_path"]
        if os.path.isdir(config_path):
            self.fail(directory_problem(config_path))
        if not os.path.isfile(config_path):
            self.fail(f"cannot start the ngrok agent: config_path {config_path} does not exist; give authtoken "
                      "(or set NGROK_AUTHTOKEN) and the module writes it")
        log_path = self.params["agent_log_path"] or default_log_path(config_path)
        try:
            process = spawn_agent(self.binary or "ngrok", config_path, log_path, start_all=not self.owns_config)
        except OSError as exc:
            self.fail(f"cannot start the ngrok agent {self.binary}: {exc.strerror or exc}")
        try:
            waited = wait_until_ready(self.api, process, self.params["agent_start_timeout"], log_path)
        except AgentApiError as exc:
            if process.poll() is None:
                process.kill()  # ours, and useless: do not leave it behind
            self.fail(f"cannot start the ngrok agent: {exc}")
        self.agent.update(started=True, pid=process.pid, log_path=log_path, start_s=round(waited, 3), reachable=True)
        self.did(f"started the ngrok agent (pid {process.pid}) in {waited:.2f} s because {why}")
        return True

    def connect(self) -> bool:
        """Lists the tunnels, starting the agent if allowed. False when the agent is down and stays down."""
        try:
            self.tunnels = self.api.list_tunnels()
        except AgentUnreachable as exc:
            if self.params["state"] == "absent":
                self.actions.append(f"nothing to remove: {exc}")
                return False
            if not self.start_agent(str(exc)):
                self.pending = True
                self.problems.append(f"{exc}; the agent would be started and tunnel '{self.name}' created")
                return False
            try:
                self.tunnels = self.api.list_tunnels()
            except AgentApiError as again:
                self.fail(str(again))
        except AgentApiError as exc:
            self.fail(str(exc))
        self.agent["reachable"] = True
        self.agent["tunnel_count"] = len(self.tunnels)
        try:
            status = self.api.status() or {}
        except AgentApiError:
            status = {}
        self.agent["status"] = status.get("status")
        self.agent["version"] = status.get("agent_version") or status.get("version")
        if not self.agent["version"] and self.binary:  # the real agent's status may not say
            self.agent["version"] = agent_version(self.binary, self.params["timeout"])
        return True

    # ------------------------------------------------------------------ tunnel
    def find(self, name: str) -> dict | None:
        return next((t for t in self.tunnels if t.get("name") == name), None)

    def refresh(self) -> None:
        try:
            self.tunnels = self.api.list_tunnels()
        except AgentApiError:
            pass  # keep what we knew; the health check reports what is wrong
        self.agent["tunnel_count"] = len(self.tunnels)

    def create(self, replace: bool, reason: str) -> dict:
        proto = self.params["proto"]
        try:
            if replace:
                self.api.delete(self.name)
                self.did(f"deleted tunnel '{self.name}' because {reason}")
            tunnel = self.api.create(self.name, self.params["addr"], proto)
        except AgentApiError as exc:
            self.fail(f"cannot create tunnel '{self.name}': {exc}")
        self.did(f"created tunnel '{self.name}' {tunnel.get('public_url')} -> {self.wanted().label}")
        return tunnel

    def check_upstream(self) -> bool:
        upstream = self.wanted()
        listening, error = port_listening(upstream.connect_host, upstream.port, self.params["timeout"])
        self.upstream_info = {"addr": self.params["addr"], "upstream": upstream.label, "host": upstream.host,
                              "port": upstream.port, "listening": listening, "error": error}
        # Measured again after a recovery, so only the latest figure counts.
        self.upstream_problem = None if listening else f"the upstream {upstream.label} is not listening ({error})"
        return listening

    def ensure_present(self) -> None:
        current = self.find(self.name)
        if current is not None:
            found = summarize_tunnel(current)
            self.before = {"name": self.name, "proto": found["proto"], "addr": found["addr"], "upstream": found["upstream"]}
        plan = plan_tunnel(current, self.params["proto"], self.wanted(), restart=self.params["state"] == "restarted")
        self.conflicts = find_conflicts(self.tunnels, self.name, self.params["proto"], self.wanted())
        for other in self.conflicts:
            self.problems.append(f"tunnel '{other['name']}' ({other['public_url']}) also forwards to {self.wanted().label}")
        listening = self.check_upstream()
        if plan.action == "none":
            self.tunnel = current
            return
        verb = "create" if plan.action == "create" else "replace"
        if self.conflicts:
            self.fail(f"will not {verb} tunnel '{self.name}': tunnel '{self.conflicts[0]['name']}' "
                      f"({self.conflicts[0]['public_url']}) already forwards to {self.wanted().label}")
        if not listening and self.params["require_upstream"]:
            self.fail(f"will not {verb} tunnel '{self.name}': its upstream {self.wanted().label} is not listening "
                      f"({(self.upstream_info or {}).get('error')}); start the service first or set require_upstream=false")
        if self.check_mode:
            self.pending = True
            self.did(f"would {verb} tunnel '{self.name}' -> {self.wanted().label}: {plan.reason}")
            return
        self.tunnel = self.create(plan.action == "replace", plan.reason)

    def ensure_absent(self) -> None:
        current = self.find(self.name)
        if current is None:
            return
        found = summarize_tunnel(current)
        self.before = {"name": self.name, "proto": found["proto"], "addr": found["addr"], "upstream": found["upstream"]}
        if self.check_mode:
            self.did(f"would delete tunnel '{self.name}' ({found['public_url']})")
            return
        try:
            self.api.delete(self.name)
        except AgentApiError as exc:
            self.fail(f"cannot delete tunnel '{self.name}': {exc}")
        self.did(f"deleted tunnel '{self.name}' ({found['public_url']})")

    # ------------------------------------------------------------------ health
    def health_check(self) -> list:
        public_url = (self.tunnel or {}).get("public_url") or ""
        timeout = self.params["timeout"]
        if self.params["proto"] == "tcp" or public_url.startswith("tcp://"):
            check = probe_tcp(public_url, timeout, self.params["tcp_settle"])
            problems = judge_tcp_health(check)
        else:
            url = health_url(public_url, self.params["health_path"])
            check = probe_http(url, timeout, self.params["validate_certs"], self.params["expect_body"])
            problems = judge_http_health(check, self.params["expect_status"], self.params["expect_body"], self.upstream)
        check["problems"] = problems
        self.checks.append(check)
        return problems

    def recover(self, problem: str) -> None:
        """Recreates the tunnel once, starting the agent again first if it is gone."""
        why = f"the health check failed: {problem}"
        if self.check_mode:
            self.did(f"would recreate tunnel '{self.name}' because {why}")
            return
        time.sleep(self.params["recheck_delay"])
        try:
            self.api.list_tunnels()
            replace = True
        except AgentUnreachable as exc:
            self.start_agent(f"{exc} ({why})")
            replace = False
        except AgentApiError as exc:
            self.fail(str(exc))
        self.tunnel = self.create(replace, why)
        self.check_upstream()

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        params = self.params
        problem = validate_options(params)
        if problem:
            self.module.fail_json(msg=problem)
        if params["state"] != "absent":
            try:
                self.upstream = parse_upstream(params["addr"], params["proto"])
            except ValueError as exc:
                self.module.fail_json(msg=str(exc))
        self.binary = resolve_binary(self.module, params["ngrok_binary"])
        if params["start_agent"] and self.binary is None:
            self.fail(f"start_agent=true but the ngrok binary '{params['ngrok_binary'] or 'ngrok'}' is not on PATH; "
                      "this module never downloads ngrok: install it or set ngrok_binary to its path")
        self.ensure_config()

        if self.connect():
            if params["state"] == "absent":
                self.ensure_absent()
            else:
                self.ensure_present()
                if self.tunnel is not None and params["health_check"]:
                    self.health_problems = self.health_check()
                    if self.health_problems and params["restart_on_failure"]:
                        self.recover(self.health_problems[0])
                        if not self.check_mode:
                            self.health_problems = self.health_check()
                if self.tunnel is None and self.pending:
                    self.problems.append(f"tunnel '{self.name}' is not running yet, so it was not health-checked")
            self.refresh()
            if self.tunnel is not None and not self.pending:
                self.tunnel = self.find(self.name) or self.tunnel
        elif params["state"] != "absent" and self.upstream is not None:
            self.check_upstream()

        problems = self.all_problems()
        if problems and params["fail_on_unhealthy"] and not self.pending:
            self.fail(f"tunnel '{self.name}' is not healthy: " + "; ".join(problems), record=False)
        self.module.exit_json(**self.result())


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(NGROK_AGENT_ARGSPEC, **TUNNEL_ARGSPEC),
        required_if=[
            ("state", "present", ["addr"]),
            ("state", "restarted", ["addr"]),
            ("start_agent", True, ["config_path"]),
        ],
        supports_check_mode=True,
    )
    TunnelRun(module).run()


if __name__ == "__main__":
    main()
