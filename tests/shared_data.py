"""Where the tests find the project's shared real data: ``$PYANODE_SHARED/data``, else ``../shared/data``
beside the repository. Only tests (and benchmarks) read it; the installed package never does."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("PYANODE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"
