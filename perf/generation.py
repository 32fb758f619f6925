"""Answers/s of the generate stage's decoding on the embedded model, and whether greedy answers change.

Greedy answers to the ifeval-lite quick preset's eval prompts (40 prompts and their 4 robustness
variants, at most 48 new tokens), the way the generate stage decodes them, under each setting below,
each in its own process and in rotating order over ``--rounds``:

    .venv/bin/python perf/generation.py [--prompts 200] [--rounds 3]

Prints answers/s (median over rounds), generated tokens/s, peak RSS, and how many answers differ from
the first setting's: transformers' own greedy ``generate`` in float32, 32 prompts per batch (the stage's
decoding before prefbench's loop, which drops ended rows and computes the shared system turn once).

A trained system's decoding, PEFT's model against the stage's :class:`~prefbench.engine.adapters.LoRALinear`
layers (the first named setting is the one answers are compared with):

    .venv/bin/python perf/generation.py --adapter runs/ifeval-lite-quick/dpo/seed0/adapter \
        --only "adapter peft bfloat16 x128,adapter lora-linear bf16 x128,prefbench bfloat16 x128"
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

# name -> (compute dtype, rows per batch, decoding loop, how a trained adapter is applied); "x32": 32 rows per batch.
# The adapter settings need --adapter (a trained adapter folder, e.g. runs/ifeval-lite-quick/dpo/seed0/adapter):
# "peft" decodes PEFT's own model (the stage before LoRALinear), "lora-linear" the stage's with_adapter policy.
SETTINGS = {
    "transformers float32 x32": ("float32", 32, "transformers", None),
    "transformers bfloat16 x128": ("bfloat16", 128, "transformers", None),
    "prefbench float32 x128": ("float32", 128, "prefbench", None),
    "prefbench bfloat16 x128": ("bfloat16", 128, "prefbench", None),
    "adapter peft bfloat16 x128": ("bfloat16", 128, "prefbench", "peft"),
    "adapter lora-linear bf16 x128": ("bfloat16", 128, "prefbench", "lora-linear"),
}


def eval_prompts(n: int) -> list:
    from prefbench.benchmark import load_benchmark
    from prefbench.pipeline.config import eval_prompts as with_variants

    return [p.text for p in with_variants(load_benchmark("ifeval-lite", "quick"))][:n]


def run_setting(name: str, n: int, adapter: str | None) -> dict:
    from prefbench.engine.adapters import with_adapter
    from prefbench.engine.generation import GenerationSettings, generate
    from prefbench.engine.models import EMBEDDED, load_inference_model, load_tokenizer

    dtype, batch, loop, applied = SETTINGS[name]
    prompts = eval_prompts(n)
    tokenizer = load_tokenizer(EMBEDDED)
    model = load_inference_model(EMBEDDED, "4bit", dtype)
    if applied == "lora-linear":
        model = with_adapter(model, adapter, copy=False)
    elif applied == "peft":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
        for param_name, p in model.named_parameters():
            if "lora_" in param_name:
                p.data = p.data.to(model.get_base_model().dtype)
    decode = generate if loop == "prefbench" else transformers_generate
    settings = GenerationSettings(max_new_tokens=48, batch_size=batch)
    decode(model, tokenizer, prompts[:batch], settings)   # warm-up
    t0 = time.perf_counter()
    answers = [a if isinstance(a, str) else a[0].text for a in decode(model, tokenizer, prompts, settings)]
    seconds = time.perf_counter() - t0
    tokens = sum(len(tokenizer(a)["input_ids"]) for a in answers)
    return {"setting": name, "answers_per_s": len(prompts) / seconds, "tokens_per_s": tokens / seconds,
            "seconds": seconds, "answers": answers,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def transformers_generate(model, tokenizer, prompts: list[str], settings) -> list[str]:
    """Greedy answers from transformers' ``generate``: length-sorted, left-padded batches of
    ``settings.batch_size`` prompts under the model's compute dtype, as the stage decoded before."""
    import torch

    from prefbench.engine.adapters import adapter_compute
    from prefbench.engine.formatting import encode_prompt

    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for start in range(0, len(order), settings.batch_size):
        idx = order[start:start + settings.batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in idx])
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx])
        with torch.inference_mode(), adapter_compute(model):
            tokens = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens,
                                    do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                                    eos_token_id=tokenizer.eos_token_id)
        for i, text in zip(idx, tokenizer.batch_decode(tokens[:, width:], skip_special_tokens=True)):
            out[i] = text.strip()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma-separated setting names (default: all)")
    ap.add_argument("--adapter", help="a trained adapter folder, for the adapter settings")
    ap.add_argument("--setting", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.setting:
        print(json.dumps(run_setting(args.setting, args.prompts, args.adapter)))
        return
    names = args.only.split(",") if args.only else list(SETTINGS)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = subprocess.run([sys.executable, __file__, "--setting", name, "--prompts", str(args.prompts)]
                                 + (["--adapter", args.adapter] if args.adapter else []),
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs[names[0]][0]["answers"]
    print(f"{args.prompts} prompts, at most 48 new tokens, greedy; median over {args.rounds} rounds")
    print(f"{'setting':<31}{'answers/s':>10}{'tokens/s':>10}{'peak RSS GB':>13}{'answers differing':>19}")
    for name, rows in runs.items():
        median = lambda key: statistics.median(row[key] for row in rows)  # noqa: E731
        differ = sum(a != b for a, b in zip(rows[0]["answers"], first))
        print(f"{name:<31}{median('answers_per_s'):>10.2f}{median('tokens_per_s'):>10.0f}"
              f"{median('peak_rss_gb'):>13.2f}{differ:>19}")


if __name__ == "__main__":
    main()
