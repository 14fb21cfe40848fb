"""The sandbox EMP worker machine (``python -m sandbox.worker``): workers of types mock and
ollama-sim claiming jobs through FCALL findMatchingJob, plus the machine health server with a
``pm2 jlist``-shaped view."""
from __future__ import annotations
