"""Headless Chromium (Debian's package, installed by tools/system-deps) for the HTML report tests:
loads a local file with every network path closed, returns the rendered DOM and every console
message the page produced, and saves a screenshot."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

# console lines as Chromium logs them with --enable-logging=stderr: [pid:tid:time:INFO:CONSOLE:1] "msg", source: ...
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")
TIMEOUT = 90


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _argv(extra: list[str], profile: str) -> list[str]:
    return [binary() or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--metrics-recording-only", f"--user-data-dir={profile}",
            # no network at view time: nothing resolves, every proxy connection goes nowhere
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            "--enable-logging=stderr", "--v=0", *extra]


def load(page: Path, screenshot: Path | None = None, width: int = 1200, height: int = 1600) -> tuple[str, list[str]]:
    """(the DOM after load, the page's console messages); saves a screenshot when asked."""
    with tempfile.TemporaryDirectory(prefix="emp-chromium-") as profile:
        proc = subprocess.run(_argv(["--dump-dom", page.resolve().as_uri()], profile), capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
        if proc.returncode != 0 or "<html" not in proc.stdout:
            raise RuntimeError(f"chromium failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
        console = [m.group(1) for m in map(CONSOLE.search, proc.stderr.splitlines()) if m]
        if screenshot is not None:
            shot = subprocess.run(_argv([f"--screenshot={screenshot}", f"--window-size={width},{height}",
                                         "--hide-scrollbars", page.resolve().as_uri()], profile),
                                  capture_output=True, text=True, timeout=TIMEOUT, check=False)
            if shot.returncode != 0 or not screenshot.is_file():
                raise RuntimeError(f"chromium screenshot failed (rc {shot.returncode}): {shot.stderr[-2000:]}")
    return proc.stdout, console
