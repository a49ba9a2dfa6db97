"""Where embedperf keeps big, reusable things: never in the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """${EMBEDPERF_CACHE:-${XDG_CACHE_HOME:-~/.cache}/embedperf}: exports, workloads, native builds."""
    explicit = os.environ.get("EMBEDPERF_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "embedperf"


def models_dir() -> Path:
    return cache_root() / "models"


def workloads_dir() -> Path:
    return cache_root() / "workloads"
