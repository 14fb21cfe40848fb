# Copyright: Contributors to the emp.deploy collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One deployment at a time: the environment lock that deploy.yml, watch.yml and rollback.yml take.

Taken by the go_no_go callback in the controller process when the first play starts, before any task
(docs/lock-and-verify.md), so a second run is refused before anything changes, and a rollback that
runs inside the holder's process (or as its child) never has to take it again.

- Redis (``lock_redis_url``): one key per environment, ``SET key holder NX PX ttl``; a thread renews
  the TTL while the run lives (compare-and-pexpire) and the run releases it by compare-and-delete (Lua,
  so only the holder's own value is ever deleted). A crashed run's key expires by its TTL.
- A file beside the reports otherwise: ``<report_dir>/.lock.<environment>``, held with a POSIX record lock
  (``lockf``). The kernel drops it when the holding process dies (so no TTL is needed), and forked
  workers do not inherit it. The file holds the holder's JSON for the refusal message.

Pure Python apart from the repository's own Redis client (module_utils/_resp.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import socket
import threading
import time
import typing as t
from pathlib import Path

from ansible_collections.emp.deploy.plugins.module_utils._redis import open_connection
from ansible_collections.emp.deploy.plugins.module_utils._resp import RespError, UrlError, parse_redis_url
from ansible_collections.emp.deploy.plugins.plugin_utils import _records as R

KEY_PREFIX = "emp:deploy:lock:"
CLIENT_NAME = "emp-deploy-lock"
# how long one Redis exchange may take; the lock's own operations never wait longer
REDIS_TIMEOUT_S = 3.0
# a holder that just took the file lock writes its JSON right after; a contender waits this long for it
_HOLDER_WRITE_WAIT_S = 1.0
_OFF_VALUES = ("off", "false", "no", "0")

# deletes / extends the key only while it still holds this holder's value
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
          "else return 0 end")


class LockRefused(Exception):
    """Another run holds the environment (or the lock cannot be checked): the run must not start."""

    def __init__(self, message: str, holder: dict[str, t.Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LockOptionError(ValueError):
    """A malformed environment name or lock option; the message never quotes the Redis URL."""


# --- what is locked, by whom ------------------------------------------------------------------------


def lock_off(value: t.Any) -> bool:
    """`emp_lock: off` (YAML may read off as false)."""
    return value is False or str(value).strip().lower() in _OFF_VALUES


def inventory_name(sources: t.Iterable[t.Any] | None) -> str:
    """The name of the run's first inventory: a folder's name, or a file's stem (its folder's name when
    the file is called hosts or inventory, as inventories/sandbox/hosts.yml is sandbox)."""
    for source in sources or ():
        path = Path(str(source).rstrip("/"))
        if "," in str(source):  # an ad-hoc host list
            return "adhoc"
        if path.is_dir():
            return path.name
        stem = path.name.split(".")[0]
        return path.parent.name if stem in ("hosts", "inventory") and path.parent.name else stem
    return "localhost"


def run_environment(run_var: t.Callable[[str], t.Any], inventory: t.Any, strict: bool = True) -> str:
    """The run's environment: emp_environment, else the inventory's name; LockOptionError for a name that cannot
    name a lock (strict), else the name as it is (the history index quotes it)."""
    chosen = run_var(R.ENVIRONMENT_VAR)
    name = chosen if chosen not in (None, "") else inventory_name(inventory)
    return environment_name(name) if strict else str(name).strip()


def environment_name(value: t.Any) -> str:
    name = str(value).strip()
    if not R.valid_run_id(name):
        raise LockOptionError(f"emp_environment={name!r} cannot name a lock: use letters, digits, '.', '_' and '-' "
                              f"(at most 128, no '..', not starting with '.' or '-')")
    return name


def new_holder(run_id: str, user: str | None, since: str) -> dict[str, t.Any]:
    return {"run_id": run_id, "user": user, "host": socket.gethostname(), "pid": os.getpid(), "since": since,
            "token": secrets.token_hex(8)}


def public(holder: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The holder as journaled and shown: without the token that proves ownership."""
    return None if holder is None else {k: v for k, v in holder.items() if k != "token"}


def refusal(environment: str, holder: t.Mapping[str, t.Any] | None, expiry: str) -> str:
    if not holder or not holder.get("run_id"):
        return (f"environment {environment!r} is locked by run (unknown: the holder wrote no record); "
                f"nothing was changed")
    return (f"environment {environment!r} is locked by run {holder['run_id']} (user {holder.get('user') or '?'} "
            f"on host {holder.get('host') or '?'}, pid {holder.get('pid')}, since {holder.get('since')}); "
            f"this run was refused before any task and changed nothing. Start it again when that run has ended; "
            f"{expiry}")


def _decode(raw: t.Any) -> dict[str, t.Any] | None:
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", "replace")
    try:
        holder = json.loads(raw) if raw else None
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


# --- the two backends -------------------------------------------------------------------------------


class RedisLock:
    """SET NX PX, renewed by compare-and-pexpire, released by compare-and-delete."""

    backend = "redis"

    def __init__(self, url: str, environment: str, ttl_s: float) -> None:
        try:
            parse_redis_url(url)
        except UrlError as exc:
            raise LockOptionError(f"lock_redis_url is malformed ({exc}); expected redis://[[user]:password@]host"
                                  f"[:port][/db]") from None
        self._params = {"url": url, "validate_certs": True, "connect_timeout": REDIS_TIMEOUT_S,
                        "command_timeout": REDIS_TIMEOUT_S, "client_name": CLIENT_NAME}
        self.environment = environment
        self.key = KEY_PREFIX + environment
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.value: str | None = None

    def _call(self, *args: t.Any) -> t.Any:
        with open_connection(self._params) as connection:
            return connection.execute(*args)

    def acquire(self, holder: dict[str, t.Any]) -> tuple[str, dict[str, t.Any] | None]:
        """("acquired", None) or ("joined", holder) for a rollback of the holding run; LockRefused otherwise."""
        value = json.dumps(holder, sort_keys=True)
        try:
            if self._call("SET", self.key, value, "NX", "PX", self.ttl_ms) is not None:
                self.value = value
                return "acquired", None
            current = _decode(self._call("GET", self.key))
        except (RespError, OSError) as exc:
            raise LockRefused(f"the lock of environment {self.environment!r} cannot be checked: Redis did not answer "
                              f"({type(exc).__name__}: {_no_url(exc)}); the run is refused rather than run "
                              f"unguarded") from None
        if current is None:  # released between SET and GET: try once more
            return self.acquire(holder)
        if current.get("run_id") == holder["run_id"]:
            return "joined", current
        raise LockRefused(refusal(self.environment, current, f"a run that died frees it within "
                                                             f"{self.ttl_ms / 1000:g} s (its TTL)"), current)

    def renew(self) -> bool:
        """False when the key no longer holds our value (it expired and maybe another run took it)."""
        return self._call("EVAL", _RENEW, 1, self.key, self.value, self.ttl_ms) == 1

    def release(self) -> bool:
        if self.value is None:
            return False
        released = self._call("EVAL", _RELEASE, 1, self.key, self.value) == 1
        self.value = None
        return released


def _no_url(exc: BaseException) -> str:
    # the client's messages name host and port, never the URL or its password; keep them to one line
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class FileLock:
    """A POSIX record lock on <report_dir>/.lock.<environment>, holding the holder's JSON."""

    backend = "file"

    def __init__(self, report_dir: Path, environment: str) -> None:
        self.environment = environment
        self.path = Path(report_dir).absolute() / f".lock.{environment}"
        self._fd = -1
        self._token: str | None = None

    def acquire(self, holder: dict[str, t.Any]) -> tuple[str, dict[str, t.Any] | None]:
        """("acquired", None), ("taken_over", dead holder), or ("joined", holder); LockRefused otherwise."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise LockRefused(f"the lock file {self.path} cannot be opened ({exc.strerror or exc}); the run is refused "
                              f"rather than run unguarded") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            current = self._holder_of(fd)
            os.close(fd)  # this process holds no lock on the file, so closing frees nothing
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise LockRefused(f"the lock file {self.path} cannot be locked ({exc.strerror or exc})") from None
            if current is not None and current.get("run_id") == holder["run_id"]:
                return "joined", current
            raise LockRefused(refusal(self.environment, current, "a run that died frees it at once"), current)
        previous = _decode(os.pread(fd, 65536, 0))  # left by a run that died holding it (a release empties it)
        data = json.dumps(holder, sort_keys=True).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)  # not fsynced: the kernel's record lock is the lock, the JSON only names its holder
        self._fd, self._token = fd, holder["token"]
        return ("taken_over", previous) if previous else ("acquired", None)

    @staticmethod
    def _holder_of(fd: int) -> dict[str, t.Any] | None:
        deadline = time.monotonic() + _HOLDER_WRITE_WAIT_S
        while True:
            holder = _decode(os.pread(fd, 65536, 0))
            if holder is not None or time.monotonic() > deadline:
                return holder
            time.sleep(0.02)

    def renew(self) -> bool:
        return self._fd >= 0  # the kernel holds it for as long as this process lives

    def release(self) -> bool:
        """Empties and unlocks the file, only if it still holds this run's token (compare-and-delete)."""
        if self._fd < 0:
            return False
        try:
            current = _decode(os.pread(self._fd, 65536, 0))
            mine = current is not None and current.get("token") == self._token
            if mine:
                os.ftruncate(self._fd, 0)
            return mine
        finally:
            os.close(self._fd)  # closing drops the record lock
            self._fd = -1


# --- the lock of one run ----------------------------------------------------------------------------


class RunLock:
    """The environment lock as one run holds it: acquire, a renewal thread for Redis, release.

    ``record`` journals an outcome (a dict of R.LockRecord fields); ``warn`` says something loudly."""

    def __init__(self, backend: RedisLock | FileLock, ttl_s: float | None,
                 record: t.Callable[[dict[str, t.Any]], None], warn: t.Callable[[str], None]) -> None:
        self.backend = backend
        self.ttl_s = ttl_s if isinstance(backend, RedisLock) else None
        self._record, self._warn = record, warn
        self.holder: dict[str, t.Any] | None = None
        self.owned = False
        self.renewals = 0
        self._since_mono = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _base(self) -> dict[str, t.Any]:
        return {"environment": self.backend.environment, "backend": self.backend.backend, "ttl_s": self.ttl_s}

    def acquire(self, holder: dict[str, t.Any]) -> dict[str, t.Any]:
        """The outcome record (acquired, taken_over or joined); LockRefused carries a refused run's message."""
        started = time.monotonic()
        outcome, other = self.backend.acquire(holder)
        self.owned = outcome != "joined"
        self.holder = holder if self.owned else other
        self._since_mono = time.monotonic()
        entry = dict(self._base(), outcome=outcome, holder=public(self.holder),
                     previous=public(other) if outcome == "taken_over" else None,
                     acquire_ms=round((self._since_mono - started) * 1000, 2))
        if self.owned and self.ttl_s:
            self._thread = threading.Thread(target=self._keep, name="emp-deploy-lock", daemon=True)
            self._thread.start()
        return entry

    def _keep(self) -> None:
        """Renews the TTL every third of it; a lost lock is journaled and said once, then left alone."""
        interval = max(0.05, (self.ttl_s or 1) / 3)
        last_ok = time.monotonic()
        while not self._stop.wait(interval):
            error: str | None = None
            try:
                held = self.backend.renew()
            except (RespError, OSError) as exc:
                if time.monotonic() - last_ok < (self.ttl_s or 0):
                    continue  # Redis away for a moment: the key lives until its TTL, try again
                held, error = False, f"{type(exc).__name__}: {_no_url(exc)}"
            else:
                error = None if held else "the key expired or another run holds it now"
            if held:
                self.renewals += 1
                last_ok = time.monotonic()
                continue
            self.owned = False
            entry = dict(self._base(), outcome="lost", holder=public(self.holder), renewals=self.renewals,
                         error=error)
            self._record(entry)
            self._warn(f"the lock of environment {self.backend.environment!r} was lost ({error}); another run "
                       f"may start on it now")
            return

    def release(self) -> dict[str, t.Any] | None:
        """The released record, or None when this run does not own the lock (joined, lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REDIS_TIMEOUT_S * 2)
        if not self.owned:
            return None
        self.owned = False
        error = None
        try:
            released = self.backend.release()
        except (RespError, OSError) as exc:
            released, error = False, f"{type(exc).__name__}: {_no_url(exc)}; the key expires by its TTL"
        if not released and error is None:
            error = "the lock no longer held this run's value: it was not deleted"
        return dict(self._base(), outcome="released" if released else "lost", holder=public(self.holder),
                    renewals=self.renewals, held_s=round(time.monotonic() - self._since_mono, 3), error=error)


def make_backend(redis_url: str | None, report_dir: Path, environment: str, ttl_s: float) -> RedisLock | FileLock:
    return RedisLock(redis_url, environment, ttl_s) if redis_url else FileLock(report_dir, environment)


# --- what the callback asks for when a run starts ---------------------------------------------------

OPTION_NAMES = ("lock_redis_url", "lock_ttl")
_MIN_TTL_S = 0.2


class LockPlan:
    """What lock a starting run takes: its backend, or off (``emp_lock: off``, recorded)."""

    def __init__(self, environment: str, backend: RedisLock | FileLock | None, ttl_s: float | None) -> None:
        self.environment, self.backend, self.ttl_s = environment, backend, ttl_s

    @property
    def off(self) -> bool:
        return self.backend is None

    def off_record(self) -> dict[str, t.Any]:
        return {"outcome": "off", "environment": self.environment, "backend": None,
                "error": "emp_lock=off: this run took no environment lock (for tests only)"}

    def refused_record(self, exc: LockRefused) -> dict[str, t.Any]:
        backend = self.backend.backend if self.backend is not None else None
        return {"outcome": "refused", "environment": self.environment, "backend": backend, "ttl_s": self.ttl_s,
                "holder": public(exc.holder), "error": str(exc)}


def plan(play_vars: t.Mapping[str, t.Any] | None, extra_vars: t.Mapping[str, t.Any], raw: t.Mapping[str, t.Any],
         report_dir: Path, run_var: t.Callable[[str], t.Any], inventory: t.Any) -> LockPlan | None:
    """None for a playbook that takes no lock (its first play lacks the literal emp_environment_lock: true);
    LockOptionError for a bad environment name, TTL or Redis URL."""
    if (play_vars or {}).get(R.LOCK_PLAY_VAR) is not True:
        return None
    from ansible_collections.emp.deploy.plugins.plugin_utils._run_recorder import OptionError, parse_duration

    environment = run_environment(run_var, inventory)
    if lock_off(extra_vars.get(R.LOCK_VAR, (play_vars or {}).get(R.LOCK_VAR, "on"))):
        return LockPlan(environment, None, None)
    try:
        ttl_s = float(parse_duration(raw.get("lock_ttl") or "30s", "lock_ttl"))
    except OptionError as exc:
        raise LockOptionError(str(exc)) from None
    if ttl_s < _MIN_TTL_S:
        raise LockOptionError(f"lock_ttl: {ttl_s:g} s is too short to renew (at least {_MIN_TTL_S:g} s)")
    url = str(raw.get("lock_redis_url") or "").strip() or None
    return LockPlan(environment, make_backend(url, report_dir, environment, ttl_s), ttl_s if url else None)
