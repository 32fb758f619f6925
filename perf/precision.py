"""How far bfloat16 compute moves the engine's log-probabilities from float32, on the embedded model.

The statistics every objective reads (summed log-probs of the response span and of the joint span) of
real preference pairs, computed by the training engine's packed path on the 4-bit base (the reference
model, the initial policy), once with ``compute_dtype: float32`` and once with ``bfloat16``:

    .venv/bin/python perf/precision.py [--pairs 32] [--data runs/data/ifeval-lite-quick-seed0/train.jsonl]

Prints, per span, the mean absolute difference per token and the largest per sequence, and the DPO loss
of the pairs with the bfloat16 policy against the float32 reference (ln 2 = 0.6931 when they agree).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

DEFAULT_DATA = "runs/data/ifeval-lite-quick-seed0/train.jsonl"


def statistics(dtype: str, records, quantization: str):
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.models import EMBEDDED, load_base_model, load_tokenizer
    from prefbench.engine.statistics import BatchStatistics

    model = load_base_model(EMBEDDED, quantization, dtype=dtype).eval()
    pairs = encode_pairs(records, load_tokenizer(EMBEDDED), max_length=512)
    with torch.no_grad():
        return pairs.split(BatchStatistics(model, pairs, 0, joint=True, packed=True, share_prefixes=True)(
            list(range(len(pairs)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--data", default=DEFAULT_DATA, help="preference file (built with `prefbench data build` if the "
                                                         "default is missing)")
    ap.add_argument("--quantization", default="4bit", choices=("4bit", "none"))
    args = ap.parse_args()
    from prefbench.formats.preferences import load_preferences

    if not Path(args.data).exists():
        raise SystemExit(f"{args.data} not found: run `prefbench data build --benchmark ifeval-lite` first")
    records = load_preferences(args.data)[:args.pairs]
    full = statistics("float32", records, args.quantization)
    half = statistics("bfloat16", records, args.quantization)
    print(f"{len(records)} pairs of {args.data}, {args.quantization} base, bfloat16 vs float32 compute")
    for span in ("response", "joint"):
        diff = torch.cat([(h.span(span)[0] - f.span(span)[0]).abs() for h, f in zip(half, full)])
        tokens = torch.cat([f.span(span)[1] for f in full])
        print(f"{span:>9} span: {diff.sum().item() / tokens.sum().item():.4f} nats per token on average, at most "
              f"{diff.max().item():.2f} nats per sequence ({tokens.float().mean().item():.0f} tokens on average)")
    (fc, fr), (hc, hr) = full, half
    margin = (hc.response_logps - fc.response_logps) - (hr.response_logps - fr.response_logps)
    loss = torch.nn.functional.softplus(-0.1 * margin).mean().item()
    print(f"DPO loss (beta 0.1) of the bfloat16 policy against the float32 reference: {loss:.4f} "
          f"(ln 2 = {math.log(2):.4f})")


if __name__ == "__main__":
    main()
