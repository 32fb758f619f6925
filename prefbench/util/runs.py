"""Where prefbench caches work between runs, and the check that an output folder holds this run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefbench.util.errors import ConfigError


class SameRunError(ConfigError):
    """An output folder already holds a run whose settings differ from the one asked for."""


def cache_root() -> Path:
    return Path(os.environ.get("PREFBENCH_CACHE", Path.home() / ".cache" / "prefbench"))


def check_same_run(folder: Path, previous: dict[str, Any], current: dict[str, Any], flag: str) -> None:
    """Refuse to mix two runs in ``folder``: ``previous`` and ``current`` are the settings that fix
    their numbers; ``flag`` names the option that picks another folder."""
    if previous == current:
        return
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    raise SameRunError(f"{folder} holds a run with a different configuration (changed: {', '.join(changed)}); "
                       f"use another {flag} or delete it")
