"""The sandbox EMP monitor (``python -m sandbox.monitor``): a web UI stand-in whose Redis
manager tries a limited number of times, then gives up (docs/emp-contracts.md)."""
from __future__ import annotations
