# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A service's own health endpoint as evidence that it is connected again: one GET per service, its JSON
answer compared with expected values at dotted paths (``redis.connected: true``)."""

from __future__ import annotations

import json

from ansible_collections.emp.deploy.plugins.module_utils._http import HttpClient, HttpFailure, url_problem, where

# Absent from an answer is not the same as null: a path that is missing must never equal an expected null.
_MISSING = object()

SERVICE_HEALTH_SPEC: dict = dict(
    type="list",
    elements="dict",
    options=dict(
        name=dict(type="str", required=True),
        url=dict(type="str", required=True),
        expect=dict(type="dict", default={}),
        headers=dict(type="dict", default={}, no_log=True),
    ),
)


def service_health_problem(services: list) -> str | None:
    """Why the service_health option cannot be used, or None."""
    names = [service["name"] for service in services]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return f"service_health names {', '.join(duplicates)} more than once"
    for service in services:
        problem = url_problem(service["url"])
        if problem:
            return f"service_health '{service['name']}': {problem}"
    return None


def value_at(document, path: str):
    """The value at a dotted path of a JSON document, or _MISSING."""
    node = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _judge(service: dict, status: int, body: bytes) -> tuple[dict, list]:
    name = service["name"]
    seen: dict = {"status_code": status}
    if not 200 <= status < 300:
        return seen, [f"service '{name}' health answered HTTP {status}"]
    if not service["expect"]:
        return seen, []
    try:
        document = json.loads(body.decode("utf-8"))
    except ValueError:
        return seen, [f"service '{name}' health answer is not JSON"]
    problems = []
    for path, expected in service["expect"].items():
        found = value_at(document, path)
        seen[path] = None if found is _MISSING else found
        if found is _MISSING:
            problems.append(f"service '{name}' health lacks '{path}' (expected {json.dumps(expected)})")
        elif found != expected:
            problems.append(f"service '{name}' health has {path}={json.dumps(found)}, expected {json.dumps(expected)}")
    return seen, problems


def check_services(services: list, timeout: float, client: HttpClient | None = None) -> tuple[dict, list]:
    """Each service's health answer ({name: {url, healthy, status_code, <path>: value}}) and the problems,
    one sentence each; an unreachable service is a problem, never a pass."""
    client = client or HttpClient(user_agent="emp.deploy-redis_health")
    results: dict = {}
    problems: list = []
    for service in services:
        try:
            answer = client.request("GET", service["url"], deadline=timeout, headers=service["headers"],
                                    body_limit=65536)
            seen, found = _judge(service, answer.status, answer.body)
        except HttpFailure as exc:
            seen, found = {"status_code": None}, [f"service '{service['name']}' health: {exc.sentence()}"]
        results[service["name"]] = {"url": where(service["url"]), "healthy": not found, **seen}
        problems += found
    return results, problems
