"""The ``prefbench`` command line."""

from __future__ import annotations

import argparse
import sys

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
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None, metavar=kind.__name__.upper())
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ObjectiveError, ConfigError, DataError, TrainingError) as exc:
        print(f"prefbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
