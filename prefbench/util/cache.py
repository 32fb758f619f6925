"""What prefbench keeps under ``cache_root()`` between runs, one folder per kind, and how an entry is trusted.

An entry's name is a digest of its key (what fixes its numbers: model, dtype, device, library versions, ...)
and the entry records the whole key: a folder in ``key.json``, a safetensors file in its header's metadata.
It is reused only when the recorded key equals the one asked for, so neither a digest collision nor a
hand-edited or copied-in entry is read as the right one. ``prefbench cache list|clear`` reads and empties
the folders."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from prefbench.util.errors import ConfigError
from prefbench.util.names import suggest
from prefbench.util.runs import cache_root

KINDS = {"reference": "reference log-probs of the training pairs", "onpolicy": "sampled and scored on-policy data",
         "models": "the embedded model converted to safetensors"}
KEYED = ("reference", "onpolicy")   # the kinds whose entries must record their key to be reused
KEY_FILE = "key.json"
_SHOWN = ("model", "task", "seed", "quantization", "dtype", "device")   # the key fields a listing prints


def canonical_key(key: dict) -> str:
    """The one text of ``key`` that is recorded and compared (sorted, so the order of its fields never matters)."""
    return json.dumps(key, sort_keys=True)


def key_digest(key: dict, length: int = 24) -> str:
    return hashlib.sha256(canonical_key(key).encode()).hexdigest()[:length]


def stored_key(entry: Path) -> str | None:
    """The key text ``entry`` was written with; None for one without (absent, cut short, or written before
    entries recorded their key), which is therefore never reused."""
    from safetensors import SafetensorError, safe_open

    try:
        if entry.is_dir():
            return (entry / KEY_FILE).read_text(encoding="utf-8")
        if entry.suffix == ".safetensors":
            with safe_open(entry, framework="numpy") as f:
                return (f.metadata() or {}).get("key")
    except (OSError, UnicodeDecodeError, SafetensorError):
        pass
    return None


@dataclass(frozen=True)
class Entry:
    path: Path
    size: int           # bytes, a folder's files together
    modified: float     # seconds since the epoch: when it was written

    def describe(self) -> str:
        text = stored_key(self.path)
        try:
            key = json.loads(text) if text else None
        except json.JSONDecodeError:
            key = None
        if isinstance(key, dict):
            fields = ", ".join(f"{k}={key[k]}" for k in _SHOWN if k in key)
        else:
            fields = "no recorded key (never reused)" if self.path.parent.name in KEYED else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))
        return f"{self.path.name}  {_size_text(self.size)}  {when}  {fields}".rstrip()


def entries(kind: str) -> list[Entry]:
    """The entries of one kind, oldest first; names starting with a dot are writes in progress."""
    folder = cache_root() / kind
    found = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    return sorted((Entry(p, _size(p), p.stat().st_mtime) for p in found), key=lambda e: (e.modified, e.path.name))


def present_kinds() -> list[str]:
    root = cache_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def listing() -> str:
    """``prefbench cache list``: per kind its entries and size, then one line per entry."""
    root, kinds = cache_root(), present_kinds()
    if not kinds:
        return f"{root}: no cache"
    lines = [f"{root}:"]
    for kind in kinds:
        found = entries(kind)
        about = f" ({KINDS[kind]})" if kind in KINDS else ""
        lines.append(f"{kind}{about}: {_amount(found)}")
        lines += [f"  {e.describe()}" for e in found]
    return "\n".join(lines)


def clear(kinds: list[str], dry_run: bool = False) -> str:
    """Remove the named kinds' folders (every kind when none is named); returns what was (or would be) removed."""
    present = present_kinds()
    for kind in kinds:
        if kind not in KINDS and kind not in present:
            raise ConfigError(f"unknown cache kind '{kind}'{suggest(kind, sorted({*KINDS, *present}))}; "
                              f"kinds: {', '.join(sorted({*KINDS, *present}))}")
    chosen = [k for k in (kinds or present) if k in present]
    lines = []
    for kind in dict.fromkeys(chosen):
        lines.append(f"{'would remove' if dry_run else 'removed'} {kind}: {_amount(entries(kind))}")
        if not dry_run:
            shutil.rmtree(cache_root() / kind)
    return "\n".join(lines) or f"{cache_root()}: nothing to remove"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _amount(found: list[Entry]) -> str:
    return f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}, {_size_text(sum(e.size for e in found))}"


def _size_text(size: int) -> str:
    value, unit = float(size), "B"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
