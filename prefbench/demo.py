"""``prefbench demo``: identical QLoRA runs of several objectives on the embedded model.

Real work end to end on a CPU in a few minutes: the built-in batch of conditional and joint pairs
is written to the run folder, then ``prefbench.train`` trains each objective from the same adapter
initialisation with the same batches, optimizer and schedule (reference log-probs are computed
once and reused from the cache). A re-run with the same settings reuses the finished adapters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from prefbench.config import TrainConfig
from prefbench.data import PreferenceRecord, write_preferences
from prefbench.example_pairs import EXAMPLE_PAIRS
from prefbench.objective import Objective
from prefbench.train import train


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
