"""Speed and memory of TRL's DPOTrainer next to prefbench's engine, on the same DPO run.

Three systems train the same LoRA adapter (r=16, alpha=32, every linear layer, ``--lora-dropout``) on the
embedded SmolLM2-135M-Instruct with the sigmoid DPO loss (beta=0.1), AdamW at lr 1e-4 after a one-step warmup,
``--batch-size`` pairs per optimizer step (no accumulation), sequences cut to ``--max-length`` tokens, seed 0,
no gradient checkpointing, on the same conditional preference pairs taken in the same batches:

    trl-precomputed  TRL DPOTrainer with precompute_ref_log_probs=True: one reference pass over the data, then training
    trl              TRL DPOTrainer's default reference: an extra adapter-disabled forward at every step
    prefbench        prefbench.engine.trainer.train: one reference pass (into an empty cache), then training

The base model is full precision (``--base full``, LoRA) or bitsandbytes NF4 (``--base 4bit``, QLoRA), and both
systems compute in ``--precision``: ``bfloat16`` (the default of both: TRL's DPOConfig sets bf16=True, autocast over
a float32 model; prefbench's compute_dtype "auto" picks bfloat16 on a CPU with AVX512-BF16 or AMX) or ``float32``.
Each run is a process of its own, so its peak RSS is its own; the systems take turns over ``--rounds`` rounds
(round 1: trl-precomputed, trl, prefbench; round 2: prefbench, trl-precomputed, trl; ...), so machine noise hits
all. Everything runs on the CPU, with torch's default thread count.

Run from the repository root (TRL comes with ``pip install -e ".[bench]"``):

    .venv/bin/python perf/vs_trl.py --base 4bit --rounds 3 --steps 10 --output runs/vs_trl-4bit.json
    .venv/bin/python perf/vs_trl.py --base full --precision float32 --rounds 3 --steps 10 --output runs/vs_trl-fp32.json

The pairs default to the conditional pairs of runs/data/ifeval-lite-quick-seed0/train.jsonl, built once with
``prefbench data build --benchmark ifeval-lite --preset quick`` if missing; ``--data`` takes any preference file.

Reading the output: one line per run as it finishes, then a table with each system's median over the rounds:

    s/step     seconds per optimizer step, median over the steps after the first (warm-up) one
    tokens/s   non-pad tokens (chosen + rejected) of the measured steps over their seconds, counted from the
               batches each system actually trains on, each sequence in full whatever a system saves on it
               (padding it skips, a prompt shared by both responses that it runs once)
    tok/pair   non-pad tokens per pair as each system tokenizes it; should nearly match (TRL's chat template
               ends a reply with "<|im_end|>\\n", prefbench with "<|im_end|>": one token more per sequence for TRL)
    wall s     process start to adapter on disk: imports, model load, tokenization, reference pass, steps, save
    RSS GB     the process's peak resident memory, GiB

then prefbench's tokens/s and peak RSS divided by each TRL variant's (tokens/s above 1: prefbench is faster;
RSS below 1: prefbench needs less memory). Every run's raw numbers, per step included, go to ``--output``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()  # a worker's wall time counts from here: its library imports are part of its cost

SYSTEMS = ("trl-precomputed", "trl", "prefbench")
TRL_VERSION = "1.16.0"  # the DPOConfig arguments below are TRL 1.16's
DEFAULT_DATA = Path("runs/data/ifeval-lite-quick-seed0/train.jsonl")
BUILD_DEFAULT_DATA = ("data", "build", "--benchmark", "ifeval-lite", "--preset", "quick")
LORA_R, LORA_ALPHA = 16, 32
BETA = 0.1
LR = 1e-4
WARMUP_STEPS = 1
SEED = 0
REFERENCE_BATCH = 8  # pairs per forward of prefbench's reference pass (reference_logprobs' default); TRL's matches
SUMMARY_KEYS = ("s_per_step", "tokens_per_s", "tokens_per_pair", "wall_s", "peak_rss_gb")


# ---- the parent: inputs, rounds, table -------------------------------------------------------------------------


def require_trl() -> None:
    if importlib.util.find_spec("trl") is None:
        sys.exit('vs_trl: trl is not installed; install it with: pip install -e ".[bench]"')
    version = importlib.metadata.version("trl")
    if version != TRL_VERSION:
        print(f"note: trl {version} is installed; this comparison was written for trl=={TRL_VERSION}")


def source_pairs(data: str | None) -> Path:
    """The preference file to draw pairs from; the default one is built (once) if missing."""
    if data is not None:
        if not Path(data).is_file():
            sys.exit(f"vs_trl: --data {data}: file not found")
        return Path(data)
    if not DEFAULT_DATA.is_file():
        print(f"{DEFAULT_DATA} is missing: building it with `prefbench {' '.join(BUILD_DEFAULT_DATA)}` (once)")
        if subprocess.run([sys.executable, "-m", "prefbench.cli", *BUILD_DEFAULT_DATA], check=False).returncode != 0:
            sys.exit(f"vs_trl: `prefbench {' '.join(BUILD_DEFAULT_DATA)}` failed (its output is above)")
    return DEFAULT_DATA


def write_inputs(source: Path, args: argparse.Namespace, folder: Path) -> Path:
    """What every run reads: the conditional pairs (TRL's DPO needs one prompt shared by both responses), the
    batches prefbench's engine draws from them (TRL is given the same ones), and the converted model folder."""
    from prefbench.engine.config import TrainConfig
    from prefbench.engine.models import embedded_model_dir
    from prefbench.engine.trainer import batch_order
    from prefbench.formats.preferences import load_preferences, write_preferences

    records = load_preferences(source)
    conditional = [r for r in records if r.kind == "conditional"]
    if not conditional:
        sys.exit(f"vs_trl: {source} has no conditional pairs (both responses to one prompt)")
    print(f"{len(conditional)} conditional pairs of {len(records)} in {source}")
    pairs = folder / "pairs.jsonl"
    write_preferences(conditional, pairs)
    batches = batch_order(len(conditional), TrainConfig(max_steps=args.steps, batch_size=args.batch_size, seed=SEED))
    inputs = folder / "inputs.json"
    inputs.write_text(json.dumps({"pairs": str(pairs), "model_dir": str(embedded_model_dir()),
                                  "order": [i for batch in batches for i in batch]}))
    return inputs


def round_orders(rounds: int) -> list[tuple[str, ...]]:
    """Each round starts one system later than the one before: every system runs first, second and last."""
    n = len(SYSTEMS)
    return [SYSTEMS[n - r % n:] + SYSTEMS[:n - r % n] for r in range(rounds)]


def settings_flags(args: argparse.Namespace) -> list[str]:
    return ["--base", args.base, "--precision", args.precision, "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
            "--lora-dropout", str(args.lora_dropout)]


def run_system(system: str, args: argparse.Namespace, inputs: Path) -> dict:
    """One run of ``system`` in a process of its own, with an empty prefbench cache (so prefbench computes its
    reference log-probs like TRL does); its result as the worker wrote it."""
    with tempfile.TemporaryDirectory(prefix=f"vs_trl-{system}-") as tmp:
        run_dir = Path(tmp)
        # a CPU comparison: prefbench would take a visible GPU while TRL runs with use_cpu=True
        env = {**os.environ, "PREFBENCH_CACHE": str(run_dir / "cache"), "CUDA_VISIBLE_DEVICES": ""}
        cmd = [sys.executable, __file__, "--worker", system, "--inputs", str(inputs), "--run-dir", str(run_dir),
               *settings_flags(args)]
        code = subprocess.run(cmd, env=env, check=False).returncode
        if code != 0:
            sys.exit(f"vs_trl: the {system} run failed (exit status {code}); its output is above")
        return json.loads((run_dir / "result.json").read_text())


def run_line(result: dict) -> str:
    return (f"{result['system']}: {result['s_per_step']:.2f} s/step, {result['tokens_per_s']:.0f} tokens/s, "
            f"{result['tokens_per_pair']:.1f} tokens/pair, {result['wall_s']:.0f} s wall, "
            f"{result['peak_rss_gb']:.2f} GB peak RSS, {result['threads']} threads")


def system_medians(runs: list[dict]) -> dict[str, dict[str, float]]:
    return {s: {k: statistics.median(r[k] for r in runs if r["system"] == s) for k in SUMMARY_KEYS} for s in SYSTEMS}


def prefbench_ratios(medians: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """prefbench's tokens/s and peak RSS over each TRL variant's."""
    ours = medians["prefbench"]
    return {f"prefbench/{s}": {k: ours[k] / medians[s][k] for k in ("tokens_per_s", "peak_rss_gb")}
            for s in SYSTEMS if s != "prefbench"}


def print_table(medians: dict[str, dict[str, float]], ratios: dict[str, dict[str, float]],
                args: argparse.Namespace) -> None:
    print(f"\n{args.base} base, {args.precision}, {args.batch_size} pairs/step, max length {args.max_length}, "
          f"{args.steps} steps; "
          f"median of {args.rounds} round(s)")
    print(f"{'system':<17}{'s/step':>8}{'tokens/s':>10}{'tok/pair':>10}{'wall s':>8}{'RSS GB':>8}")
    for system, m in medians.items():
        print(f"{system:<17}{m['s_per_step']:>8.2f}{m['tokens_per_s']:>10.0f}{m['tokens_per_pair']:>10.1f}"
              f"{m['wall_s']:>8.0f}{m['peak_rss_gb']:>8.2f}")
    for name, r in ratios.items():
        print(f"{name}: tokens/s x{r['tokens_per_s']:.2f}, peak RSS x{r['peak_rss_gb']:.2f}")


def prefbench_revision() -> str:
    """The commit the engine was measured at, "-dirty" if files changed since (they may change the numbers)."""
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                         capture_output=True, text=True, check=False)
    return git.stdout.strip() or "unknown"


def versions() -> dict[str, str]:
    names = ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")
    return {"prefbench": prefbench_revision(), **{name: importlib.metadata.version(name) for name in names}}


def compare(args: argparse.Namespace) -> None:
    require_trl()
    if args.steps < 2:
        sys.exit("vs_trl: --steps must be at least 2 (the first step is a warm-up and is not timed)")
    if args.rounds < 1:
        sys.exit("vs_trl: --rounds must be at least 1")
    source = source_pairs(args.data)
    runs = []
    with tempfile.TemporaryDirectory(prefix="vs_trl-inputs-") as tmp:
        inputs = write_inputs(source, args, Path(tmp))
        for r, order in enumerate(round_orders(args.rounds), 1):
            for system in order:
                print(f"\n=== round {r}/{args.rounds}: {system} ({args.base} base, {args.steps} steps) ===", flush=True)
                result = {**run_system(system, args, inputs), "round": r}
                runs.append(result)
                print(run_line(result), flush=True)
    medians = system_medians(runs)
    ratios = prefbench_ratios(medians)
    print_table(medians, ratios, args)
    settings = {"base": args.base, "precision": args.precision, "steps": args.steps, "batch_size": args.batch_size,
                "max_length": args.max_length,
                "lora_r": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": args.lora_dropout, "beta": BETA, "lr": LR,
                "warmup_steps": WARMUP_STEPS, "seed": SEED, "rounds": args.rounds, "data": str(source)}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"settings": settings, "versions": versions(), "runs": runs, "medians": medians,
                                  "ratios": ratios}, indent=1) + "\n")
    print(f"raw numbers: {output}")


# ---- the workers: one system, one run ----------------------------------------------------------------------------


def run_prefbench(inputs: dict, args: argparse.Namespace, run_dir: Path) -> tuple[list[float], list[int]]:
    """The engine's own ``train``; per-step seconds and non-pad tokens come from its metrics.jsonl."""
    import logging

    from prefbench.engine.config import TrainConfig
    from prefbench.engine.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = run_dir / "train"
    train(TrainConfig(data=inputs["pairs"], objective="dpo", objective_params={"beta": BETA}, model=inputs["model_dir"],
                      quantization="4bit" if args.base == "4bit" else "none", lora_r=LORA_R, lora_alpha=LORA_ALPHA,
                      lora_dropout=args.lora_dropout, max_length=args.max_length, batch_size=args.batch_size,
                      grad_accum=1, max_steps=args.steps, lr=LR, warmup_steps=WARMUP_STEPS,
                      compute_dtype=args.precision,
                      save_every=args.steps + 1, seed=SEED, output_dir=str(out)))
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [s["tokens"] / s["tokens_per_s"] for s in steps], [s["tokens"] for s in steps]


def conversational_rows(pairs: str) -> list[dict]:
    """The pairs in TRL's conversational format, so TRL applies the chat template prefbench applies."""
    rows = []
    for line in Path(pairs).read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        prompt = pair["prompt_chosen"]
        rows.append({"prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
                     "chosen": [{"role": "assistant", "content": pair["response_chosen"]}],
                     "rejected": [{"role": "assistant", "content": pair["response_rejected"]}]})
    return rows


def trl_base_model(model_dir: str, base: str, precision: str):
    """The frozen base model as a TRL user loads it: float32 weights (TRL's bf16=True autocasts them), or NF4 with
    double quantization computing in the run's precision."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if base == "full":
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    import bitsandbytes as bnb

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=getattr(torch, precision))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, quantization_config=quantization,
                                                 device_map={"": "cpu"})
    # On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight for a bf16 kernel the first time a layer runs in
    # eval mode without gradients, as TRL's precomputed reference pass does (the model is still in eval mode then);
    # every later forward and backward would then run that other kernel. prefbench turns the repacking off
    # (models._never_repack_4bit_weights), so TRL runs the same kernel here.
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    return model


def dpo_config(args: argparse.Namespace, run_dir: Path, precompute: bool):
    """TRL 1.16's DPOConfig with the settings prefbench trains with. Where TRL's defaults differ they are set:
    gradient checkpointing (TRL: on), dropout (TRL turns every dropout, LoRA's included, off),
    learning rate (TRL: 1e-6), optimizer (transformers: fused AdamW on torch >= 2.8; prefbench: torch.optim.AdamW
    with its defaults). The schedule is transformers' cosine with linear warmup, as prefbench's, except that
    transformers' warmup starts at lr 0 where prefbench's first step has the full lr: a difference in the numbers,
    not the speed."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(run_dir / "trl"), seed=SEED, use_cpu=True, bf16=args.precision == "bfloat16", fp16=False,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, max_steps=args.steps,
        learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=WARMUP_STEPS, weight_decay=0.0,
        max_grad_norm=1.0, optim="adamw_torch",
        beta=BETA, loss_type=["sigmoid"], max_length=args.max_length,
        truncation_mode="keep_start",  # as prefbench: a sequence's first max_length tokens are kept
        precompute_ref_log_probs=precompute, precompute_ref_batch_size=REFERENCE_BATCH,
        disable_dropout=False, gradient_checkpointing=False,
        dataloader_num_workers=0,
        # remove_unused_columns stays True: TRL keeps the tokenized columns it needs and drops the text ones
        report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
    )


def run_trl(inputs: dict, args: argparse.Namespace, run_dir: Path, precompute: bool) -> tuple[list[float], list[int]]:
    """TRL's DPOTrainer on prefbench's batches; per-step seconds from a callback, non-pad tokens from each batch."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOTrainer

    class StepClock(TrainerCallback):
        """Times from one optimizer step's end to the next (the first from its start), so batch loading, forward,
        backward, clipping and the optimizer step all count, as in prefbench's per-step timer."""

        def __init__(self):
            self.marks: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.marks:
                self.marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    class OrderedDPOTrainer(DPOTrainer):
        """DPOTrainer that takes the given sample order (prefbench's batches) and counts the non-pad tokens of
        every batch it trains on."""

        def __init__(self, *trainer_args, order: list[int], **kwargs):
            self.order, self.step_tokens = order, []
            super().__init__(*trainer_args, **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            return self.order

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.step_tokens.append(int(inputs["attention_mask"].sum()))
            return super().training_step(model, inputs, num_items_in_batch)

    rows = conversational_rows(inputs["pairs"])
    clock = StepClock()
    trainer = OrderedDPOTrainer(
        model=trl_base_model(inputs["model_dir"], args.base, args.precision),
        args=dpo_config(args, run_dir, precompute),
        train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(inputs["model_dir"]),
        peft_config=LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=args.lora_dropout,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[clock], order=inputs["order"])
    if len(trainer.train_dataset) != len(rows):  # the order indexes the rows as given
        sys.exit(f"vs_trl: TRL dropped {len(rows) - len(trainer.train_dataset)} pairs whose prompt fills max_length")
    if args.base == "4bit" and args.precision == "float32":
        # TRL casts the adapter of a quantized model to bf16 (QLoRA paper's recipe); a float32 comparison trains it
        # in float32, as prefbench does, so it goes back to float32 before the optimizer exists
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.float32)
    trainer.train()
    trainer.save_model(str(run_dir / "adapter"))  # prefbench's run also ends with its adapter on disk
    seconds = [end - start for start, end in zip(clock.marks, clock.marks[1:])]
    return seconds, trainer.step_tokens


def worker(args: argparse.Namespace) -> None:
    """One run of one system; writes its numbers to ``run_dir/result.json``."""
    import torch

    inputs = json.loads(Path(args.inputs).read_text())
    run_dir = Path(args.run_dir)
    if args.worker == "prefbench":
        seconds, tokens = run_prefbench(inputs, args, run_dir)
    else:
        seconds, tokens = run_trl(inputs, args, run_dir, precompute=args.worker == "trl-precomputed")
    wall = time.perf_counter() - STARTED
    if len(seconds) != args.steps or len(tokens) != args.steps:
        sys.exit(f"vs_trl: {args.worker} recorded {len(seconds)} step times and {len(tokens)} token counts "
                 f"for {args.steps} steps")
    timed_seconds, timed_tokens = seconds[1:], tokens[1:]  # the first step warms up
    result = {"system": args.worker, "base": args.base,
              "s_per_step": statistics.median(timed_seconds),
              "tokens_per_s": sum(timed_tokens) / sum(timed_seconds),
              "tokens_per_pair": sum(tokens) / (len(tokens) * args.batch_size),
              "wall_s": wall,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
              "threads": torch.get_num_threads(),
              "step_seconds": seconds, "step_tokens": tokens}
    (run_dir / "result.json").write_text(json.dumps(result))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", choices=("full", "4bit"), default="4bit",
                    help="full-precision base + LoRA, or NF4 base + LoRA (QLoRA)")
    ap.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16",
                    help="what both systems compute in (bfloat16: both libraries' default here)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each system, in rotating order")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per run (the first is a warm-up)")
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    ap.add_argument("--max-length", type=int, default=256, help="tokens per prompt+response sequence")
    ap.add_argument("--lora-dropout", type=float, default=0.0, help="0: the default of peft and of prefbench")
    ap.add_argument("--data", help=f"preference file (default: the conditional pairs of {DEFAULT_DATA})")
    ap.add_argument("--output", default="runs/vs_trl.json", help="where the raw numbers go (JSON)")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
