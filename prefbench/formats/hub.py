"""Where a dataset's files come from: a local folder with the hub repo's layout, or the hub itself."""

from __future__ import annotations

import re
from pathlib import Path

from prefbench.formats.records import DataError


def is_hub_id(source: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None and not source.startswith(".")


def locate(source: str | Path, filename: str) -> Path:
    """``filename`` inside ``source``: a local folder with the repo's layout, or a hub dataset id
    (downloaded with ``huggingface_hub.hf_hub_download``, which caches it)."""
    path = Path(source)
    if path.is_dir():
        found = path / filename
        if not found.is_file():
            raise DataError(str(found), None, None, f"file not found; a local copy of the data must keep the "
                                                    f"hub layout ({filename} under {path})")
        return found
    if path.exists() or not is_hub_id(str(source)):
        found = "a file" if path.exists() else "no such folder"
        raise DataError(str(source), None, None, "expected a folder with the dataset's layout or a hub dataset id "
                                                 f"(owner/name), found {found}")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(source), filename, repo_type="dataset"))
    except Exception as exc:  # offline, unknown repo or file: all the same to the user
        raise DataError(f"{source}/{filename}", None, None,
                        f"could not download ({type(exc).__name__}: {exc}); without hub access, pass a local copy "
                        "of the folder instead (for a benchmark: --set data.location=PATH)") from exc
