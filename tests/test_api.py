"""The Python API (``prefbench.run``, ``load_results``, ``report``) on a real tiny run, its typed results against the
results.json they come from, and the documented examples: every ```python block of docs/guide.md and README.md
marked ``<!-- test: api -->`` runs here, with the benchmark, model and quantization swapped for tiny ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import prefbench
from prefbench.pipeline.api import _nested
from prefbench.reporting.load import ReportError
from prefbench.reporting.run_results import Comparison, Interval
from prefbench.util.errors import ConfigError
from tests.test_run import SPEC

ROOT = Path(__file__).parents[1]
MARKER = "<!-- test: api -->"


def _tiny_benchmark(folder: Path) -> Path:
    """The tiny spec under the shipped benchmark's file name, so a run's default folder is the one the docs name
    (runs/ifeval-lite-<preset>), with the presets the docs use."""
    path = folder / "ifeval-lite.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "presets": {"smoke": {}, "quick": {}}}))
    return path


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    """What ``prefbench.run`` is given instead of the shipped benchmark, the embedded model and 4-bit loading."""
    root = tmp_path_factory.mktemp("api")
    return {"benchmark": str(_tiny_benchmark(root)), "model": str(tiny_model_dir), "quantization": "none"}


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """``prefbench.run`` of dpo and jpo, two seeds each: (its return value, the run directory)."""
    out = tmp_path_factory.mktemp("api-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFBENCH_CACHE", str(out.parent / "cache"))
        results = prefbench.run(objectives="dpo,jpo", seeds=[0, 1], output_dir=out, preset="smoke",
                                overrides={"train.max_steps": 1}, params={"dpo": {"beta": 0.2}}, **tiny)
    return results, out


def _interval(raw: dict) -> Interval:
    return Interval(raw["estimate"], raw["low"], raw["high"], raw.get("method"))


def test_run_returns_the_typed_results_of_its_results_json(finished):
    results, out = finished
    raw = json.loads((out / "results.json").read_text())
    assert isinstance(results, prefbench.Results) and results.raw == raw and results.run_dir == out
    assert (results.benchmark, results.preset, results.baseline, results.n_prompts) == ("tiny-ifeval", "smoke",
                                                                                       "reference", 3)
    assert results.judge.kind == "pointwise" and results.confidence == 0.95 and results.correction == "holm"
    assert results.arm == "matched" and results.data == raw["data"] and results.data["conditional_pairs"] > 0
    # the options arrived: two seeds, one step each (--set train.max_steps=1), dpo's beta (--param dpo.beta=0.2)
    assert [s.name for s in results.systems] == [s["name"] for s in raw["systems"]]
    assert {s.name: s.params for s in results.systems} == {"dpo": {"beta": 0.2}, "jpo": {"beta": 0.1}}
    for s, r in zip(results.systems, raw["systems"]):
        assert s.seeds == (0, 1) and [t.steps for t in s.training] == [1, 1]
        assert s.win_rate == _interval(r["win_rate"]) and (s.wins, s.ties, s.losses) == (r["wins"], r["ties"],
                                                                                         r["losses"])
        assert s.wins + s.ties + s.losses == 3 * 2
        assert s.kl == _interval(r["kl"]) and s.mean_score == _interval(r["mean_score"])
        assert s.gaming_rate == _interval(r["gaming_rate"]) and s.truncated == r["truncated"]
        assert s.robustness.drop == _interval(r["robustness"]["drop"])
        assert s.robustness.per_variant == r["robustness"]["per_variant"]
        assert s.training[1].metrics == out / r["training"][1]["metrics"] and s.training[1].metrics.is_file()
        assert s.training[0].pairs_by_kind["conditional"] == r["training"][0]["conditional"]
    (c,) = results.comparisons
    (rc,) = raw["comparisons"]
    assert c == Comparison(rc["a"], rc["b"], _interval(rc["diff"]), rc["p"], rc["p_holm"], rc["significant"], rc["mde"])
    (h,) = results.head_to_head
    assert (h.a, h.b, h.win_rate, h.wins + h.ties + h.losses) == (rc["a"], rc["b"],
                                                                  _interval(raw["head_to_head"][0]["win_rate"]), 6)
    assert results.reference.win_rate is None and results.reference.mean_length == raw["reference"]["mean_length"]


def test_load_results_reads_back_what_run_returned(finished):
    results, out = finished
    assert prefbench.load_results(out) == results
    assert prefbench.load_results(str(out)) == results


def test_a_comparison_reads_either_way_round(finished):
    results, _ = finished
    forward = results.comparison("dpo", "jpo")
    backward = results.comparison("jpo", "dpo")
    assert backward.diff == Interval(-forward.diff.estimate, -forward.diff.high, -forward.diff.low,
                                     forward.diff.method)
    assert (backward.a, backward.b, backward.p_holm, backward.significant) == ("jpo", "dpo", forward.p_holm,
                                                                               forward.significant)
    assert results.system("jpo").name == "jpo"
    with pytest.raises(KeyError, match="no system 'ipo'"):
        results.system("ipo")
    with pytest.raises(KeyError, match="no comparison"):
        results.comparison("dpo", "ipo")


def test_report_renders_again_and_returns_the_paths(finished):
    _, out = finished
    for name in ("report.md", "report.html", "leaderboard.csv"):
        (out / name).unlink()
    files = prefbench.report(out)
    assert (files.markdown, files.html, files.leaderboard) == (out / "report.md", out / "report.html",
                                                               out / "leaderboard.csv")
    assert all(p.is_file() for p in (files.markdown, files.html, files.leaderboard))
    assert files.plots == tuple(sorted((out / "plots").glob("*.png"))) and out / "plots" / "win_rate.png" in files.plots


@pytest.mark.parametrize("name", sorted(p.parent.name for p in (ROOT / "reports").glob("*/results.json")))
def test_the_committed_reports_load_typed(name):
    raw = json.loads((ROOT / "reports" / name / "results.json").read_text())
    results = prefbench.load_results(ROOT / "reports" / name)
    assert [(s.name, s.win_rate.estimate, len(s.seeds)) for s in results.systems] == \
        [(s["name"], s["win_rate"]["estimate"], len(s["seeds"])) for s in raw["systems"]]
    assert [(c.a, c.b, c.p_holm) for c in results.comparisons] == [(c["a"], c["b"], c["p_holm"])
                                                                 for c in raw["comparisons"]]
    assert len(results.head_to_head) == len(raw.get("head_to_head") or [])
    assert results.sweep == raw.get("sweep") and results.timings == raw.get("timings", {})


def test_a_missing_field_or_run_is_one_user_error(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        prefbench.load_results(tmp_path / "nosuch")
    run = tmp_path / "run"
    run.mkdir()
    raw = json.loads((ROOT / "reports" / "ifeval-lite-quick" / "results.json").read_text())
    del raw["comparisons"][0]["p_holm"]
    (run / "results.json").write_text(json.dumps(raw))
    with pytest.raises(ReportError, match=r"results.json: comparisons\[0\].p_holm is missing"):
        prefbench.load_results(run)


def test_run_options_are_checked_like_the_command_line():
    with pytest.raises(ConfigError, match="distinct integers"):
        prefbench.run(objectives=["dpo"], seeds=[0, 0])
    with pytest.raises(prefbench.ObjectiveError, match="unknown objective 'dpoo'"):
        prefbench.run(objectives="dpoo")
    assert _nested({"train.max_steps": 5, "data": {"arm": "same"}, "data.location": "x", "eval": {"prompts": 2}}) == \
        {"train": {"max_steps": 5}, "data": {"arm": "same", "location": "x"}, "eval": {"prompts": 2}}
    with pytest.raises(ConfigError, match="conflicts"):
        _nested({"train": 5, "train.lr": 1.0})


def test_run_takes_every_option_of_the_command():
    """A new ``prefbench run`` flag must reach the API too (--plan and --pilot are the command's own: no run)."""
    import argparse
    import inspect

    from prefbench.cli import build_parser

    command = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    python_name = {"param": "params", "set": "overrides", "executor_option": "executor_options"}
    flags = {python_name.get(a.dest, a.dest) for a in command._actions} - {"help", "plan", "pilot"}
    assert flags == set(inspect.signature(prefbench.run).parameters)


def test_import_prefbench_loads_no_training_judging_or_plotting_library():
    """The registry already needs torch; the API adds nothing heavier to ``import prefbench``."""
    code = ("import sys, prefbench; print(sorted(m for m in ('transformers', 'peft', 'scipy', 'matplotlib', "
            "'huggingface_hub', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def marked_blocks(text: str) -> list[str]:
    """Each ```python block of ``text`` on the line after a ``<!-- test: api -->`` line."""
    return re.findall(rf"^{re.escape(MARKER)}\n```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _blocks(doc: str) -> list[str]:
    return marked_blocks((ROOT / doc).read_text(encoding="utf-8"))


def test_only_marked_python_blocks_are_examples():
    text = (f"{MARKER}\n```python\nx = 1\n```\n\n```python\nnot run\n```\n{MARKER}\n```bash\nnot run\n```\n"
            f"{MARKER}\n\n```python\nnot right after the marker\n```\n{MARKER}\n```python\ny = 2\nz = 3\n```\n")
    assert marked_blocks(text) == ["x = 1\n", "y = 2\nz = 3\n"]
    assert len(_blocks("docs/guide.md")) >= 1


EXAMPLES = [(doc, i) for doc in ("docs/guide.md", "README.md") for i, _ in enumerate(_blocks(doc))]


@pytest.mark.parametrize("doc, index", EXAMPLES, ids=[f"{d}[{i}]" for d, i in EXAMPLES])
def test_documented_example_runs(doc, index, tiny, tmp_path, monkeypatch, capsys):
    """The block as written, in an empty folder, with ``prefbench.run`` given the tiny benchmark, model and
    quantization over whatever the block asks for (its objectives, seeds, folders and other options stay)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    real_run = prefbench.run
    monkeypatch.setattr(prefbench, "run", lambda **options: real_run(**{**options, **tiny}))
    code = _blocks(doc)[index]
    exec(compile(code, f"{doc} (python block {index})", "exec"), {"__name__": "__example__"})  # noqa: S102 (the docs' own code)
    printed = capsys.readouterr().out
    if doc == "docs/guide.md":   # the guide's example: one line per system, the comparison, the report
        results = prefbench.load_results(tmp_path / "runs" / "api-smoke")
        for s in results.systems:
            w = s.win_rate
            assert f"{s.name}: {w.estimate:.1%} [{w.low:.1%}, {w.high:.1%}] vs reference" in printed
        diff = results.comparison("jpo", "dpo").diff
        assert f"jpo − dpo: {diff.estimate:+.1%}" in printed
        assert "runs/api-smoke/report.html" in printed
