"""The Python API: ``prefbench.run``, ``prefbench.load_results`` and ``prefbench.report``, what the ``run`` and
``report`` commands do, for notebooks and scripts, returning typed results (:mod:`prefbench.reporting.run_results`).

The modules that train, judge and draw are imported when a function is called, not with ``prefbench``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefbench.reporting.run_results import Results, results_from_json
from prefbench.util.errors import ConfigError


def run(*, objectives: Sequence[str] | str | None = None, benchmark: str = "ifeval-lite", preset: str = "quick",
        seeds: Sequence[int] | None = None, model: str | None = None, quantization: str = "4bit",
        judge: str = "gold", params: Mapping[str, Mapping[str, float]] | None = None,
        overrides: Mapping[str, Any] | None = None, arm: str | None = None, output_dir: str | Path | None = None,
        sweep: bool = False, report_to: str = "none", generator: str = "",
        generator_adapters: Mapping[str, str] | None = None, executor: str = "local",
        executor_options: Mapping[str, Any] | None = None) -> Results:
    """The whole comparison, as ``prefbench run`` does it: data, training (every objective × seed), generation,
    judging, statistics and the report, each stage skipped where the run directory already holds it.

    The options are the command's: ``objectives`` (names, or one comma-separated string; default dpo, ipo, simpo,
    jpo, sft_jpo), ``seeds`` (default: the preset's), ``model`` (default: the benchmark's, else the embedded
    SmolLM2), ``params`` for ``--param`` as ``{"dpo": {"beta": 0.2}}``, ``overrides`` for ``--set`` as
    ``{"train.max_steps": 50}`` or ``{"train": {"max_steps": 50}}``, ``arm`` for ``--arm``, ``output_dir``
    (default ``runs/<benchmark>-<preset>``), ``report_to`` for ``--report-to`` (``"tensorboard,wandb"``),
    ``generator`` and ``generator_adapters`` for ``--generator`` and ``--generator-adapters`` as
    ``{"dpo-seed0": "my-lora"}``, ``executor`` and ``executor_options`` for ``--executor`` and
    ``--executor-option`` as ``{"partition": "gpu"}``. Returns the run's results, read back from its ``results.json``."""
    from prefbench.pipeline.config import RunConfig
    from prefbench.pipeline.run import run as run_pipeline

    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    settings = _nested(overrides or {})
    if arm is not None:
        settings.setdefault("data", {})["arm"] = arm
    cfg = RunConfig(**({"objectives": list(objectives)} if objectives is not None else {}), benchmark=benchmark,
                    preset=preset, seeds=_seeds(seeds), model=model or "", quantization=quantization, judge=judge,
                    params={name: dict(values) for name, values in (params or {}).items()}, overrides=settings,
                    output_dir=str(output_dir or ""), sweep=sweep, report_to=report_to, generator=generator,
                    generator_adapters=dict(generator_adapters or {}), executor=executor,
                    executor_options={k: str(v) for k, v in (executor_options or {}).items()})
    run_pipeline(cfg)
    return load_results(cfg.output_dir)


def load_results(run_dir: str | Path) -> Results:
    """A finished run's ``results.json``, checked field by field (a damaged file fails naming the field)."""
    from prefbench.reporting.load import load_results as read_checked

    return results_from_json(read_checked(Path(run_dir)), Path(run_dir))


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`report` wrote into the run directory."""

    markdown: Path
    html: Path                     # self-contained: the plots are inlined
    leaderboard: Path              # leaderboard.csv
    plots: tuple[Path, ...]


def report(run_dir: str | Path) -> ReportFiles:
    """Render the report of a run again from its ``results.json``, as ``prefbench report`` does."""
    from prefbench.reporting.report import render_report

    markdown, html = render_report(Path(run_dir))
    return ReportFiles(markdown, html, Path(run_dir) / "leaderboard.csv",
                       tuple(sorted((Path(run_dir) / "plots").glob("*.png"))))


def _seeds(seeds: Sequence[int] | None) -> list[int]:
    """The command line's rule for ``--seeds``: distinct integers (none: the preset's)."""
    chosen = list(seeds or [])
    if any(isinstance(s, bool) or not isinstance(s, int) for s in chosen) or len(set(chosen)) != len(chosen):
        raise ConfigError(f"seeds={seeds!r}: expected distinct integers, e.g. [0, 1, 2]")
    return chosen


def _nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.max_steps": 5}`` -> ``{"train": {"max_steps": 5}}``; nested mappings are kept (and merged)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *sections, last = str(key).split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"overrides {key!r} conflicts with another override of {section!r}")
        if isinstance(value, Mapping):
            value = _nested(value)
            if isinstance(node.get(last), dict):
                value = {**node[last], **value}
        node[last] = value
    return out
