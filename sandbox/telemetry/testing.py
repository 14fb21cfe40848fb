"""Moved to tests/telemetry_harness.py (test harness code lives under tests/). This re-export keeps
the old import path working until the remaining importers are updated; delete it then."""
from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[2] / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from telemetry_harness import TOKEN, TelemetryProcess  # noqa: E402,F401  # pylint: disable=wrong-import-position,unused-import
