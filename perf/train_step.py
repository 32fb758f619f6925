"""Tokens/s and peak memory of one training step of the engine on the embedded model, lever by lever.

Each variant runs in its own process (so peak RSS is its own) and times the step the engine takes:
policy statistics of a micro-batch, the DPO loss against cached reference log-probs, backward, AdamW.
The batch is 8 conditional pairs shaped like the quick preset's on-policy data (a chat-formatted
instruction of 35-65 tokens whose first 24 are the same system turn, answers of 8-60 tokens; random token
ids). Variants, each changing one
thing from the engine's default (packed rows, shared prefixes, bfloat16 compute, no LoRA dropout, forwards
of at most 1,024 tokens), and the engine as it was before all of them:

    .venv/bin/python perf/train_step.py [--pairs 8] [--steps 5] [--rounds 3] [--quantization 4bit]

Prints seconds per step (median after one warm-up step, then the median over rounds in which the
variants take turns), tokens/s (tokens of both sides of every pair, as in a padded batch without its
padding) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

# name -> (compute dtype, packed, share prefixes, LoRA dropout, gradient checkpointing, max tokens per forward)
VARIANTS = {
    "engine default": ("bfloat16", True, True, 0.0, False, 1024),
    "system turn once per sequence": ("bfloat16", True, True, 0.0, False, 1024),
    "one forward per step": ("bfloat16", True, True, 0.0, False, 0),
    "forwards of 512 tokens": ("bfloat16", True, True, 0.0, False, 512),
    "no prefix sharing": ("bfloat16", True, False, 0.0, False, 1024),
    "padded batch": ("bfloat16", False, False, 0.0, False, 0),
    "float32": ("float32", True, True, 0.0, False, 1024),
    "LoRA dropout 0.05": ("bfloat16", True, True, 0.05, False, 1024),
    "gradient checkpointing": ("bfloat16", True, True, 0.0, True, 1024),
    "float32, padded, dropout 0.05 (before)": ("float32", False, False, 0.05, False, 0),
}


def synthetic_pairs(n: int, seed: int = 0):
    import torch

    from prefbench.engine.encoding import EncodedPairs

    g = torch.Generator().manual_seed(seed)
    rand = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    chosen, rejected = [], []
    system_turn = torch.randint(0, 49152, (24,), generator=g).tolist()
    for _ in range(n):
        prompt = system_turn + torch.randint(0, 49152, (rand(11, 41),), generator=g).tolist()
        for side in (chosen, rejected):
            answer = torch.randint(0, 49152, (rand(8, 60),), generator=g).tolist()
            side.append((prompt + answer, [0] * len(prompt) + [1] * len(answer)))
    return EncodedPairs(chosen, rejected, truncated=0)


def run_variant(name: str, quantization: str, pairs: int, steps: int) -> dict:
    import torch

    from prefbench.engine.adapters import add_lora
    from prefbench.engine.logprobs import pair_logprobs
    from prefbench.engine.models import EMBEDDED, enable_checkpointing, load_base_model
    from prefbench.engine.statistics import BatchStatistics
    from prefbench.registry import get_objective

    dtype, packed, share, dropout, checkpointing, max_tokens = VARIANTS[name]
    if name == "system turn once per sequence":   # pair sharing only: the start all sequences share is not factored out
        from prefbench.engine import packing

        packing._common_start = lambda sequences: []
    model = add_lora(load_base_model(EMBEDDED, quantization, dtype=dtype), dropout=dropout)
    if checkpointing:
        enable_checkpointing(model)
    data = synthetic_pairs(pairs)
    indices = list(range(pairs))
    statistics = BatchStatistics(model, data, pad_id=0, joint=False, packed=packed, share_prefixes=share)
    with torch.no_grad(), model.disable_adapter():
        model.eval()
        ref_chosen, ref_rejected = data.split(BatchStatistics(model, data, 0, True, packed, share)(indices))
    model.train()
    dpo = get_objective("dpo")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():   # as the engine's step: forwards of at most max_tokens tokens, gradients accumulated
        optimizer.zero_grad()
        for part in data.forward_chunks(indices, max_tokens if packed else 0, share):
            chosen, rejected = data.split(statistics(part))
            ix = torch.tensor(part)
            stats = pair_logprobs("response", chosen, rejected, ref_chosen.select(ix), ref_rejected.select(ix))
            (dpo(stats).losses.sum() / len(indices)).backward()
        optimizer.step()

    step()  # warm-up
    times, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    median = sorted(times)[len(times) // 2]
    return {"variant": name, "s_per_step": median, "tokens_per_s": data.tokens(indices) / median,
            "cpu_s_per_step": sorted(cpu)[len(cpu) // 2], "step_seconds": times,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each variant, in rotating order (medians shown)")
    ap.add_argument("--quantization", default="4bit", choices=("4bit", "none"))
    ap.add_argument("--only", help="comma-separated variant names to run (default: all)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.quantization, args.pairs, args.steps)))
        return
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"{args.pairs} pairs, {args.quantization} base, median of {args.steps} steps after one warm-up, "
          f"median over {args.rounds} rounds", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:   # machine noise hits every variant
            out = subprocess.run([sys.executable, __file__, "--variant", name, "--quantization", args.quantization,
                                  "--pairs", str(args.pairs), "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<40}{'s/step':>8}{'tokens/s':>10}{'peak RSS GB':>13}   s/step of each round")
    for name, rows in runs.items():
        median = lambda key: statistics.median(row[key] for row in rows)  # noqa: E731
        each = ", ".join(f"{row['s_per_step']:.2f}" for row in rows)
        print(f"{name:<40}{median('s_per_step'):>8.2f}{median('tokens_per_s'):>10.0f}{median('peak_rss_gb'):>13.2f}   {each}")


if __name__ == "__main__":
    main()
