"""Peak resident memory of a QLoRA training process on the embedded model, stage by stage.

    .venv/bin/python perf/memory.py [--max-forward-tokens 1024]

Prints the process's peak RSS after the imports, after loading the 4-bit model with its LoRA adapter,
after the reference pass over 8 synthetic conditional pairs (as in perf/train_step.py), and after one
forward and backward of the same pairs in forwards of at most ``--max-forward-tokens`` tokens.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path


def peak(stage: str) -> None:
    print(f"{stage:<32}{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:6.2f} GB peak RSS", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-forward-tokens", type=int, default=1024)
    args = ap.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from train_step import synthetic_pairs

    from prefbench.engine.adapters import add_lora
    from prefbench.engine.models import EMBEDDED, load_base_model
    from prefbench.engine.statistics import BatchStatistics

    peak("imports")
    model = add_lora(load_base_model(EMBEDDED, "4bit", dtype="auto"), dropout=0.0)
    peak("4-bit model and adapter loaded")
    data, indices = synthetic_pairs(8), list(range(8))
    with torch.no_grad(), model.disable_adapter():
        model.eval()
        BatchStatistics(model, data, 0, True, True, True)(indices)
    peak("reference pass")
    model.train()
    for part in data.forward_chunks(indices, args.max_forward_tokens, True):
        BatchStatistics(model, data, 0, False, True, True)(part).response_logps.sum().backward()
    peak("forward and backward")


if __name__ == "__main__":
    main()
