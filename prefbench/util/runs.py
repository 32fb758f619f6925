"""Where prefbench caches work between runs, the check that an output folder holds this run, and the lock that
keeps two processes from writing one run directory."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

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


class RunInUseError(ConfigError):
    """Another process is writing the run directory."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.prefbench.lock`` (an advisory ``flock``, released by the system when its process ends, so a
    killed run never leaves a stale lock) while a run writes the folder; a second ``prefbench run`` or ``eval`` on
    the same folder stops at once instead of mixing its files with the first's, naming the holder (pid, host,
    start time, command). Where ``fcntl`` does not exist (Windows) runs are not locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".prefbench.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunInUseError(f"{run_dir} is in use by {holder}; wait for it to finish or use another "
                                "--output-dir") from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {started}: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:2]])})\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
