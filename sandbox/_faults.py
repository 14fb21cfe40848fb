"""Runtime faults of the sandbox (``python -m sandbox fault``): their names, owners and file.

Kept free of heavy imports: the CLI reads and writes the file, the services poll it.
``<state>/faults.json`` = ``{"faults": {NAME: {parameters..., "services": [...], "since": epoch}}}``.
Each service acknowledges the version of the file it acts on in ``<state>/faults.ack.<service>``
(``{"pid": ..., "version": [mtime_ns, inode, size]}``), so that ``fault`` returns only once the running
services it concerns have taken it up: a caller never measures before the fault is in effect.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

# fault name -> the services it belongs to (a restart of one of them, as a rollback does, clears it)
FAULT_SERVICES: dict[str, tuple[str, ...]] = {
    "webhook-failures": ("webhook",),
    "worker-memory-leak": ("worker",),
    "api-latency": ("api",),
    "jobs-stalled": ("worker",),
    "redis-drop": ("api", "webhook", "worker", "monitor"),
    "telemetry-export": ("api", "webhook", "worker"),
    # a switch rather than a fault: the API records and exports no spans while it is set (the
    # predeploy's "performance impact of direct OTEL" compares its latency with and without)
    "telemetry-off": ("api",),
    # the worker machine's pm2 apps, ComfyUI and Ollama stand-ins, and completion records
    "worker-crashloop": ("worker",),
    "comfyui-node-missing": ("worker",),
    "ollama-model-missing": ("worker",),
    "ollama-slow": ("worker",),
    "ollama-down": ("worker",),
    "attestation-missing": ("worker",),
    "asset-save-fails": ("worker",),
}
POLL_S = 0.5
Version = tuple[int, int, int]


def file_version(path: Path) -> Version | None:
    """What tells one write of the file from the next (the CLI replaces it: a new inode each time)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_ino, stat.st_size)


def ack_path(faults_path: Path, service: str) -> Path:
    return faults_path.with_name(f"{faults_path.stem}.ack.{service}")


def read_ack(faults_path: Path, service: str) -> dict[str, Any]:
    """The service's acknowledgement ({'pid', 'version'}); {} when it has written none (or it is unreadable)."""
    try:
        data = json.loads(ack_path(faults_path, service).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_faults(path: Path) -> dict[str, dict[str, Any]]:
    """The faults of <state>/faults.json (name -> parameters); {} when absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    faults = data.get("faults") if isinstance(data, dict) else None
    return {str(k): v for k, v in faults.items() if isinstance(v, dict)} if isinstance(faults, dict) else {}


class RuntimeFaults:
    """The active faults that belong to ``service``, refreshed from the file when its mtime changes."""

    def __init__(self, path: str | os.PathLike | None, service: str) -> None:
        self.path = Path(path) if path else None
        self.service = service
        self._version: tuple[int, int, int] | None = None
        self._faults: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._log = logging.getLogger(f"{service}.faults")
        if self.path is not None:
            self.refresh()
            threading.Thread(target=self._poll, name="faults", daemon=True).start()

    def refresh(self) -> None:
        assert self.path is not None
        version = file_version(self.path)
        if version == self._version:  # the CLI replaces the file: a new inode even within one mtime tick
            return
        self._version = version
        faults = {name: params for name, params in read_faults(self.path).items()
                  if self.service in FAULT_SERVICES.get(name, ())}
        if faults != self._faults:
            self._log.info("runtime faults now: %s", ", ".join(sorted(faults)) or "none")
        self._faults = faults
        self._acknowledge(version)

    def _acknowledge(self, version: Version | None) -> None:
        """Says which version of the file is now in effect here (after self._faults is set)."""
        assert self.path is not None
        target = ack_path(self.path, self.service)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"pid": os.getpid(), "version": list(version) if version else None}),
                           encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:  # the state folder went away (down): nobody waits any more
            self._log.warning("could not acknowledge the faults file: %s", exc)

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            self.refresh()

    def get(self, name: str) -> dict[str, Any] | None:
        return self._faults.get(name)

    def active(self, name: str) -> bool:
        return name in self._faults

    def stop(self) -> None:
        self._stop.set()
