"""Reading a benchmark spec: a spec's ``presets`` (``smoke``, ``quick``, ``full``, ...) are
deep-merged over its top-level sections (mappings merge key by key, anything else is replaced), then
``--set`` overrides. ``quick`` always exists, meaning "the sections as written". Unknown keys anywhere
are errors with a did-you-mean, ``train`` keys are checked against
:class:`prefbench.engine.config.TrainConfig` (values too), ``objective_params`` against each
objective's declared hyperparameters, and a data source, baseline or variant the task cannot provide
is refused.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from prefbench.benchmark.spec import (
    ARMS,
    BASELINES,
    DATA_SOURCES,
    DEFAULT_PRESET,
    BenchmarkError,
    BenchmarkSpec,
    DataSettings,
    EvalSettings,
    SweepSettings,
)
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.formats.release import KIND_CHOICES
from prefbench.judges.templates import JUDGE_PROMPTS
from prefbench.registry import ObjectiveError, get_objective
from prefbench.tasks import get_task, is_data_backed, list_tasks
from prefbench.tasks.base import VARIANT_KINDS
from prefbench.util.names import suggest
from prefbench.util.settings import is_number, quoted_number_hint, typed

# Set per run by the benchmark itself (the generated data, each objective in turn), never shared.
_RUN_OWNED_TRAIN_KEYS = {"data": "the benchmark builds the data", "objective": "objectives are chosen per run",
                         "objective_params": "use the top-level objective_params section",
                         **dict.fromkeys(("init_adapter", "extrapolation", "extrapolate_from"),
                                         "an iterative objective's rounds set it per round")}

_TOP_KEYS = ("name", "task", "description", "model", "seeds", "sft", "data", "eval", "train", "objective_params",
             "sweep", "presets")
_OVERRIDABLE = [k for k in _TOP_KEYS if k not in ("name", "task", "presets")]   # by presets and --set
# the dataset a human-comparison source holds, and the one kind of pair it has
_SOURCE_TASK = {"summarize_from_feedback": "tldr", "hh-rlhf": "hh-helpful"}


def _check_keys(values: dict, allowed, where: str) -> None:
    for key in values:
        if key not in allowed:
            raise BenchmarkError(f"{where}: unknown key '{key}'{suggest(str(key), allowed)}; "
                                 f"allowed: {', '.join(allowed)}")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: nested mappings merge, everything else replaces. Inputs untouched."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _typed(value: Any, default: Any, where: str) -> Any:
    """``value`` as the type of the field's default, by the rule every setting follows."""
    return typed(value, default, where, BenchmarkError)


def _section(cls, values: Any, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise BenchmarkError(f"{where}: expected a mapping, got {values!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(values, names, where)
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BenchmarkError(f"{where}.{key}: expected a list of names, got {value!r}")
            value = tuple(value)
        else:
            value = _typed(value, default, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _validate_data(d: DataSettings, where: str) -> None:
    for key in ("train_prompts", "samples_per_prompt", "max_new_tokens"):
        if getattr(d, key) < 1:
            raise BenchmarkError(f"{where}.{key} must be >= 1, got {getattr(d, key)}")
    if d.samples_per_prompt < 2:
        raise BenchmarkError(f"{where}.samples_per_prompt must be >= 2 to form pairs, got {d.samples_per_prompt}")
    if not d.temperature > 0:
        raise BenchmarkError(f"{where}.temperature must be > 0, got {d.temperature}")
    if not 0 < d.top_p <= 1:
        raise BenchmarkError(f"{where}.top_p must be in (0, 1], got {d.top_p}")
    if not 0 <= d.min_gap < 1:
        raise BenchmarkError(f"{where}.min_gap must be in [0, 1), got {d.min_gap}")
    for key in ("max_pairs_per_prompt", "joint_pairs_per_prompt", "max_pairs"):
        if getattr(d, key) < 0:
            raise BenchmarkError(f"{where}.{key} must be >= 0, got {getattr(d, key)}")
    _choice(d.source, DATA_SOURCES, f"{where}.source")
    _choice(d.kinds, KIND_CHOICES, f"{where}.kinds")
    _choice(d.arm, tuple(ARMS), f"{where}.arm")


def _choice(value: str, choices, where: str) -> None:
    if value not in choices:
        raise BenchmarkError(f"{where}: unknown value '{value}'{suggest(value, choices)}; choose one of "
                             f"{', '.join(choices)}")


def _validate_task_fit(task: str, d: DataSettings, e: EvalSettings, where: str) -> None:
    """The data source, baseline and variants must be ones the task can provide."""
    backed = is_data_backed(task)
    if d.source == "onpolicy" and backed:
        raise BenchmarkError(f"{where}: data.source: task '{task}' has no scorer to rank on-policy samples; use "
                             f"release{' or ' + next(k for k, v in _SOURCE_TASK.items() if v == task)}")
    if d.source == "release" and not backed:
        raise BenchmarkError(f"{where}: data.source: the JPO release has no data for task '{task}' (it has tldr "
                             "and hh-helpful); embedded tasks use onpolicy")
    if d.source in _SOURCE_TASK:
        if _SOURCE_TASK[d.source] != task:
            raise BenchmarkError(f"{where}: data.source: {d.source} holds {_SOURCE_TASK[d.source]} data, "
                                 f"not {task}")
        if d.kinds != "conditional":
            raise BenchmarkError(f"{where}: data.kinds: {d.source} holds conditional comparisons only; set "
                                 "kinds: conditional (joint pairs come from the release or prefbench acquire)")
    if e.baseline == "gold" and not backed:
        raise BenchmarkError(f"{where}: eval.baseline: task '{task}' has no gold responses; use reference")
    supported = getattr(get_task(task), "variant_kinds", VARIANT_KINDS[1:])
    for v in e.variants:
        if v not in supported:
            raise BenchmarkError(f"{where}: eval.variants: task '{task}' has no '{v}' variant; it has "
                                 f"{', '.join(supported)}")


def _validate_eval(e: EvalSettings, where: str) -> None:
    for key in ("prompts", "max_new_tokens"):
        if getattr(e, key) < 1:
            raise BenchmarkError(f"{where}.{key} must be >= 1, got {getattr(e, key)}")
    for key in ("kl_samples", "subset_prompts"):
        if getattr(e, key) < 0:
            raise BenchmarkError(f"{where}.{key} must be >= 0, got {getattr(e, key)}")
    kinds = VARIANT_KINDS[1:]
    for v in e.variants:
        if v not in kinds:
            raise BenchmarkError(f"{where}.variants: unknown variant '{v}'{suggest(v, kinds)}; "
                                 f"known: {', '.join(kinds)}")
    _choice(e.baseline, BASELINES, f"{where}.baseline")
    _choice(e.judge_prompts, tuple(JUDGE_PROMPTS), f"{where}.judge_prompts")


def _validate_train(train: Any, where: str) -> dict[str, Any]:
    if train is None:
        return {}
    if not isinstance(train, dict):
        raise BenchmarkError(f"{where}: expected a mapping of TrainConfig fields, got {train!r}")
    for key, why in _RUN_OWNED_TRAIN_KEYS.items():
        if key in train:
            raise BenchmarkError(f"{where}: '{key}' cannot be set here ({why})")
    defaults = TrainConfig()
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in train:
        if key not in names:
            raise BenchmarkError(f"{where}: unknown TrainConfig field '{key}'{suggest(str(key), names)}")
    typed = {key: _typed(value, getattr(defaults, key), f"{where}.{key}") for key, value in train.items()}
    try:
        TrainConfig(**typed)   # value checks (ranges, divisibility) exactly as a run would apply them
    except ConfigError as exc:
        raise BenchmarkError(f"{where}: {exc}") from None
    return typed


def _validate_sft(sft: Any, task: str, where: str) -> dict[str, Any]:
    """An SFT stage's settings (TrainConfig fields); it trains on the release's SFT split of the task."""
    settings = _validate_train(sft, where)
    if settings and not is_data_backed(task):
        raise BenchmarkError(f"{where}: task '{task}' has no SFT data (only tldr and hh-helpful do); remove the "
                             "sft section")
    return settings


def _validate_objective_params(params: Any, where: str) -> dict[str, dict[str, float]]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BenchmarkError(f"{where}: expected a mapping objective -> {{param: value}}, got {params!r}")
    out = {}
    for name, values in params.items():
        if not isinstance(values, dict):
            raise BenchmarkError(f"{where}.{name}: expected a mapping of hyperparameters, got {values!r}")
        try:
            objective = get_objective(str(name))
            objective.resolve_params(**{str(k): v for k, v in values.items()})   # a YAML key may be a number
        except ObjectiveError as exc:
            raise BenchmarkError(f"{where}.{name}: {exc}") from None
        out[objective.name] = dict(values)   # keyed by the canonical name, so an alias still applies
    return out


def _number_list(value: Any, where: str, positive: bool = False) -> tuple[float, ...]:
    if not isinstance(value, list) or not value or not all(is_number(v) for v in value):
        raise BenchmarkError(f"{where}: expected a non-empty list of numbers, got {value!r}"
                             f"{quoted_number_hint(value)}")
    if positive and not all(v > 0 for v in value):
        raise BenchmarkError(f"{where}: every value must be > 0, got {value!r}")
    if len({f"{v:g}" for v in value}) != len(value):   # they name the sweep's points (and folders)
        raise BenchmarkError(f"{where}: values repeat (to 6 significant digits): {value!r}")
    return tuple(float(v) for v in value)


def _validate_sweep(values: Any, where: str) -> SweepSettings:
    """The sweep section: ``grid`` values are checked against each objective's declared ranges."""
    if values is None:
        return SweepSettings()
    if not isinstance(values, dict):
        raise BenchmarkError(f"{where}: expected a mapping (validation_prompts, lr, grid, seed), got {values!r}")
    names = [f.name for f in dataclasses.fields(SweepSettings)]
    _check_keys(values, names, where)
    defaults = SweepSettings()
    prompts = _typed(values.get("validation_prompts", defaults.validation_prompts), 0, f"{where}.validation_prompts")
    if prompts < 2:
        raise BenchmarkError(f"{where}.validation_prompts must be >= 2, got {prompts}")
    seed = _typed(values.get("seed", defaults.seed), 0, f"{where}.seed")
    # no list (or an empty one): the spec's own learning rate
    lr = _number_list(values["lr"], f"{where}.lr", positive=True) if values.get("lr") not in (None, []) else ()
    grid_in = values.get("grid") or {}
    if not isinstance(grid_in, dict):
        raise BenchmarkError(f"{where}.grid: expected a mapping objective -> {{param: [values]}}, got {grid_in!r}")
    grid = {}
    for name, params in grid_in.items():
        at = f"{where}.grid.{name}"
        try:
            objective = get_objective(str(name))
        except ObjectiveError as exc:
            raise BenchmarkError(f"{at}: {exc}") from None
        if not isinstance(params, dict) or not params:
            raise BenchmarkError(f"{at}: expected a mapping of hyperparameter -> [values], got {params!r}")
        _check_keys(params, list(objective.params), at)
        grid[objective.name] = {}
        for param, listed in params.items():
            numbers = _number_list(listed, f"{at}.{param}")
            for v in numbers:
                try:
                    objective.params[param].check(objective.name, param, v)
                except ObjectiveError as exc:
                    raise BenchmarkError(f"{at}: {exc}") from None
            grid[objective.name][param] = numbers
    return SweepSettings(validation_prompts=prompts, lr=lr, grid=grid, seed=seed)


def parse_spec(doc: Any, source: str, preset: str = DEFAULT_PRESET, overrides: dict[str, Any] | None = None
               ) -> BenchmarkSpec:
    """A validated spec from a parsed YAML document with ``preset`` applied, then ``overrides``
    (nested mappings, e.g. from ``--set data.location=...``)."""
    if not isinstance(doc, dict):
        raise BenchmarkError(f"{source}: expected a mapping with name, task, data, eval, train, ...")
    _check_keys(doc, _TOP_KEYS, source)
    listed = doc.get("presets") or {}
    if not isinstance(listed, dict) or not all(isinstance(k, str) for k in listed):
        raise BenchmarkError(f"{source}: presets: expected a mapping of preset name -> overrides, got {listed!r}")
    presets = {DEFAULT_PRESET: {}, **listed}
    if preset not in presets:
        raise BenchmarkError(f"{source}: unknown preset '{preset}'{suggest(preset, presets)}; "
                             f"presets: {', '.join(presets)}")
    chosen = presets[preset] or {}
    where = f"{source} (preset '{preset}')"
    if not isinstance(chosen, dict):
        raise BenchmarkError(f"{where}: expected a mapping of overrides, got {chosen!r}")
    _check_keys(chosen, _OVERRIDABLE, where)
    merged = deep_merge({k: v for k, v in doc.items() if k != "presets"}, chosen)
    if overrides:
        where += " with --set " + ", ".join(_dotted(overrides))
        _check_keys(overrides, _OVERRIDABLE, where)
        merged = deep_merge(merged, overrides)
    for key in ("name", "task"):
        if not isinstance(merged.get(key), str) or not merged[key].strip():
            raise BenchmarkError(f"{source}: '{key}' is required (a non-empty string)")
    if merged["task"] not in list_tasks():
        raise BenchmarkError(f"{source}: task: unknown task '{merged['task']}'{suggest(merged['task'], list_tasks())}; "
                             f"known: {', '.join(list_tasks())}")
    data = _section(DataSettings, merged.get("data"), f"{where}: data")
    _validate_data(data, f"{where}: data")
    evaluation = _section(EvalSettings, merged.get("eval"), f"{where}: eval")
    _validate_eval(evaluation, f"{where}: eval")
    _validate_task_fit(merged["task"], data, evaluation, where)
    model = merged.get("model") or ""
    if not isinstance(model, str):
        raise BenchmarkError(f"{where}: model: expected a hub id or a path, got {model!r}")
    seeds = merged.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool)
                                                           for x in seeds) or len(set(seeds)) != len(seeds):
        raise BenchmarkError(f"{where}: seeds: expected a list of distinct integers (training seeds), got {seeds!r}")
    return BenchmarkSpec(
        name=merged["name"],
        task=merged["task"],
        description=str(merged.get("description") or ""),
        preset=preset,
        data=data,
        eval=evaluation,
        train=_validate_train(merged.get("train"), f"{where}: train"),
        objective_params=_validate_objective_params(merged.get("objective_params"), f"{where}: objective_params"),
        model=model,
        seeds=tuple(seeds),
        sft=_validate_sft(merged.get("sft"), merged["task"], f"{where}: sft"),
        sweep=_validate_sweep(merged.get("sweep"), f"{where}: sweep"),
        source=source,
    )


def _dotted(tree: dict[str, Any], prefix: str = "") -> list[str]:
    return [line for k, v in tree.items()
            for line in (_dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={v}"])]
