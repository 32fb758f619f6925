"""A JSONL cache of single judge calls, keyed by a content hash, so re-runs cost nothing.

One line per call (one order of one pair): ``{"key", "judge", "winner", "raw"}``. The key is the
sha256 of the judge's identity (kind, model, endpoint, decoding settings — never an API key), the
template, the instruction and the two responses in the order shown, so changing any of them asks
again and nothing else does. Lines are appended and flushed one at a time rather than rewritten
atomically: a run killed mid-way keeps every verdict it paid for, and the only damage a crash can
do is a half-written last line, which loading drops.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from prefbench.judges.verdicts import Verdict


def judgment_key(identity: dict[str, Any], template: str, instruction: str, first: str, second: str) -> str:
    payload = json.dumps([identity, template, instruction, first, second], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Verdicts by key, loaded from ``path`` (created on first write); safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, Verdict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete_end = data.rfind(b"\n") + 1
        for lineno, line in enumerate(data[:complete_end].decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                self._add(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{self.path}:{lineno}: not a judgment cache line ({e!r}); "
                                 "fix or delete the line, or point the cache elsewhere") from None
        tail = data[complete_end:]
        if not tail.strip():
            return
        # No final newline: a crash mid-append, unless the line is whole JSON (e.g. saved by an
        # editor). Either way the next append must start on a clean line.
        try:
            self._add(json.loads(tail))
            with self.path.open("ab") as f:
                f.write(b"\n")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            with self.path.open("r+b") as f:
                f.truncate(complete_end)

    def _add(self, entry: dict[str, Any]) -> None:
        self._entries[entry["key"]] = Verdict(winner=entry["winner"], raw=entry["raw"])

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, judge_name: str, verdict: Verdict) -> None:
        line = json.dumps({"key": key, "judge": judge_name, "winner": verdict.winner, "raw": verdict.raw},
                          ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._entries[key] = verdict

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries
