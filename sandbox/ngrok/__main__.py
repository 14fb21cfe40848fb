"""``python -m sandbox.ngrok ...``: the same stand-in as sandbox/bin/ngrok."""
from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
