"""The one row reader: ``(row number, row)`` from a JSON Lines, JSON or Parquet file (``.gz`` too)."""

from __future__ import annotations

import gzip
import json
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
    files do), and either may be gzipped."""
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
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(str(path), None, None, f"not UTF-8 JSON text ({type(exc).__name__}); is it the right file?") from None
    head = text.lstrip()[:1]
    if head == "[" or (head == "{" and suffix == ".json" and _is_one_document(text)):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(str(path), None, None, f"invalid JSON at line {exc.lineno} ({exc.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(str(path), None, None, "expected a JSON list of rows (or {\"data\": [...]})")
        yield from enumerate(data, 1)
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(str(path), n, None, f"invalid JSON ({exc.msg})") from None


def _is_one_document(text: str) -> bool:
    """A ``.json`` file starting with ``{`` is one document unless it is JSON Lines (several lines,
    each a whole object)."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        first = text.lstrip().splitlines()[0]
        try:
            json.loads(first)
        except json.JSONDecodeError:
            return True   # broken JSON: report it as such, with its line
        return False
    return True
