"""Reading what earlier stages wrote: ``results.json`` (checked field by field, so a damaged file fails
with the field named) and each system's training ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefbench.evaluation.results import SCHEMA
from prefbench.util.errors import UserError
from prefbench.util.names import closest, suggest

ROBUSTNESS_FIELDS = ("mean", "drop", "worst", "spread", "flip_rate")


class ReportError(UserError, ValueError):
    """A run directory that cannot be reported: names the path and what to do about it."""


def load_results(run_dir: Path) -> dict[str, Any]:
    """Read and check ``run_dir/results.json`` (schema 1)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        siblings = [p.name for p in run_dir.parent.iterdir() if p.is_dir()] if run_dir.parent.is_dir() else []
        match = closest(run_dir.name, siblings, 0.6)
        hint = f" (did you mean {run_dir.parent / match}?)" if match else ""
        raise ReportError(f"run directory {run_dir} does not exist{hint}")
    path = run_dir / "results.json"
    if not path.is_file():
        raise ReportError(f"{path} not found: run `prefbench eval {run_dir}` first "
                          "(it judges the generations and writes results.json)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e}); re-run `prefbench eval {run_dir}`") from e
    _check_results(results, path)
    return results


def _check_interval(value: Any, where: str, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an interval {{estimate, low, high}}, got {value!r}")
    for key in ("estimate", "low", "high"):
        if not isinstance(value.get(key), (int, float)):
            raise ReportError(f"{where}.{key}: expected a number, got {value.get(key)!r}")


def _check_robustness(rob: Any, where: str) -> None:
    if rob is None:
        return
    for key in ROBUSTNESS_FIELDS:
        _check_interval(rob.get(key), f"{where}.{key}")


def _check_results(results: Any, path: Path) -> None:
    """Fail on a field the report cannot do without, naming it; optional fields may be null."""
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        found = results.get("schema") if isinstance(results, dict) else type(results).__name__
        raise ReportError(f"{path}: schema {found!r}, but this prefbench reads schema {SCHEMA}; "
                          "re-run `prefbench eval` with this version")
    systems = results.get("systems")
    if not isinstance(systems, list) or not systems:
        raise ReportError(f"{path}: 'systems' must be a non-empty list")
    for i, s in enumerate(systems):
        where = f"{path}: systems[{i}]"
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise ReportError(f"{where}.name: expected a string")
        _check_interval(s.get("win_rate"), f"{where}.win_rate", required=True)
        _check_interval(s.get("mean_score"), f"{where}.mean_score")
        _check_interval(s.get("kl"), f"{where}.kl")
        _check_robustness(s.get("robustness"), f"{where}.robustness")
        for k, entry in enumerate(s.get("training") or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), str):
                raise ReportError(f"{where}.training[{k}].metrics: expected the metrics.jsonl path relative to the run")
    reference = results.get("reference") or {}
    _check_interval(reference.get("mean_score"), f"{path}: reference.mean_score")
    _check_robustness(reference.get("robustness"), f"{path}: reference.robustness")
    names = [s["name"] for s in systems]
    for field, interval in (("comparisons", "diff"), ("head_to_head", "win_rate")):
        for i, c in enumerate(results.get(field) or []):
            where = f"{path}: {field}[{i}]"
            for key in ("a", "b"):
                if c.get(key) not in names:
                    raise ReportError(f"{where}.{key}: {c.get(key)!r} is not one of the systems {names}"
                                      f"{suggest(str(c.get(key)), names, 0.6)}")
            _check_interval(c.get(interval), f"{where}.{interval}", required=True)
    _check_sweep(results.get("sweep"), f"{path}: sweep")


def _check_sweep(sweep: Any, where: str) -> None:
    """A swept run's grid: every point's intervals, one chosen point per objective, the matched-KL comparison."""
    if sweep is None:
        return
    if not isinstance(sweep, dict) or not isinstance(sweep.get("objectives"), dict):
        raise ReportError(f"{where}.objectives: expected a mapping objective -> its points")
    _check_interval((sweep.get("reference") or {}).get("win_rate"), f"{where}.reference.win_rate", required=True)
    for name, entry in sweep["objectives"].items():
        points = entry.get("points") if isinstance(entry, dict) else None
        if not isinstance(points, list) or not points:
            raise ReportError(f"{where}.objectives.{name}.points: expected a non-empty list")
        for i, point in enumerate(points):
            for key in ("win_rate", "kl"):
                _check_interval(point.get(key), f"{where}.objectives.{name}.points[{i}].{key}", required=True)
        if sum(bool(p.get("chosen")) for p in points) != 1:
            raise ReportError(f"{where}.objectives.{name}.points: expected exactly one chosen point")
    for i, d in enumerate((sweep.get("matched_kl") or {}).get("differences") or []):
        _check_interval(d.get("diff"), f"{where}.matched_kl.differences[{i}].diff", required=True)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """One training-metrics record per line of ``metrics.jsonl``."""
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}: line {n} is not valid JSON ({e})") from e
        if "step" not in records[-1]:
            raise ReportError(f"{path}: line {n} has no 'step'")
    return records


def training_metrics(run_dir: Path, systems: list[dict]) -> tuple[dict[str, list[list[dict]]], list[str]]:
    """Per system, the metrics of each seed; and the metrics files that are missing (as named in
    results.json). A system's ``training`` entries name its files, relative to the run directory;
    without them the layout ``<objective>/seed<k>/metrics.jsonl`` is assumed."""
    metrics: dict[str, list[list[dict]]] = {}
    missing: list[str] = []
    for s in systems:
        folder = s.get("objective") or s["name"]
        entries = s.get("training") or [{"seed": k, "metrics": f"{folder}/seed{k}/metrics.jsonl"}
                                        for k in s.get("seeds") or []]
        for entry in entries:
            path = run_dir / entry["metrics"]
            if path.is_file():
                metrics.setdefault(s["name"], []).append(read_metrics(path))
            else:
                missing.append(entry["metrics"])
    return metrics, missing
