"""What a ``prefbench run`` is: its configuration, resolved against the benchmark spec before any work
starts, recorded in the run directory (``config.yaml``), and turned into each stage's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefbench.benchmark import BenchmarkSpec, load_benchmark
from prefbench.benchmark.spec import arm_kinds
from prefbench.data.stage import LISTS
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.models import EMBEDDED
from prefbench.engine.sft import merged_model_dir
from prefbench.engine.tracking import parse_report_to
from prefbench.evaluation.served import ServedGenerator
from prefbench.judges import make_judge
from prefbench.judges.templates import get_judge_prompts
from prefbench.registry import get_objective
from prefbench.tasks import TaskPrompt
from prefbench.util.files import atomic_write_text
from prefbench.util.runs import SameRunError, check_same_run
from prefbench.util.settings import dump_yaml, read_yaml

DEFAULT_OBJECTIVES = ("dpo", "ipo", "simpo", "jpo", "sft_jpo")


@dataclass
class RunConfig:
    objectives: list[str] = field(default_factory=lambda: list(DEFAULT_OBJECTIVES))
    benchmark: str = "ifeval-lite"     # a shipped benchmark name or a spec YAML path
    preset: str = "quick"              # smoke | quick | full (defined per benchmark)
    seeds: list[int] = field(default_factory=list)   # empty: the preset's seeds
    model: str = ""                    # default: the benchmark's model, else the embedded SmolLM2
    quantization: str = "4bit"
    judge: str = "gold"                # gold | reward-model:PATH | local:PATH | openai:MODEL@URL
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # per-objective overrides of the preset
    overrides: dict = field(default_factory=dict)  # benchmark settings over the preset (--set data.location=...)
    output_dir: str = ""               # default runs/<benchmark>-<preset>
    sweep: bool = False                # tune each objective on validation prompts first (the spec's sweep section)
    report_to: str = "none"            # trackers every training also logs to: none | tensorboard,wandb,mlflow
    generator: str = ""                # openai:MODEL@URL: a server writes the eval answers (evaluation/served.py)
    generator_adapters: dict[str, str] = field(default_factory=dict)  # <objective>-seed<k> -> the served name
    executor: str = "local"            # where the training jobs run: local | ray | slurm (pipeline/executors.py)
    executor_options: dict[str, str] = field(default_factory=dict)   # --executor-option KEY=VALUE

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ConfigError("no objectives given; name them with --objectives, e.g. dpo,jpo")
        self.objectives = [get_objective(o).name for o in self.objectives]  # canonical names; unknown -> did-you-mean
        for name in self.params:
            if get_objective(name).name not in self.objectives:
                raise ConfigError(f"--param for '{name}', which is not among the objectives {self.objectives}")
        self.params = {get_objective(k).name: v for k, v in self.params.items()}
        if not self.output_dir:
            self.output_dir = f"runs/{Path(self.benchmark).stem}-{self.preset}"
        parse_report_to(self.report_to)
        if self.generator_adapters and not self.generator:
            raise ConfigError("--generator-adapters names the adapters a server serves; give the server with "
                              "--generator openai:MODEL@BASE_URL")


def resolve(cfg: RunConfig) -> tuple[BenchmarkSpec, dict[str, dict[str, float]]]:
    """The benchmark spec for the preset, and every objective's hyperparameters (preset, then overrides),
    validated before any work starts. Fills in ``cfg.model`` when it was left to the benchmark."""
    spec = load_benchmark(cfg.benchmark, cfg.preset, cfg.overrides)
    cfg.model = cfg.model or spec.model or EMBEDDED
    cfg.seeds = list(cfg.seeds or spec.seeds)
    params = {}
    for name in cfg.objectives:
        swept = sorted(set(cfg.params.get(name, {})) & set(spec.sweep.grid.get(name, {}))) if cfg.sweep else []
        if swept:
            raise ConfigError(f"--param {name}.{swept[0]}: --sweep chooses {name}'s {swept[0]} from the grid "
                              f"{list(spec.sweep.grid[name][swept[0]])}; set the grid instead "
                              f"(--set sweep.grid.{name}.{swept[0]}=[...])")
        chosen = {**spec.objective_params.get(name, {}), **cfg.params.get(name, {})}
        get_objective(name).resolve_params(**chosen)
        params[name] = chosen
    return spec, params


def _identity(cfg: RunConfig, spec: BenchmarkSpec) -> dict:
    """What fixes the numbers of a run. Objectives and seeds may be added to an existing run (each
    training folder checks its own config); everything shared must match."""
    # where the YAML sits does not change numbers; the seeds trained are the run's own (they may be added); the
    # sweep section only matters to a swept run, and a swept run's objectives train at other settings
    skip = ("source", "seeds") if cfg.sweep else ("source", "seeds", "sweep")
    bench = {k: v for k, v in spec.to_dict().items() if k not in skip}
    return {"benchmark": bench, "preset": cfg.preset, "model": cfg.model, "quantization": cfg.quantization,
            "judge": cfg.judge, **({"sweep": True} if cfg.sweep else {}),
            **({"generator": cfg.generator} if cfg.generator else {})}


def write_config(cfg: RunConfig, spec: BenchmarkSpec, params: dict, run_dir: Path) -> None:
    """``config.yaml``: a run directory holding another configuration is refused; objectives, seeds and
    their parameters accumulate, so the file describes everything in the folder."""
    path = run_dir / "config.yaml"
    ident = _identity(cfg, spec)
    objectives, seeds = cfg.objectives, cfg.seeds
    if path.exists():
        previous = read_yaml(path)
        if not isinstance(previous, dict):
            raise ConfigError(f"{path}: expected the mapping prefbench run writes, got {type(previous).__name__}; "
                              "restore it or use another --output-dir")
        # a served run's record names its generator: resumed without it, the rest would be generated locally
        compared = [*ident, *(["generator"] if "generator" in previous else [])]
        check_same_run(run_dir, {k: previous.get(k) for k in compared}, ident, "--output-dir")
        if cfg.sweep and set(previous.get("objectives", [])) != set(cfg.objectives):
            # the sweep's frontiers and matched-KL comparison are over the objectives swept together
            raise SameRunError(f"{run_dir} holds a sweep of {', '.join(previous['objectives'])}; run --sweep there "
                               f"with exactly those objectives, or use another --output-dir")
        objectives = list(dict.fromkeys(previous.get("objectives", []) + cfg.objectives))
        seeds = sorted(set(previous.get("seeds", []) + cfg.seeds))
        params = {**previous.get("objective_params", {}), **params}
    resolved = {**ident, "objectives": objectives, "seeds": seeds, "objective_params": params}
    atomic_write_text(path, dump_yaml(resolved))


def make_run_generator(cfg: RunConfig) -> ServedGenerator | None:
    """The server that writes the run's eval answers (``--generator``), or None: the local model does."""
    return ServedGenerator(cfg.generator, cfg.generator_adapters) if cfg.generator else None


def make_run_judge(judge_spec: str, task, judge_prompts: str):
    """The run's judge; a pairwise one renders the benchmark's conditional template (pointwise ones
    render no prompt)."""
    pointwise = judge_spec.strip().partition(":")[0] in ("gold", "reward-model")
    return make_judge(judge_spec, task=task, template=None if pointwise else get_judge_prompts(judge_prompts).conditional)


def eval_prompts(spec: BenchmarkSpec, seed: int = 0) -> list[TaskPrompt]:
    """The benchmark's eval prompts, each of the first ``eval.subset_prompts`` (all by default) followed by its
    robustness variants."""
    task = spec.make_task()
    out = []
    subset = spec.eval.subset_prompts or spec.eval.prompts
    for i, p in enumerate(task.prompts("eval", spec.eval.prompts, seed)):
        out.append(p)
        out += [v for v in task.variants(p, seed) if v.variant in spec.eval.variants] if i < subset else []
    return out


def sft_config(cfg: RunConfig, spec: BenchmarkSpec, run_dir: Path) -> TrainConfig:
    """The SFT stage: the release's SFT split of the task, on the run's base model."""
    return TrainConfig.from_dict({**spec.sft, "prompt_format": spec.prompt_format, "data": spec.release_location,
                                  "objective": "sft", "model": cfg.model,
                                  "quantization": cfg.quantization, "seed": 0, "output_dir": str(run_dir / "sft"),
                                  **tracking(cfg, run_dir, "sft")},
                                 f"benchmark {spec.name} (sft)")


def tracking(cfg: RunConfig, run_dir: Path, name: str) -> dict[str, str]:
    """The tracker settings of the run's training called ``name``: every training of a run is one tracker run,
    grouped under the run directory's name, TensorBoard's in <run_dir>/tensorboard/<name>."""
    return {"report_to": cfg.report_to, "tracker_run": name, "tracker_group": Path(run_dir).resolve().name,
            "tracker_dir": str(Path(run_dir) / "tensorboard")}


def start_model(cfg: RunConfig, spec: BenchmarkSpec, run_dir: Path) -> str:
    """The model every objective starts from (and the reference): the SFT stage's output when the
    benchmark has one, else the base model."""
    return str(merged_model_dir(run_dir / "sft")) if spec.sft else cfg.model


def train_config(cfg: RunConfig, spec: BenchmarkSpec, params: dict, objective: str, seed: int, run_dir: Path,
                 lr: float | None = None) -> TrainConfig:
    """One objective's training at one seed (``lr``: a sweep's learning rate instead of the spec's)."""
    kinds = arm_kinds(spec.data.arm, get_objective(objective).span)
    rate = {"lr": lr} if lr is not None else {}
    # a listwise objective trains on each prompt's scored samples (the data stage's lists), else on conditional
    # pairs as lists of two
    listwise = get_objective(objective).data == "listwise" and spec.data.source == "onpolicy"
    data = Path(run_dir) / "data" / (LISTS if listwise else "train.jsonl")
    return TrainConfig.from_dict({**spec.train, **rate, "data": str(data),
                                  "pair_kinds": kinds,
                                  "objective": objective,
                                  "objective_params": params[objective], "model": start_model(cfg, spec, run_dir),
                                  "quantization": cfg.quantization, "seed": seed,
                                  "output_dir": str(Path(run_dir) / objective / f"seed{seed}"),
                                  **tracking(cfg, run_dir, f"{objective}-seed{seed}")}, f"benchmark {spec.name}")
