"""Per-task cost of a module, shared by the benchmarks: N copies of one task in one ansible-playbook,
timed against an empty playbook (the start-up), as ``(playbook time - empty playbook time) / N``."""
from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def playbook(path: Path, task_line: str | None, count: int) -> Path:
    """N copies of one task; without a task, a single no-op (the start-up baseline)."""
    tasks = [task_line] * count if task_line else ["ansible.builtin.meta: noop"]
    lines = ["- name: Bench", "  hosts: sandbox", "  gather_facts: false", "  tasks:"]
    for index, line in enumerate(tasks):
        lines += [f"    - name: Task {index}", f"      {line}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def timed_run(path: Path, bin_dir: Path, env: dict[str, str] | None = None) -> float:
    """Seconds one ansible-playbook run of ``path`` takes (minimal output); exits when the playbook fails."""
    full_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
    full_env.update(env or {})
    started = time.perf_counter()
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), str(path)], capture_output=True, text=True, env=full_env,
                          cwd=str(ROOT), check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench playbook {path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def callback_config(folder: Path, enabled: bool, settings: str = "") -> Path:
    """The repository's settings with or without the go_no_go callback (an empty callbacks list is an
    error), plus ``settings`` (more ``[defaults]`` lines): the baseline of the callback benchmarks."""
    path = folder / ("on.cfg" if enabled else "off.cfg")
    path.write_text("[defaults]\n"
                    f"collections_path = {ROOT / 'collections'}\n"
                    "interpreter_python = auto_silent\nretry_files_enabled = false\n"
                    "stdout_callback = ansible.builtin.default\n" + settings
                    + ("callbacks_enabled = emp.deploy.go_no_go\n" if enabled else ""))
    return path


def children_cpu_seconds() -> float:
    """User and system CPU of the finished child processes (ansible-playbook and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
