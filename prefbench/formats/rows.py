"""The one row reader: ``(row number, row)`` from a JSON Lines, JSON or Parquet file (``.gz`` too)."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

from prefbench.formats.records import DataError

SUFFIXES = (".jsonl", ".json", ".parquet")


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else "".join(suffixes[-1:])


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Rows of ``path`` with 1-based numbers: for JSON Lines the line, for a JSON list (or an object
    ``{"data": [...]}``) the position. A ``.json`` file may hold JSON Lines (the JPO release's TL;DR
    files do; one object alone is one row), and either may be gzipped."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in SUFFIXES:
        raise DataError(str(path), None, None, f"unsupported file type; use {', '.join(SUFFIXES)} (or .gz of the first two)")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow's errors have no common base a user could act on
            raise DataError(str(path), None, None, f"not a readable Parquet file ({exc})") from None
        yield from enumerate(table.to_pylist(), 1)
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(str(path), None, None, f"not UTF-8 JSON text ({type(exc).__name__}); is it the right file?") from None
    except FileNotFoundError:
        raise DataError(str(path), None, None, "file not found") from None
    except OSError as exc:   # a folder, no permission
        raise DataError(str(path), None, None, f"cannot be read ({exc.strerror or exc})") from None
    head = text.lstrip()[:1]
    if head == "[" or (head == "{" and suffix == ".json" and _is_one_document(text)):
        data = _loads(text, str(path), None)
        if isinstance(data, dict):
            # {"data": [...]}, or a single row: JSON Lines of one line under a .json name
            data = data["data"] if isinstance(data.get("data"), list) else [data]
        yield from enumerate(data, 1)
        return
    # lines end at newlines only: JSON text may hold U+2028 or U+0085 unescaped (prefbench's own files do), which
    # splitlines() would also cut at
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield n, _loads(line, str(path), n)


def _loads(text: str, source: str, row: int | None) -> Any:
    """``json.loads``; a failure is a DataError at ``row`` (for a whole document, with the line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at, problem = (f" at line {exc.lineno}" if row is None else ""), exc.msg
    except RecursionError:   # deeper than Python's stack: no row is meant to be
        at, problem = "", "nested too deeply"
    except ValueError as exc:   # an integer longer than Python converts (4300 digits)
        at, problem = "", str(exc).split(":")[0]
    raise DataError(source, row, None, f"invalid JSON{at} ({problem})")


def _is_one_document(text: str) -> bool:
    """A ``.json`` file starting with ``{`` is one document unless it is JSON Lines (several lines,
    each a whole object)."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        first = text.lstrip().split("\n")[0]
        try:
            json.loads(first)
        except (ValueError, RecursionError):
            return True   # broken JSON: report it as such, with its line
        return False
    return True
