"""JSONL caches of single server calls, keyed by a content hash, so re-runs cost nothing.

:class:`KeyedCache` is the file: one line per call, ``{"key", ...}``, appended and flushed one at a
time rather than rewritten atomically: a run killed mid-way keeps every answer it paid for, and the
only damage a crash can do is a half-written last line, which loading drops. A write that fails (a
full disk) takes back the part of its line that did reach the file.

:class:`JudgmentCache` holds a judge's verdicts, one line per call (one order of one pair):
``{"key", "judge", "winner", "raw"}``. The key is the sha256 of the judge's identity (kind, model,
endpoint, decoding settings — never an API key), the template, the instruction and the two responses
in the order shown, so changing any of them asks again and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from prefbench.formats.records import DataError
from prefbench.judges.verdicts import Verdict, Winner

_WINNERS = (*get_args(Winner), None)   # None: the judge's answer was unparseable


def judgment_key(identity: dict[str, Any], template: str, instruction: str, first: str, second: str) -> str:
    payload = json.dumps([identity, template, instruction, first, second], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class KeyedCache:
    """Values by key, loaded from ``path`` (created on first write); safe to share between threads. ``value``
    reads a line's value (raising ValueError, KeyError or TypeError for a line that is not one); ``kind`` names
    the cache in errors."""

    def __init__(self, path: str | Path, kind: str, value: Callable[[dict[str, Any]], Any]):
        self.path = Path(path)
        self.kind = kind
        self._value = value
        self._lock = threading.Lock()
        self._entries: dict[str, Any] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete_end = data.rfind(b"\n") + 1
        try:
            text = data[:complete_end].decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(str(self.path), data.count(b"\n", 0, e.start) + 1, None,
                            "not UTF-8 text; delete the line, or point the cache elsewhere") from None
        # split at newlines only: a verdict's raw text may hold U+2028 or U+0085, which splitlines() also splits at
        for lineno, line in enumerate(text.split("\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                self._add(json.loads(line))
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                raise DataError(str(self.path), lineno, None, f"not a {self.kind} line ({e!r}); fix or delete the "
                                                              "line, or point the cache elsewhere") from None
        tail = data[complete_end:]
        if not tail.strip():
            return
        # No final newline: a crash mid-append, unless the line is whole JSON (e.g. saved by an
        # editor). Either way the next append must start on a clean line.
        try:
            self._add(json.loads(tail))
            with self.path.open("ab") as f:
                f.write(b"\n")
        except (ValueError, KeyError, TypeError, RecursionError):
            with self.path.open("r+b") as f:
                f.truncate(complete_end)

    def _add(self, entry: dict[str, Any]) -> None:
        self._entries[entry["key"]] = self._value(entry)

    def get(self, key: str) -> Any:
        with self._lock:
            return self._entries.get(key)

    def _append(self, entry: dict[str, Any], value: Any) -> None:
        """Write ``entry`` (a line holding ``"key"``) and remember its ``value``."""
        key = entry["key"]
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab", buffering=0) as f:   # unbuffered: nothing left to flush after a failure
                start = f.seek(0, os.SEEK_END)
                try:
                    data = memoryview(line.encode("utf-8"))
                    while data:
                        data = data[f.write(data):]
                    os.fsync(f.fileno())
                except OSError:
                    # a full disk can take part of the line: cut it off, or the next line would be glued to it
                    f.truncate(start)
                    raise
            self._entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries


def _verdict(entry: dict[str, Any]) -> Verdict:
    if entry["winner"] not in _WINNERS or not isinstance(entry["raw"], str):
        raise ValueError(f"winner {entry['winner']!r} (A, B, tie or null) with raw text expected")
    return Verdict(winner=entry["winner"], raw=entry["raw"])


class JudgmentCache(KeyedCache):
    """A judge's verdicts by :func:`judgment_key`."""

    def __init__(self, path: str | Path):
        super().__init__(path, "judgment cache", _verdict)

    def put(self, key: str, judge_name: str, verdict: Verdict) -> None:
        self._append({"key": key, "judge": judge_name, "winner": verdict.winner, "raw": verdict.raw}, verdict)
