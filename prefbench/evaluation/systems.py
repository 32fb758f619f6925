"""The systems a run compares, and where each one's generations and KL samples live in the run directory.

A *system* is the reference model (the base, no adapter) or one trained adapter (``objective/seedK``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefbench.util.files import read_jsonl

REFERENCE = "reference"


@dataclass(frozen=True)
class System:
    name: str                      # "reference" or "<objective>/seed<k>"
    objective: str | None = None
    seed: int | None = None

    def adapter(self, run_dir: Path) -> Path | None:
        return None if self.objective is None else Path(run_dir) / self.name / "adapter"


def systems_for(objectives: list[str], seeds: list[int]) -> list[System]:
    return [System(REFERENCE)] + [System(f"{o}/seed{s}", o, s) for o in objectives for s in seeds]


def generations_path(run_dir: Path, system: System) -> Path:
    return Path(run_dir) / "generations" / f"{system.name}.jsonl"


def kl_path(run_dir: Path, system: System) -> Path:
    return Path(run_dir) / "kl" / f"{system.name}.jsonl"


def load_generations(run_dir: Path, system: System) -> list[dict]:
    return read_jsonl(generations_path(run_dir, system))
