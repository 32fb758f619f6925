"""Benchmark specs: which task, how much on-policy preference data, how to evaluate, and the
training settings every objective shares, in one YAML file per benchmark.

This module holds what a resolved spec is; :mod:`prefbench.benchmark.parse` reads and checks one,
:mod:`prefbench.benchmark.catalog` finds the shipped ones.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from prefbench.util.errors import UserError

DEFAULT_PRESET = "quick"


class BenchmarkError(UserError, ValueError):
    """A problem with a benchmark spec, located by file (and preset) and key."""


DATA_SOURCES = ("onpolicy", "release", "summarize_from_feedback", "hh-rlhf")
BASELINES = ("reference", "gold")

# Which pairs each objective trains on (TrainConfig.pair_kinds), by the span its loss scores. A response-span
# objective (DPO, IPO, SimPO, ...) compares two answers to one instruction, so a cross-instruction (joint) pair
# is outside its derivation; a joint-span one (JPO, SFT+JPO) scores instruction and answer and takes both kinds.
ARMS = {
    "matched": {"response": "conditional", "joint": "all"},       # each on what its derivation allows (JPO paper)
    "same": {"response": "all", "joint": "all"},                  # ablation: every objective on every pair
    "conditional": {"response": "conditional", "joint": "conditional"},   # ablation: conditional pairs only
    "joint-only": {"response": "conditional", "joint": "joint"},  # ablation: joint-span objectives on joint pairs
}


def arm_kinds(arm: str, span: str) -> str:
    """The pair kinds (``all``, ``conditional`` or ``joint``) an objective scoring ``span`` trains on under ``arm``."""
    return ARMS[arm][span]


@dataclass(frozen=True)
class DataSettings:
    """Where the training pairs come from.

    ``onpolicy`` (embedded tasks): sample the reference model, score with the task's own judge, pair.
    ``release``: the JPO release's conditional and/or joint rankings (``kinds``) of the task;
    ``summarize_from_feedback`` (tldr) and ``hh-rlhf`` (hh-helpful): human conditional comparisons.
    ``location`` is the hub id or a local copy (empty: the source's hub id).
    """

    source: str = "onpolicy"
    location: str = ""
    kinds: str = "both"                 # dataset sources: conditional | joint | both (the paper's setup)
    arm: str = "matched"                # which of the pairs each objective trains on (ARMS)
    max_pairs: int = 0                  # dataset sources: a seeded sample of at most this many pairs (0: all)
    train_prompts: int = 96
    samples_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    keep_truncated: bool = False        # pair samples cut at max_new_tokens too (trained without an end-of-turn)
    min_gap: float = 0.25               # minimum gold-score gap for a pair
    max_pairs_per_prompt: int = 2       # conditional pairs per prompt
    joint_pairs_per_prompt: int = 1     # cross-prompt pairs (I1,R1) > (I2,R2) per train prompt, same min_gap


@dataclass(frozen=True)
class EvalSettings:
    prompts: int = 48
    max_new_tokens: int = 48
    do_sample: bool = False
    variants: tuple[str, ...] = ("paraphrase", "typo", "case", "distractor")
    kl_samples: int = 1                 # policy samples per eval prompt for the KL estimate
    subset_prompts: int = 0             # robustness variants and KL samples on the first N eval prompts only
                                        # (0: all): the win rates, where the power is, use every prompt
    baseline: str = "reference"         # what every answer is judged against: the reference model's answer, or
                                        # the gold response of a data-backed task (the JPO paper's metric)
    location: str = ""                  # data-backed tasks: where the JPO release's test items (and SFT data) are
                                        # read (empty: data.location when data.source is release, else the hub)
    judge_prompts: str = "general"      # the template a pairwise judge renders: general, summarization, dialogue


@dataclass(frozen=True)
class SweepSettings:
    """``prefbench run --sweep``: per objective, a grid over its own hyperparameters (``grid``, objective ->
    parameter -> values; an objective not named keeps the spec's values) and the learning rate (``lr``; empty:
    the spec's), each point trained once (``seed``) and judged on ``validation_prompts`` prompts that are
    disjoint from the eval prompts. The point with the highest validation win rate trains every seed."""

    validation_prompts: int = 48
    lr: tuple[float, ...] = ()
    grid: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    seed: int = 0

    def points(self, objective: str, params: dict[str, float], lr: float) -> list[SweepPoint]:
        """Every combination of ``objective``'s grid values (over ``params``, its values elsewhere) and the
        learning rates (``lr`` when the sweep lists none), in grid order."""
        grid = self.grid.get(objective, {})
        names = list(grid)
        out = []
        for values in itertools.product(*(grid[n] for n in names)):
            for rate in self.lr or (lr,):
                out.append(SweepPoint(objective, {**params, **dict(zip(names, values))}, rate, tuple(names)))
        return out


@dataclass(frozen=True)
class SweepPoint:
    """One training run of a sweep: an objective at some hyperparameters and learning rate."""

    objective: str
    params: dict[str, float]
    lr: float
    swept: tuple[str, ...] = ()          # the parameters the grid varies (they name the point)

    @property
    def name(self) -> str:
        """Folder-safe and readable: ``beta0.03-lr0.0002``."""
        return "-".join([f"{k}{self.params[k]:g}" for k in self.swept] + [f"lr{self.lr:g}"])

    def to_json(self) -> dict[str, Any]:
        return {"objective": self.objective, "name": self.name, "params": self.params, "lr": self.lr,
                "swept": list(self.swept)}


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    task: str
    description: str
    preset: str
    data: DataSettings
    eval: EvalSettings
    train: dict[str, Any] = field(default_factory=dict)                 # TrainConfig overrides
    objective_params: dict[str, dict[str, float]] = field(default_factory=dict)
    model: str = ""                                                    # the benchmark's default model (empty: embedded)
    seeds: tuple[int, ...] = (0,)                                      # training seeds when a run names none
    sft: dict[str, Any] = field(default_factory=dict)                  # TrainConfig overrides of an SFT stage
                                                                       # (empty: none; data-backed tasks only)
    sweep: SweepSettings = field(default_factory=SweepSettings)        # used by `prefbench run --sweep`
    source: str = ""                                                   # the file it was read from

    @property
    def compute_dtype(self) -> str:
        """What every model of the benchmark computes in: the training setting, which sampling and generation
        follow (auto: bfloat16 where the hardware multiplies it natively)."""
        return self.train.get("compute_dtype", "auto")

    @property
    def prompt_format(self) -> str:
        """How every model of the benchmark reads a prompt (the training setting, which the SFT stage,
        sampling and generation follow): the chat template, or the JPO paper's plain format without one."""
        return self.train.get("prompt_format", "auto")

    @property
    def release_location(self) -> str:
        """Where the JPO release is read for eval items and SFT data (see :class:`EvalSettings`);
        empty means the hub."""
        if self.eval.location:
            return self.eval.location
        return self.data.location if self.data.source == "release" else ""

    def make_task(self):
        """The benchmark's task; a data-backed one reads its eval items from :attr:`release_location`."""
        from prefbench.tasks import get_task, is_data_backed

        return get_task(self.task, self.release_location if is_data_backed(self.task) else "")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values (for the run's config record)."""
        d = dataclasses.asdict(self)
        d["eval"]["variants"] = list(self.eval.variants)
        d["sweep"] = {"validation_prompts": self.sweep.validation_prompts, "lr": list(self.sweep.lr),
                      "grid": {o: {k: list(v) for k, v in g.items()} for o, g in self.sweep.grid.items()},
                      "seed": self.sweep.seed}
        return d
