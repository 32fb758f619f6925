"""The ``prefbench`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefbench.config import ConfigError
from prefbench.data import DataError
from prefbench.objective import ObjectiveError, list_objectives, parse_objective_list
from prefbench.train import TrainingError


def _objectives_table() -> str:
    rows = [("name", "span", "reference", "log-probs", "+NLL", "defaults", "source")]
    for obj in list_objectives():
        defaults = ", ".join(f"{k}={v:g}" for k, v in obj.defaults.items()) or "-"
        rows.append((obj.name, obj.span, "yes" if obj.needs_reference else "no", obj.logps,
                     "yes" if obj.adds_nll else "no", defaults, obj.source))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_objectives(args: argparse.Namespace) -> int:
    if args.verbose:
        for obj in list_objectives():
            print(f"== {obj.name} ({obj.paper})\n{(obj.fn.__doc__ or '').strip()}\n")
    print(_objectives_table())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from prefbench.demo import run_demo

    objectives = parse_objective_list(args.objectives)
    run_demo(objectives, steps=args.steps, seed=args.seed)
    return 0


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One --flag per scalar TrainConfig field (default None = keep the YAML/default value)."""
    import dataclasses

    from prefbench.config import TrainConfig

    p.add_argument("--config", help="YAML file of settings (unknown keys are errors)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "objective_params":
            continue
        kind = type(f.default)
        flag = f"--{f.name.replace('_', '-')}"
        if kind is bool:  # --gradient-checkpointing / --no-gradient-checkpointing
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, dest=f.name, type=kind, default=None, metavar=kind.__name__.upper())
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="objective hyperparameter, e.g. --param beta=0.2 (repeatable)")


def _config_from_args(args: argparse.Namespace):
    import dataclasses

    from prefbench.config import TrainConfig, parse_param

    values = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    if args.param:
        values["objective_params"] = {**values.get("objective_params", {}), **dict(map(parse_param, args.param))}
    return TrainConfig.from_dict(values)


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from prefbench.train import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = train(_config_from_args(args))
    print(f"adapter: {out / 'adapter'}\nmetrics: {out / 'metrics.jsonl'}")
    return 0


def _objective_param(text: str) -> tuple[str, str, float]:
    """``dpo.beta=0.2`` -> ("dpo", "beta", 0.2)."""
    from prefbench.config import parse_param

    name, value = parse_param(text)
    objective, dot, param = name.partition(".")
    if not dot or not objective or not param:
        raise ConfigError(f"--param for prefbench run must look like objective.name=number (e.g. dpo.beta=0.2), got {text!r}")
    return objective, param, value


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")


def cmd_run(args: argparse.Namespace) -> int:
    from prefbench.run import RunConfig, run, summary_table

    _logging()
    params: dict[str, dict[str, float]] = {}
    for text in args.param:
        objective, name, value = _objective_param(text)
        params.setdefault(objective, {})[name] = value
    from prefbench.benchmark_spec import parse_set

    cfg = RunConfig(objectives=[o for o in args.objectives.split(",") if o.strip()], benchmark=args.benchmark,
                    preset=args.preset, seeds=[int(s) for s in args.seeds.split(",")], model=args.model or "",
                    quantization=args.quantization, judge=args.judge, params=params,
                    overrides=parse_set(args.set), output_dir=args.output_dir or "")
    results = run(cfg)
    print("\n" + summary_table(results))
    print(f"\nreport: {cfg.output_dir}/report.html (and report.md, results.json, leaderboard.csv)")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from prefbench.benchmark_spec import benchmarks_table

    print(benchmarks_table())
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from prefbench.benchmark_spec import load_benchmark, parse_set
    from prefbench.data_stage import build_run_data, describe
    from prefbench.models import EMBEDDED

    _logging()
    spec = load_benchmark(args.benchmark, args.preset, parse_set(args.set))
    out = Path(args.output or f"runs/data/{spec.name}-{args.preset}-seed{args.seed}")
    s = build_run_data(spec, args.model or spec.model or EMBEDDED, args.quantization, args.seed, out)
    print(f"{describe(s)}\npairs: {out / 'train.jsonl'}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    import dataclasses

    from prefbench.sft import sft

    _logging()
    cfg = _config_from_args(args)
    if args.objective not in (None, "sft"):
        raise ConfigError(f"prefbench sft trains objective 'sft'; use prefbench train for {args.objective!r}")
    cfg = dataclasses.replace(cfg, objective="sft", output_dir=args.output_dir or "runs/sft")
    if not cfg.data and not args.task:
        raise ConfigError("no SFT data: pass --data FILE (instruction/response rows) or --task tldr|hh-helpful "
                          "to read the JPO release (--data then names a local copy of it)")
    model = sft(cfg, args.task)
    print(f"SFT model: {model}\nuse it with: prefbench run --model {model} ...")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Re-judge an existing run (e.g. with another judge) and recompute its statistics."""
    import yaml

    from prefbench.artifacts import read_jsonl
    from prefbench.evaluate import evaluate, judge_info
    from prefbench.generate_stage import systems_for
    from prefbench.run import make_run_judge, summary_table
    from prefbench.sft import merged_model_dir
    from prefbench.tasks import TaskPrompt, get_task

    _logging()
    run_dir = Path(args.run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise ConfigError(f"{config_path}: not found; is {run_dir} a prefbench run directory?")
    config = yaml.safe_load(config_path.read_text())
    bench = config["benchmark"]
    evaluation = bench.get("eval", {})
    task = get_task(bench["task"])  # the eval items are read from data/eval.jsonl, not from the task
    judge = make_run_judge(args.judge or config["judge"], task, evaluation.get("judge_prompts", "general"))
    prompts = [TaskPrompt.from_json(r) for r in read_jsonl(run_dir / "data" / "eval.jsonl")]
    meta = {"benchmark": bench["name"], "preset": config["preset"], "model": config["model"],
            "params": config["objective_params"], "judge": judge_info(judge),
            **({"start_model": str(merged_model_dir(run_dir / "sft"))} if bench.get("sft") else {})}
    results = evaluate(run_dir, systems_for(config["objectives"], config["seeds"]), prompts, judge, meta,
                       evaluation.get("baseline", "reference"))
    print(summary_table(results))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from prefbench.report import render_report

    md, html = render_report(Path(args.run_dir))
    print(f"{md}\n{html}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from prefbench.report import compare_runs

    md, html = compare_runs([Path(d) for d in args.run_dirs], Path(args.output))
    print(f"{md}\n{html}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("objectives", help="list registered objectives with their span, reference use and defaults")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each objective's formula and notes")
    p.set_defaults(func=cmd_objectives)

    p = sub.add_parser("demo", help="a few LoRA steps of each objective on the embedded model and a built-in batch")
    p.add_argument("--objectives", default="dpo,ipo,simpo,jpo,sft_jpo")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one objective with (Q)LoRA on a preference file or dataset")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sft", help="supervised fine-tuning with (Q)LoRA, then base + adapter merged into "
                                   "<output-dir>/model: the starting point for preference training")
    _add_config_flags(p)
    p.add_argument("--task", choices=("tldr", "hh-helpful"),
                   help="format instructions as this JPO task does; without --data (or with --data naming a folder "
                        "or hub id) read the JPO release's SFT train split")
    p.set_defaults(func=cmd_sft)

    from prefbench.models import EMBEDDED
    from prefbench.run import DEFAULT_OBJECTIVES

    p = sub.add_parser("run", help="the whole comparison: data, training, generation, judging, statistics, report")
    p.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES), help="comma-separated objective names")
    p.add_argument("--benchmark", default="ifeval-lite", help="a shipped benchmark (prefbench benchmarks) or a spec YAML")
    p.add_argument("--preset", default="quick", help="smoke | quick | full")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds, e.g. 0,1,2")
    p.add_argument("--model", help="hub id or local folder (default: the benchmark's model, else the embedded "
                                    f"SmolLM2, {EMBEDDED})")
    p.add_argument("--quantization", default="4bit", choices=("4bit", "none"))
    p.add_argument("--judge", default="gold", help="gold | reward-model:PATH | local:PATH | openai:MODEL@BASE_URL "
                                                   "(tldr and hh-helpful need local: or openai:)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a benchmark setting over the preset, e.g. --set data.location=./jpo-release "
                        "or --set train.max_steps=50 (repeatable)")
    p.add_argument("--param", action="append", default=[], metavar="OBJECTIVE.NAME=VALUE",
                   help="override a preset hyperparameter, e.g. --param dpo.beta=0.2 (repeatable)")
    p.add_argument("--output-dir", help="run directory (default runs/<benchmark>-<preset>)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("benchmarks", help="list the shipped benchmarks")
    p.set_defaults(func=cmd_benchmarks)

    p = sub.add_parser("data", help="on-policy preference data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("build", help="sample the reference model, score with the benchmark's judge, pair")
    p.add_argument("--benchmark", default="ifeval-lite")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="default: the benchmark's model, else the embedded SmolLM2")
    p.add_argument("--quantization", default="4bit", choices=("4bit", "none"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a benchmark setting, e.g. --set data.location=./jpo-release")
    p.add_argument("--output", help="folder for the files (default runs/data/<benchmark>-<preset>-seed<k>)")
    p.set_defaults(func=cmd_data_build)

    p = sub.add_parser("eval", help="judge a run's generations and write judgments.jsonl, results.json, leaderboard.csv")
    p.add_argument("run_dir")
    p.add_argument("--judge", help="another judge than the run's (gold | reward-model:... | local:... | openai:...)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="render report.md, report.html and plots/ from a run's results.json")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    from prefbench.acquire import add_acquire_arguments, cmd_acquire

    p = sub.add_parser("acquire", help="label cross-instruction (joint) or conditional pairs with a pairwise judge, "
                                       "both orders, ties dropped (the JPO paper's protocol)")
    add_acquire_arguments(p)
    p.set_defaults(func=cmd_acquire)

    p = sub.add_parser("compare", help="put several runs side by side")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--output", default="runs/compare")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"prefbench: error: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe something the user can fix (a name, a file, a setting, the disk): one line, no traceback."""
    from prefbench.benchmark_spec import BenchmarkError
    from prefbench.judges import JudgeError
    from prefbench.report import ReportError
    from prefbench.tasks import TaskError

    return (ObjectiveError, ConfigError, DataError, TrainingError, BenchmarkError, TaskError, JudgeError, ReportError,
            OSError)


if __name__ == "__main__":
    sys.exit(main())
