"""Differences between two systems on the same prompts: paired intervals and p-values, Holm's
adjustment for several comparisons, and the smallest difference a run could have detected."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

from prefbench.stats.intervals import (
    Interval,
    StatsError,
    ValueRange,
    as_array,
    bootstrap_interval,
    check_resampling,
    constant_interval,
    hierarchical_distribution,
    is_constant,
    mean_ci,
    mean_statistic,
    percentile_interval,
    same_prompts,
    seeds_by_prompts,
)

# ----------------------------------------------------------------------------- two systems


def paired_difference(x: ArrayLike, y: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0, value_range: ValueRange | None = None) -> tuple[Interval, float]:
    """``mean(x - y)`` over the same prompts, its paired bootstrap interval and a two-sided p-value.

    Resampling prompts and carrying both systems' values along is the same as bootstrapping the
    per-prompt differences ``d = x - y``, so the interval is :func:`mean_ci` of ``d``; pairing
    removes the prompt-difficulty variance both systems share, which is why these intervals are
    narrower than :func:`unpaired_difference` on correlated data. When every prompt gave the same
    difference the interval is :func:`~prefbench.stats.intervals.constant_interval`'s, with
    ``value_range`` the range of one prompt's difference (``(-1, 1)`` for two outcomes): identical outcomes
    on 40 prompts give ±8.8 points, the most that the ≤ 8.8% of prompts that could differ can move it.

    p-value: a paired sign-flip permutation test (``scipy.stats.permutation_test`` with
    ``permutation_type="samples"`` on the single sample ``d``). Under H0 "x and y are
    exchangeable within each prompt" every ``d_i`` is as likely to be ``-d_i``, so the null
    distribution of ``mean(d)`` comes from flipping signs independently; the p-value is the share
    of flips with ``|mean| >= |observed mean|`` (exact when ``2**n <= n_resamples``).
    """
    x_arr, y_arr = as_array(x, "x", 1), as_array(y, "y", 1)
    same_prompts(x_arr, y_arr, "x and y")
    d = x_arr - y_arr
    interval = mean_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed, value_range=value_range)
    res = scipy.stats.permutation_test((d,), mean_statistic, permutation_type="samples", vectorized=True,
                                       n_resamples=n_resamples, alternative="two-sided",
                                       rng=np.random.default_rng(seed))
    return interval, float(min(1.0, res.pvalue))


def unpaired_difference(x: ArrayLike, y: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000,
                        seed: int = 0) -> Interval:
    """``mean(x) - mean(y)`` with an independent-samples bootstrap (each sample resampled on its
    own, BCa with percentile fallback). For systems scored on the same prompts use
    :func:`paired_difference`; this one ignores the pairing and so is wider when scores correlate."""
    x_arr, y_arr = as_array(x, "x", 1), as_array(y, "y", 1)

    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    return bootstrap_interval((x_arr, y_arr), difference, float(x_arr.mean() - y_arr.mean()), paired=False,
                      method="BCa", confidence=confidence, n_resamples=n_resamples, seed=seed)


def minimum_detectable_difference(d: ArrayLike, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean paired difference a two-sided level-``alpha`` test detects with
    probability ``power``, given the spread of the observed differences ``d``: per prompt (1-D, one
    training seed) or [seeds, prompts] (seed ``s`` of one system against seed ``s`` of the other):

        MDE = (z_{1-alpha/2} + z_{power}) * SE,   SE^2 = var_i(d̄_i) / n  +  var_s(m_s) / S

    with ``d̄_i`` prompt i's difference averaged over the S seeds, ``m_s`` seed s's difference averaged over
    the n prompts (sample variances); the second term, the between-seed variance of a training run's result,
    is absent with one seed, which therefore cannot count it. (Normal approximation; the sign-flip test of
    :func:`paired_difference` has that power at that difference within a few points, see the tests.) A
    non-significant comparison whose MDE is larger than the effect of interest says "this run could not
    have told", not "there is no difference". None when the differences have no spread (see
    :func:`detectable_difference`).
    """
    return detectable_difference(difference_spread(d), alpha=alpha, power=power)


def difference_spread(d: ArrayLike) -> dict:
    """The variance components of :func:`minimum_detectable_difference` for differences ``d`` (1-D per prompt,
    or [seeds, prompts]): ``prompt_variance`` var_i(d̄_i), ``seed_variance`` var_s(m_s) (None with one seed),
    and the numbers of ``prompts`` and ``seeds``; enough to plan another run's detectable difference."""
    arr = seeds_by_prompts(d, "d")
    seeds, n = arr.shape
    if n < 2:
        raise StatsError("need at least 2 prompts to estimate the spread of the differences")
    return {"prompts": n, "seeds": seeds, "prompt_variance": float(arr.mean(axis=0).var(ddof=1)),
            "seed_variance": float(arr.mean(axis=1).var(ddof=1)) if seeds > 1 else None}


def detectable_difference(spread: dict, *, alpha: float = 0.05, power: float = 0.8, prompts: int | None = None,
                          seeds: int | None = None) -> float | None:
    """:func:`minimum_detectable_difference` from a :func:`difference_spread`, for a run of ``prompts`` prompts
    and ``seeds`` seeds (default: those the spread was measured on): var_i(d̄_i) / prompts + var_s(m_s) / seeds.

    None when both variances are zero (every prompt gave the same difference): the normal approximation
    then has no standard error to scale, and 0 would claim that any gap at all would have been found."""
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise StatsError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    variance = spread["prompt_variance"] / (prompts or spread["prompts"])
    if spread["seed_variance"] is not None:
        variance += spread["seed_variance"] / (seeds or spread["seeds"])
    if math.sqrt(variance) <= 1e-12:   # zero up to rounding, as in intervals.is_constant
        return None
    z = scipy.stats.norm.ppf(1 - alpha / 2) + scipy.stats.norm.ppf(power)
    return float(z * math.sqrt(variance))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    With the m p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value is
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: it controls the family-wise error rate like
    Bonferroni but is uniformly more powerful, and the running max keeps it monotone.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise StatsError(f"pvalues must be a flat list, got shape {p.shape}")
    bad = np.flatnonzero(~((p >= 0) & (p <= 1)))
    if bad.size:
        raise StatsError(f"pvalues[{bad[0]}] = {p[bad[0]]} is not a probability in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()




def hierarchical_paired_difference(x: ArrayLike, y: ArrayLike, *, confidence: float = 0.95,
                                   n_resamples: int = 10_000, seed: int = 0,
                                   value_range: ValueRange | None = None) -> tuple[Interval, float]:
    """``mean(x) - mean(y)`` for [seeds_x, n_prompts] and [seeds_y, n_prompts] arrays on the same
    prompts (use when either system has more than one seed; a 1-D array is one seed).

    Each replicate resamples x's seeds and y's seeds independently (different training runs are
    not paired) and the prompts once, jointly for both systems (the same prompts are paired).
    Percentile interval; when every seed of x minus every seed of y gives the same difference on every
    prompt, :func:`~prefbench.stats.intervals.constant_interval`'s over the prompts (``value_range`` as in
    :func:`paired_difference`).

    p-value: two-sided, from the bootstrap distribution shifted to the null (Hall & Wilson, 1991):
    with observed difference ``t`` and replicates ``t*``, ``p = (1 + #{|t* - t| >= |t|}) / (B + 1)``,
    i.e. how often resampling noise alone moves the difference as far as it moved from 0. The +1
    keeps p > 0 with finitely many resamples; p = 1 when ``t = 0``.
    """
    check_resampling(confidence, n_resamples)
    x_arr, y_arr = seeds_by_prompts(x, "x"), seeds_by_prompts(y, "y")
    same_prompts(x_arr, y_arr, "x and y")
    estimate = float(x_arr.mean() - y_arr.mean())
    distribution = hierarchical_distribution([x_arr, y_arr], [1.0, -1.0], n_resamples, seed)
    if is_constant(x_arr[:, None, :] - y_arr[None, :, :], estimate):   # [seeds_x, seeds_y, prompts]
        interval = constant_interval(estimate, x_arr.shape[1], value_range, confidence)
    else:
        interval = percentile_interval(distribution, estimate, confidence)
    if abs(estimate) <= 1e-12:
        return interval, 1.0
    extreme = np.count_nonzero(np.abs(distribution - estimate) >= abs(estimate))
    return interval, float(min(1.0, (1 + extreme) / (n_resamples + 1)))
