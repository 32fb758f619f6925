"""Work per second of one process using every thread, against two processes at once with half the threads each
(the local executor's default on a CPU without a GPU, ``prefbench.util.processes``), on the embedded model:

- training: ``perf/train_step.py``'s engine default (8 chat-shaped pairs, QLoRA, bfloat16), steps per second;
- decoding: ``perf/generation.py``'s prefbench bfloat16 setting (200 eval prompts, 128 rows), answers per second.

    .venv/bin/python perf/workers.py [--rounds 2] [--steps 5] [--prompts 200]

In each round the two ways take turns; prints each way's throughput per round and the ratio of the medians
(two processes over one). Each process is the speed script's own (``--variant`` / ``--setting``), with
``OMP_NUM_THREADS`` set to its share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _launch(command: list[str], threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"{process.args} failed with status {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def throughput(command: list[str], key: str, processes: int, threads: int) -> float:
    """The summed ``key`` (work per second) of ``processes`` copies of ``command`` run at once."""
    running = [_launch(command, threads) for _ in range(processes)]
    return sum(_rate(_result(p), key) for p in running)


def _rate(row: dict, key: str) -> float:
    return 1 / row["s_per_step"] if key == "steps_per_s" else row[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="training steps timed per process (after a warm-up)")
    ap.add_argument("--prompts", type=int, default=200, help="eval prompts each decoding process answers")
    args = ap.parse_args()
    import torch

    threads = torch.get_num_threads()
    work = {"training": ([str(HERE / "train_step.py"), "--variant", "engine default", "--steps", str(args.steps)],
                         "steps_per_s"),
            "decoding": ([str(HERE / "generation.py"), "--setting", "prefbench bfloat16 x128", "--prompts",
                          str(args.prompts)], "answers_per_s")}
    half = max(1, threads // 2)
    ways = {f"1 process x {threads} threads": (1, threads), f"2 processes x {half} threads": (2, half)}
    print(f"{threads} threads; each way's work per second, summed over its processes, per round")
    for name, (command, key) in work.items():
        seen: dict[str, list[float]] = {way: [] for way in ways}
        for r in range(args.rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for way in order:
                seen[way].append(throughput(command, key, *ways[way]))
        medians = {way: statistics.median(values) for way, values in seen.items()}
        for way, values in seen.items():
            print(f"{name:<10} {way:<26} {key} {medians[way]:7.3f}   rounds: "
                  + ", ".join(f"{v:.3f}" for v in values))
        one, two = medians.values()
        print(f"{name:<10} two processes / one: {two / one:.2f}x")


if __name__ == "__main__":
    main()
