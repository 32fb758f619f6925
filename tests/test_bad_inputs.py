"""A corpus of bad inputs, at least one per reader and per command: each must end with exit status 2 and one line
``prefbench: error: ...`` naming the file (and the row and field where there is one), the only such line and the
last on stderr (progress bars may come before it), no traceback, and nothing new or changed in the working folder
(no half-written output). Every case fails while its input is checked, before any model or tokenizer is loaded
(``PREFBENCH_CACHE`` points at an empty folder, so the embedded model is not even at hand)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from prefbench.cli import main
from prefbench.evaluation.results import SCHEMA


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]                 # "{judge}" stands for the loopback judge's URL
    says: tuple[str, ...]           # what the line must name: the file, the row, the field, the problem
    files: dict[str, str | bytes] = field(default_factory=dict)


def _jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


PAIR = {"prompt_chosen": "Name a fruit", "response_chosen": "apple", "prompt_rejected": "Name a fruit",
        "response_rejected": "ocean"}
UNPAIRED = {"prompt": "Name a fruit", "completion": "apple", "label": True}
SFT_ROW = {"instruction": "Name a fruit", "response": "apple"}
INTERVAL = {"estimate": 0.6, "low": 0.5, "high": 0.7}
GENERATION = {"id": "p0", "parent": "p0", "variant": "original", "prompt": "Name a fruit", "response": "apple",
              "words": 1}
RESULTS = {"schema": SCHEMA, "systems": [{"name": "dpo", "win_rate": INTERVAL, "seeds": [0], "mean_length": 9.0}],
           "reference": {"mean_length": 8.0}, "comparisons": []}
RUN_CONFIG = {"benchmark": {"name": "mine", "task": "ifeval-lite", "eval": {}}, "preset": "quick", "model": "m",
              "quantization": "none", "judge": "gold", "objectives": ["dpo"], "seeds": [0],
              "objective_params": {"dpo": {}}}
SPEC = "name: mine\ntask: ifeval-lite\n"
COMPARISON = {"info": {"subreddit": "r", "title": "t", "post": "a post"}, "summaries": [{"text": " one"}, {"text": " two"}],
              "choice": 0}


def _results(**changes) -> str:
    return json.dumps({**RESULTS, **changes})


def _system(**changes) -> str:
    return _results(systems=[{**RESULTS["systems"][0], **changes}])


def train(data: str, *more: str) -> list[str]:
    return ["train", "--data", data, "--output-dir", "out", *more]


def acquire(data: str, *more: str) -> list[str]:
    return ["acquire", "--input", data, "--judge", "openai:m@{judge}/garbage", "--pairs", "2",
            "--output", "out/pairs.jsonl", *more]


def data_build(benchmark: str, source: str, location: str) -> list[str]:
    return ["data", "build", "--benchmark", benchmark, "--set", f"data.source={source}", "--set",
            "data.kinds=conditional", "--set", f"data.location={location}", "--output", "out"]


def plan(spec: str = "spec.yaml", *more: str) -> list[str]:
    return ["run", "--benchmark", spec, "--objectives", "dpo", "--plan", *more]


def push(run: str, *more: str) -> list[str]:
    return ["push", run, *(more or ("--repo", "someone/run")), "--dry-run", "out"]


# what a finished run holds besides results.json: a trained system (dpo, seed 0) and the rendered report
TRAINED = {"run/dpo/seed0/adapter/adapter_config.json": "{}", "run/dpo/seed0/adapter/adapter_model.safetensors": b"",
           "run/dpo/seed0/config.yaml": "lr: 0.1\n"}
REPORTED = {"run/report.md": "# report\n", "run/report.html": "<p>report</p>\n", "run/leaderboard.csv": "system\n"}


def spec_case(id: str, text: str | bytes, *says: str) -> Case:
    return Case(id, plan(), ("spec.yaml", *says), {"spec.yaml": text})


def config_case(id: str, text: str | bytes, *says: str) -> Case:
    return Case(id, ["train", "--config", "cfg.yaml", "--data", "pairs.jsonl"], ("cfg.yaml", *says),
                {"cfg.yaml": text})


def pairs_case(id: str, name: str, content: str | bytes, *says: str) -> Case:
    return Case(id, train(name), (name, *says), {name: content})


CASES = [
    # --- preference files (prefbench train --data) --------------------------------------------------
    pairs_case("pairs-invalid-json", "pairs.jsonl", _jsonl(PAIR, '{"prompt_chosen": '), "row 2", "invalid JSON"),
    pairs_case("pairs-row-not-object", "pairs.jsonl", _jsonl(PAIR, [1, 2]), "row 2", "expected an object"),
    pairs_case("pairs-missing-field", "pairs.jsonl", _jsonl({k: v for k, v in PAIR.items() if k != "response_rejected"}),
               "row 1", "field 'response_rejected'", "is missing"),
    pairs_case("pairs-wrong-type", "pairs.jsonl", _jsonl({**PAIR, "response_chosen": 5}),
               "row 1", "field 'response_chosen'", "expected a string, got int"),
    pairs_case("pairs-empty-text", "pairs.jsonl", _jsonl(PAIR, {**PAIR, "prompt_chosen": "  "}),
               "row 2", "field 'prompt_chosen'", "is empty"),
    # --- unpaired files (TRL's prompt/completion/label format) for KTO ----------------------------------------------
    Case("unpaired-label-not-bool", train("kto.jsonl", "--objective", "kto"),
         ("kto.jsonl", "row 2", "field 'label'", "expected true (desirable) or false (undesirable), got 'yes'"),
         {"kto.jsonl": _jsonl(UNPAIRED, {**UNPAIRED, "label": "yes"})}),
    Case("unpaired-missing-completion", train("kto.jsonl", "--objective", "kto"),
         ("kto.jsonl", "row 1", "field 'completion'", "is missing"),
         {"kto.jsonl": _jsonl({"prompt": "Name a fruit", "label": True})}),
    Case("unpaired-completion-not-assistant", train("kto.jsonl", "--objective", "kto"),
         ("kto.jsonl", "row 1", "field 'completion'", "last message must have role 'assistant'"),
         {"kto.jsonl": _jsonl({**UNPAIRED, "completion": [{"role": "user", "content": "apple"}]})}),
    pairs_case("pairs-unknown-format", "pairs.jsonl", _jsonl({"question": "q", "answer": "a"}),
               "row 1", "unrecognised format", "found keys ['answer', 'question']"),
    pairs_case("pairs-trl-last-turn-not-assistant", "pairs.jsonl",
               _jsonl({"prompt": "hi", "chosen": [{"role": "user", "content": "x"}], "rejected": "no"}),
               "row 1", "field 'chosen'", "role 'assistant'"),
    pairs_case("pairs-kind-contradicts-prompts", "pairs.jsonl", _jsonl({**PAIR, "kind": "joint"}),
               "row 1", "field 'kind'", "'conditional'"),
    pairs_case("pairs-flag-not-boolean", "pairs.jsonl", _jsonl({**PAIR, "chosen_finished": "yes"}),
               "row 1", "field 'chosen_finished'", "true or false"),
    pairs_case("pairs-bad-chat-message", "pairs.jsonl", _jsonl({**PAIR, "prompt_chosen": [{"role": "user"}]}),
               "row 1", "field 'prompt_chosen'", "message 0"),
    pairs_case("pairs-csv", "pairs.csv", "prompt,chosen,rejected\n", "unsupported file type"),
    pairs_case("pairs-not-utf8", "pairs.jsonl", b'{"prompt_chosen": "\xff\xfe"}\n', "not UTF-8"),
    pairs_case("pairs-gz-not-gzip", "pairs.jsonl.gz", _jsonl(PAIR), "not UTF-8 JSON text"),
    pairs_case("pairs-parquet-garbage", "pairs.parquet", b"PAR1 not really", "not a readable Parquet file"),
    pairs_case("pairs-empty-file", "pairs.jsonl", "\n\n", "contains no rows"),
    pairs_case("pairs-json-one-object", "pairs.json", '{"data": 5}', "row 1", "unrecognised format"),
    pairs_case("pairs-json-broken", "pairs.json", '[\n  {"prompt_chosen": "a"},\n  {oops}\n]', "invalid JSON at line 3"),
    pairs_case("pairs-nested-too-deep", "pairs.json", "[" * 100_000 + "]" * 100_000, "nested"),
    Case("pairs-file-not-found", train("nosuch.jsonl"), ("nosuch.jsonl", "file not found")),
    Case("pairs-unknown-dataset-name", train("no-such-dataset"), ("no-such-dataset", "dataset")),
    # --- SFT rows (prefbench acquire --input, prefbench sft --data) -------------------------------------
    Case("sft-missing-response", acquire("rows.jsonl"), ("rows.jsonl", "row 2", "field 'response'", "is missing"),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "x"})}),
    Case("sft-instruction-not-text", acquire("rows.jsonl"), ("rows.jsonl", "row 1", "field 'instruction'"),
         {"rows.jsonl": _jsonl({"instruction": 3, "response": "r"})}),
    Case("sft-file-not-found", acquire("nosuch.jsonl"), ("nosuch.jsonl", "not found")),
    Case("sft-data-bad-row", ["sft", "--data", "rows.jsonl", "--output-dir", "out"],
         ("rows.jsonl", "row 1", "expected an object"), {"rows.jsonl": _jsonl("5")}),
    # --- human comparisons and the JPO release (prefbench data build) -----------------------------------
    Case("comparisons-bad-choice", data_build("tldr", "summarize_from_feedback", "cmp.jsonl"),
         ("cmp.jsonl", "row 1", "field 'choice'", "expected 0 or 1"), {"cmp.jsonl": _jsonl({**COMPARISON, "choice": 2})}),
    Case("comparisons-missing-post", data_build("tldr", "summarize_from_feedback", "cmp.jsonl"),
         ("cmp.jsonl", "row 1", "field 'info.post'"),
         {"cmp.jsonl": _jsonl({**COMPARISON, "info": {"subreddit": "r", "title": "t"}})}),
    Case("hh-rlhf-nothing-usable", data_build("hh-helpful", "hh-rlhf", "hh.jsonl"), ("hh.jsonl", "no usable rows"),
         {"hh.jsonl": _jsonl({"chosen": "no turns", "rejected": "none"})}),
    Case("release-folder-without-layout", data_build("tldr", "release", "release"),
         ("train_conditional_pref.jsonl", "hub layout"), {"release/README.md": "not the release"}),
    Case("release-tie-flag-not-boolean", data_build("tldr", "release", "release"),
         ("train_conditional_pref.jsonl", "row 1", "field 'tie'"),
         {"release/data/tldr/train_conditional_pref.jsonl": _jsonl(
             {"i_chosen": "p", "r_chosen": "a", "i_reject": "p", "r_reject": "b", "tie": "no"})}),
    # --- benchmark spec YAML (prefbench run --benchmark FILE --plan) --------------------------------
    spec_case("spec-yaml-syntax", SPEC + "train:\n  lr: [1\n", "line 4", "column"),
    spec_case("spec-not-mapping", "- name\n- task\n", "expected a mapping"),
    spec_case("spec-unknown-key", SPEC + "trian: {}\n", "unknown key 'trian'", "did you mean 'train'"),
    spec_case("spec-train-not-number", SPEC + "train:\n  lr: fast\n", "train.lr", "expected a finite number, got 'fast'"),
    spec_case("spec-train-int-as-float", SPEC + "train:\n  max_steps: 2.5\n", "train.max_steps", "expected an integer"),
    spec_case("spec-data-out-of-range", SPEC + "data:\n  temperature: 0\n", "data.temperature must be > 0"),
    spec_case("spec-unknown-variant", SPEC + "eval:\n  variants: [typoo]\n", "eval.variants", "did you mean 'typo'"),
    spec_case("spec-repeated-seeds", SPEC + "seeds: [0, 0]\n", "seeds", "distinct integers"),
    spec_case("spec-sweep-unknown-objective", SPEC + "sweep:\n  grid:\n    dpoo: {beta: [0.1]}\n",
              "sweep.grid.dpoo", "did you mean 'dpo'"),
    spec_case("spec-objective-param-text", SPEC + "objective_params:\n  dpo: {beta: x}\n",
              "objective_params.dpo", "finite number"),
    spec_case("spec-objective-param-key-not-text", SPEC + "objective_params:\n  dpo: {1: 2}\n",
              "objective_params.dpo", "no parameter '1'"),
    spec_case("spec-preset-not-mapping", SPEC + "presets:\n  quick: 5\n", "preset 'quick'", "expected a mapping"),
    spec_case("spec-not-utf8", SPEC.encode() + b"description: \xff\n", "not UTF-8"),
    spec_case("spec-indivisible-batch", SPEC + "train:\n  batch_size: 8\n  grad_accum: 3\n",
              "batch_size (8) must be divisible by grad_accum (3)"),
    Case("spec-file-not-found", plan("nosuch.yaml"), ("nosuch.yaml", "file not found")),
    # --- train/sft --config YAML -------------------------------------------------------------------
    config_case("config-yaml-syntax", "lr: 1.0e-4\nmax_steps: [5\n", "line 3", "column"),
    config_case("config-float-not-number", "lr: fast\n", "lr", "expected a finite number, got 'fast'"),
    config_case("config-quoted-int", 'batch_size: "8"\n', "batch_size", "expected an integer, got '8'"),
    config_case("config-int-as-float", "max_steps: 2.5\n", "max_steps", "expected an integer, got 2.5"),
    config_case("config-bool-as-text", 'gradient_checkpointing: "yes"\n', "gradient_checkpointing", "true or false"),
    config_case("config-text-as-number", "model: 5\n", "model", "expected text, got 5"),
    config_case("config-params-not-mapping", "objective_params: 3\n", "objective_params", "mapping"),
    config_case("config-param-not-number", "objective_params: {beta: x}\n", "parameter 'beta' must be a finite number"),
    config_case("config-unknown-key", "learning_rate: 0.1\n", "unknown key 'learning_rate'"),
    config_case("config-bad-choice", "quantization: 8bit\n", "quantization must be '4bit' or 'none'"),
    config_case("config-not-mapping", "- lr\n", "expected a mapping"),
    config_case("config-not-utf8", b"model: \xff\n", "not UTF-8"),
    Case("config-file-not-found", ["train", "--config", "nosuch.yaml"], ("nosuch.yaml", "file not found")),
    # --- command-line values -------------------------------------------------------------------------
    Case("cli-repeated-seeds", ["run", "--seeds", "0,0", "--plan"], ("--seeds 0,0", "distinct integers")),
    Case("cli-seeds-not-decimal", ["run", "--seeds", "²", "--plan"], ("--seeds ²", "distinct integers")),
    Case("cli-no-objectives", ["run", "--objectives", ",", "--plan"], ("no objectives", "--objectives")),
    Case("cli-unknown-objective", ["demo", "--objectives", "dpo,ipoo"], ("unknown objective 'ipoo'", "did you mean 'ipo'")),
    Case("cli-run-param-not-number", ["run", "--objectives", "dpo", "--param", "dpo.beta=abc", "--plan"],
         ("name=number", "dpo.beta=abc")),
    Case("cli-train-param-malformed", train("pairs.jsonl", "--param", "beta"), ("name=number", "'beta'")),
    Case("cli-train-param-unknown", train("pairs.jsonl", "--param", "bta=1"), ("no parameter 'bta'", "did you mean 'beta'")),
    Case("cli-set-yaml-syntax", ["run", "--set", "data.max_pairs=[1", "--plan"], ("--set", "data.max_pairs=[1", "column")),
    Case("cli-set-wrong-type", ["run", "--set", "train.lr=abc", "--plan"], ("train.lr", "expected a finite number, got 'abc'")),
    Case("cli-flag-not-a-number", ["train", "--max-steps", "abc"], ("train", "--max-steps", "invalid int value: 'abc'")),
    Case("cli-bad-choice", ["run", "--quantization", "8bit"], ("--quantization", "invalid choice: '8bit'")),
    Case("cli-unknown-command", ["trian"], ("invalid choice: 'trian'",)),
    Case("cli-missing-argument", ["acquire", "--input", "x.jsonl"], ("acquire", "required")),
    Case("cli-judge-without-endpoint", ["run", "--judge", "openai:gpt-4o", "--objectives", "dpo"],
         ("needs a model and an endpoint",)),
    Case("cli-negative-lr", train("pairs.jsonl", "--lr", "-1"), ("lr must be > 0",)),
    Case("cli-sft-other-objective", ["sft", "--objective", "dpo"], ("prefbench sft trains objective 'sft'",)),
    Case("cli-sft-no-data", ["sft"], ("no SFT data",)),
    Case("cli-acquire-no-pairs", acquire("rows.jsonl", "--pairs", "0"), ("at least 1",),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"})}),
    Case("cli-extra-argument", ["benchmarks", "extra"], ("unrecognized arguments: extra",)),
    Case("cli-cache-unknown-kind", ["cache", "clear", "nosuch"], ("unknown cache kind 'nosuch'",)),
    Case("cli-unknown-preset", ["data", "build", "--preset", "quik"], ("unknown preset 'quik'", "did you mean 'quick'")),
    Case("cli-preset-of-another-benchmark", ["run", "--benchmark", "tldr", "--preset", "full", "--judge", "local:j"],
         ("tldr.yaml", "unknown preset 'full'", "presets: quick, small, paper, smoke")),
    # --- run directories (prefbench report / compare / eval) ---------------------------------------------
    Case("report-no-results", ["report", "run"], ("run/results.json not found",), {"run/config.yaml": "{}"}),
    Case("report-results-not-json", ["report", "run"], ("run/results.json", "not valid JSON"),
         {"run/results.json": '{"schema": 1,'}),
    Case("report-results-not-utf8", ["report", "run"], ("run/results.json", "not valid JSON", "utf-8"),
         {"run/results.json": b'{"schema": "\xff"}'}),
    Case("report-other-schema", ["report", "run"], ("run/results.json", "schema 99"), {"run/results.json": _results(schema=99)}),
    Case("report-missing-win-rate", ["report", "run"], ("run/results.json", "systems[0].win_rate"),
         {"run/results.json": _system(win_rate=None)}),
    Case("report-comparison-not-object", ["report", "run"], ("run/results.json", "comparisons[0]"),
         {"run/results.json": _results(comparisons=[5])}),
    Case("report-reference-not-object", ["report", "run"], ("run/results.json", "reference"),
         {"run/results.json": _results(reference=5)}),
    Case("report-robustness-not-object", ["report", "run"], ("run/results.json", "systems[0].robustness"),
         {"run/results.json": _system(robustness=[1])}),
    Case("report-missing-length", ["report", "run"], ("run/results.json", "systems[0].mean_length", "expected a number"),
         {"run/results.json": _system(mean_length=None)}),
    Case("report-head-to-head-without-counts", ["report", "run"], ("run/results.json", "head_to_head[0].wins"),
         {"run/results.json": _results(head_to_head=[{"a": "dpo", "b": "dpo", "win_rate": INTERVAL}])}),
    Case("report-metrics-not-json", ["report", "run"], ("run/dpo/seed0/metrics.jsonl", "line 2", "not valid JSON"),
         {"run/results.json": _results(), "run/dpo/seed0/metrics.jsonl": '{"step": 1}\n{"step": \n'}),
    Case("report-metrics-not-object", ["report", "run"], ("run/dpo/seed0/metrics.jsonl", "record 1", "no 'step'"),
         {"run/results.json": _results(), "run/dpo/seed0/metrics.jsonl": "5\n"}),
    Case("compare-missing-run", ["compare", "a", "b", "--output", "cmp"], ("run directory b does not exist",),
         {"a/results.json": _results()}),
    Case("compare-corrupt-run", ["compare", "a", "b", "--output", "cmp"], ("b/results.json", "not valid JSON"),
         {"a/results.json": _results(), "b/results.json": "nope"}),
    Case("eval-config-yaml-syntax", ["eval", "run"], ("run/config.yaml", "line 2, column 1", "not valid YAML"),
         {"run/config.yaml": "benchmark: {name: [\n"}),
    Case("eval-config-missing-key", ["eval", "run"], ("run/config.yaml", "'benchmark'"),
         {"run/config.yaml": json.dumps({k: v for k, v in RUN_CONFIG.items() if k != "benchmark"})}),
    Case("eval-data-summary-not-json", ["eval", "run"], ("run/data/summary.json", "not valid JSON"),
         {"run/config.yaml": json.dumps(RUN_CONFIG), "run/data/summary.json": '{"pairs": '}),
    Case("eval-prompts-not-json", ["eval", "run"], ("run/data/eval.jsonl", "line 1", "not valid JSON"),
         {"run/config.yaml": json.dumps(RUN_CONFIG), "run/data/eval.jsonl": "{oops\n"}),
    # --- exports of a run (prefbench export) ---------------------------------------------------------------
    Case("export-missing-run", ["export", "nosuch", "--format", "csv"], ("run directory nosuch does not exist",)),
    Case("export-no-results", ["export", "run", "--format", "alpaca_eval"], ("run/results.json not found",),
         {"run/config.yaml": "{}"}),
    Case("export-unknown-format", ["export", "run", "--format", "parquet"], ("--format", "invalid choice: 'parquet'")),
    Case("export-missing-generations", ["export", "run", "--format", "jsonl"],
         ("run/generations/reference.jsonl not found", "not a finished run"), {"run/results.json": _results()}),
    Case("export-generations-not-json", ["export", "run", "--format", "alpaca_eval"],
         ("run/generations/dpo/seed0.jsonl", "line 1", "not valid JSON"),
         {"run/results.json": _results(), "run/generations/reference.jsonl": _jsonl(GENERATION),
          "run/generations/dpo/seed0.jsonl": "{oops\n"}),
    Case("export-generation-without-response", ["export", "run", "--format", "alpaca_eval"],
         ("run/generations/dpo/seed0.jsonl", "record 1", "no 'response'"),
         {"run/results.json": _results(), "run/generations/reference.jsonl": _jsonl(GENERATION),
          "run/generations/dpo/seed0.jsonl": _jsonl({k: v for k, v in GENERATION.items() if k != "response"})}),
    Case("export-no-judgments", ["export", "run", "--format", "hf-dataset"], ("run/judgments.jsonl not found",),
         {"run/results.json": _results(), "run/generations/reference.jsonl": _jsonl(GENERATION),
          "run/generations/dpo/seed0.jsonl": _jsonl(GENERATION)}),
    # --- Hub sharing of a run (prefbench push) -------------------------------------------------------------
    Case("push-bad-repo-id", push("run", "--repo", "no-owner"), ("--repo 'no-owner'", "OWNER/NAME"),
         {"run/results.json": _results()}),
    Case("push-missing-run", push("nosuch"), ("run directory nosuch does not exist",)),
    Case("push-not-finished-run", push("run"), ("run/results.json not found",), {"run/config.yaml": "{}"}),
    Case("push-no-adapter", push("run"), ("run/dpo/seed0/adapter/adapter_config.json not found",
                                          "no trained adapter for dpo seed 0"), {"run/results.json": _results()}),
    Case("push-no-adapter-weights", push("run"), ("run/dpo/seed0/adapter", "no adapter_model.safetensors"),
         {"run/results.json": _results(), "run/dpo/seed0/adapter/adapter_config.json": "{}"}),
    Case("push-adapter-config-not-json", push("run"), ("run/dpo/seed0/adapter/adapter_config.json", "not valid JSON"),
         {"run/results.json": _results(), **TRAINED, "run/dpo/seed0/adapter/adapter_config.json": '{"r": '}),
    Case("push-no-report", push("run"), ("run/report.md not found", "prefbench report run"),
         {"run/results.json": _results(), **TRAINED}),
    Case("push-dry-run-into-another-folder", push("run"), ("--dry-run out", "not an earlier dry run"),
         {"run/results.json": _results(), **TRAINED, **REPORTED, "out/notes.txt": "mine"}),
    # --- judges and their caches ------------------------------------------------------------------------
    Case("judge-cache-corrupt-line", acquire("rows.jsonl", "--cache", "cache.jsonl"), ("cache.jsonl", "row 1"),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"}),
          "cache.jsonl": "not json\n" + _jsonl({"key": "k", "judge": "j", "winner": "A", "raw": "[[A]]"})}),
    Case("judge-cache-not-utf8", acquire("rows.jsonl", "--cache", "cache.jsonl"), ("cache.jsonl", "not UTF-8"),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"}),
          "cache.jsonl": b'{"key": "\xff"}\n'}),
    Case("judge-reply-not-json", [a.replace("/garbage", "/html") for a in acquire("rows.jsonl")],
         ("openai:m@", "reply is not JSON"),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"})}),
    Case("judge-refuses-the-request", [a.replace("/garbage", "/reject") for a in acquire("rows.jsonl")],
         ("openai:m@", "HTTP 400", "model m does not exist"),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"})}),
    Case("judge-reply-without-choices", [a.replace("/garbage", "/empty") for a in acquire("rows.jsonl")],
         ("openai:m@", "no choices[0].message.content"),
         {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"})}),
]


class _Judge(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint on loopback: /garbage answers with text no parser can read, /html with
    a page that is not JSON, /empty with JSON without choices, /reject refuses the request."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        replies = {"/garbage": (200, json.dumps({"choices": [{"message": {"content": "Turtles all the way."}}]})),
                   "/html": (200, "<html>busy</html>"), "/empty": (200, "{}"),
                   "/reject": (400, '{"error": "model m does not exist"}')}
        status, text = replies[self.path.removesuffix("/chat/completions")]
        body = text.encode()
        self.send_response(status)
        self.send_header("Retry-After", "0")   # a reply that is not JSON is retried: at once
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture()
def workdir(tmp_path, tmp_path_factory, monkeypatch):
    """An empty working folder, and a model cache with nothing in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path_factory.mktemp("empty-cache")))
    return tmp_path


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content, but a run directory's lock (it stays, and the lock with it goes
    when its process ends)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".prefbench.lock"}


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _fail_once(err: str, says: tuple[str, ...]) -> None:
    """One error line, the last thing written (before it, stderr may hold progress bars and log lines)."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("prefbench: error: ")] == lines[-1:], err
    for part in says:
        assert part in lines[-1], f"{part!r} not in {lines[-1]!r}"


def test_the_corpus_is_large_and_its_cases_distinct():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, workdir, judge_url, capsys):
    _write(workdir, case.files)
    before = _tree(workdir)
    assert main([a.replace("{judge}", judge_url) for a in case.argv]) == 2
    _fail_once(capsys.readouterr().err, case.says)
    assert _tree(workdir) == before   # nothing written, nothing half-written, nothing changed


def test_unreadable_verdicts_are_counted_not_a_crash(workdir, judge_url, capsys):
    """A judge answering text with no verdict in it: every verdict is unparseable, counted as a tie, every
    pair dropped; acquire says so (exit status 1: nothing kept) instead of failing."""
    _write(workdir, {"rows.jsonl": _jsonl(SFT_ROW, {"instruction": "Name a colour", "response": "red"})})
    assert main([a.replace("{judge}", judge_url) for a in acquire("rows.jsonl", "--pairs", "1")]) == 1
    summary = json.loads((workdir / "out" / "pairs.summary.json").read_text())
    assert summary["diagnostics"]["unparseable"] == 2 and summary["kept"] == 0
    assert "nothing kept" in capsys.readouterr().out


def test_lr_written_1e_4_is_a_number(workdir):
    """PyYAML (YAML 1.1) reads ``1e-4`` as text; prefbench reads it as the number it looks like, in a train
    config and a benchmark spec alike."""
    from prefbench.benchmark import load_benchmark
    from prefbench.engine.config import TrainConfig

    _write(workdir, {"cfg.yaml": "lr: 1e-4\nweight_decay: 1E-2\n", "spec.yaml": SPEC + "train:\n  lr: 5e-4\n"})
    cfg = TrainConfig.from_yaml("cfg.yaml")
    assert (cfg.lr, cfg.weight_decay) == (1e-4, 1e-2)
    assert load_benchmark("spec.yaml").train["lr"] == 5e-4


def test_the_exit_status_end_to_end(workdir):
    """Two cases through a real ``python -m prefbench.cli`` process each, started together (each spends its
    seconds importing torch)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cases = [next(c for c in CASES if c.id == name) for name in ("config-yaml-syntax", "cli-flag-not-a-number")]
    started = []
    for case in cases:
        folder = workdir / case.id
        folder.mkdir()
        _write(folder, case.files)
        started.append((case, folder, _tree(folder), subprocess.Popen(
            [sys.executable, "-m", "prefbench.cli", *case.argv], cwd=folder, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for case, folder, before, process in started:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2
        _fail_once(err, case.says)
        assert _tree(folder) == before
