# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Release bookkeeping on the target: the ``current`` symlink, the state file and its history.

Used by the emp.deploy.release module. Everything that two deployments running at once could race
on is done atomically: the symlink is switched by renaming a new link over the old one, and the
state file is read, extended and rewritten under an exclusive lock (``fcntl.flock`` on a lock file
beside it) and replaced by rename, so no history entry is ever lost and no reader sees half a file.
The state file format is described in the documentation of plugins/modules/release.py.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import tempfile
import typing as t

# History entries kept in the state file (the oldest are dropped first).
HISTORY_LIMIT = 20
STATE_FILE_NAME = ".emp-release.json"
CURRENT_LINK = "current"
RELEASES_DIR = "releases"


class ReleaseError(Exception):
    """A release that cannot be done as asked; the message says why in the user's terms."""


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def check_version_name(version: str, what: str) -> None:
    """A version names a folder under releases/: one path segment."""
    if not version or "/" in version or version in (".", "..") or "\0" in version:
        raise ReleaseError(f"{what} must be one folder name (no '/', not '.' or '..'), got {version!r}")


def current_version(base_dir: str) -> str:
    """The version ``current`` points at, '' when there is no such symlink."""
    link = os.path.join(base_dir, CURRENT_LINK)
    if not os.path.islink(link):
        return ""
    return os.path.basename(os.readlink(link).rstrip("/"))


def switch_current(base_dir: str, version: str) -> None:
    """Points ``current`` at releases/<version> atomically: a new link renamed over the old one."""
    link = os.path.join(base_dir, CURRENT_LINK)
    temporary = f"{link}.emp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(f"{RELEASES_DIR}/{version}", temporary)
    os.replace(temporary, link)


def read_json(path: str) -> dict[str, t.Any]:
    """A state file's content; {} when there is none yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"cannot read the release state {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReleaseError(f"the release state {path} is not a JSON object")
    return data


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Writes a whole file or nothing: a temporary file in the same folder, synced, renamed over it."""
    folder = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def locked(path: str, enabled: bool = True) -> t.Iterator[None]:
    """An exclusive lock for read-modify-write of ``path`` (flock on ``path.lock``; waits for the holder).

    Not re-entrant: a holder must not take it again. ``enabled=False`` (check mode) takes no lock and
    creates no file.
    """
    if not enabled:
        yield
        return
    with open(f"{path}.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def record_change(path: str, update: t.Mapping[str, t.Any], entry: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Reads the state, sets ``update``'s keys, appends ``entry`` to its history and writes it atomically.

    The caller holds locked(path), so a concurrent writer's entry is never lost: each one reads the
    state the previous one wrote.
    """
    state = read_json(path)
    history = list(state.get("history") or []) + [dict(entry)]
    state.update(update)
    state["history"] = history[-HISTORY_LIMIT:]
    write_atomically(path, json.dumps(state, indent=2) + "\n")
    return state


def write_manifest(release_dir: str, manifest: t.Mapping[str, t.Any], check_mode: bool) -> bool:
    """Writes release.json when its content differs; returns whether it did (or would)."""
    path = os.path.join(release_dir, "release.json")
    text = json.dumps(manifest, indent=4) + "\n"
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    if not check_mode:
        os.makedirs(release_dir, mode=0o755, exist_ok=True)
        write_atomically(path, text)
    return True


def copy_tree(src: str, dest: str, check_mode: bool) -> bool:
    """Copies the files of ``src`` into ``dest`` (both on the target), keeping modes; only files that are
    missing or differ are written. Returns whether anything was (or would be) copied."""
    if not os.path.isdir(src):
        raise ReleaseError(f"the release source {src} is not a folder")
    changed = False
    for folder, _dirs, files in os.walk(src):
        target_folder = os.path.join(dest, os.path.relpath(folder, src))
        for name in files:
            source, target = os.path.join(folder, name), os.path.join(target_folder, name)
            if os.path.isfile(target) and _same_content(source, target):
                continue
            changed = True
            if not check_mode:
                os.makedirs(target_folder, mode=0o755, exist_ok=True)
                shutil.copy2(source, target)
    return changed


def _same_content(first: str, second: str) -> bool:
    if os.path.getsize(first) != os.path.getsize(second):
        return False
    with open(first, "rb") as one, open(second, "rb") as other:
        return one.read() == other.read()


def old_releases(base_dir: str, keep: int, protect: t.Collection[str]) -> list[str]:
    """Release folders beyond the ``keep`` newest (by mtime), never one named in ``protect``."""
    root = os.path.join(base_dir, RELEASES_DIR)
    try:
        entries = [entry for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    entries.sort(key=lambda entry: entry.stat(follow_symlinks=False).st_mtime, reverse=True)
    return [entry.path for entry in entries[keep:] if entry.name not in protect]


def remove_trees(paths: t.Iterable[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
