"""Micro-benchmarks behind the engine's kernel choices, on this CPU, at the embedded model's shapes.

    .venv/bin/python perf/cpu_kernels.py [--repeats 20]

- matrix multiply [1024, 576] x [576, 1536] in bfloat16 vs float32: why compute runs under bf16 autocast;
- scaled-dot-product attention forward+backward of one 100-token sequence (9 query heads, 3 key/value heads,
  head size 64) in bfloat16 vs float32: why packed blocks attend in float32 on the CPU
  (``engine/attention.py``);
- a dropout mask for 1.2M activations from ``torch.bernoulli`` vs from random bytes compared with a
  threshold: why LoRA dropout draws bytes (``engine/adapters.py``).

Prints the median milliseconds of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def median_ms(fn, repeats: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def matmul(dtype: torch.dtype):
    a, b = torch.randn(1024, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    return lambda: a @ b


def attention(dtype: torch.dtype):
    q = torch.randn(1, 9, 100, 64, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(1, 3, 100, 64, dtype=dtype, requires_grad=True) for _ in range(2))

    def run():
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).sum().backward()
    return run


def dropout_mask(kind: str):
    x = torch.empty(16, 128, 576)
    if kind == "bernoulli":
        return lambda: torch.bernoulli(torch.full_like(x, 0.95))
    n, threshold = x.numel(), round(0.05 * 256)   # eight mask bytes per int64 draw, as LoRADropout does
    return lambda: torch.empty((n + 7) // 8, dtype=torch.int64).random_(-2**63, 2**63 - 1).view(torch.uint8)[:n] \
        >= threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = [("matmul 1024x576 @ 576x1536", matmul(torch.float32), matmul(torch.bfloat16), "float32", "bfloat16"),
            ("SDPA fwd+bwd, 100 tokens", attention(torch.float32), attention(torch.bfloat16), "float32", "bfloat16"),
            ("dropout mask, 1.2M values", dropout_mask("bernoulli"), dropout_mask("bytes"), "bernoulli", "bytes")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'kernel':<30}{'A':>12}{'ms':>9}{'B':>12}{'ms':>9}{'A/B':>7}")
    for name, a, b, name_a, name_b in rows:
        ms_a, ms_b = median_ms(a, args.repeats), median_ms(b, args.repeats)
        print(f"{name:<30}{name_a:>12}{ms_a:>9.2f}{name_b:>12}{ms_b:>9.2f}{ms_a / ms_b:>7.2f}")


if __name__ == "__main__":
    main()
