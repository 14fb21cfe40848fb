# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs the rollback playbook: in this process when it can, else as a child ansible-playbook.

In process (the usual case) the rollback's tasks share the deploy's output and ansible-runner's event
stream; _executor_adapter.py holds the ansible-core internals that needs. When that is not possible
(the executor was not found, the adapter failed, or ``rollback_runner=subprocess``), the same
rollback runs as a child ansible-playbook with the same inventory, limit, check mode, vault
identities and extra vars. Either way the rollback run's own go_no_go instance reports its plays
to the parent's recorder: directly in process, through an events file from a child process.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R

# Set in a rollback run (in process or child): its go_no_go instance reports to the parent run.
CHILD_ENV = "EMP_DEPLOY_ROLLBACK_OF"
# Set for a child-process rollback: where its go_no_go instance writes the events for the parent.
EVENTS_ENV = "EMP_DEPLOY_ROLLBACK_EVENTS"

# the recorder methods a rollback run may call, and so the only ones an events file can replay
SINK_METHODS = ("rb_play_start", "rb_no_hosts", "rb_gate", "rb_failure", "rb_task", "rb_play_end")


class RollbackSink(t.Protocol):
    """What a rollback run reports; the parent's RunRecorder implements it."""

    def rb_play_start(self, play: str, component: str | None, mono: float | None = None) -> None: ...

    def rb_no_hosts(self) -> None: ...

    def rb_gate(self, gate: dict[str, t.Any]) -> None: ...

    def rb_failure(self, line: str, unreachable: bool) -> None: ...

    def rb_task(self, task: str) -> None: ...

    def rb_play_end(self, mono: float | None = None) -> None: ...


class EventWriter:
    """The sink of a child-process rollback: one JSON line per call, replayed by the parent."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, method: str, *args: t.Any) -> None:
        line = json.dumps({"m": method, "a": list(args)}, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)

    def rb_play_start(self, play: str, component: str | None, mono: float | None = None) -> None:
        self._write("rb_play_start", play, component, time.monotonic() if mono is None else mono)

    def rb_no_hosts(self) -> None:
        self._write("rb_no_hosts")

    def rb_gate(self, gate: dict[str, t.Any]) -> None:
        self._write("rb_gate", gate)

    def rb_failure(self, line: str, unreachable: bool) -> None:
        self._write("rb_failure", line, unreachable)

    def rb_task(self, task: str) -> None:
        self._write("rb_task", task)

    def rb_play_end(self, mono: float | None = None) -> None:
        self._write("rb_play_end", time.monotonic() if mono is None else mono)


def replay_events(path: Path, sink: RollbackSink, offset: int = 0) -> int:
    """Feeds a child rollback's events from ``offset`` on to the parent's recorder; returns the new
    offset (only whole lines are consumed). Monotonic time is system-wide, so durations hold."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return offset
    whole = data[: data.rfind(b"\n") + 1]
    for line in whole.decode("utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("m") in SINK_METHODS:
            getattr(sink, event["m"])(*event.get("a", []))
    return offset + len(whole)


# --- the command line of a child rollback ---------------------------------------------------------


def _ansible_playbook() -> str:
    """The ansible-playbook of this installation (the running one when it is ansible-playbook)."""
    if sys.argv and os.path.basename(sys.argv[0]) == "ansible-playbook" and os.path.exists(sys.argv[0]):
        return os.path.abspath(sys.argv[0])
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def rollback_argv(cli: t.Mapping[str, t.Any], playbook: str, extra_vars: dict[str, t.Any],
                  program: str = "ansible-playbook") -> list[str]:
    """ansible-playbook argv that repeats the deploy's inventory, limit, check mode, vault and extra vars."""
    argv = [program, playbook]
    for source in cli.get("inventory") or ():
        argv += ["-i", str(source)]
    if cli.get("subset"):
        argv += ["--limit", str(cli["subset"])]
    if cli.get("check"):
        argv.append("--check")
    if cli.get("diff"):
        argv.append("--diff")
    for vault_id in cli.get("vault_ids") or ():
        argv += ["--vault-id", str(vault_id)]
    for password_file in cli.get("vault_password_files") or ():
        argv += ["--vault-password-file", str(password_file)]
    for flag, key in (("-u", "remote_user"), ("-c", "connection"), ("--private-key", "private_key_file"),
                      ("-f", "forks"), ("-T", "timeout"), ("--become-method", "become_method"),
                      ("--become-user", "become_user")):
        if cli.get(key) not in (None, ""):
            argv += [flag, str(cli[key])]
    if cli.get("become"):
        argv.append("--become")
    if cli.get("verbosity"):
        argv.append("-" + "v" * int(cli["verbosity"]))
    for source in cli.get("extra_vars") or ():
        argv += ["-e", str(source)]
    argv += ["-e", json.dumps(extra_vars)]  # last, so the rollback's own vars win
    return argv


def plan_command(cli: t.Mapping[str, t.Any], playbook: str, extra_vars: dict[str, t.Any]) -> str:
    """The exact command that rolls back by hand (rollback=plan)."""
    return shlex.join(rollback_argv(cli, playbook, extra_vars))


def prompted_passwords(cli: t.Mapping[str, t.Any]) -> list[str]:
    """Passwords typed at a prompt, which a child process cannot be given."""
    prompts = {"ask_vault_pass": "vault password", "ask_pass": "connection password",
               "become_ask_pass": "become password"}
    return [what for key, what in prompts.items() if cli.get(key)]


class ChildRollback:
    """A rollback running as a child ansible-playbook; signals that interrupt the parent reach it too."""

    def __init__(self, argv: list[str], run_id: str) -> None:
        self.argv = argv
        self.run_id = run_id
        self.process: subprocess.Popen[bytes] | None = None
        self.events: Path | None = None
        self.sink: RollbackSink | None = None
        self._offset = 0

    def run(self, sink: RollbackSink) -> int:
        self.sink = sink
        with tempfile.TemporaryDirectory(prefix="emp-rollback-") as tmp:
            self.events = Path(tmp) / "events.jsonl"
            env = dict(os.environ, **{CHILD_ENV: self.run_id, EVENTS_ENV: str(self.events), R.RUN_ID_ENV: self.run_id})
            # stdio explicitly: ansible marks 0-2 non-inheritable, and the rollback's output belongs in ours
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=1, stderr=2, env=env)
            try:
                rc = self.process.wait()
            finally:
                self.catch_up()
                self.events = None
        return rc

    def catch_up(self) -> None:
        """Replays what the child reported so far (also from a signal handler, before the record closes)."""
        if self.events is not None and self.sink is not None:
            self._offset = replay_events(self.events, self.sink, self._offset)

    def forward(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signum)
            except OSError:
                pass


class RollbackRunner:
    """Runs one rollback and records it in the recorder, in process or as a child process."""

    def __init__(self, recorder: t.Any, cli: t.Mapping[str, t.Any], warn: t.Callable[[str], None],
                 on_executor_ready: t.Callable[[], None] | None = None) -> None:
        self.recorder = recorder
        self.cli = cli
        self.warn = warn
        self.on_executor_ready = on_executor_ready
        self.child: ChildRollback | None = None

    def run(self, playbook: str, extra_vars: dict[str, t.Any], force_subprocess: bool) -> list[str]:
        """Returns the problems to show loudly (failed, late, not run)."""
        rc: int | None = None
        error: str | None = None
        in_process = not force_subprocess
        self.recorder.rollback_started(R.RUNNER_IN_PROCESS if in_process else R.RUNNER_SUBPROCESS)
        if in_process:
            rc, error, in_process = self._in_process(playbook, extra_vars)
        if not in_process:
            rc, error = self._subprocess(playbook, extra_vars)
        return t.cast(list[str], self.recorder.rollback_finished(rc, error))

    def _in_process(self, playbook: str, extra_vars: dict[str, t.Any]) -> tuple[int | None, str | None, bool]:
        from ansible_collections.emp.deploy.plugins.plugin_utils import _executor_adapter as adapter

        saved = os.environ.get(CHILD_ENV)
        os.environ[CHILD_ENV] = self.recorder.run_id  # processes the rollback starts never roll back
        try:
            return adapter.run_in_process(playbook, extra_vars, self.on_executor_ready), None, True
        except adapter.InProcessUnavailable as exc:
            why = f"in-process rollback unavailable ({exc}); running it as a child ansible-playbook"
            self.warn(why)
            self.recorder.rollback_runner_switched(R.RUNNER_SUBPROCESS, why)
            return None, None, False
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported as a rollback problem
            return None, f"{type(exc).__name__}: {exc}", True
        finally:
            if saved is None:
                os.environ.pop(CHILD_ENV, None)
            else:
                os.environ[CHILD_ENV] = saved

    def _subprocess(self, playbook: str, extra_vars: dict[str, t.Any]) -> tuple[int | None, str | None]:
        prompted = prompted_passwords(self.cli)
        if prompted:
            self.warn(f"the rollback child process cannot be given the {', '.join(prompted)} typed at the prompt; "
                      f"use a password file or vault id so a rollback can run unattended")
        self.child = ChildRollback(rollback_argv(self.cli, playbook, extra_vars, _ansible_playbook()),
                                   self.recorder.run_id)
        try:
            return self.child.run(self.recorder), None
        except OSError as exc:
            return None, f"the child ansible-playbook could not start ({exc})"

    def interrupted(self, signum: int) -> None:
        """A signal ends the run: the child rollback gets it too, and what it reported is recorded."""
        if self.child is not None:
            self.child.catch_up()
            self.child.forward(signum)
