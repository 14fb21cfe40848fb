"""python -m sandbox.traffic: the sandbox traffic generator."""
from __future__ import annotations

import sys

from sandbox.traffic.generator import main

if __name__ == "__main__":
    sys.exit(main())
