"""`prefbench run --plan`: the work a run would do, its expected time, and detectable differences scaled from a
pilot run's spreads."""

import json
import math

import pytest

from prefbench.cli import main
from prefbench.pipeline.config import RunConfig, resolve
from prefbench.pipeline.plan import JOINT_STEP, REFERENCE_RATES, plan, work

Z = 1.959964 + 0.841621   # z_0.975 + z_0.8


def test_the_quick_preset_work_by_hand():
    cfg = RunConfig(objectives=["dpo", "jpo"])
    spec, _ = resolve(cfg)
    assert cfg.seeds == [0, 1]                       # the preset's seeds when none are given
    w = work(cfg, spec)
    # 20 steps per run; jpo trains on conditional + joint pairs (a step weighs JOINT_STEP); two seeds
    assert w.steps == pytest.approx(20 * (1 + JOINT_STEP) * 2)
    # per system 160 prompts + 4 variants of the first 24; 4 trained systems + the reference; 1 KL sample on 24
    assert w.answers == 5 * (160 + 4 * 24) + 4 * 24
    assert w.samples == 80 * 4


def test_a_plan_scales_the_pilots_spread_and_rates(tmp_path, capsys):
    pilot = tmp_path / "pilot"
    for name, n in (("reference", 30), ("dpo/seed0", 30), ("jpo/seed0", 30)):   # the run directory's layout
        (pilot / "generations" / f"{name}.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (pilot / "generations" / f"{name}.jsonl").write_text("{}\n" * n)
    spread = {"prompts": 40, "seeds": 2, "prompt_variance": 0.09, "seed_variance": 0.002}
    (pilot / "results.json").write_text(json.dumps({
        "systems": [{"name": "dpo", "training": [{"steps": 20, "pair_kinds": "conditional"},   # a sweep's copy:
                                                 {"steps": 20, "pair_kinds": "conditional", "copied_from": "x"}]},
                    {"name": "jpo", "training": [{"steps": 20, "pair_kinds": "all"}]}],
        "head_to_head": [{"a": "dpo", "b": "jpo", "spread": spread}],
        "data": {"samples": 100}, "timings": {"data": 30.0, "train": 98.0, "generate": 45.0}}))
    cfg = RunConfig(objectives=["dpo", "jpo", "ipo"])
    text = plan(cfg, pilot)
    # Holm over 3 comparisons; 160 prompts, 2 seeds: var 0.09 / 160 + 0.002 / 2
    z3 = 2.393980 + 0.841621      # z_(1 - 0.05/6) + z_0.8
    assert f"dpo vs jpo: {100 * z3 * math.sqrt(0.09 / 160 + 0.002 / 2):.1f} points" in text
    assert "dpo vs ipo:" in text and "not in the pilot: its median spread" in text
    # rates: 98 s over 20 + 20 x JOINT_STEP steps, 45 s over 90 answers, 30 s over 100 samples
    spec, _ = resolve(cfg)
    w = work(cfg, spec)
    expected = w.steps * 98 / (20 + 20 * JOINT_STEP) + w.answers * 45 / 90 + w.samples * 30 / 100
    assert f"about {expected / 60:.1f} min in all, from the pilot" in text
    assert main(["run", "--objectives", "dpo,jpo", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "seeds: 0, 1" in out and "from the reference 2-core CPU's rates" in out and "--pilot RUN" in out
    assert REFERENCE_RATES["step"] > 0


def test_a_pilot_without_spread_gives_no_detectable_difference(tmp_path):
    spread = {"prompts": 40, "seeds": 1, "prompt_variance": 0.0, "seed_variance": None}   # every prompt tied
    (tmp_path / "results.json").write_text(json.dumps({"systems": [], "head_to_head": [
        {"a": "dpo", "b": "jpo", "spread": spread}]}))
    text = plan(RunConfig(objectives=["dpo", "jpo"]), tmp_path)
    assert "dpo vs jpo: not estimable (no spread in the pilot's differences)" in text and "0.0 points" not in text


def test_a_swept_plan_counts_every_grid_point_once():
    cfg = RunConfig(objectives=["dpo", "jpo"], sweep=True)
    spec, params = resolve(cfg)
    w = work(cfg, spec, params)
    # 3 strengths x 2 learning rates per objective, 48 validation prompts; each point trains once, and the chosen
    # point's seed-0 run is copied into the train stage, so each objective trains 6 + 2 - 1 times
    assert w.points == 12
    assert w.steps == pytest.approx(20 * (1 + JOINT_STEP) * 7)
    assert w.answers == 5 * (160 + 4 * 24) + 4 * 24 + 13 * 48 + 12 * 48
    text = plan(cfg)
    assert "sweep: 12 points on 48 validation prompts (dpo: beta0.03-lr0.0002, " in text
