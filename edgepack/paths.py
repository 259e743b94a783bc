"""Where edgepack keeps caches and state on the machine it runs on."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Rebuildable data: downloaded wheels, board userlands, runtime builds."""
    env = os.environ.get("EDGEPACK_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgepack"


def state_dir() -> Path:
    """Live state: running boards and the targets they registered."""
    env = os.environ.get("EDGEPACK_STATE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgepack"


def project_root() -> Path:
    """The source checkout (profiles/, targets/, firmware_hosts/ live here)."""
    return Path(__file__).resolve().parent.parent
