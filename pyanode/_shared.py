"""Where the project's read-only shared material (real data, docs) lives."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    """``$PYANODE_SHARED`` when set, else ``../shared`` beside the repository root."""
    env = os.environ.get("PYANODE_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
