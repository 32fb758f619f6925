"""The data stage of a run: the benchmark's training pairs, written to ``<run>/data/``.

- ``onpolicy`` (embedded tasks): :func:`prefbench.data.onpolicy.build_data` samples the reference model
  and pairs its scored answers.
- dataset sources (the JPO paper's tasks): the release's conditional and/or joint rankings, or the
  human comparisons of summarize_from_feedback / hh-rlhf, read from the hub or a local copy; ties
  are dropped, and ``max_pairs`` keeps a seeded random sample (the same for every objective).

Either way the stage writes ``train.jsonl`` (prefbench records) and ``summary.json``, whose counts
:func:`describe` prints. On-policy data also gives ``lists.jsonl``: each prompt's scored samples as one list,
which listwise objectives (LiPO-λ, PRO) train on instead of pairs (with a dataset source they take its
conditional pairs as lists of two).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from prefbench.data.onpolicy import build_data, build_lists
from prefbench.formats import human, release
from prefbench.formats.listwise import write_lists
from prefbench.formats.preferences import write_preferences
from prefbench.formats.records import PreferenceRecord
from prefbench.tasks import TaskPrompt
from prefbench.util.files import atomic_write_text, read_json, read_jsonl

LISTS = "lists.jsonl"


def dataset_pairs(spec) -> list[PreferenceRecord]:
    """Every pair the spec's dataset source holds for its task (before ``max_pairs``)."""
    d = spec.data
    if d.source == "release":
        return release.load_release_preferences(spec.task, d.kinds, "train", d.location or release.RELEASE_REPO)
    if d.source == "summarize_from_feedback":
        return human.load_tldr_comparisons(d.location or human.SUMMARIZE_FROM_FEEDBACK)
    if d.source == "hh-rlhf":
        return human.load_hh_rlhf(d.location or human.HH_RLHF, skip_malformed=True)
    raise ValueError(f"not a dataset source: {d.source!r}")


def build_dataset_data(spec, seed: int, out_dir: Path) -> dict:
    """``out_dir/train.jsonl`` and ``summary.json`` from the spec's dataset source."""
    records = dataset_pairs(spec)
    available = len(records)
    if spec.data.max_pairs and available > spec.data.max_pairs:
        keep = sorted(random.Random(seed).sample(range(available), spec.data.max_pairs))
        records = [records[i] for i in keep]
    summary = {"benchmark": spec.name, "task": spec.task, "source": spec.data.source,
               "location": spec.data.location, "kinds": spec.data.kinds, "seed": seed, "available_pairs": available,
               "conditional_pairs": sum(r.kind == "conditional" for r in records),
               "joint_pairs": sum(r.kind == "joint" for r in records)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_preferences(records, out_dir / "train.jsonl")
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def build_run_data(spec, model: str, quantization: str, seed: int, out_dir: Path) -> dict:
    """The training pairs of ``spec`` into ``out_dir``; returns summary.json's content. A complete
    earlier build in ``out_dir`` is reused."""
    out_dir = Path(out_dir)
    if not ((out_dir / "summary.json").exists() and (out_dir / "train.jsonl").exists()):
        if spec.data.source == "onpolicy":
            build_data(spec, model, quantization, seed, out_dir)
        else:
            build_dataset_data(spec, seed, out_dir)
    if spec.data.source == "onpolicy" and not (out_dir / LISTS).exists():
        write_sample_lists(out_dir, spec.data)
    return read_json(out_dir / "summary.json")


def write_sample_lists(out_dir: Path, data) -> None:
    """``out_dir/lists.jsonl`` from the on-policy stage's ``prompts.jsonl`` and ``samples.jsonl`` (``data``: the
    spec's DataSettings); derived here rather than cached with the samples, so a run built before lists existed
    gets them too."""
    prompts = [TaskPrompt.from_json(row) for row in read_jsonl(out_dir / "prompts.jsonl")]
    answers: dict[str, list[tuple]] = {p.id: [] for p in prompts}
    for row in read_jsonl(out_dir / "samples.jsonl"):
        answers[row["id"]].append((row["response"], row["score"], row.get("finished", True)))
    write_lists(build_lists(prompts, [answers[p.id] for p in prompts], data), out_dir / LISTS)


def describe(summary: dict) -> str:
    """One line on what the data stage produced."""
    pairs = f"{summary['conditional_pairs']} conditional + {summary['joint_pairs']} joint pairs"
    if "samples" in summary:
        cut = summary.get("truncated_samples")
        cut_text = "" if cut is None else (
            f"; {cut} ({summary['truncated_share']:.0%}) cut at max_new_tokens, "
            f"{'paired without an end-of-turn' if summary['truncated_samples_paired'] else 'left out of pairs'}")
        return (f"{pairs} from {summary['samples']} samples of {summary['train_prompts']} prompts "
                f"(reference mean score {summary['mean_score']:.3f}, success rate {summary['success_rate']:.1%}"
                f"{cut_text})")
    where = summary["location"] or "the hub"
    return f"{pairs} from {summary['source']} ({where}; {summary['available_pairs']} available, ties dropped)"
