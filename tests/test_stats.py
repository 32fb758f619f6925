"""Evaluation statistics: hand-computed values, independent reference computations and coverage
on simulated data whose true values are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from prefbench.stats import (
    Interval,
    StatsError,
    cluster_mean_ci,
    detectable_difference,
    difference_spread,
    hierarchical_mean_ci,
    hierarchical_paired_difference,
    holm,
    length_controlled_win_rate,
    mean_ci,
    minimum_detectable_difference,
    paired_difference,
    robustness_summary,
    unpaired_difference,
    win_scores,
)

# Win/tie/loss probabilities of the simulated system: true win rate 0.5 + 0.5 * 0.2 = 0.6.
PROBS = {1.0: 0.5, 0.5: 0.2, 0.0: 0.3}
TRUE_WIN_RATE = 0.6


def simulate_outcomes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(list(PROBS), p=list(PROBS.values()), size=n)


def width(interval: Interval) -> float:
    return interval.high - interval.low


# ----------------------------------------------------------------------------- basics


def test_win_scores_wins_ties_losses():
    a = [0.9, 0.2, 0.5, 0.5 + 1e-12, 3.0]
    b = [0.1, 0.7, 0.5, 0.5, 3.1]
    assert win_scores(a, b).tolist() == [1.0, 0.0, 0.5, 0.5, 0.0]
    assert win_scores(a, b, tol=0.2).tolist() == [1.0, 0.0, 0.5, 0.5, 0.5]


def test_mean_ci_estimate_and_json():
    x = [1, 1, 0.5, 0, 1, 0, 0.5, 1]  # 5 / 8
    interval = mean_ci(x, n_resamples=2000)
    assert interval.estimate == pytest.approx(0.625)
    assert interval.method == "BCa"
    assert 0 <= interval.low < 0.625 < interval.high <= 1
    assert json.loads(json.dumps(interval.to_json())) == {
        "estimate": 0.625, "low": interval.low, "high": interval.high, "method": "BCa"}


def test_mean_ci_is_seeded():
    x = simulate_outcomes(np.random.default_rng(0), 60)
    assert mean_ci(x, seed=3) == mean_ci(x, seed=3)
    assert mean_ci(x, seed=3) != mean_ci(x, seed=4)


def test_mean_ci_matches_normal_theory_on_a_large_sample():
    # For n = 2000 the bootstrap interval of a mean is close to mean +- 1.96 * sd / sqrt(n).
    x = simulate_outcomes(np.random.default_rng(1), 2000)
    half = 1.959964 * x.std() / math.sqrt(len(x))
    interval = mean_ci(x)
    assert interval.low == pytest.approx(x.mean() - half, abs=2e-3)
    assert interval.high == pytest.approx(x.mean() + half, abs=2e-3)


def test_bad_inputs_name_the_problem():
    with pytest.raises(StatsError, match="index 2"):
        mean_ci([0.1, 0.2, float("nan")])
    with pytest.raises(StatsError, match="same prompts: got 3 and 2"):
        paired_difference([1, 0, 1], [0, 1])
    with pytest.raises(StatsError, match="1-D"):
        mean_ci([[1, 0], [0, 1]])
    with pytest.raises(StatsError, match="pvalues\\[1\\]"):
        holm([0.1, 1.5])


# ----------------------------------------------------------------------------- Holm


def test_holm_hand_worked():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.7, 0.2]) == pytest.approx([0.7, 0.4])
    assert holm([0.6, 0.9, 0.3]) == pytest.approx([1.0, 1.0, 0.9])  # 2 * 0.6 capped at 1
    assert holm([]) == []


def holm_by_procedure(p: list[float]) -> list[float]:
    """Independent reference: the adjusted p-value of H_i is the smallest level alpha at which
    Holm's step-down procedure (reject while p_(k) <= alpha / (m - k + 1)) rejects H_i."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])

    def rejected(alpha: float) -> set[int]:
        out = set()
        for k, i in enumerate(order):
            if p[i] * (m - k) > alpha:
                break
            out.add(i)
        return out

    candidates = sorted({min(1.0, (m - k) * p[i]) for k, i in enumerate(order)} | {1.0})
    return [next((a for a in candidates if i in rejected(a)), 1.0) for i in range(m)]


def test_holm_matches_the_step_down_procedure():
    rng = np.random.default_rng(2)
    for _ in range(20):
        p = (rng.random(6) ** 3).tolist()
        assert holm(p) == pytest.approx(holm_by_procedure(p))


# ----------------------------------------------------------------------------- coverage


def coverage(n_datasets: int, n_prompts: int) -> float:
    rng = np.random.default_rng(123)
    hits = 0
    for k in range(n_datasets):
        interval = mean_ci(simulate_outcomes(rng, n_prompts), n_resamples=2000, seed=k)
        hits += interval.low <= TRUE_WIN_RATE <= interval.high
    return hits / n_datasets


def test_coverage_of_the_95_percent_interval():
    # 1000 datasets of 100 prompts (about 1.5 s): the Monte-Carlo sd of the coverage is 0.7 points.
    assert 0.93 <= coverage(1000, 100) <= 0.97


# ----------------------------------------------------------------------------- paired vs unpaired


def test_paired_interval_is_narrower_on_correlated_data():
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0, 0.5, 200)  # shared by both systems: positive correlation
    x = difficulty + 0.05 + rng.normal(0, 0.1, 200)
    y = difficulty + rng.normal(0, 0.1, 200)
    paired, _ = paired_difference(x, y)
    unpaired = unpaired_difference(x, y)
    assert paired.estimate == pytest.approx(unpaired.estimate) == pytest.approx(np.mean(x - y))
    assert width(paired) < 0.5 * width(unpaired)
    assert paired.low > 0  # the shift is detected only with pairing
    assert unpaired.low < 0


def test_paired_and_unpaired_agree_on_independent_data():
    rng = np.random.default_rng(4)
    x, y = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    paired, _ = paired_difference(x, y)
    assert width(paired) / width(unpaired_difference(x, y)) == pytest.approx(1.0, abs=0.12)


def test_paired_p_values():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 200)
    _, p_shift = paired_difference(x + 0.5, x + rng.normal(0, 0.5, 200))
    assert p_shift < 1e-3
    _, p_zero = paired_difference(x, x[::-1])  # same values, mean difference exactly 0
    assert p_zero > 0.9


def test_paired_p_value_is_exact_for_few_prompts():
    # d = (1, 2, 3): of the 8 sign patterns only +++ and --- reach |mean| >= 2, so p = 2/8.
    _, p = paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert p == pytest.approx(0.25)


def test_paired_p_value_rejects_at_the_nominal_rate_under_the_null():
    rng = np.random.default_rng(6)
    p = [paired_difference(rng.normal(0, 1, 40), rng.normal(0, 1, 40), n_resamples=999, seed=k)[1]
         for k in range(150)]
    assert 0.01 <= np.mean(np.array(p) < 0.05) <= 0.10
    assert np.mean(np.array(p) > 0.3) == pytest.approx(0.7, abs=0.1)  # p is ~uniform under H0


def test_minimum_detectable_difference_by_hand_and_bad_input():
    d = np.array([1.0, 0.0, -1.0, 0.5, 0.5])
    z = 1.959964 + 0.841621   # z_0.975 + z_0.8
    assert minimum_detectable_difference(d) == pytest.approx(z * d.std(ddof=1) / math.sqrt(5), rel=1e-5)
    assert minimum_detectable_difference(d, alpha=0.01) > minimum_detectable_difference(d)   # stricter level
    # two seeds: prompt means 0.5, 0, 0.5 (variance 1/12, over 3 prompts 1/36) and seed means 1/2, 1/6 (variance
    # 1/18, over 2 seeds 1/36): SE = sqrt(1/18), larger than the seed-averaged differences alone give (sqrt(1/36))
    two = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.5]])
    assert minimum_detectable_difference(two) == pytest.approx(z * math.sqrt(1 / 18), rel=1e-5)
    assert minimum_detectable_difference(two) > minimum_detectable_difference(two.mean(axis=0))
    with pytest.raises(StatsError, match="at least 2 prompts"):
        minimum_detectable_difference([0.5])
    with pytest.raises(StatsError, match="alpha and power"):
        minimum_detectable_difference(d, power=1.0)


def test_the_sign_flip_test_has_the_stated_power_at_the_minimum_detectable_difference():
    """Per-prompt paired outcome differences in {-1, -0.5, 0, 0.5, 1} (win/tie/loss vs win/tie/loss):
    at a true mean difference equal to the MDE, the permutation test rejects about 80% of the time."""
    rng = np.random.default_rng(11)
    n, base = 200, np.array([0.15, 0.1, 0.5, 0.1, 0.15])        # symmetric: mean 0
    values = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    sd = math.sqrt(float(base @ values**2))
    mde = (1.959964 + 0.841621) * sd / math.sqrt(n)
    probs = base + np.array([-1, 0, 0, 0, 1]) * mde / 2       # moves the mean by exactly mde (variance barely)
    rejected, estimates = [], []
    for k in range(300):
        d = rng.choice(values, p=probs, size=n)
        rejected.append(paired_difference(d, np.zeros(n), n_resamples=999, seed=k)[1] < 0.05)
        estimates.append(minimum_detectable_difference(d))
    assert 0.72 <= np.mean(rejected) <= 0.88
    assert np.mean(estimates) == pytest.approx(mde, rel=0.05)


# ----------------------------------------------------------------------------- degenerate input


def test_all_ties_give_a_degenerate_interval_not_nan():
    """Without a value range nothing bounds what other prompts could give: zero width, and the method says so."""
    ties = win_scores(np.ones(30), np.ones(30))
    assert mean_ci(ties) == Interval(0.5, 0.5, 0.5, "degenerate")
    paired, p = paired_difference(ties, ties)
    assert paired == Interval(0.0, 0.0, 0.0, "degenerate") and p == 1.0
    assert unpaired_difference(ties, ties) == Interval(0.0, 0.0, 0.0, "degenerate")
    assert hierarchical_mean_ci(np.full((3, 30), 0.5)) == Interval(0.5, 0.5, 0.5, "degenerate")
    assert hierarchical_paired_difference(np.full((2, 30), 0.5), ties) == (Interval(0.0, 0.0, 0.0, "degenerate"), 1.0)
    assert cluster_mean_ci(np.full((30, 3), 0.5), np.mean) == Interval(0.5, 0.5, 0.5, "degenerate")
    assert mean_ci([0.7]) == Interval(0.7, 0.7, 0.7, "degenerate")  # a single prompt


WIN_RANGE = (0.0, 1.0)   # loss 0, tie 0.5, win 1


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return ci.low, ci.high


@pytest.mark.parametrize("n", [1, 4, 40])
def test_all_wins_or_all_losses_give_the_clopper_pearson_interval(n):
    wins = mean_ci(np.ones(n), value_range=WIN_RANGE)
    assert wins.method == "Clopper-Pearson" and wins.estimate == 1.0
    assert (wins.low, wins.high) == pytest.approx(clopper_pearson(n, n), abs=1e-12)
    assert wins.low == pytest.approx(0.025 ** (1 / n)) and wins.high == 1.0    # 40 of 40: 0.9119
    losses = mean_ci(np.zeros(n), value_range=WIN_RANGE)
    assert (losses.low, losses.high) == pytest.approx(clopper_pearson(0, n), abs=1e-12)
    assert losses.low == 0.0 and losses.high == pytest.approx(1 - 0.025 ** (1 / n))
    # several seeds that all agree: the prompts are the trials, not prompts x seeds
    assert hierarchical_mean_ci(np.ones((3, n)), value_range=WIN_RANGE) == wins


def test_four_tied_prompts_leave_the_win_rate_uncertain():
    # at most 1 - 0.025^(1/4) = 0.602 of prompts could be other than ties, each moving the mean by at most 0.5
    half = (1 - 0.025 ** 0.25) / 2
    ties = mean_ci(np.full(4, 0.5), value_range=WIN_RANGE)
    assert (ties.low, ties.high) == pytest.approx((0.5 - half, 0.5 + half))     # [0.199, 0.801]
    assert ties.method == "Clopper-Pearson" and ties.low < 0.5 < ties.high
    # wider than 40 ties, narrower than Clopper-Pearson on 2 "successes" of 4 (each tie a coin flip)
    assert width(mean_ci(np.full(40, 0.5), value_range=WIN_RANGE)) < width(ties) < np.ptp(clopper_pearson(2, 4))


def test_identical_outcomes_give_a_paired_difference_of_plus_minus_the_share_that_could_differ():
    pi = 1 - 0.025 ** (1 / 40)                                                       # 0.088
    interval, p = paired_difference(np.ones(40), np.ones(40), value_range=(-1.0, 1.0))
    assert (interval.low, interval.high) == pytest.approx((-pi, pi)) and p == 1.0
    assert interval.method == "Clopper-Pearson"
    # a wins every prompt b loses: d = 1, and a differing prompt can pull it down to -1
    always, p = paired_difference(np.ones(40), np.zeros(40), value_range=(-1.0, 1.0))
    assert (always.low, always.high) == pytest.approx((1 - 2 * pi, 1.0)) and p < 1e-3
    seeded, p = hierarchical_paired_difference(np.ones((2, 40)), np.ones((3, 40)), value_range=(-1.0, 1.0))
    assert seeded == interval and p == 1.0
    with pytest.raises(StatsError, match="outside the stated range"):
        mean_ci(np.full(5, 2.0), value_range=WIN_RANGE)


def test_the_detectable_difference_of_constant_differences_is_not_estimable():
    assert minimum_detectable_difference(np.zeros(10)) is None
    assert minimum_detectable_difference(np.full(10, 0.1 + 0.2)) is None     # constant up to rounding
    assert minimum_detectable_difference(np.full((2, 10), -0.5)) is None     # no spread between seeds either
    spread = difference_spread(np.full(10, 0.5))
    assert spread["prompt_variance"] == 0.0 and detectable_difference(spread, prompts=1000) is None
    # spread between seeds alone is enough: seed means 1 and 0, prompt means all 0.5
    assert minimum_detectable_difference(np.array([[1.0] * 10, [0.0] * 10])) == pytest.approx(
        (1.959964 + 0.841621) * math.sqrt(0.5 / 2), rel=1e-5)


def test_bca_falls_back_to_percentile_when_it_is_undefined():
    # The number of distinct rows is n on the data and < n on almost every resample, so BCa's
    # bias correction is infinite (NaN interval); the same resamples give a percentile interval.
    values = np.arange(40.0).reshape(20, 2)
    interval = cluster_mean_ci(values, lambda rows: len(np.unique(rows, axis=0)), method="BCa", n_resamples=500)
    assert interval.method == "percentile"
    assert interval.estimate == 20 and 9 <= interval.low < interval.high < 20


# ----------------------------------------------------------------------------- several seeds


def test_hierarchical_with_one_seed_matches_mean_ci_percentile():
    x = simulate_outcomes(np.random.default_rng(7), 300)
    hierarchical = hierarchical_mean_ci(x[None, :])
    plain = mean_ci(x, method="percentile")
    assert hierarchical.method == plain.method == "percentile"
    assert hierarchical.estimate == pytest.approx(plain.estimate)
    assert hierarchical.low == pytest.approx(plain.low, abs=4e-3)
    assert hierarchical.high == pytest.approx(plain.high, abs=4e-3)
    assert hierarchical_mean_ci(x) == hierarchical  # a 1-D array is one seed


def test_hierarchical_interval_counts_seed_variance():
    rng = np.random.default_rng(8)
    seeds = rng.normal(0, 1, 200)[None, :] + rng.normal(0, 0.5, (5, 1))  # a seed shifts every prompt
    pooled = mean_ci(seeds.mean(axis=0), method="percentile")  # ignores that seeds vary
    hierarchical = hierarchical_mean_ci(seeds)
    assert hierarchical.estimate == pytest.approx(seeds.mean())
    assert width(hierarchical) > 2 * width(pooled)


def test_hierarchical_paired_difference():
    rng = np.random.default_rng(9)
    y = simulate_outcomes(rng, 200)
    x = np.clip(y[None, :] + 0.2 + rng.normal(0, 0.05, (3, 200)), 0, 1)
    interval, p = hierarchical_paired_difference(x, y)
    assert interval.estimate == pytest.approx(x.mean() - y.mean())
    assert interval.low > 0 and p < 1e-3
    # The same three seeds in another order: difference exactly 0.
    interval, p = hierarchical_paired_difference(x, x[::-1])
    assert interval.estimate == pytest.approx(0.0, abs=1e-12) and p == 1.0
    # One seed each: the paired prompt bootstrap, as in paired_difference.
    x1 = x[0]
    one_seed, _ = hierarchical_paired_difference(x1, y)
    assert one_seed.low == pytest.approx(mean_ci(x1 - y, method="percentile").low, abs=4e-3)


# ----------------------------------------------------------------------------- length control


def test_lc_win_rate_equals_plain_rate_for_equal_lengths():
    outcomes = simulate_outcomes(np.random.default_rng(10), 97)
    lengths = np.random.default_rng(11).integers(10, 500, 97)
    assert length_controlled_win_rate(outcomes, lengths, lengths) == pytest.approx(outcomes.mean(), abs=1e-4)
    assert length_controlled_win_rate([1.0, 1.0], [3, 9], [1, 2]) == 1.0  # all wins


def test_lc_win_rate_is_one_half_for_a_mirrored_design():
    # Every (delta, y) has a partner (-delta, 1 - y): the likelihood is symmetric, intercept 0.
    delta = np.array([10.0, 25.0, 40.0, 5.0])
    y = np.array([1.0, 1.0, 0.5, 0.0])
    len_b = np.full(8, 100.0)
    lc = length_controlled_win_rate(np.r_[y, 1 - y], len_b + np.r_[delta, -delta], len_b)
    assert lc == pytest.approx(0.5, abs=1e-6)


def test_lc_win_rate_moves_toward_one_half_when_length_explains_wins():
    rng = np.random.default_rng(12)
    len_b = rng.integers(100, 300, 500).astype(float)
    len_a = len_b + rng.normal(60, 80, 500)  # a is usually longer
    z = np.tanh((len_a - len_b) / np.std(len_a - len_b))
    outcomes = (rng.random(500) < 1 / (1 + np.exp(-2.5 * z))).astype(float)  # no preference at equal length
    raw = outcomes.mean()
    lc = length_controlled_win_rate(outcomes, len_a, len_b)
    assert raw > 0.7
    assert abs(lc - 0.5) < 0.1 < raw - 0.5
    # The winner is always the longer answer: perfectly separated, still finite and near 1/2.
    longer = (len_a > len_b).astype(float)
    assert abs(length_controlled_win_rate(longer, len_a, len_b) - 0.5) < 0.5 * (longer.mean() - 0.5)


def test_lc_win_rate_leaves_length_independent_outcomes_alone():
    rng = np.random.default_rng(13)
    outcomes = simulate_outcomes(rng, 1000)
    len_a, len_b = rng.integers(50, 400, 1000), rng.integers(50, 400, 1000)
    assert length_controlled_win_rate(outcomes, len_a, len_b) == pytest.approx(outcomes.mean(), abs=0.02)


def test_lc_win_rate_rejects_a_constant_length_gap():
    with pytest.raises(StatsError, match="same nonzero value"):
        length_controlled_win_rate([1.0, 0.0, 1.0], [5, 6, 7], [4, 5, 6])


# ----------------------------------------------------------------------------- robustness


SCORES = np.array([
    [1.0, 0.5, 0.0],
    [0.8, 0.8, 0.2],
    [0.6, np.nan, 0.9],  # this prompt lacks the first variant kind
])
OUTCOMES = np.array([
    [1.0, 0.5, 0.0],  # original win: tie (no flip), loss (flip)
    [0.0, 1.0, 0.5],  # original loss: win (flip), tie (no flip)
    [0.5, np.nan, 1.0],  # original tie: never a flip
])


def test_robustness_summary_by_hand():
    summary = robustness_summary(SCORES, ["original", "paraphrase", "typo"], OUTCOMES, n_resamples=2000)
    # per prompt: variant means 0.25, 0.5, 0.9; drops 0.75, 0.3, -0.3; worst 0, 0.2, 0.9;
    # std of (1, .5, 0) = sqrt(1/6), of (.8, .8, .2) = sqrt(.08), of (.6, .9) = .15
    assert summary["mean"].estimate == pytest.approx(0.55)
    assert summary["drop"].estimate == pytest.approx(0.25)
    assert summary["worst"].estimate == pytest.approx(1.1 / 3)
    assert summary["spread"].estimate == pytest.approx((math.sqrt(1 / 6) + math.sqrt(0.08) + 0.15) / 3)
    assert summary["flip_rate"].estimate == pytest.approx(2 / 5)
    assert summary["per_variant"] == pytest.approx({"original": 0.8, "paraphrase": 0.65, "typo": 1.1 / 3})
    for name in ("mean", "drop", "worst", "spread", "flip_rate"):
        interval = summary[name]
        assert interval.low <= interval.estimate <= interval.high, name
    assert robustness_summary(SCORES, ["original", "paraphrase", "typo"])["flip_rate"] is None


def test_robustness_summary_is_the_cluster_bootstrap():
    # The summary bootstraps per-prompt summaries; that must be the same as resampling whole rows.
    rng = np.random.default_rng(14)
    scores = rng.random((40, 4))
    scores[rng.random((40, 4)) < 0.2] = np.nan
    scores[:, 0] = rng.random(40)
    scores[:, 1] = np.where(np.isnan(scores[:, 1:]).all(axis=1), 0.5, scores[:, 1])
    outcomes = np.where(np.isnan(scores), np.nan, rng.choice([0.0, 0.5, 1.0], size=(40, 4)))
    summary = robustness_summary(scores, list("abcd"), outcomes, n_resamples=2000, seed=1)

    def worst(rows):
        return np.nanmin(rows[..., 1:], axis=-1).mean(axis=-1)

    reference = cluster_mean_ci(scores, worst, method="BCa", vectorized=True, n_resamples=2000, seed=1)
    assert reference.to_json() == pytest.approx(summary["worst"].to_json())

    def flip_rate(rows):  # written independently, cell by cell, for the non-vectorised path
        flips = cells = 0
        for row in rows:
            for v in row[1:]:
                if not np.isnan(v):
                    cells += 1
                    flips += (row[0] - 0.5) * (v - 0.5) < 0
        return flips / cells

    reference = cluster_mean_ci(outcomes, flip_rate, method="BCa", n_resamples=2000, seed=1)
    assert reference.estimate == pytest.approx(summary["flip_rate"].estimate)
    assert (reference.low, reference.high) == pytest.approx((summary["flip_rate"].low, summary["flip_rate"].high))


def test_robustness_summary_rejects_unusable_rows():
    with pytest.raises(StatsError, match="3 names for 2"):
        robustness_summary(SCORES[:, :2], ["original", "a", "b"])
    with pytest.raises(StatsError, match="row 2 has no variant"):
        robustness_summary(SCORES[:, :2], ["original", "paraphrase"])
    missing_original = SCORES.copy()
    missing_original[1, 0] = np.nan
    with pytest.raises(StatsError, match="row 1 has no value for the original"):
        robustness_summary(missing_original, ["original", "paraphrase", "typo"])


def test_cluster_bootstrap_keeps_variants_of_a_prompt_together():
    # Variants identical within a prompt: cell-level resampling would see 4x the data and shrink
    # the interval by 2x; the cluster bootstrap sees 50 prompts, like mean_ci of the row means.
    rows = np.random.default_rng(15).random(50)
    values = np.repeat(rows[:, None], 4, axis=1)
    cluster = cluster_mean_ci(values, np.mean, n_resamples=4000)
    plain = mean_ci(rows, method="percentile", n_resamples=4000)
    assert width(cluster) == pytest.approx(width(plain), rel=0.1)
