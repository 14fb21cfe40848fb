"""emp.deploy sandbox: a reference EMP stack on loopback for the demo and the end-to-end tests.

Not part of the built collection (galaxy.yml build_ignore). Start it with
``python -m sandbox up``; see sandbox/README.md.
"""
from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
