"""Runtime faults of the sandbox (``python -m sandbox fault``): their names, owners and file.

Kept free of heavy imports: the CLI reads and writes the file, the services poll it.
``<state>/faults.json`` = ``{"faults": {NAME: {parameters..., "services": [...], "since": epoch}}}``.
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
        try:
            stat = self.path.stat()
            version: tuple[int, int, int] | None = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        except FileNotFoundError:
            version = None
        if version == self._version:  # the CLI replaces the file: a new inode even within one mtime tick
            return
        self._version = version
        faults = {name: params for name, params in read_faults(self.path).items()
                  if self.service in FAULT_SERVICES.get(name, ())}
        if faults != self._faults:
            self._log.info("runtime faults now: %s", ", ".join(sorted(faults)) or "none")
        self._faults = faults

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            self.refresh()

    def get(self, name: str) -> dict[str, Any] | None:
        return self._faults.get(name)

    def active(self, name: str) -> bool:
        return name in self._faults

    def stop(self) -> None:
        self._stop.set()
