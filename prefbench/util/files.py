"""Writing run-directory artifacts safely: a temporary sibling, then an atomic rename, for files and
for whole folders, so a killed process never leaves a half-written artifact under the real name."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from prefbench.util.errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:   # a failed write (a full disk) names no file: say which one, so the user knows where
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``target``; when the block succeeds it replaces
    ``target`` (an old ``target`` is moved aside first and removed after), when it fails it is deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_jsonl(path: Path, rows) -> None:
    """One JSON object per line, written atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    """The JSON document in ``path``; a damaged file is a UserError naming it."""
    try:
        return json.loads(Path(path).read_bytes())
    except (ValueError, RecursionError) as exc:   # not JSON, not UTF-8
        raise UserError(f"{path}: not valid JSON ({exc}); was the file cut short or edited?") from None


def read_jsonl(path: Path) -> list:
    """One JSON value per line. Lines are split at newlines only: ``write_jsonl`` leaves U+2028 and the like
    unescaped, and ``splitlines()`` would cut a line there. A damaged file is a UserError naming it and the line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text; was the file damaged?") from None
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                raise UserError(f"{path}: line {n}: not valid JSON ({getattr(exc, 'msg', exc)}); was the file cut "
                                "short or edited?") from None
    return rows
