"""Property-based fuzzing of every reader of user input: whatever the bytes, rows, YAML documents or command-line
values, a reader either returns a valid object or raises a :class:`UserError` (DataError, ConfigError,
BenchmarkError, ReportError, ...) - never any other exception, which the command line would print as a
traceback. Values are drawn around the real field names so the checks deep inside each reader are reached."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from prefbench.benchmark import BenchmarkSpec, parse_set
from prefbench.benchmark.catalog import load_benchmark
from prefbench.benchmark.parse import parse_spec
from prefbench.benchmark.spec import DataSettings, EvalSettings, SweepSettings
from prefbench.cli import _objective_param, _seeds
from prefbench.engine.config import TrainConfig, parse_param
from prefbench.evaluation.results import SCHEMA
from prefbench.formats.human import parse_comparison, parse_hh_row
from prefbench.formats.preferences import load_preferences, parse_row, write_preferences
from prefbench.formats.records import PreferenceRecord, make_record
from prefbench.formats.sft import read_sft
from prefbench.judges import JudgmentCache, parse_verdict
from prefbench.reporting.load import load_results
from prefbench.tasks import list_tasks
from prefbench.util.errors import UserError
from prefbench.util.settings import dump_yaml, parse_yaml

# Modest and the same examples every run: the suite (and CI) stays deterministic and takes seconds; no example
# database is written into the repository. PREFBENCH_FUZZ=N explores N fresh random examples per property instead
# (a failure prints the example to add as a regression case).
EXPLORE = int(os.environ.get("PREFBENCH_FUZZ", "0"))
FUZZ = settings(max_examples=EXPLORE or 150, derandomize=not EXPLORE, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

ROW_KEYS = ["prompt_chosen", "response_chosen", "prompt_rejected", "response_rejected", "kind", "chosen_finished",
            "rejected_finished", "prompt", "chosen", "rejected", "i_chosen", "r_chosen", "i_reject", "r_reject",
            "instruction", "response", "gold_response", "completion", "info", "summaries", "choice", "text", "post",
            "title", "subreddit", "article", "role", "content", "tie", "is_tie", "feedback", "data"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(["user", "assistant", "conditional", "joint", "\n\nHuman: hi\n\nAssistant: yo", "A"]))


def nested(keys: list[str]) -> st.SearchStrategy:
    """JSON values whose objects mostly use ``keys``."""
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), inner, max_size=5), max_leaves=12)


json_values = nested(ROW_KEYS)
rows = st.dictionaries(st.sampled_from(ROW_KEYS), json_values, max_size=7)


def _raises_only_user_errors(fn, *args):
    try:
        return fn(*args)
    except UserError:
        return None


# --- rows -----------------------------------------------------------------------------------------------------

@FUZZ
@given(raw=json_values | rows)
@example(raw={"prompt": "Q", "chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": 1}],
              "rejected": "r"})
def test_a_row_of_any_json_is_a_record_or_a_data_error(raw):
    for parse in (parse_row, parse_comparison, parse_hh_row):
        out = _raises_only_user_errors(parse, raw, "f.jsonl", 1)
        assert out is None or isinstance(out, PreferenceRecord)


def _file_bytes(lines: list) -> bytes:
    return "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in lines).encode()


@FUZZ
@given(content=st.binary(max_size=200) | st.lists(json_values | rows, max_size=4).map(_file_bytes)
       | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet"]), gzipped=st.booleans())
@example(content=b"[" * 50_000, suffix=".json", gzipped=False)
@example(content=b"{\"a\": " + b"9" * 5000 + b"}\n", suffix=".jsonl", gzipped=False)
def test_any_file_is_rows_or_a_data_error(content, suffix, gzipped):
    """The preference and SFT readers on arbitrary bytes, JSON of any shape, gzipped or not."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(gzip.compress(content) if gzipped and suffix.endswith(".gz") else content)
        for read in (load_preferences, read_sft):
            out = _raises_only_user_errors(read, path)
            assert out is None or (isinstance(out, list) and out)


text_or_chat = st.text(min_size=1, max_size=20) | st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=10)}),
    min_size=1, max_size=3)


@FUZZ
@given(records=st.lists(st.tuples(text_or_chat, st.text(min_size=1, max_size=20), text_or_chat,
                                  st.text(min_size=1, max_size=20)), min_size=1, max_size=4))
@example(records=[("a\u2028b", "c\x85d", "a\u2028b", "e\u2029f")])
def test_written_records_read_back_as_written(records):
    """prefbench's own files keep U+2028 and the like unescaped: reading them splits lines at newlines only."""
    made = [make_record(*r) for r in records if all(isinstance(x, list) or x.strip() for x in r)]
    if not made:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pairs.jsonl"
        write_preferences(made, path)
        assert load_preferences(path) == made


# --- YAML: benchmark specs and train configs -----------------------------------------------------------------

yaml_values = st.recursive(scalars | st.dates() | st.sampled_from([0.1, 2, 1e-4, "1e-4", [0.1, 0.3], "fast"]),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3), max_leaves=8)


def section(fields: list[str]) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(fields) | st.text(max_size=5), yaml_values, max_size=4) | yaml_values


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


OBJECTIVES = ["dpo", "ipo", "simpo", "jpo", "nope"]
specs = st.fixed_dictionaries(
    {"name": st.just("fuzz") | yaml_values, "task": st.sampled_from(list_tasks()) | yaml_values},
    optional={"data": section(_names(DataSettings)), "eval": section(_names(EvalSettings)),
              "train": section(_names(TrainConfig)), "sft": section(_names(TrainConfig)),
              "sweep": st.fixed_dictionaries({}, optional={"lr": yaml_values, "validation_prompts": yaml_values,
                                                           "grid": st.dictionaries(st.sampled_from(OBJECTIVES) | st.integers(),
                                                                                   section(["beta", "tau", "gamma"]),
                                                                                   max_size=2)}) | yaml_values,
              "objective_params": st.dictionaries(st.sampled_from(OBJECTIVES) | st.integers(),
                                                  section(["beta", "tau", "gamma", "alpha"]), max_size=2),
              "seeds": yaml_values, "model": yaml_values, "description": yaml_values,
              "presets": st.dictionaries(st.sampled_from(["quick", "smoke"]), yaml_values | section(["train", "data"]),
                                         max_size=2)})


@FUZZ
@given(doc=specs | yaml_values, preset=st.sampled_from(["quick", "smoke"]))
def test_a_spec_of_any_shape_is_a_spec_or_a_user_error(doc, preset):
    out = _raises_only_user_errors(parse_spec, doc, "fuzz.yaml", preset)
    assert out is None or isinstance(out, BenchmarkSpec)


SPEC_PATHS = [(top,) for top in ("name", "task", "description", "model", "seeds", "sft", "data", "eval", "train",
                                  "objective_params", "sweep", "presets")] + [
    (section, key) for section, cls in (("data", DataSettings), ("eval", EvalSettings), ("train", TrainConfig),
                                        ("sft", TrainConfig), ("sweep", SweepSettings)) for key in _names(cls)] + [
    ("objective_params", name) for name in OBJECTIVES] + [("sweep", "grid", name) for name in OBJECTIVES] + [
    ("presets", "smoke", section) for section in ("data", "eval", "train", "seeds")]


@FUZZ
@given(path=st.sampled_from(SPEC_PATHS), value=yaml_values, task=st.sampled_from(list_tasks()))
@example(path=("objective_params", "dpo"), value={1: 2}, task="ifeval-lite")
@example(path=("objective_params", 5), value={}, task="ifeval-lite")
def test_one_value_anywhere_in_a_valid_spec_is_a_spec_or_a_user_error(path, value, task):
    """A valid spec with one value replaced, so every check is reached, not only the first one a random document
    fails."""
    doc = {"name": "fuzz", "task": task}
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    out = _raises_only_user_errors(parse_spec, doc, "fuzz.yaml", "smoke" if path[0] == "presets" else "quick")
    assert out is None or isinstance(out, BenchmarkSpec)


@FUZZ
@given(values=st.dictionaries(st.sampled_from(_names(TrainConfig)) | st.text(max_size=5), yaml_values, max_size=5))
@example(values={"objective_params": {1: 2}})
@example(values={"lr": 10 ** 400})
def test_a_train_config_of_any_values_is_a_config_or_a_user_error(values):
    out = _raises_only_user_errors(TrainConfig.from_dict, values, "fuzz.yaml")
    assert out is None or isinstance(out, TrainConfig)


@FUZZ
@given(text=st.text(max_size=120) | (specs | yaml_values).map(lambda d: yaml.safe_dump(d, allow_unicode=True)))
@example(text="lr: [1\n")
@example(text="a: \x00")
@example(text="[" * 5000)
def test_yaml_text_of_any_kind_is_a_setting_or_a_user_error(text):
    """Both YAML readers from a file: train --config and a spec path."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        _raises_only_user_errors(TrainConfig.from_yaml, path)
        _raises_only_user_errors(load_benchmark, str(path))


@FUZZ
@given(doc=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
                        | st.sampled_from(["1e-4", "2E5", "1.0e5", ".5e-3", "yes", "0x1F", "1_000"]),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                        max_leaves=10))
def test_what_prefbench_writes_as_yaml_reads_back_unchanged(doc):
    """Run and training configs are written with dump_yaml: text that reads as a number there stays text."""
    assert parse_yaml(dump_yaml(doc), "fuzz.yaml") == doc


# --- command-line values ----------------------------------------------------------------------------------------

@FUZZ
@given(text=st.text(max_size=20))
@example(text="²")
@example(text="--1")
def test_command_line_values_are_values_or_user_errors(text):
    for parse in (_seeds, parse_param, _objective_param, lambda t: parse_set([t]), lambda t: parse_set([f"train.{t}"])):
        _raises_only_user_errors(parse, text)


# --- judges: free text and the cache -----------------------------------------------------------------------------

@FUZZ
@given(text=st.text(max_size=200) | st.lists(st.sampled_from(["[[A]]", "[[B]]", "[[tie]]", "Answer: B", "A", "tie",
                                                              "Response A is better", "I prefer B", " ", "\n", "**"]),
                                             max_size=5).map("".join))
def test_any_judge_answer_is_a_verdict_or_unparseable(text):
    assert parse_verdict(text) in ("A", "B", "tie", None)


@FUZZ
@given(content=st.binary(max_size=150) | st.lists(json_values | st.fixed_dictionaries(
    {"key": st.text(max_size=4) | json_values, "judge": st.text(max_size=4), "winner": st.sampled_from(["A", "B", "tie", None]) | json_values,
     "raw": st.text(max_size=8) | json_values}), max_size=3).map(_file_bytes))
def test_a_judgment_cache_of_any_content_loads_or_is_a_user_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "judgments.jsonl"
        path.write_bytes(content)
        _raises_only_user_errors(JudgmentCache, path)


# --- run directories -----------------------------------------------------------------------------------------------

interval = st.fixed_dictionaries({"estimate": st.floats(0, 1), "low": st.floats(0, 1), "high": st.floats(0, 1)})
RESULT_KEYS = ["name", "win_rate", "mean_score", "kl", "robustness", "training", "metrics", "a", "b", "diff",
               "reference", "objectives", "points", "chosen", "matched_kl", "differences", "mean", "drop"]
result_values = st.recursive(scalars | interval, lambda inner: st.lists(inner, max_size=2)
                             | st.dictionaries(st.sampled_from(RESULT_KEYS), inner, max_size=4), max_leaves=10)
results = st.fixed_dictionaries(
    {"schema": st.just(SCHEMA), "systems": st.lists(st.fixed_dictionaries({"name": st.just("dpo"), "win_rate": interval},
                                                                          optional={k: result_values for k in RESULT_KEYS[2:]}),
                                                    min_size=1, max_size=2) | result_values},
    optional={k: result_values for k in ("reference", "comparisons", "head_to_head", "sweep")})


@FUZZ
@given(doc=results | result_values)
def test_results_json_of_any_shape_loads_or_is_a_report_error(doc):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "results.json").write_text(json.dumps(doc))
        out = _raises_only_user_errors(load_results, Path(folder))
        assert out is None or out == json.loads(json.dumps(doc))
