"""Benchmark specs: shipped specs load for every preset, presets deep-merge, every mistake is an
error that names the place and suggests the fix, and both the package and checkout locations work."""

from pathlib import Path

import pytest
import yaml

import prefbench.benchmark.catalog as catalog
from prefbench.benchmark import (
    BenchmarkError,
    BenchmarkSpec,
    DataSettings,
    EvalSettings,
    benchmarks_table,
    list_benchmarks,
    load_benchmark,
)
from prefbench.benchmark.catalog import benchmark_presets
from prefbench.benchmark.parse import deep_merge, parse_spec

SPEC_DIR = Path(__file__).parents[1] / "benchmarks"
MINIMAL = {"name": "mini", "task": "ifeval-lite"}


@pytest.mark.parametrize("name", ["ifeval-lite", "sentiment"])
def test_shipped_specs_load_for_every_preset(name):
    doc = yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text())
    assert set(doc["presets"]) >= {"smoke", "quick", "full"}
    for preset in doc["presets"]:
        spec = load_benchmark(name, preset)
        assert spec.name == name and spec.task == name and spec.preset == preset
        assert set(spec.objective_params) == {"dpo", "ipo", "simpo", "jpo", "sft_jpo"}


def test_smoke_preset_deep_merges_over_the_sections():
    quick, smoke = load_benchmark("ifeval-lite"), load_benchmark("ifeval-lite", "smoke")
    assert (smoke.data.train_prompts, smoke.data.samples_per_prompt) == (8, 4)
    assert smoke.data.max_new_tokens == quick.data.max_new_tokens == 64      # untouched keys survive
    assert smoke.eval.variants == ("typo",) and smoke.eval.prompts == 4
    assert smoke.train == {**quick.train, "max_steps": 2, "warmup_steps": 0}
    assert quick.train["lr"] == 2.0e-4 and quick.objective_params["simpo"] == {"beta": 2.0, "gamma": 1.0}


def test_deep_merge():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    out = deep_merge(base, {"a": {"y": [3]}, "c": {"z": 1}})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 2, "c": {"z": 1}}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}                        # inputs untouched


def test_minimal_spec_takes_defaults_and_quick_always_exists():
    spec = parse_spec(MINIMAL, "mini.yaml")
    assert spec.data == DataSettings() and spec.eval == EvalSettings()
    assert spec.train == {} and spec.objective_params == {} and spec.preset == "quick"


def test_load_by_path_and_to_dict_round_trips(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "data": {"train_prompts": 10}, "eval": {"variants": ["case"]},
                                    "train": {"max_steps": 5}, "objective_params": {"dpo": {"beta": 0.2}}}))
    spec = load_benchmark(str(path))
    assert spec.data.train_prompts == 10 and spec.eval.variants == ("case",) and spec.source == str(path)
    d = spec.to_dict()
    doc = {k: v for k, v in yaml.safe_load(yaml.safe_dump(d)).items() if k not in ("preset", "source")}
    assert parse_spec(doc, str(path)) == spec


def test_objective_aliases_are_stored_under_the_canonical_name():
    spec = parse_spec({**MINIMAL, "objective_params": {"DOVE": {"beta": 0.3}}}, "x.yaml")
    assert spec.objective_params == {"jpo": {"beta": 0.3}}


def test_ints_become_floats_where_a_float_is_expected():
    spec = parse_spec({**MINIMAL, "data": {"temperature": 1, "min_gap": 0}}, "x.yaml")
    assert spec.data.temperature == 1.0 and isinstance(spec.data.temperature, float)


@pytest.mark.parametrize("doc,message", [
    ({**MINIMAL, "trian": {}}, r"x.yaml: unknown key 'trian' \(did you mean 'train'\?\)"),
    ({**MINIMAL, "data": {"train_promts": 3}}, r"data: unknown key 'train_promts' \(did you mean 'train_prompts'\?\)"),
    ({**MINIMAL, "eval": {"variants": ["typos"]}}, r"unknown variant 'typos' \(did you mean 'typo'\?\)"),
    ({**MINIMAL, "train": {"max_step": 3}}, r"train: unknown TrainConfig field 'max_step' \(did you mean 'max_steps'\?\)"),
    ({**MINIMAL, "train": {"objective": "dpo"}}, r"'objective' cannot be set here"),
    ({**MINIMAL, "train": {"lr": "1e-4"}}, r"train.lr: expected a finite number, got '1e-4' \(a number in quotes is text"),
    ({**MINIMAL, "train": {"batch_size": 8, "grad_accum": 3}}, r"batch_size \(8\) must be divisible by grad_accum"),
    ({**MINIMAL, "task": "ifeval"}, r"unknown task 'ifeval' \(did you mean 'ifeval-lite'\?\)"),
    ({**MINIMAL, "objective_params": {"dpoo": {"beta": 0.1}}}, r"objective_params.dpoo: unknown objective 'dpoo' \(did you mean 'dpo'\?\)"),
    ({**MINIMAL, "objective_params": {"dpo": {"betta": 0.1}}}, r"has no parameter 'betta' \(did you mean 'beta'\?\)"),
    ({**MINIMAL, "data": {"samples_per_prompt": 1}}, r"samples_per_prompt must be >= 2"),
    ({**MINIMAL, "data": {"max_new_tokens": 4.5}}, r"data.max_new_tokens: expected an integer, got 4.5"),
    ({"task": "ifeval-lite"}, r"'name' is required"),
    ({**MINIMAL, "presets": {"smoke": {"data": {"samples": 2}}}}, r"preset 'smoke'\): data: unknown key 'samples'"),
])
def test_mistakes_are_located_errors_with_suggestions(doc, message):
    preset = "smoke" if "presets" in doc else "quick"
    with pytest.raises(BenchmarkError, match=message):
        parse_spec(doc, "x.yaml", preset)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(BenchmarkError, match=r"unknown preset 'quik' \(did you mean 'quick'\?\); presets: quick, smoke, full"):
        load_benchmark("ifeval-lite", "quik")


def test_unknown_benchmark_name_suggests_the_closest():
    with pytest.raises(BenchmarkError, match=r"unknown benchmark 'ifeval-lit' \(did you mean 'ifeval-lite'\?\)"):
        load_benchmark("ifeval-lit")
    with pytest.raises(BenchmarkError, match="missing.yaml: file not found"):
        load_benchmark("missing.yaml")


def test_specs_are_found_in_the_installed_package_when_it_is_mapped(monkeypatch, tmp_path):
    (tmp_path / "only-here.yaml").write_text(yaml.safe_dump({**MINIMAL, "name": "only-here"}))
    monkeypatch.setattr(catalog.importlib.resources, "files", lambda package: tmp_path)
    assert [s.name for s in list_benchmarks()] == ["only-here"]


def test_checkout_fallback_lists_every_shipped_spec():
    assert [s.name for s in list_benchmarks()] == ["hh-helpful", "ifeval-lite", "sentiment", "tldr"]
    assert all(isinstance(s, BenchmarkSpec) for s in list_benchmarks("smoke"))


def test_benchmarks_table():
    lines = benchmarks_table().splitlines()
    assert lines[0].split() == ["name", "task", "training", "data", "eval", "prompts", "presets", "description"]
    quick = load_benchmark("ifeval-lite")
    assert lines[2].split()[:6] == ["ifeval-lite", "ifeval-lite", "on-policy,", f"{quick.data.train_prompts}", "prompts",
                                    str(quick.eval.prompts)]
    assert lines[3].startswith("sentiment") and lines[3].endswith(load_benchmark("sentiment").description)
    assert lines[4].split()[:8] == ["tldr", "tldr", "release", "(both,", "8000", "pairs)", "500", "vs"]
    # each benchmark's own presets (the default first), the ones --preset accepts for it
    assert "quick | smoke | full" in lines[2] and "quick | small | paper | smoke" in lines[4]
    for name, line in (("ifeval-lite", lines[2]), ("tldr", lines[4])):
        for preset in benchmark_presets(name):
            assert load_benchmark(name, preset).preset == preset and f" {preset} " in line
