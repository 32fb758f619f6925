"""``prefbench export``: a finished run's artifacts in formats other tools read.

- ``alpaca_eval``: each system's answers to the original eval prompts as AlpacaEval model outputs, a JSON list of
  ``{"instruction", "output", "generator", "dataset"}`` in ``<system>/model_outputs.json`` (AlpacaEval's
  ``results/<model>/model_outputs.json`` layout), and every trained system's in ``all_model_outputs.json`` (the input
  of its ``make_leaderboard``, the reference's file being its ``--reference_outputs``). Robustness variants stay
  out: AlpacaEval judges one answer per instruction.
- ``jsonl``: every answer, variants included, one JSON object a line in ``generations.jsonl``.
- ``csv``: ``leaderboard.csv`` (as the run wrote it) and ``comparisons.csv`` (every pair of objectives).
- ``hf-dataset``: a ``datasets.DatasetDict`` saved with ``save_to_disk``: split ``judgments`` (one row per judged
  answer, with its prompt and response) and split ``outcomes`` (one row per objective and original prompt: the
  outcome against the baseline averaged over seeds, the numbers the win rate's interval is computed over).

Every format is written into a temporary folder beside the output and renamed into place when complete.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from prefbench.evaluation.systems import REFERENCE, System, generations_path
from prefbench.reporting.leaderboard import leaderboard_csv
from prefbench.reporting.load import ReportError, load_results
from prefbench.util.files import atomic_dir, read_jsonl

FORMATS = ("alpaca_eval", "jsonl", "csv", "hf-dataset")
COMPARISON_COLUMNS = ("a", "b", "diff", "diff_low", "diff_high", "p", "p_holm", "significant", "mde")


def export_run(run_dir: Path, fmt: str, output: Path | None = None) -> Path:
    """Write ``fmt`` of the run in ``run_dir`` to ``output`` (default ``<run_dir>/export/<fmt>``), replacing an
    earlier export there; returns the folder."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    output = Path(output) if output else run_dir / "export" / fmt
    prepare = {"alpaca_eval": _alpaca_eval, "jsonl": _jsonl, "csv": _csv, "hf-dataset": _hf_dataset}[fmt]
    # everything is read and checked before the folder is made: a bad file leaves nothing behind
    write = prepare(_Run(run_dir, results, with_judgments=fmt == "hf-dataset"))
    with atomic_dir(output) as folder:
        write(folder)
    return output


class _Run:
    """A run's systems (the reference, then each objective's seeds as results.json lists them) and their
    generations, read and checked up front."""

    def __init__(self, run_dir: Path, results: dict, with_judgments: bool):
        self.results = results
        self.run_dir = run_dir
        self.systems = [System(REFERENCE)] + [System(f"{s.get('objective') or s['name']}/seed{k}",
                                                     s.get("objective") or s["name"], k)
                                              for s in results["systems"] for k in s.get("seeds") or []]
        self.generations = {s.name: _required_jsonl(generations_path(run_dir, s), run_dir) for s in self.systems}
        self.judgments = _required_jsonl(run_dir / "judgments.jsonl", run_dir) if with_judgments else []

    def generator(self, system: System) -> str:
        """A system's name where a slash would make a folder: ``dpo-seed0``, ``reference``."""
        return system.name.replace("/", "-")


def _required_jsonl(path: Path, run_dir: Path) -> list[dict]:
    if not path.is_file():
        raise ReportError(f"{path} not found: {run_dir} is not a finished run (`prefbench run` writes it)")
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ReportError(f"{path}: record {i}: expected an object, got {row!r}")
    return rows


def _field(row: dict, key: str, path: Path, i: int):
    if key not in row:
        raise ReportError(f"{path}: record {i}: no {key!r}")
    return row[key]


def _alpaca_eval(run: _Run) -> Callable[[Path], None]:
    outputs = {}
    for system in run.systems:
        where = generations_path(run.run_dir, system)
        outputs[run.generator(system)] = [
            {"instruction": _field(g, "prompt", where, i), "output": _field(g, "response", where, i),
             "generator": run.generator(system), "dataset": run.results.get("benchmark")}
            for i, g in enumerate(run.generations[system.name], 1) if g.get("variant", "original") == "original"]

    def write(folder: Path) -> None:
        for generator, rows in outputs.items():
            (folder / generator).mkdir()
            _write_json(folder / generator / "model_outputs.json", rows)
        _write_json(folder / "all_model_outputs.json",
                    [row for generator, rows in outputs.items() if generator != REFERENCE for row in rows])
    return write


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _jsonl(run: _Run) -> Callable[[Path], None]:
    text = "".join(json.dumps({**g, "system": system.name, "objective": system.objective, "seed": system.seed},
                              ensure_ascii=False) + "\n"
                   for system in run.systems for g in run.generations[system.name])
    return lambda folder: (folder / "generations.jsonl").write_text(text, encoding="utf-8")


def _csv(run: _Run) -> Callable[[Path], None]:
    leaderboard = leaderboard_csv(run.results)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COMPARISON_COLUMNS)
    for c in run.results.get("comparisons") or []:
        diff = c["diff"]
        w.writerow([c["a"], c["b"], diff["estimate"], diff["low"], diff["high"], c.get("p"), c.get("p_holm"),
                    c.get("significant"), c.get("mde")])

    def write(folder: Path) -> None:
        (folder / "leaderboard.csv").write_text(leaderboard, encoding="utf-8")
        (folder / "comparisons.csv").write_text(buf.getvalue(), encoding="utf-8")
    return write


def _judgment_rows(run: _Run) -> list[dict]:
    """judgments.jsonl with every row in the same columns (a flag a task does not have is None) and the prompt
    and response judged."""
    texts = {(name, g.get("id")): g for name, rows in run.generations.items() for g in rows}
    objective = {s.name: (s.objective, s.seed) for s in run.systems}
    path = run.run_dir / "judgments.jsonl"
    out = []
    for i, r in enumerate(run.judgments, 1):
        system, id_ = _field(r, "system", path, i), _field(r, "id", path, i)
        gen = texts.get((system, id_))
        if gen is None:
            raise ReportError(f"{path}: record {i}: no answer of {system} to prompt {id_} in its generations")
        out.append({"system": system, "objective": objective.get(system, (None, None))[0],
                    "seed": objective.get(system, (None, None))[1], "baseline": r.get("baseline"), "id": id_,
                    "parent": r.get("parent"), "variant": r.get("variant"), "prompt": gen.get("prompt"),
                    "response": gen.get("response"), "score": r.get("score"), "baseline_score": r.get("baseline_score"),
                    "outcome": r.get("outcome"), "words": r.get("words"), "baseline_words": r.get("baseline_words"),
                    "finished": r.get("finished"), "gaming": r.get("gaming")})
    return out


def _outcome_rows(judgments: list[dict], baseline: str) -> list[dict]:
    """One row per (objective, original prompt): the outcomes (and scores) of its seeds against ``baseline``
    and their means, in the run's prompt order."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for r in judgments:
        if r["objective"] and r["baseline"] == baseline and r["variant"] == "original":
            grouped.setdefault((r["objective"], r["id"]), []).append(r)
    out = []
    for (objective, id_), rows in grouped.items():
        rows.sort(key=lambda r: r["seed"])
        outcomes, scores = [r["outcome"] for r in rows], [r["score"] for r in rows]
        out.append({"objective": objective, "id": id_, "prompt": rows[0]["prompt"], "baseline": baseline,
                    "seeds": [r["seed"] for r in rows], "outcomes": outcomes, "outcome": sum(outcomes) / len(outcomes),
                    "scores": scores, "score": sum(scores) / len(scores)})
    return out


def _hf_dataset(run: _Run) -> Callable[[Path], None]:
    import datasets

    judgments = _judgment_rows(run)
    features = datasets.Features({
        "system": datasets.Value("string"), "objective": datasets.Value("string"), "seed": datasets.Value("int64"),
        "baseline": datasets.Value("string"), "id": datasets.Value("string"), "parent": datasets.Value("string"),
        "variant": datasets.Value("string"), "prompt": datasets.Value("string"), "response": datasets.Value("string"),
        "score": datasets.Value("float64"), "baseline_score": datasets.Value("float64"),
        "outcome": datasets.Value("float64"), "words": datasets.Value("int64"),
        "baseline_words": datasets.Value("int64"),
        "finished": datasets.Value("bool"), "gaming": datasets.List(datasets.Value("string"))})
    outcome_features = datasets.Features({
        "objective": datasets.Value("string"), "id": datasets.Value("string"), "prompt": datasets.Value("string"),
        "baseline": datasets.Value("string"), "seeds": datasets.List(datasets.Value("int64")),
        "outcomes": datasets.List(datasets.Value("float64")), "outcome": datasets.Value("float64"),
        "scores": datasets.List(datasets.Value("float64")), "score": datasets.Value("float64")})
    try:
        splits = datasets.DatasetDict({
            "judgments": datasets.Dataset.from_list(judgments, features=features),
            "outcomes": datasets.Dataset.from_list(_outcome_rows(judgments, run.results.get("baseline", REFERENCE)),
                                                   features=outcome_features)})
    except (TypeError, ValueError) as exc:   # a value of another type than its column's (Arrow's errors are these)
        raise ReportError(f"{run.run_dir / 'judgments.jsonl'}: {exc}") from None
    return lambda folder: splits.save_to_disk(str(folder))
