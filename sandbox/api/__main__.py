from __future__ import annotations

import sys

from sandbox.api.server import main

sys.exit(main())
