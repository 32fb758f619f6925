"""Where a dataset's files come from: a local folder with the hub repo's layout, or the hub itself."""

from __future__ import annotations

import re
from pathlib import Path

from prefbench.formats.records import DataError


def is_hub_id(source: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None and not source.startswith(".")


def locate(source: str | Path, filename: str, *alternatives: str) -> Path:
    """``filename`` (or the first of ``alternatives`` that exists) inside ``source``: a local folder with the
    repo's layout, or a hub dataset id (downloaded with ``huggingface_hub.hf_hub_download``, which caches it)."""
    names = (filename, *alternatives)
    tried = " or ".join(names)
    path = Path(source)
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise DataError(str(path / filename), None, None, f"file not found (tried {tried}); a local copy of the data "
                                                          f"must keep the hub layout under {path}")
    if path.exists() or not is_hub_id(str(source)):
        found = "a file" if path.exists() else "no such folder"
        raise DataError(str(source), None, None, "expected a folder with the dataset's layout or a hub dataset id "
                                                 f"(owner/name), found {found}")
    from huggingface_hub import hf_hub_download

    failure = None
    for name in names:
        try:
            return Path(hf_hub_download(str(source), name, repo_type="dataset"))
        except Exception as exc:  # offline, unknown repo or file: all the same to the user
            failure = failure or exc
    raise DataError(f"{source}/{filename}", None, None,
                    f"could not download {tried} ({type(failure).__name__}: {failure}); without hub access, pass a "
                    "local copy of the folder instead (for a benchmark: --set data.location=PATH)") from failure
