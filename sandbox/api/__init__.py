"""The sandbox EMP API service (``python -m sandbox.api``); see server.py."""
from __future__ import annotations
