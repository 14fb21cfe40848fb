"""module_utils/_release.py: the release state file written by concurrent writers, atomic writes, the
symlink switch and the cleanup choice."""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from ansible_collections.emp.deploy.plugins.module_utils import _release as release


def append_many(path: str, writer: str, count: int, start: multiprocessing.synchronize.Event) -> None:
    release.HISTORY_LIMIT = 10_000  # keep every entry, so a lost one shows
    start.wait(30)
    for n in range(count):
        with release.locked(path):
            release.record_change(path, {"current": f"{writer}-{n}"}, {"version": f"{writer}-{n}", "run_id": writer})


def test_two_processes_appending_at_once_lose_no_entry(tmp_path):
    path = str(tmp_path / ".emp-release.json")
    # spawn, not fork: pytest's threads make fork() unsafe (and Python warns about it)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [context.Process(target=append_many, args=(path, name, 150, start)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    history = json.loads(Path(path).read_text())["history"]
    assert len(history) == 300
    for name in ("a", "b"):
        assert [e["version"] for e in history if e["run_id"] == name] == [f"{name}-{n}" for n in range(150)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".emp-release.json", ".emp-release.json.lock"]


def test_history_keeps_the_newest_entries(tmp_path):
    path = str(tmp_path / "state.json")
    for n in range(release.HISTORY_LIMIT + 5):
        release.record_change(path, {"current": str(n)}, {"version": str(n)})
    state = json.loads(Path(path).read_text())
    assert state["current"] == str(release.HISTORY_LIMIT + 4)
    assert [e["version"] for e in state["history"]] == [str(n) for n in range(5, release.HISTORY_LIMIT + 5)]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text('{"current": "1.0.0"}\n')

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        release.write_atomically(str(path), '{"current": "2.0.0"}\n')
    assert path.read_text() == '{"current": "1.0.0"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_unreadable_state_is_reported_with_its_path(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(release.ReleaseError, match="cannot read the release state .*state.json"):
        release.read_json(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(release.ReleaseError, match="is not a JSON object"):
        release.read_json(str(path))
    assert release.read_json(str(tmp_path / "missing.json")) == {}


def test_check_mode_lock_creates_nothing(tmp_path):
    with release.locked(str(tmp_path / "state.json"), enabled=False):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", ["", "../x", "a/b", ".", ".."])
def test_a_version_is_one_folder_name(version):
    with pytest.raises(release.ReleaseError, match="one folder name"):
        release.check_version_name(version, "version")


def test_switch_replaces_the_link_and_old_releases_spare_the_protected(tmp_path):
    for n, name in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0"]):
        folder = tmp_path / "releases" / name
        folder.mkdir(parents=True)
        os.utime(folder, (1000 + n, 1000 + n))
    release.switch_current(str(tmp_path), "1.1.0")
    release.switch_current(str(tmp_path), "1.3.0")
    assert os.readlink(tmp_path / "current") == "releases/1.3.0"
    assert release.current_version(str(tmp_path)) == "1.3.0"
    old = release.old_releases(str(tmp_path), 2, protect=("1.3.0", "1.0.0"))
    assert [Path(p).name for p in old] == ["1.1.0"]
