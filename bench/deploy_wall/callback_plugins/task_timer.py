# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bench only (not part of the collection): writes every task's role, name and duration as JSON lines
to $EMP_BENCH_TIMINGS, so bench.py can show where a deploy spends its time. A loop's line also has
when each item finished (``item_s``, from the task's start), and a probe's its ``latency_ms`` figures
(bench/service_probe times a uri loop's requests and reads the probe's p95 from them)."""
from __future__ import annotations

import json
import os
import time
import typing as t

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_timer
type: aggregate
short_description: Task durations for bench/deploy_wall
description: Appends one JSON line per finished task result to the file named by E(EMP_BENCH_TIMINGS).
author: emp.deploy maintainers
requirements: [enabled in callbacks_enabled]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("EMP_BENCH_TIMINGS", "")
        self._started: dict[str, float] = {}
        self._items: dict[str, list[float]] = {}

    def v2_playbook_on_task_start(self, task: t.Any, is_conditional: bool) -> None:
        self._started[task._uuid] = time.monotonic()

    def v2_playbook_on_handler_task_start(self, task: t.Any) -> None:
        self._started[task._uuid] = time.monotonic()

    def _record(self, result: t.Any, status: str) -> None:
        task = result._task
        started = self._started.get(task._uuid)
        if not self._path or started is None:
            return
        role = task._role.get_name(include_role_fqcn=False) if task._role else ""
        line = {"role": role, "task": task.get_name(), "action": task.action, "status": status,
                "duration_s": round(time.monotonic() - started, 4)}
        if task._uuid in self._items:
            line["item_s"] = self._items.pop(task._uuid)
        if isinstance(result._result.get("latency_ms"), dict):
            line["latency_ms"] = result._result["latency_ms"]
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    def v2_runner_item_on_ok(self, result: t.Any) -> None:
        started = self._started.get(result._task._uuid)
        if started is not None:
            self._items.setdefault(result._task._uuid, []).append(round(time.monotonic() - started, 6))

    def v2_runner_on_ok(self, result: t.Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: t.Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: t.Any) -> None:
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result: t.Any) -> None:
        self._record(result, "unreachable")
