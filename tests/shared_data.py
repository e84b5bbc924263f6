"""Where the tests find the project's shared real data: ``$PYANODE_SHARED/data``, else ``../shared/data``
beside the repository. Only tests (and benchmarks) read it; the installed package never does."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("PYANODE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"


def require_shared() -> None:
    """Skip the calling test in a plain clone without the shared data; under CI (``CI`` set) fail instead,
    since CI always has them and a silent skip there would hide a lost data folder."""
    import pytest

    if not DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the shared data folder {DATA} is missing; CI must have it")
        pytest.skip("needs the shared data: ../shared/data beside the clone, or $PYANODE_SHARED/data")
