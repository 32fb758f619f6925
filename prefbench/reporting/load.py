"""Reading what earlier stages wrote: ``results.json`` (checked field by field, so a damaged file fails
with the field named) and each system's training ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefbench.evaluation.results import SCHEMA
from prefbench.util.errors import UserError
from prefbench.util.files import read_jsonl
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
    except (ValueError, RecursionError) as e:   # not UTF-8, not JSON
        raise ReportError(f"{path} is not valid JSON ({e}); re-run `prefbench eval {run_dir}`") from None
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


def _check_number(value: Any, where: str, kind: type | tuple[type, ...] = (int, float)) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        wanted = {bool: "true or false", int: "an integer"}.get(kind, "a number")
        raise ReportError(f"{where}: expected {wanted}, got {value!r}")


def _mapping(value: Any, where: str, required: bool = False) -> dict:
    """An object of results.json; an optional one is ``{}`` when absent or null."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an object, got {value!r}")
    return value


def _entries(value: Any, where: str) -> list[dict]:
    """An optional list of objects of results.json: ``[]`` when absent or null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(f"{where}: expected a list, got {value!r}")
    for i, entry in enumerate(value):
        _mapping(entry, f"{where}[{i}]")
    return value


def _check_robustness(rob: Any, where: str) -> None:
    rob = _mapping(rob, where)
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
        _check_interval(s.get("gaming_rate"), f"{where}.gaming_rate")
        _check_number(s.get("mean_length"), f"{where}.mean_length")
        _check_robustness(s.get("robustness"), f"{where}.robustness")
        for k, entry in enumerate(_entries(s.get("training"), f"{where}.training")):
            if not isinstance(entry.get("metrics"), str):
                raise ReportError(f"{where}.training[{k}].metrics: expected the metrics.jsonl path relative to the run")
    reference = _mapping(results.get("reference"), f"{path}: reference")
    _check_number(reference.get("mean_length"), f"{path}: reference.mean_length")
    _check_interval(reference.get("mean_score"), f"{path}: reference.mean_score")
    _check_robustness(reference.get("robustness"), f"{path}: reference.robustness")
    names = [s["name"] for s in systems]
    for field, interval in (("comparisons", "diff"), ("head_to_head", "win_rate")):
        for i, c in enumerate(_entries(results.get(field), f"{path}: {field}")):
            where = f"{path}: {field}[{i}]"
            for key in ("a", "b"):
                if c.get(key) not in names:
                    raise ReportError(f"{where}.{key}: {c.get(key)!r} is not one of the systems {names}"
                                      f"{suggest(str(c.get(key)), names, 0.6)}")
            _check_interval(c.get(interval), f"{where}.{interval}", required=True)
            for key in ("wins", "ties", "losses") if field == "head_to_head" else ():
                _check_number(c.get(key), f"{where}.{key}", int)
    _check_sweep(results.get("sweep"), f"{path}: sweep")


def _check_sweep(sweep: Any, where: str) -> None:
    """A swept run's grid: every point's intervals, one chosen point per objective, the matched-KL comparison."""
    if sweep is None:
        return
    if not isinstance(sweep, dict) or not isinstance(sweep.get("objectives"), dict):
        raise ReportError(f"{where}.objectives: expected a mapping objective -> its points")
    _check_interval(_mapping(sweep.get("reference"), f"{where}.reference").get("win_rate"), f"{where}.reference.win_rate",
                    required=True)
    for key in ("validation_prompts", "seed"):
        _check_number(sweep.get(key), f"{where}.{key}", int)
    for name, entry in sweep["objectives"].items():
        points = entry.get("points") if isinstance(entry, dict) else None
        if not isinstance(points, list) or not points:
            raise ReportError(f"{where}.objectives.{name}.points: expected a non-empty list")
        for i, point in enumerate(_entries(points, f"{where}.objectives.{name}.points")):
            at = f"{where}.objectives.{name}.points[{i}]"
            for key in ("win_rate", "kl"):
                _check_interval(point.get(key), f"{at}.{key}", required=True)
            _mapping(point.get("params"), f"{at}.params", required=True)
            _check_number(point.get("lr"), f"{at}.lr")
            _check_number(point.get("chosen"), f"{at}.chosen", bool)
        if sum(bool(p.get("chosen")) for p in points) != 1:
            raise ReportError(f"{where}.objectives.{name}.points: expected exactly one chosen point")
    matched = _mapping(sweep.get("matched_kl"), f"{where}.matched_kl")
    for i, d in enumerate(_entries(matched.get("differences"), f"{where}.matched_kl.differences")):
        _check_interval(d.get("diff"), f"{where}.matched_kl.differences[{i}].diff", required=True)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """One training-metrics record per line of ``metrics.jsonl``."""
    records = read_jsonl(path)
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict) or "step" not in record:
            raise ReportError(f"{path}: record {n} has no 'step'")
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
