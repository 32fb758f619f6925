"""Benchmarks: one YAML spec per benchmark says which task, how much preference data and from
where, how to evaluate, the training settings every objective shares, each objective's
hyperparameters, and presets over all of it."""

from prefbench.benchmark.catalog import benchmarks_table, list_benchmarks, load_benchmark, parse_set
from prefbench.benchmark.spec import (DEFAULT_PRESET, BenchmarkError, BenchmarkSpec, DataSettings, EvalSettings,
                                      SweepPoint, SweepSettings)

__all__ = ["DEFAULT_PRESET", "BenchmarkError", "BenchmarkSpec", "DataSettings", "EvalSettings", "SweepPoint", "SweepSettings",
           "benchmarks_table", "list_benchmarks", "load_benchmark", "parse_set"]
