"""The sandbox's Redis: a real redis-server plus our jobMatching Lua library.

``load_library(client)`` loads jobMatching (FUNCTION LOAD REPLACE) and records its checksum at
``function:checksum:jobMatching``; ``redis_server_argv(port, workdir)`` is how the CLI starts
redis-server (loopback, RDB saved on shutdown so a restart keeps jobs and the library).
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

LIBRARY_NAME = "jobMatching"
FUNCTION_NAME = "findMatchingJob"
CHECKSUM_KEY = f"function:checksum:{LIBRARY_NAME}"
LIBRARY_PATH = Path(__file__).with_name("jobMatching.lua")


def library_source() -> str:
    """The library as FUNCTION LOAD takes it. The file holds the Lua body only: Redis wants a
    `#!lua name=...` first line, which source-tree checks would take for a script shebang."""
    return f"#!lua name={LIBRARY_NAME}\n" + LIBRARY_PATH.read_text(encoding="utf-8")


def library_checksum(source: str | None = None) -> str:
    """sha256 hex of the library text, as stored at function:checksum:jobMatching."""
    return hashlib.sha256((source or library_source()).encode("utf-8")).hexdigest()


def load_library(client) -> str:
    """Loads (or replaces) jobMatching on ``client`` (a redis-py client); returns the checksum."""
    source = library_source()
    client.function_load(source, replace=True)
    checksum = library_checksum(source)
    client.set(CHECKSUM_KEY, checksum)
    return checksum


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise FileNotFoundError("redis-server not found on PATH (make system-deps installs it)")
    return binary


def redis_server_argv(port: int, workdir: Path, password: str | None = None) -> list[str]:
    argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port),
            "--dir", str(workdir), "--dbfilename", "dump.rdb",
            # Saved on SIGTERM shutdown, so `restart redis` keeps jobs and the function library.
            "--save", "3600 1", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice",
            "--logfile", str(workdir / "redis.log")]
    if password:
        argv += ["--requirepass", password]
    return argv
