"""One training configuration, loadable from YAML and overridable from the command line.

Unknown keys are errors (with a did-you-mean), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefbench.engine.formatting import PROMPT_FORMATS
from prefbench.engine.models import EMBEDDED
from prefbench.engine.tracking import parse_report_to
from prefbench.registry import get_objective
from prefbench.util.errors import ConfigError, UserError
from prefbench.util.files import atomic_write_text
from prefbench.util.names import suggest
from prefbench.util.runs import check_same_run
from prefbench.util.settings import dump_yaml, read_yaml, typed


class TrainingError(UserError, RuntimeError):
    """Training cannot go on for a reason the user can change (data longer than max_length, a
    loss or gradient that is no longer finite)."""


COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
PAIR_KINDS = ("all", "conditional", "joint")


@dataclass
class TrainConfig:
    """Everything that defines a training run; identical across objectives except ``objective``/``objective_params``."""

    data: str = ""                       # preference file (.jsonl/.json/.parquet) or datasets name
    split: str = "train"
    pair_kinds: str = "all"              # which pairs of the data to train on: all | conditional | joint
    objective: str = "dpo"
    objective_params: dict[str, float] = field(default_factory=dict)
    model: str = EMBEDDED                # hub id, local folder, or the embedded SmolLM2
    quantization: str = "4bit"           # "4bit" (QLoRA, NF4) or "none" (plain LoRA)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0           # LoRA dropout costs a third of a step on a CPU (docs/performance.md)
    max_length: int = 512                # tokens per formatted instruction+response; longer ones are truncated and counted
    batch_size: int = 8                  # pairs per optimizer step (examples, lists: for unpaired, listwise objectives)
    grad_accum: int = 1                  # micro-batches per step (batch_size must divide evenly)
    max_steps: int = 40
    lr: float = 1e-4
    warmup_steps: int = 4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False  # recompute layer activations in backward: far less memory, ~1/3 more time
    compute_dtype: str = "auto"          # auto (bfloat16 where the hardware has it, else float32) | float32 | bfloat16
    prompt_format: str = "auto"          # auto (the model's chat template, the paper's plain format without one) | chat | plain
    share_prefixes: bool = True          # a conditional pair's instruction goes through the model once
    max_forward_tokens: int = 1024       # a micro-batch runs in forwards of at most this many tokens (0: one forward):
                                         # activation memory grows with it; the gradient is the same
    init_adapter: str = ""               # a PEFT adapter folder the policy starts from (and the reference is), e.g. an
                                         # iterative run's previous round; "" = a fresh LoRA on the base model
    extrapolation: float = 0.0           # APO's α: the reference is log π_init + α (log π_init − log π_previous) ...
    extrapolate_from: str = ""           # ... π_previous being this adapter's policy ("" = the base model)
    seed: int = 0
    save_every: int = 10                 # checkpoint interval in steps (a killed run resumes from the last one)
    report_to: str = "none"              # trackers that also get every step's metrics (engine/tracking.py): none,
                                         # or tensorboard, wandb, mlflow, comma-separated; metrics.jsonl is the record
    tracker_run: str = ""                # the tracker run's name ("" = <objective>-seed<seed>)
    tracker_group: str = ""              # what it is grouped under: wandb's group, mlflow's experiment ("" = prefbench)
    tracker_dir: str = ""                # TensorBoard writes to <tracker_dir>/<tracker_run> ("" = <output_dir>/
                                         # tensorboard)
    output_dir: str = "runs/train"

    def __post_init__(self) -> None:
        if self.quantization not in ("4bit", "none"):
            raise ConfigError(f"quantization must be '4bit' or 'none', got {self.quantization!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {self.compute_dtype!r}"
                              f"{suggest(str(self.compute_dtype), COMPUTE_DTYPES)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}"
                              f"{suggest(str(self.prompt_format), PROMPT_FORMATS)}")
        if self.pair_kinds not in PAIR_KINDS:
            raise ConfigError(f"pair_kinds must be one of {', '.join(PAIR_KINDS)}, got {self.pair_kinds!r}"
                              f"{suggest(str(self.pair_kinds), PAIR_KINDS)}")
        for name in ("batch_size", "grad_accum", "max_steps", "lora_r", "max_length", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum})")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.extrapolation < float("inf"):
            raise ConfigError(f"extrapolation must be a finite number >= 0, got {self.extrapolation}")
        if (self.extrapolation or self.extrapolate_from) and not self.init_adapter:
            raise ConfigError("extrapolation and extrapolate_from move the reference away from the starting policy: "
                              "set init_adapter too")
        parse_report_to(self.report_to)
        if not all(isinstance(k, str) for k in self.objective_params):
            raise ConfigError(f"objective_params: expected parameter names, got {list(self.objective_params)}")
        # the objective and its hyperparameters are checked here, so a mistake fails before data or a model is read
        objective = get_objective(self.objective)
        params = objective.resolve_params(**self.objective_params)
        if objective.reference_update:
            from prefbench.engine.reference_update import check_update_params  # (it imports what imports this)

            check_update_params(objective, params)

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that define the numbers a run produces (not where it writes, how often it saves or which
        trackers also get its metrics)."""
        d = self.to_dict()
        for key in ("output_dir", "save_every", "report_to", "tracker_run", "tracker_group", "tracker_dir"):
            d.pop(key)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Settings from a file or the command line (``source`` names it in errors), each of its field's type
        (see :func:`prefbench.util.settings.typed`), then checked as a whole."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"{source}: unknown key '{key}'{suggest(str(key), names)}")
        defaults = cls()
        checked = {key: typed(value, getattr(defaults, key), f"{source}: {key}") for key, value in values.items()}
        try:
            return cls(**checked)
        except UserError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        values = read_yaml(path)
        if values is None:   # an empty file: every default
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
        return cls.from_dict(values, str(path))

    def save_yaml(self, path: Path) -> None:
        atomic_write_text(path, dump_yaml(self.to_dict()))

    def check_output_dir(self) -> None:
        """Refuse an ``output_dir`` that holds a run of other settings (it would mix two runs)."""
        saved = Path(self.output_dir) / "config.yaml"
        if saved.exists():
            check_same_run(Path(self.output_dir), TrainConfig.from_yaml(saved).identity(), self.identity(),
                           "output_dir")


def parse_param(text: str) -> tuple[str, float]:
    """``beta=0.2`` -> ("beta", 0.2)."""
    key, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return key.strip(), float(value)
    except ValueError:
        raise ConfigError(f"objective parameter must look like name=number, got {text!r}") from None
