"""Score-against-KL frontiers and the matched-KL comparison (hand-derived values and invariants), and the
sweep's choice of a point."""

import json

import numpy as np
import pytest

from prefbench.benchmark import SweepPoint, load_benchmark
from prefbench.stats import StatsError, SweepPoints, frontier_at, frontier_curve, matched_kl
from prefbench.tasks.base import TaskPrompt

REF = (0.0, 0.5)


def test_the_frontier_is_the_upper_hull_from_the_reference_to_the_best_point():
    # (1, .7) lies above the chord from the reference (0, .5) to (3, .8) (.6 at KL 1): a corner
    assert frontier_curve([1, 3], [0.7, 0.8], REF) == {"kl": [0.0, 1.0, 3.0], "score": [0.5, 0.7, 0.8]}
    assert frontier_at([1, 3], [0.7, 0.8], REF, 2.0) == pytest.approx(0.75)
    # (1, .55) lies below that chord (.6): mixing the reference with (3, .8) does better, so it is no corner;
    # (2, .5) and (0.5, .4) are dominated (no better than a point of lower KL)
    assert frontier_curve([1, 2, 3, 0.5], [0.55, 0.5, 0.8, 0.4], REF) == {"kl": [0.0, 3.0], "score": [0.5, 0.8]}
    assert frontier_at([1, 2, 3, 0.5], [0.55, 0.5, 0.8, 0.4], REF, 1.5) == pytest.approx(0.65)
    # past the best point more budget changes nothing; below the reference nothing beats not training
    assert frontier_at([1, 3], [0.7, 0.8], REF, 9.0) == pytest.approx(0.8)
    assert frontier_curve([1, 2], [0.4, 0.3], REF) == {"kl": [0.0], "score": [0.5]}
    assert frontier_at([1, 2], [0.4, 0.3], REF, 1.5) == 0.5


def test_equal_kls_collinear_points_and_a_point_at_kl_0_above_the_reference():
    # at one KL only the best point counts; a point on the chord between two corners is no corner
    assert frontier_curve([1, 1, 2], [0.6, 0.7, 0.8], REF) == {"kl": [0.0, 1.0, 2.0], "score": [0.5, 0.7, 0.8]}
    assert frontier_curve([1, 2], [0.6, 0.7], REF) == {"kl": [0.0, 2.0], "score": [0.5, 0.7]}
    # a point at KL 0 that beats the reference replaces it as the start
    assert frontier_curve([0, 1], [0.6, 0.65], REF) == {"kl": [0.0, 1.0], "score": [0.6, 0.65]}


def test_the_frontier_is_non_decreasing_and_ignores_dominated_points():
    rng = np.random.default_rng(1)
    for _ in range(200):
        kl, score = rng.gamma(2, 1, 6), rng.uniform(0.2, 0.9, 6)
        grid = np.linspace(0, kl.max() * 1.2, 50)
        f = np.array([frontier_at(kl, score, REF, k) for k in grid])
        assert np.all(np.diff(f) >= -1e-12)
        assert f[-1] == pytest.approx(max(0.5, score.max()))
        # a point below the frontier at its own KL leaves it unchanged
        k = rng.uniform(0, kl.max())
        worse = frontier_at(kl, score, REF, k) - 0.05
        assert frontier_curve(np.append(kl, k), np.append(score, worse), REF) == frontier_curve(kl, score, REF)


def test_matched_kl_reads_every_frontier_at_the_smallest_largest_kl():
    n = 8
    ones = np.ones(n)

    def outcome(mean):          # per-prompt outcomes: wins on the first mean * n prompts, losses after
        return np.where(np.arange(n) < mean * n, 1.0, 0.0)

    a = SweepPoints(np.stack([1 * ones, 3 * ones]), np.stack([outcome(0.75), outcome(0.875)]))
    b = SweepPoints(np.stack([2 * ones]), np.stack([outcome(0.625)]))
    result = matched_kl({"a": a, "b": b}, np.full(n, 0.5), n_resamples=500)
    assert result["kl"] == 2.0                                   # b's largest KL, below a's 3
    # a: between (1, .75) and (3, .875) -> .8125; b: between the reference (0, .5) and (2, .625) -> .625
    assert result["values"]["a"]["estimate"] == pytest.approx(0.8125)
    assert result["values"]["b"]["estimate"] == pytest.approx(0.625)
    diff = result["differences"][0]
    assert (diff["a"], diff["b"]) == ("a", "b") and diff["diff"]["estimate"] == pytest.approx(0.1875)
    assert diff["diff"]["low"] <= 0.1875 <= diff["diff"]["high"] and diff["p_holm"] == diff["p"]
    for name in ("a", "b"):
        iv = result["values"][name]
        assert iv["low"] <= iv["estimate"] <= iv["high"]


def test_identical_sweeps_do_not_differ_at_matched_kl():
    rng = np.random.default_rng(0)
    points = SweepPoints(rng.gamma(2, 1, (3, 30)), rng.integers(0, 3, (3, 30)) / 2)
    result = matched_kl({"a": points, "b": points}, np.full(30, 0.5), n_resamples=300)
    d = result["differences"][0]
    assert d["diff"]["estimate"] == 0 and d["diff"]["method"] == "degenerate" and d["p"] == 1.0


def test_matched_kl_refuses_points_on_other_prompts():
    points = SweepPoints(np.ones((2, 5)), np.ones((2, 5)))
    with pytest.raises(StatsError, match="must cover the anchor's 4 prompts"):
        matched_kl({"a": points}, np.full(4, 0.5))


def test_the_sweep_chooses_the_best_validation_win_rate_and_the_lower_kl_on_a_tie(tmp_path):
    from prefbench.pipeline.sweep import summarize

    spec = load_benchmark("ifeval-lite", "smoke")
    ids = ["v0", "v1", "v2", "v3"]
    prompts = [TaskPrompt(i, i) for i in ids]
    grid = {"dpo": [SweepPoint("dpo", {"beta": b}, 1e-4, ("beta",)) for b in (0.1, 0.3, 1.0)]}
    wins = {"beta0.1-lr0.0001": [1, 1, 0, 0.5], "beta0.3-lr0.0001": [1, 0, 1, 0.5], "beta1-lr0.0001": [0, 0, 1, 0.5]}
    kls = {"beta0.1-lr0.0001": 2.0, "beta0.3-lr0.0001": 1.0, "beta1-lr0.0001": 0.5}
    rows = [{"system": "reference", "id": i, "outcome": 0.5, "score": 0.3} for i in ids]
    for name, outcomes in wins.items():
        rows += [{"system": f"dpo/{name}", "id": i, "outcome": o, "score": o, "finished": True, "gaming": []}
                 for i, o in zip(ids, outcomes)]
        path = tmp_path / "kl" / "dpo" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"id": i, "kl": kls[name]}) + "\n" for i in ids))
    result = summarize(rows, grid, prompts, tmp_path, spec)
    entry = result["objectives"]["dpo"]
    assert entry["chosen"] == "beta0.3-lr0.0001"          # 62.5% like beta 0.1, at half its KL
    assert [p["chosen"] for p in entry["points"]] == [False, True, False]
    assert [p["win_rate"]["estimate"] for p in entry["points"]] == [0.625, 0.625, 0.375]
    assert entry["points"][0]["truncated"] == 0 and entry["points"][0]["gaming"] == 0
    assert entry["frontier"] == {"kl": [0.0, 1.0], "score": [0.5, 0.625]}


def test_a_choice_at_the_edge_of_the_grid_is_named():
    from prefbench.reporting.sweep import grid_edges

    def point(beta, lr, chosen=False):
        return {"params": {"beta": beta, "alpha": 1.0}, "lr": lr, "chosen": chosen}

    grid = [point(b, lr) for b in (0.03, 0.1, 0.3) for lr in (2e-4, 5e-4)]
    grid[1]["chosen"] = True                                   # beta 0.03, lr 5e-4: a corner
    assert grid_edges(grid) == ["beta 0.03 (smallest)", "lr 0.0005 (largest)"]
    grid[1]["chosen"], grid[2]["chosen"] = False, True         # beta 0.1, lr 2e-4: inside in beta
    assert grid_edges(grid) == ["lr 0.0002 (smallest)"]        # (alpha was not swept: never an edge)


def test_a_clear_gap_at_matched_kl_gets_a_small_p_value_with_kl_varying_by_prompt():
    rng = np.random.default_rng(3)
    n = 60
    kl = lambda scale: rng.gamma(4, scale / 4, (2, n))   # noqa: E731 (per-prompt KL around `scale`)
    strong = SweepPoints(kl(2.0), (rng.uniform(size=(2, n)) < np.array([[0.7], [0.9]])).astype(float))
    weak = SweepPoints(kl(2.0), (rng.uniform(size=(2, n)) < np.array([[0.45], [0.5]])).astype(float))
    result = matched_kl({"strong": strong, "weak": weak}, np.full(n, 0.5), n_resamples=2000)
    d = result["differences"][0]
    assert d["diff"]["estimate"] > 0.2 and d["diff"]["low"] > 0 and d["p"] < 0.01
