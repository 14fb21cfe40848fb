from __future__ import annotations

import sys

from sandbox.monitor.server import main

sys.exit(main())
