"""The shipped benchmarks (``benchmarks/*.yaml``, installed as ``prefbench.benchmark_specs``), a spec
file given by path, and ``--set`` overrides."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from prefbench.benchmark.parse import parse_spec
from prefbench.benchmark.spec import DEFAULT_PRESET, BenchmarkError, BenchmarkSpec, DataSettings
from prefbench.util.names import suggest
from prefbench.util.settings import parse_yaml, read_yaml

SPEC_PACKAGE = "prefbench.benchmark_specs"


def _spec_dir():
    """The shipped specs: the installed package if mapped, else the source checkout's folder."""
    try:
        return importlib.resources.files(SPEC_PACKAGE)
    except ModuleNotFoundError:
        return Path(__file__).parents[2] / "benchmarks"


def _shipped() -> dict[str, Any]:
    return {f.name.rsplit(".", 1)[0]: f for f in sorted(_spec_dir().iterdir(), key=lambda f: f.name)
            if f.name.endswith((".yaml", ".yml"))}


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["data.location=/x", "train.max_steps=5"]`` -> nested overrides; values are read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise BenchmarkError(f"--set takes section.key=value (e.g. train.max_steps=5), got {item!r}")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise BenchmarkError(f"--set {item!r} conflicts with another --set of {part!r}")
        node[parts[-1]] = parse_yaml(value, f"--set {item!r}", BenchmarkError)
    return out


def load_benchmark(name_or_path: str, preset: str = DEFAULT_PRESET, overrides: dict[str, Any] | None = None
                   ) -> BenchmarkSpec:
    """A shipped spec by name (``ifeval-lite``) or a YAML file by path, with ``preset`` and then
    ``overrides`` (see :func:`parse_set`) applied."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return parse_spec(read_yaml(path, BenchmarkError), str(path), preset, overrides)
    shipped = _shipped()
    key = name_or_path.strip().lower().replace("_", "-")
    if key not in shipped:
        raise BenchmarkError(f"unknown benchmark '{name_or_path}'{suggest(key, shipped)}; "
                             f"known: {', '.join(shipped)} (or give a path to a .yaml spec)")
    return parse_spec(parse_yaml(shipped[key].read_text(encoding="utf-8"), f"{key}.yaml", BenchmarkError), f"{key}.yaml",
                      preset, overrides)


def benchmark_presets(name: str) -> list[str]:
    """A shipped spec's presets in the order its unknown-preset error lists them: the default, then the spec's."""
    doc = parse_yaml(_shipped()[name].read_text(encoding="utf-8"), f"{name}.yaml", BenchmarkError)
    return list({DEFAULT_PRESET: {}, **(doc.get("presets") or {})})


def list_benchmarks(preset: str = DEFAULT_PRESET) -> list[BenchmarkSpec]:
    """Every shipped spec, with ``preset`` applied."""
    return [load_benchmark(name, preset) for name in _shipped()]


def _data_label(d: DataSettings) -> str:
    if d.source == "onpolicy":
        return f"on-policy, {d.train_prompts} prompts"
    return f"{d.source} ({d.kinds}{f', {d.max_pairs} pairs' if d.max_pairs else ''})"


def benchmarks_table() -> str:
    """The shipped benchmarks as a text table (quick preset), for ``prefbench benchmarks``."""
    rows = [("name", "task", "training data", "eval prompts", "presets", "description")]
    specs = {key: load_benchmark(key) for key in _shipped()}
    rows += [(s.name, s.task, _data_label(s.data), f"{s.eval.prompts} vs {s.eval.baseline}",
              " | ".join(benchmark_presets(key)), s.description) for key, s in specs.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in rows)
