"""Calibrate a benchmark on a model: how often the reference meets each constraint family.

Samples the reference model on the benchmark's training prompts with the spec's data settings (the
same samples on-policy data is built from) and prints the mean gold score, the share of answers
scoring 1.0, and per constraint family the share of constraints met — the numbers that say whether
pairs will form (families met roughly 15–60% of the time) and whether there is room to improve.

    .venv/bin/python perf/calibrate.py --benchmark ifeval-lite --prompts 48 [--quantization 4bit]
"""

from __future__ import annotations

import argparse
import collections
import json
import time


def main() -> None:
    from prefbench.benchmark import load_benchmark
    from prefbench.engine.generation import GenerationSettings, generate
    from prefbench.engine.models import EMBEDDED, load_inference_model, load_tokenizer
    from prefbench.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--benchmark", default="ifeval-lite")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--samples", type=int, default=None, help="samples per prompt (default: the spec's)")
    ap.add_argument("--model", default=EMBEDDED)
    ap.add_argument("--quantization", default="4bit")
    ap.add_argument("--split", default="train")
    ap.add_argument("--greedy", action="store_true", help="greedy answers (as in evaluation) instead of samples")
    args = ap.parse_args()

    spec = load_benchmark(args.benchmark, args.preset)
    task = get_task(spec.task)
    prompts = task.prompts(args.split, args.prompts, 0)
    # the model the data stage samples: the reference in the run's compute dtype
    model = load_inference_model(args.model, args.quantization, spec.compute_dtype)
    tokenizer = load_tokenizer(args.model)
    samples = 1 if args.greedy else (args.samples or spec.data.samples_per_prompt)
    settings = GenerationSettings(max_new_tokens=spec.data.max_new_tokens, do_sample=not args.greedy,
                                  temperature=spec.data.temperature, top_p=spec.data.top_p, num_samples=samples)
    t0 = time.perf_counter()
    answers = generate(model, tokenizer, [p.text for p in prompts], settings)
    seconds = time.perf_counter() - t0
    scores, family = [], collections.defaultdict(list)
    gates = collections.Counter()
    for p, completions in zip(prompts, answers):
        for text in (c.text for c in completions):
            d = task.score_details(p, text)
            scores.append(d["score"])
            for c in d.get("constraints", []):
                family[c["kind"]].append(bool(c["passed"]))
            gates["degenerate"] += bool(d.get("degenerate"))
            gates["off-topic"] += not d.get("on_topic", True)
            gates["gaming"] += bool(d.get("gaming"))
    n = len(scores)
    print(json.dumps({"benchmark": spec.name, "model": args.model, "quantization": args.quantization,
                      "mode": "greedy" if args.greedy else f"T={spec.data.temperature}, top_p={spec.data.top_p}",
                      "answers": n, "seconds": round(seconds, 1), "mean_score": round(sum(scores) / n, 3),
                      "success_rate": round(sum(s >= 1.0 for s in scores) / n, 3),
                      "degenerate": round(gates["degenerate"] / n, 3), "off_topic": round(gates["off-topic"] / n, 3),
                      "gaming": round(gates["gaming"] / n, 3)}))
    for kind, met in sorted(family.items()):
        print(f"  {kind:<18} met {sum(met) / len(met):6.1%}  of {len(met)}")


if __name__ == "__main__":
    main()
