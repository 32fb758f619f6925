"""SFT examples for the SFT stage: a file of instruction/response rows, or a JPO task's release split."""

from __future__ import annotations

import logging
from pathlib import Path

from prefbench.engine.config import ConfigError
from prefbench.formats.hub import is_hub_id
from prefbench.formats.records import SFTExample
from prefbench.formats.release import RELEASE_REPO, instruction_format, load_release_sft
from prefbench.formats.sft import read_sft

log = logging.getLogger("prefbench")


def load_sft_examples(data: str, task: str | None = None) -> list[SFTExample]:
    """SFT rows from a file, or — with ``task`` (tldr, hh-helpful) — from the JPO release's train split
    at ``data`` (a hub id or a local copy of the release; empty: the hub)."""
    path = Path(data) if data else None
    if task and (path is None or path.is_dir() or (not path.exists() and is_hub_id(data))):
        examples = load_release_sft(task, "train", data or RELEASE_REPO)
    elif path is None:
        raise ConfigError("no SFT data: give a file of instruction/response rows, or a task to read the JPO release")
    else:
        examples = read_sft(path, instruction_format(task))
    log.info("%d SFT examples from %s", len(examples), data or RELEASE_REPO)
    return examples
