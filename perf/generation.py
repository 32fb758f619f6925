"""Answers/s of the generate stage's decoding on the embedded model, and whether greedy answers change.

Greedy answers to the ifeval-lite quick preset's eval prompts (40 prompts and their 4 robustness
variants, at most 48 new tokens), the way the generate stage decodes them, under each setting below,
each in its own process and in rotating order over ``--rounds``:

    .venv/bin/python perf/generation.py [--prompts 200] [--rounds 3]

Prints answers/s (median over rounds), generated tokens/s, peak RSS, and how many answers differ from
the first setting's (the reference: float32, as the stage decoded before).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

# name -> (compute dtype, prompts per batch); "x32": 32 prompts per batch
SETTINGS = {
    "float32 x32 (before)": ("float32", 32),
    "float32 x64": ("float32", 64),
    "bfloat16 x32": ("bfloat16", 32),
    "bfloat16 x64": ("bfloat16", 64),
    "bfloat16 x128": ("bfloat16", 128),
}


def eval_prompts(n: int) -> list:
    from prefbench.benchmark import load_benchmark
    from prefbench.pipeline.config import eval_prompts as with_variants

    return [p.text for p in with_variants(load_benchmark("ifeval-lite", "quick"))][:n]


def run_setting(name: str, n: int) -> dict:
    from prefbench.engine.generation import GenerationSettings, generate
    from prefbench.engine.models import EMBEDDED, load_inference_model, load_tokenizer

    dtype, batch = SETTINGS[name]
    prompts = eval_prompts(n)
    tokenizer = load_tokenizer(EMBEDDED)
    model = load_inference_model(EMBEDDED, "4bit", dtype)
    settings = GenerationSettings(max_new_tokens=48, batch_size=batch)
    generate(model, tokenizer, prompts[:batch], settings)   # warm-up
    t0 = time.perf_counter()
    answers = generate(model, tokenizer, prompts, settings)
    seconds = time.perf_counter() - t0
    tokens = sum(len(tokenizer(a[0].text)["input_ids"]) for a in answers)
    return {"setting": name, "answers_per_s": len(prompts) / seconds, "tokens_per_s": tokens / seconds,
            "seconds": seconds, "answers": [a[0].text for a in answers],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma-separated setting names (default: all)")
    ap.add_argument("--setting", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.setting:
        print(json.dumps(run_setting(args.setting, args.prompts)))
        return
    names = args.only.split(",") if args.only else list(SETTINGS)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = subprocess.run([sys.executable, __file__, "--setting", name, "--prompts", str(args.prompts)],
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs[names[0]][0]["answers"]
    print(f"{args.prompts} prompts, at most 48 new tokens, greedy; median over {args.rounds} rounds")
    print(f"{'setting':<28}{'answers/s':>10}{'tokens/s':>10}{'peak RSS GB':>13}{'answers differing':>19}")
    for name, rows in runs.items():
        median = lambda key: statistics.median(row[key] for row in rows)  # noqa: E731
        differ = sum(a != b for a, b in zip(rows[0]["answers"], first))
        print(f"{name:<28}{median('answers_per_s'):>10.2f}{median('tokens_per_s'):>10.0f}"
              f"{median('peak_rss_gb'):>13.2f}{differ:>19}")


if __name__ == "__main__":
    main()
