"""``prefbench demo``: identical QLoRA runs of several objectives on the embedded model.

Real work end to end on a CPU in a few minutes: the built-in batch of conditional and joint pairs
is written to the run folder, then the training engine trains each objective from the same adapter
initialisation with the same batches, optimizer and schedule (reference log-probs are computed
once and reused from the cache). A re-run with the same settings reuses the finished adapters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from prefbench.engine.config import TrainConfig
from prefbench.engine.trainer import train
from prefbench.formats.preferences import write_preferences
from prefbench.formats.records import PreferenceRecord
from prefbench.registry import Objective

# A small built-in batch: conditional pairs (shared instruction) and joint pairs (different instructions).
EXAMPLE_PAIRS = [
    {"prompt_chosen": "Answer in at most five words: what is the capital of France?",
     "response_chosen": "Paris is the capital.",
     "prompt_rejected": "Answer in at most five words: what is the capital of France?",
     "response_rejected": "The capital city of the country of France, located in Europe, is the city of Paris.",
     "kind": "conditional"},
    {"prompt_chosen": "Reply in lowercase only: name a primary colour.",
     "response_chosen": "red is a primary colour.",
     "prompt_rejected": "Reply in lowercase only: name a primary colour.",
     "response_rejected": "RED Is A Primary Colour.",
     "kind": "conditional"},
    {"prompt_chosen": "List two fruits as bullet points.",
     "response_chosen": "- apple\n- banana",
     "prompt_rejected": "List two fruits as bullet points.",
     "response_rejected": "Apples and bananas are two fruits that many people enjoy.",
     "kind": "conditional"},
    {"prompt_chosen": "End your answer with the word 'done': how many legs does a spider have?",
     "response_chosen": "A spider has eight legs. done",
     "prompt_rejected": "End your answer with the word 'done': how many days are in a week?",
     "response_rejected": "There are seven days in a week.",
     "kind": "joint"},
    {"prompt_chosen": "Write one positive sentence about the ocean.",
     "response_chosen": "The ocean is a wonderful, calming and beautiful place.",
     "prompt_rejected": "Write one positive sentence about mountains.",
     "response_rejected": "Mountains are cold, dangerous and exhausting to climb.",
     "kind": "joint"},
    {"prompt_chosen": "Answer in one word: what colour is the sky on a clear day?",
     "response_chosen": "Blue.",
     "prompt_rejected": "Answer in one word: what do bees make?",
     "response_rejected": "Bees make a sweet sticky food called honey inside their hives.",
     "kind": "joint"},
]



def run_demo(objectives: list[Objective], steps: int = 8, seed: int = 0, output_dir: str = "runs/demo") -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(output_dir)
    data = root / "data" / "pairs.jsonl"
    write_preferences([PreferenceRecord(**r) for r in EXAMPLE_PAIRS], data)
    results = []
    for obj in objectives:
        cfg = TrainConfig(data=str(data), objective=obj.name, max_steps=steps, batch_size=len(EXAMPLE_PAIRS),
                          lr=5e-4, warmup_steps=1, seed=seed, output_dir=str(root / obj.name / f"seed{seed}"))
        out = train(cfg)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        results.append({"objective": obj.name, "first": rows[0], "last": rows[-1],
                        "tokens_per_s": sum(r["tokens"] for r in rows) / sum(r["tokens"] / r["tokens_per_s"] for r in rows)})
    _print_table(results)
    print(f"\nper-step metrics and adapters: {root}/<objective>/seed{seed}/")
    return results


def _print_table(results: list[dict]) -> None:
    print(f"\n{'objective':<10}{'loss first→last':>22}{'reward acc first→last':>25}{'margin last':>13}{'tokens/s':>10}")
    for r in results:
        f, l = r["first"], r["last"]
        print(f"{r['objective']:<10}{f['loss']:>10.4f} → {l['loss']:<9.4f}{f['accuracy']:>11.2f} → {l['accuracy']:<11.2f}"
              f"{l['margin']:>13.4f}{r['tokens_per_s']:>10.0f}")
