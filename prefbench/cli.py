"""The ``prefbench`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import sys
from pathlib import Path

from prefbench.engine.config import ConfigError, TrainConfig, parse_param
from prefbench.engine.models import EMBEDDED
from prefbench.registry import list_objectives, parse_objective_list
from prefbench.util.errors import UserError

QUANTIZATION_HELP = "4bit: QLoRA (NF4 base weights); none: plain LoRA"
REPORT_TO_HELP = ("experiment trackers that also get every optimizer step's metrics (metrics.jsonl stays the record): "
                  "none, or tensorboard, wandb, mlflow separated by commas (their libraries: pip install "
                  "'prefbench[trackers]'; mlflow logs to $MLFLOW_TRACKING_URI)")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def cmd_objectives(args: argparse.Namespace) -> int:
    from prefbench.registry.reference import objectives_markdown, objectives_table

    if args.markdown:
        print(objectives_markdown(), end="")
        return 0
    if args.verbose:
        for obj in list_objectives():
            print(f"== {obj.name} ({obj.paper})\n{(obj.fn.__doc__ or '').strip()}\n")
    print(objectives_table())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from prefbench.pipeline.demo import run_demo

    run_demo(parse_objective_list(args.objectives), steps=args.steps, seed=args.seed)
    return 0


# The help of each TrainConfig field's flag; its default is TrainConfig's (the flag's own default, None, keeps the
# value of the --config file).
CONFIG_HELP = {
    "data": "preference file (.jsonl, .json, .parquet: TRL prompt/chosen/rejected, the JPO release's or prefbench's "
            "pair records) or a datasets name",
    "split": "the split to read from a datasets name or folder",
    "pair_kinds": "which pairs of the data to train on: all | conditional (same instruction) | joint (different "
                  "instructions)",
    "objective": "the objective to train (prefbench objectives lists them)",
    "model": "hub id or local folder of the base model; the default is the embedded SmolLM2",
    "quantization": QUANTIZATION_HELP,
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA scaling numerator (the update is scaled by alpha / r)",
    "lora_dropout": "dropout on the LoRA input (it costs a third of a step on a CPU)",
    "max_length": "tokens per formatted instruction + response; longer ones are truncated and counted",
    "batch_size": "pairs (examples, for an unpaired objective; lists, for a listwise one) per optimizer step",
    "grad_accum": "micro-batches per optimizer step; must divide batch-size",
    "max_steps": "optimizer steps",
    "lr": "peak learning rate (AdamW, linear warm-up then linear decay)",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "gradient clipping norm",
    "gradient_checkpointing": "recompute layer activations in the backward pass: far less memory, about a third "
                              "more time",
    "compute_dtype": "auto (bfloat16 where the hardware has it, else float32) | float32 | bfloat16",
    "prompt_format": "auto (the model's chat template, the paper's plain format without one) | chat | plain",
    "share_prefixes": "run a conditional pair's shared instruction through the model once",
    "max_forward_tokens": "a micro-batch runs in forwards of at most this many tokens (0: one forward); activation "
                          "memory grows with it, the gradient is the same",
    "init_adapter": "a PEFT adapter folder the policy starts from and the reference is (e.g. an iterative run's "
                    "previous round); unset: a fresh LoRA on the base model",
    "extrapolation": "APO's alpha: the reference becomes log pi_init + alpha (log pi_init - log pi_previous); "
                     "needs --init-adapter",
    "extrapolate_from": "the adapter of pi_previous for --extrapolation (unset: the base model)",
    "seed": "seed of the data order, LoRA initialisation and dropout",
    "save_every": "checkpoint interval in steps (a killed run resumes from the last checkpoint)",
    "output_dir": "folder for the adapter, metrics.jsonl and checkpoints",
    "report_to": REPORT_TO_HELP,
    "tracker_run": "the tracker run's name (default: <objective>-seed<seed>)",
    "tracker_group": "what the tracker run is grouped under: the wandb group, the mlflow experiment (default: "
                     "prefbench); the wandb project is $WANDB_PROJECT, else prefbench",
    "tracker_dir": "TensorBoard writes to <tracker-dir>/<tracker-run> (default: <output-dir>/tensorboard)",
}


def _add_config_flags(p: argparse.ArgumentParser, defaults: dict | None = None, helps: dict | None = None) -> None:
    """One --flag per scalar TrainConfig field (default None = keep the YAML/default value); ``defaults`` and
    ``helps``: the command's own where they differ from TrainConfig's."""
    p.add_argument("--config", help="YAML file of settings (unknown keys are errors); flags override it")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "objective_params":
            continue
        kind = type(f.default)
        flag = f"--{f.name.replace('_', '-')}"
        default = (defaults or {}).get(f.name, f.default)
        shown = f" (default: {default})".replace("%", "%%") if default not in ("", EMBEDDED) else ""
        # a field added without an entry in CONFIG_HELP still gets a flag (a test asks for the entry)
        help_text = {**CONFIG_HELP, **(helps or {})}.get(f.name, f.name.replace("_", " ")) + shown
        if kind is bool:  # --gradient-checkpointing / --no-gradient-checkpointing
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            p.add_argument(flag, dest=f.name, type=kind, default=None, metavar=kind.__name__.upper(), help=help_text)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="objective hyperparameter, e.g. --param beta=0.2 (repeatable)")


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    if args.param:
        values["objective_params"] = {**values.get("objective_params", {}), **dict(map(parse_param, args.param))}
    return TrainConfig.from_dict(values, f"{args.config} with the command line" if args.config else "command line")


def cmd_train(args: argparse.Namespace) -> int:
    from prefbench.engine.trainer import train
    from prefbench.registry import get_objective

    _logging()
    cfg = _config_from_args(args)
    if get_objective(cfg.objective).iterative:
        logging.getLogger("prefbench").info(
            "%s is iterative: this trains one round, on the given data; `prefbench run` trains its rounds, each on "
            "samples of the last round's policy (start one from an earlier round with --init-adapter)", cfg.objective)
    out = train(cfg)
    print(f"adapter: {out / 'adapter'}\nmetrics: {out / 'metrics.jsonl'}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from prefbench.data.sft import load_sft_examples
    from prefbench.engine.sft import train_sft

    _logging()
    cfg = _config_from_args(args)
    if args.objective not in (None, "sft"):
        raise ConfigError(f"prefbench sft trains objective 'sft'; use prefbench train for {args.objective!r}")
    cfg = dataclasses.replace(cfg, objective="sft", output_dir=args.output_dir or "runs/sft")
    if not cfg.data and not args.task:
        raise ConfigError("no SFT data: pass --data FILE (instruction/response rows) or --task tldr|hh-helpful "
                          "to read the JPO release (--data then names a local copy of it)")
    model = train_sft(cfg, lambda: load_sft_examples(cfg.data, args.task))
    print(f"SFT model: {model}\nuse it with: prefbench run --model {model} ...")
    return 0


def _objective_param(text: str) -> tuple[str, str, float]:
    """``dpo.beta=0.2`` -> ("dpo", "beta", 0.2)."""
    name, value = parse_param(text)
    objective, dot, param = name.partition(".")
    if not dot or not objective or not param:
        raise ConfigError(f"--param for prefbench run must look like objective.name=number (e.g. dpo.beta=0.2), got {text!r}")
    return objective, param, value


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:   # int() is the test: str.isdigit() passes "²", which int() refuses
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text}: expected distinct integers separated by commas, e.g. 0,1,2")
    return seeds


def _executor_option(text: str) -> tuple[str, str]:
    """``partition=gpu`` -> ("partition", "gpu"); the executor checks the name and the value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"--executor-option must look like KEY=VALUE (e.g. partition=gpu), got {text!r}")
    return key.strip(), value.strip()


def cmd_run(args: argparse.Namespace) -> int:
    from prefbench.benchmark import parse_set
    from prefbench.evaluation.served import parse_adapter_names
    from prefbench.pipeline.config import RunConfig
    from prefbench.pipeline.run import run
    from prefbench.reporting.leaderboard import leaderboard_text

    _logging()
    params: dict[str, dict[str, float]] = {}
    for text in args.param:
        objective, name, value = _objective_param(text)
        params.setdefault(objective, {})[name] = value
    seeds = _seeds(args.seeds) if args.seeds else []
    cfg = RunConfig(objectives=[o for o in args.objectives.split(",") if o.strip()], benchmark=args.benchmark,
                    preset=args.preset, seeds=seeds, model=args.model or "",
                    quantization=args.quantization, judge=args.judge, params=params, report_to=args.report_to,
                    overrides=parse_set(args.set + ([f"data.arm={args.arm}"] if args.arm else [])),
                    output_dir=args.output_dir or "", sweep=args.sweep, generator=args.generator or "",
                    generator_adapters=parse_adapter_names(args.generator_adapters or ""), executor=args.executor,
                    executor_options=dict(_executor_option(t) for t in args.executor_option))
    if args.plan or args.pilot:
        from prefbench.pipeline.plan import plan

        print(plan(cfg, Path(args.pilot) if args.pilot else None))
        return 0
    results = run(cfg)
    print("\n" + leaderboard_text(results))
    print(f"\nreport: {cfg.output_dir}/report.html (and report.md, results.json, leaderboard.csv)")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from prefbench.benchmark import benchmarks_table

    print(benchmarks_table())
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from prefbench.benchmark import load_benchmark, parse_set
    from prefbench.data.stage import build_run_data, describe

    _logging()
    spec = load_benchmark(args.benchmark, args.preset, parse_set(args.set))
    out = Path(args.output or f"runs/data/{spec.name}-{args.preset}-seed{args.seed}")
    s = build_run_data(spec, args.model or spec.model or EMBEDDED, args.quantization, args.seed, out)
    print(f"{describe(s)}\npairs: {out / 'train.jsonl'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Re-judge an existing run (e.g. with another judge), recompute its statistics, re-render its report."""
    from prefbench.pipeline.run import reevaluate
    from prefbench.reporting.leaderboard import leaderboard_text

    _logging()
    print(leaderboard_text(reevaluate(Path(args.run_dir), args.judge)))
    print(f"\nreport: {Path(args.run_dir) / 'report.html'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from prefbench.reporting.report import render_report

    md, html = render_report(Path(args.run_dir))
    print(f"{md}\n{html}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from prefbench.reporting.export import export_run

    print(export_run(Path(args.run_dir), args.format, Path(args.output) if args.output else None))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from prefbench.pipeline.push import MANIFEST, push_run

    where = push_run(Path(args.run_dir), args.repo, Path(args.dry_run) if args.dry_run else None, args.private)
    if args.dry_run:
        print(f"{where}: what `prefbench push` would upload to https://huggingface.co/{args.repo} "
              f"({'private' if args.private else 'public'}); {MANIFEST} lists the files")
    else:
        print(where)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from prefbench.reporting.compare import compare_runs

    md, html = compare_runs([Path(d) for d in args.run_dirs], Path(args.output))
    print(f"{md}\n{html}")
    return 0


def cmd_acquire(args: argparse.Namespace) -> int:
    """``prefbench acquire``: exit status 1 when nothing was kept."""
    from prefbench.data.acquire import run_acquire, summary_path

    summary = run_acquire(args.input, args.judge, args.kind, args.pairs, args.output, prompts=args.prompts,
                          seed=args.seed, cache_path=args.cache, workers=args.workers)
    print(f"{summary.describe()}\npairs: {args.output}\nsummary: {summary_path(Path(args.output))}")
    return 0 if summary.kept else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from prefbench.util.cache import clear, listing

    print(listing() if args.cache_command == "list" else clear(args.kinds, args.dry_run))
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    from prefbench.conformance import ConformanceError, check_conformance, parse_params

    objective = args.objective
    if objective is None:
        if not args.impl.startswith("trl:"):
            raise ConformanceError("give --objective NAME: the objective whose golden cases the implementation "
                                   "must meet")
        objective = args.impl.removeprefix("trl:")   # TRL's loss type names the objective (sigmoid -> dpo)
    report = check_conformance(objective, args.impl, adapter=args.adapter, params=parse_params(args.params))
    print(report.table())
    return report.exit_code


def _add_conformance_command(sub) -> None:
    from prefbench.conformance import ADAPTERS

    p = sub.add_parser("conformance", help="check another library's loss implementation against prefbench's golden "
                                           "cases for an objective (exit 0: all pass, 1: a case fails)")
    p.add_argument("--objective", help="the objective the implementation computes (default for trl:LOSS_TYPE: "
                                       "prefbench's objective of that name)")
    p.add_argument("--impl", required=True, metavar="MODULE:FUNCTION", help="the function to check, e.g. "
                   "my_lib.losses:dpo_loss (imported from the current folder or the installed packages), or "
                   "trl:LOSS_TYPE for TRL 1.16's DPOTrainer loss")
    p.add_argument("--params", nargs="+", default=[], metavar="NAME=VALUE",
                   help="run only the cases at these parameter values (prefbench's names, e.g. beta=0.1)")
    p.add_argument("--adapter", choices=ADAPTERS, help="how the function is called: keywords (default) = "
                   "fn(policy_chosen_logps=..., ..., beta=...) returning per-pair losses [B]; positional = "
                   "fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps) "
                   "with its parameters fixed inside; trl = a TRL DPOTrainer loss type (implied by trl:)")
    p.set_defaults(func=cmd_conformance)


def _add_training_commands(sub) -> None:
    p = sub.add_parser("objectives", help="list registered objectives with their span, reference use and defaults")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each objective's formula and notes")
    p.add_argument("--markdown", action="store_true", help="print the objective reference as Markdown "
                                                           "(docs/objectives.md is this output)")
    p.set_defaults(func=cmd_objectives)

    p = sub.add_parser("demo", help="a few LoRA steps of each objective on the embedded model and a built-in batch")
    p.add_argument("--objectives", default="dpo,ipo,simpo,jpo,sft_jpo", help="comma-separated objective names")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per objective")
    p.add_argument("--seed", type=int, default=0, help="seed of the LoRA initialisation and the batch order")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one objective with (Q)LoRA on a preference file or dataset")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sft", help="supervised fine-tuning with (Q)LoRA, then base + adapter merged into "
                                   "<output-dir>/model: the starting point for preference training")
    _add_config_flags(p, defaults={"objective": "sft", "output_dir": "runs/sft"},
                      helps={"data": "JSONL of instruction/response rows (also prompt/completion), or a folder or hub "
                                     "id of the JPO release with --task",
                             "objective": "sft only (other objectives train with prefbench train)",
                             "batch_size": "examples per optimizer step"})
    p.add_argument("--task", choices=("tldr", "hh-helpful"),
                   help="format instructions as this JPO task does; without --data (or with --data naming a folder "
                        "or hub id) read the JPO release's SFT train split")
    p.set_defaults(func=cmd_sft)


def _add_run_command(sub) -> None:
    from prefbench.benchmark.spec import ARMS
    from prefbench.pipeline.config import DEFAULT_OBJECTIVES

    p = sub.add_parser("run", help="the whole comparison: data, training, generation, judging, statistics, report")
    p.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES), help="comma-separated objective names")
    p.add_argument("--benchmark", default="ifeval-lite", help="a shipped benchmark (prefbench benchmarks) or a spec YAML")
    p.add_argument("--preset", default="quick", help="the benchmark's preset of sizes and settings "
                   "(prefbench benchmarks lists each benchmark's presets)")
    p.add_argument("--seeds", help="comma-separated training seeds, e.g. 0,1,2 (default: the preset's)")
    p.add_argument("--model", help="hub id or local folder (default: the benchmark's model, else the embedded "
                                    f"SmolLM2, {EMBEDDED})")
    p.add_argument("--quantization", default="4bit", choices=("4bit", "none"), help=QUANTIZATION_HELP)
    p.add_argument("--judge", default="gold", help="gold | reward-model:PATH | local:PATH | openai:MODEL@BASE_URL "
                                                   "(tldr and hh-helpful need local: or openai:)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a benchmark setting over the preset, e.g. --set data.location=./jpo-release "
                        "or --set train.max_steps=50 (repeatable)")
    p.add_argument("--param", action="append", default=[], metavar="OBJECTIVE.NAME=VALUE",
                   help="override a preset hyperparameter, e.g. --param dpo.beta=0.2 (repeatable)")
    p.add_argument("--arm", choices=tuple(ARMS), help="which pairs each objective trains on (default: the spec's, "
                   "matched: response-span objectives on conditional pairs, jpo/sft_jpo on conditional + joint; "
                   "same: every objective on every pair; conditional: all on conditional pairs; joint-only: "
                   "joint-span objectives on joint pairs)")
    p.add_argument("--output-dir", help="run directory (default runs/<benchmark>-<preset>)")
    p.add_argument("--report-to", default="none", metavar="TRACKERS", help=REPORT_TO_HELP + ". Each training of the "
                   "run is one tracker run, <objective>-seed<k>, grouped under the run directory's name; TensorBoard "
                   "writes to <output-dir>/tensorboard/<objective>-seed<k>")
    p.add_argument("--sweep", action="store_true", help="first tune each objective over the spec's sweep grid (its "
                   "strength parameters x learning rates) on validation prompts apart from the eval prompts, then "
                   "train every seed at the chosen point; adds each objective's win-rate-vs-KL frontier and a "
                   "comparison at matched KL to the report")
    p.add_argument("--executor", default="local", choices=("local", "ray", "slurm"), help="where the training jobs "
                   "(objective x seed x sweep point) run: local, one after the other in this process; ray, as tasks "
                   "of a Ray cluster, one GPU each where it has GPUs (pip install 'prefbench[ray]'); slurm, as SLURM "
                   "jobs through submitit (pip install 'prefbench[slurm]'). Every job writes into the run directory "
                   "and, on ray or slurm, logs to job.log in its folder")
    p.add_argument("--executor-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the executor (repeatable). ray: address (default: a local cluster), num_cpus, "
                   "cpus_per_job, gpus_per_job; slurm: cluster (slurm | local), partition, time (minutes), "
                   "gpus_per_job, cpus_per_job, mem_gb, account, qos")
    p.add_argument("--generator", metavar="openai:MODEL@BASE_URL", help="ask an OpenAI-compatible server (vLLM, "
                   "llama.cpp, a hosted API; key from $OPENAI_API_KEY) for the eval answers instead of generating "
                   "locally: the reference as MODEL, each trained system as the LoRA adapter served as "
                   "<objective>-seed<k> (the KL is still computed locally; see docs/guide.md)")
    p.add_argument("--generator-adapters", metavar="NAME=SERVED,...", help="with --generator: the served names of "
                   "adapters the server does not serve as <objective>-seed<k>, e.g. dpo-seed0=my-dpo-lora")
    p.add_argument("--plan", action="store_true", help="print the resolved settings, the expected time and (with "
                   "--pilot) the detectable differences, and stop without training")
    p.add_argument("--pilot", metavar="RUN", help="with --plan: a finished run of this benchmark whose timings and "
                   "per-prompt spreads the plan scales to this run's size (implies --plan)")
    p.set_defaults(func=cmd_run)


def _add_data_commands(sub) -> None:
    p = sub.add_parser("benchmarks", help="list the shipped benchmarks")
    p.set_defaults(func=cmd_benchmarks)

    p = sub.add_parser("data", help="on-policy preference data")
    data_sub = p.add_subparsers(dest="data_command", required=True, help="what to do with the data")
    p = data_sub.add_parser("build", help="sample the reference model, score with the benchmark's judge, pair")
    p.add_argument("--benchmark", default="ifeval-lite", help="a shipped benchmark (prefbench benchmarks) or a spec "
                                                             "YAML")
    p.add_argument("--preset", default="quick", help="the benchmark's preset (prefbench benchmarks lists them)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument("--model", help="hub id or local folder (default: the benchmark's model, else the embedded "
                                    "SmolLM2)")
    p.add_argument("--quantization", default="4bit", choices=("4bit", "none"), help=QUANTIZATION_HELP)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a benchmark setting, e.g. --set data.location=./jpo-release")
    p.add_argument("--output", help="folder for the files (default runs/data/<benchmark>-<preset>-seed<k>)")
    p.set_defaults(func=cmd_data_build)

    from prefbench.data.acquire import KINDS
    from prefbench.judges.templates import JUDGE_PROMPTS

    p = sub.add_parser("acquire", help="label cross-instruction (joint) or conditional pairs with a pairwise judge, "
                                       "both orders, ties dropped (the JPO paper's protocol)")
    p.add_argument("--input", required=True, help="JSONL of instruction/response rows (also prompt/completion)")
    p.add_argument("--judge", required=True, help="a pairwise judge: openai:MODEL@BASE_URL or local:PATH")
    p.add_argument("--kind", choices=KINDS, default="joint",
                   help="joint: pairs with different instructions; conditional: same instruction")
    p.add_argument("--pairs", type=int, required=True, help="how many pairs to judge")
    p.add_argument("--output", required=True, help="JSONL of preference records (a .summary.json goes beside it)")
    p.add_argument("--prompts", choices=tuple(JUDGE_PROMPTS), default="general",
                   help="judge prompts: summarization (TL;DR), dialogue (Anthropic-Helpful) or general")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of pairs")
    p.add_argument("--cache", help="judgment cache (default <output stem>.judgments.jsonl)")
    p.add_argument("--workers", type=int, default=4, help="concurrent calls for an HTTP judge")
    p.set_defaults(func=cmd_acquire)


def _add_report_commands(sub) -> None:
    p = sub.add_parser("eval", help="judge a run's generations again (e.g. with another judge): judgments, results, "
                                    "leaderboard and report are all rewritten")
    p.add_argument("run_dir", help="the run directory")
    p.add_argument("--judge", help="another judge than the run's (gold | reward-model:... | local:... | openai:...)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("report", help="render report.md, report.html and plots/ from a run's results.json")
    p.add_argument("run_dir", help="the run directory")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="put several runs side by side")
    p.add_argument("run_dirs", nargs="+", help="run directories")
    p.add_argument("--output", default="runs/compare", help="folder for the comparison's report.md and report.html")
    p.set_defaults(func=cmd_compare)

    from prefbench.reporting.export import FORMATS

    p = sub.add_parser("export", help="write a finished run's generations, judgments or leaderboard in a format "
                                      "other tools read (see docs/guide.md)")
    p.add_argument("run_dir", help="the run directory")
    p.add_argument("--format", required=True, choices=FORMATS, help="alpaca_eval: AlpacaEval model outputs per "
                   "system; jsonl: every generation; csv: leaderboard and comparisons; hf-dataset: judgments and "
                   "per-prompt outcomes as a datasets.DatasetDict (load_from_disk)")
    p.add_argument("--output", help="folder to write (replaced if it exists; default <run_dir>/export/<format>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("push", help="upload a finished run's adapters, each with a model card, and its report to a "
                                    "Hugging Face Hub model repository (token: HF_TOKEN or `hf auth login`)")
    p.add_argument("run_dir", help="the run directory")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the model repository (created if it does "
                   "not exist); each adapter goes to <objective>/seed<k>/, the report to report/")
    p.add_argument("--dry-run", metavar="DIR", help="write exactly what would be uploaded (and a manifest of its "
                   "files with sizes) to DIR instead, touching no network")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.set_defaults(func=cmd_push)


def _add_cache_command(sub) -> None:
    p = sub.add_parser("cache", help="what prefbench keeps between runs under $PREFBENCH_CACHE "
                                     "(default ~/.cache/prefbench): list it or clear it")
    cache_sub = p.add_subparsers(dest="cache_command", required=True, help="what to do with the cache")
    p = cache_sub.add_parser("list", help="each kind (reference, onpolicy, models) with its entries, their size, "
                                          "time and recorded key")
    p.set_defaults(func=cmd_cache)
    p = cache_sub.add_parser("clear", help="remove cached entries; they are computed again when next needed")
    p.add_argument("kinds", nargs="*", metavar="KIND", help="kinds to remove (reference, onpolicy, models); all "
                                                             "when none is given")
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.set_defaults(func=cmd_cache)


def cmd_completion(args: argparse.Namespace) -> int:
    from prefbench.util.completion import bash_completion

    print(bash_completion(build_parser(), "prefbench"), end="")
    return 0


def _add_completion_command(sub) -> None:
    p = sub.add_parser("completion", help="print shell completion for prefbench: eval \"$(prefbench completion "
                                          "bash)\" in ~/.bashrc (zsh: after bashcompinit)")
    p.add_argument("shell", choices=("bash",), help="the shell")
    p.set_defaults(func=cmd_completion)


class UsageError(UserError):
    """A command line argparse cannot read: an unknown command or option, a missing or malformed value."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, except where there is none to show (None, off, an empty list) or
    the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        nothing = action.default is None or action.default is False or action.default in ([], "")   # 0 is shown
        if nothing or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse's parser (and, as their class, its subcommands'), except that a mistake is one line like every
    other error instead of the usage text and a second line; ``--help`` shows the usage and every option's
    default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _version() -> str:
    try:
        return importlib.metadata.version("prefbench")
    except importlib.metadata.PackageNotFoundError:   # run from a source folder that was never installed
        return "(not installed: no version)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prefbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True,
                                help="the command (prefbench COMMAND --help describes its options)")
    _add_training_commands(sub)
    _add_run_command(sub)
    _add_data_commands(sub)
    _add_report_commands(sub)
    _add_cache_command(sub)
    _add_conformance_command(sub)
    _add_completion_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UserError, OSError) as exc:  # something the user can fix (a name, a file, a setting, the disk)
        # always one line, also where a message quotes a library's text of several
        print("prefbench: error: " + " ".join(str(exc).split("\n")), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
