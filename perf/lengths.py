"""How many of the embedded model's answers end within each generation limit (the rest are cut off).

Sampled answers to ifeval-lite training prompts as the data stage draws them (T=0.7, top-p 0.9) and
greedy answers to its eval prompts as the generate stage decodes them, each allowed ``--max`` new
tokens; prints the share that ended within each cap:

    .venv/bin/python perf/lengths.py [--prompts 64] [--max 160]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64, help="training prompts (2 samples each); eval: 40 prompts")
    ap.add_argument("--max", type=int, default=160)
    args = ap.parse_args()
    from prefbench.engine.generation import GenerationSettings, generate
    from prefbench.engine.models import EMBEDDED, load_inference_model, load_tokenizer
    from prefbench.tasks import get_task

    task = get_task("ifeval-lite")
    tokenizer, model = load_tokenizer(EMBEDDED), load_inference_model(EMBEDDED, "4bit", "auto")
    sampled = generate(model, tokenizer, [p.text for p in task.prompts("train", args.prompts, 0)],
                       GenerationSettings(max_new_tokens=args.max, do_sample=True, temperature=0.7, top_p=0.9,
                                          num_samples=2, batch_size=64))
    greedy = generate(model, tokenizer, [p.text for p in task.prompts("eval", 40, 0)],
                      GenerationSettings(max_new_tokens=args.max, batch_size=64))
    caps = [c for c in (32, 48, 64, 80, 96, 128, 160, 256) if c <= args.max]
    print(f"{'answers':<34}" + "".join(f"{'≤' + str(c):>7}" for c in caps))
    for name, answers in ((f"sampled, {2 * args.prompts} train answers", [c for cs in sampled for c in cs]),
                          ("greedy, 40 eval answers", [cs[0] for cs in greedy])):
        print(f"{name:<34}" + "".join(f"{sum(a.finished and a.tokens <= c for a in answers) / len(answers):>7.0%}"
                                      for c in caps))


if __name__ == "__main__":
    main()
