"""Tokens/s and peak memory of one training step on the embedded model.

Variants: QLoRA (4-bit NF4 base) vs LoRA (fp32 base), with reference log-probs cached (the
engine's way) vs recomputed by an extra adapter-disabled forward every step (the naive way); QLoRA
with cached reference and gradient checkpointing (``gradient_checkpointing: true``). Also a no-grad
forward of the same batch, to put the loss cost in proportion. Each variant runs
in its own process so peak RSS is its own.

    .venv/bin/python perf/train_step.py [--pairs 8] [--tokens 128] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VARIANTS = [("4bit", "cached"), ("4bit", "per-step"), ("4bit", "checkpointed"), ("none", "cached"), ("none", "per-step"),
            ("4bit", "forward-only")]


def run_variant(quantization: str, reference: str, pairs: int, tokens: int, steps: int) -> dict:
    import torch

    from prefbench.engine.logprobs import model_sequence_logprobs, pair_logprobs
    from prefbench.engine.models import EMBEDDED, add_lora, enable_checkpointing, load_base_model
    from prefbench.registry import get_objective

    model = add_lora(load_base_model(EMBEDDED, quantization))
    model.train()  # as the engine trains: LoRA dropout on (from_pretrained leaves a model in eval mode)
    if reference == "checkpointed":  # as the engine does with gradient_checkpointing: true
        enable_checkpointing(model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2 * pairs, tokens), generator=g)
    attn, resp = torch.ones_like(ids), torch.zeros_like(ids)
    resp[:, tokens // 2:] = 1
    dpo = get_objective("dpo")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def ref_stats():
        with torch.no_grad(), model.disable_adapter():
            return model_sequence_logprobs(model, ids, attn, resp)

    cached = ref_stats()

    def step():
        if reference == "forward-only":
            with torch.inference_mode():
                model_sequence_logprobs(model, ids, attn, resp)
            return
        ref = ref_stats() if reference == "per-step" else cached
        pol = model_sequence_logprobs(model, ids, attn, resp)
        loss = dpo(pair_logprobs("response", *pol.split_pairs(), *ref.split_pairs())).losses.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    return {"quantization": quantization, "reference": reference, "s_per_step": median,
            "tokens_per_s": 2 * pairs * tokens / median,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(*args.variant.split(":"), args.pairs, args.tokens, args.steps)))
        return
    print(f"{args.pairs} pairs x 2 sides x {args.tokens} tokens, median of {args.steps} steps after one warm-up")
    print(f"{'base':<6}{'reference':<14}{'s/step':>8}{'tokens/s':>10}{'peak RSS GB':>13}")
    for q, r in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", f"{q}:{r}", "--pairs", str(args.pairs),
                              "--tokens", str(args.tokens), "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{q:<6}{r:<14}{row['s_per_step']:>8.2f}{row['tokens_per_s']:>10.0f}{row['peak_rss_gb']:>13.2f}")


if __name__ == "__main__":
    main()
