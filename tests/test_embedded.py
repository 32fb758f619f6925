"""End to end on the embedded SmolLM2-135M in 4-bit (QLoRA on the CPU): slow, run with -m slow."""

import json
from pathlib import Path

import pytest
import torch

from prefbench.registry import parse_objective_list

pytestmark = pytest.mark.slow


def test_demo_trains_every_objective_and_adapters_reload(tmp_path):
    from peft import PeftModel

    from prefbench.engine.models import EMBEDDED, load_base_model
    from prefbench.pipeline.demo import run_demo
    from tests.test_train import assert_reload_reproduces_policy

    names = "dpo,ipo,simpo,jpo,sft_jpo"
    results = run_demo(parse_objective_list(names), steps=4, output_dir=str(tmp_path))
    for r in results:
        assert r["last"]["accuracy"] > 0.5, r  # above chance after 4 steps on the training pairs
        assert r["last"]["loss"] < r["first"]["loss"], r
    out = tmp_path / "jpo" / "seed0"
    reloaded = PeftModel.from_pretrained(load_base_model(EMBEDDED, "4bit"), out / "adapter").eval()
    assert_reload_reproduces_policy(reloaded, out, tmp_path / "data" / "pairs.jsonl")
    # a second call reuses the finished adapters and gives the same table
    again = run_demo(parse_objective_list(names), steps=4, output_dir=str(tmp_path))
    assert [r["last"] for r in again] == [r["last"] for r in results]
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1
    assert torch.isfinite(torch.tensor([r["tokens_per_s"] for r in results])).all()


def test_smoke_preset_runs_end_to_end_to_a_report(tmp_path, monkeypatch):
    """`prefbench run --preset smoke` on the embedded model: data, QLoRA training, generation, gold judging,
    statistics and the report, offline on the CPU."""
    from prefbench.pipeline.config import RunConfig
    from prefbench.pipeline.run import run

    out = tmp_path / "run"
    results = run(RunConfig(objectives=["dpo", "jpo"], preset="smoke", output_dir=str(out)))
    assert {s["name"] for s in results["systems"]} == {"dpo", "jpo"}
    n = results["n_prompts"]
    for s in results["systems"]:
        assert s["wins"] + s["ties"] + s["losses"] == n
        assert 0 <= s["win_rate"]["low"] <= s["win_rate"]["estimate"] <= s["win_rate"]["high"] <= 1
        assert s["kl"]["estimate"] >= 0
    summary = json.loads((out / "data" / "summary.json").read_text())
    assert summary["conditional_pairs"] + summary["joint_pairs"] > 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html


def test_tldr_smoke_runs_offline_with_a_local_judge_on_release_files(tmp_path):
    """The JPO paper's TL;DR benchmark end to end on local files of the release's schema: SFT stage,
    release pairs (conditional + joint, ties dropped), QLoRA training from the SFT model, generation,
    a local LM judging every answer against the gold summary in both orders, statistics, report."""
    from prefbench.benchmark import parse_set
    from prefbench.engine.config import TrainConfig
    from prefbench.engine.models import EMBEDDED
    from prefbench.pipeline.config import RunConfig
    from prefbench.pipeline.run import run

    release = Path(__file__).parent / "fixtures" / "paper" / "release"
    out = tmp_path / "run"
    results = run(RunConfig(objectives=["dpo", "jpo"], benchmark="tldr", preset="smoke", judge=f"local:{EMBEDDED}",
                            overrides=parse_set([f"data.location={release}"]), output_dir=str(out)))
    assert results["baseline"] == "gold" and results["n_prompts"] == 3 and results["model"] == EMBEDDED
    for s in [*results["systems"], results["reference"]]:
        assert s["wins"] + s["ties"] + s["losses"] == 3
        assert 0 <= s["win_rate"]["low"] <= s["win_rate"]["estimate"] <= s["win_rate"]["high"] <= 1
    diag = results["judge"]["diagnostics"]
    assert results["judge"]["kind"] == "pairwise" and diag["calls"] > 0
    judgments = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 3 * 3 and {j["baseline"] for j in judgments} == {"gold"}
    golds = [json.loads(line)["gold_response"] for line in (release / "data/tldr/test.json").read_text().splitlines()]
    assert sorted({j["baseline_words"] for j in judgments}) == sorted({len(g.split()) for g in golds})
    # every objective starts from the SFT stage's merged model, which is also the reference
    assert (out / "sft" / "model" / "config.json").exists() and results["start_model"] == str(out / "sft" / "model")
    assert TrainConfig.from_yaml(out / "dpo" / "seed0" / "config.yaml").model == str(out / "sft" / "model")
    summary = json.loads((out / "data" / "summary.json").read_text())
    assert (summary["conditional_pairs"], summary["joint_pairs"]) == (2, 1)
    assert set(json.loads((out / "timings.json").read_text())) >= {"sft", "data", "train", "generate", "judge"}
    assert "## Win rate vs gold" in (out / "report.md").read_text()


def test_one_objective_of_each_family_runs_to_a_report_grouped_by_family(tmp_path):
    """The smoke preset with one objective of every family: each trains through the engine (QLoRA on the
    embedded model), is judged, and the report groups them by family."""
    from prefbench.pipeline.config import RunConfig
    from prefbench.pipeline.run import run
    from prefbench.registry import FAMILIES, get_objective

    chosen = ["dpo", "cdpo", "ipo", "fdpo_js", "apo_zero", "aot", "simpo", "jpo", "kto", "sft", "tdpo2", "lipo",
              "iterative_dpo"]
    assert sorted(get_objective(o).family for o in chosen) == sorted(f for f in FAMILIES if f != "other")
    out = tmp_path / "run"
    # the smoke preset trains 2 steps: one per round
    results = run(RunConfig(objectives=chosen, preset="smoke", seeds=[0], output_dir=str(out),
                            params={"iterative_dpo": {"rounds": 2}}))
    assert {s["name"]: s["family"] for s in results["systems"]} == {o: get_objective(o).family for o in chosen}
    for s in results["systems"]:
        assert s["wins"] + s["ties"] + s["losses"] == results["n_prompts"]
        assert s["training"][0]["steps"] > 0
    section = (out / "report.md").read_text().split("## By objective family\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    assert sorted(r.split("|")[1].strip() for r in rows) == sorted(get_objective(o).family for o in chosen)
