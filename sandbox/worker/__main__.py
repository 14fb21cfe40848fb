from __future__ import annotations

import sys

from sandbox.worker.machine import main

sys.exit(main())
