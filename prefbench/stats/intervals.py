"""Intervals for one system: the bootstrap machinery every statistic here shares (BCa with a
percentile fallback; for constant data an exact bound when the values' range is known, else a
degenerate interval), the mean of per-prompt values, and the two-level bootstrap over seeds and prompts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

Method = Literal["BCa", "percentile"]
ValueRange = tuple[float, float]   # the least and greatest value one prompt can give, e.g. (0, 1) for outcomes

# Resamples per vectorised batch are chosen so one batch holds about this many floats (~32 MB):
# fast (10,000 x 500 prompts in well under a second) without a 10,000 x n matrix on a small machine.
_BATCH_ELEMENTS = 4_000_000


class StatsError(ValueError):
    """Input the statistics cannot use (wrong shape, NaN, mismatched prompts); says which input and where."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval and the method that produced the interval."""

    estimate: float
    low: float
    high: float
    method: str  # "BCa", "percentile", "Clopper-Pearson" or "degenerate" (see constant_interval)

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "method": self.method}


# ----------------------------------------------------------------------------- input checks


def as_array(x: ArrayLike, name: str, ndim: int, allow_nan: bool = False) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != ndim:
        expected = "a 1-D array of per-prompt values" if ndim == 1 else "a 2-D array"
        raise StatsError(f"{name} must be {expected}, got shape {arr.shape}")
    if arr.size == 0:
        raise StatsError(f"{name} is empty: need at least one prompt")
    bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        index = where[0] if ndim == 1 else where
        raise StatsError(f"{name} has a non-finite value {arr[where]} at index {index}")
    return arr


def seeds_by_prompts(x: ArrayLike, name: str) -> np.ndarray:
    """A [n_seeds, n_prompts] array; a 1-D array is taken as a single seed."""
    arr = np.asarray(x, dtype=float)
    return as_array(arr[None, :] if arr.ndim == 1 else arr, name, ndim=2)


def same_prompts(x: np.ndarray, y: np.ndarray, names: str) -> None:
    if x.shape[-1] != y.shape[-1]:
        raise StatsError(f"{names} must score the same prompts: got {x.shape[-1]} and {y.shape[-1]} prompts")


def check_resampling(confidence: float, n_resamples: int) -> None:
    if not 0 < confidence < 1:
        raise StatsError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise StatsError(f"n_resamples must be at least 1, got {n_resamples}")


# ----------------------------------------------------------------------------- shared machinery


def is_constant(values: np.ndarray, reference: float) -> bool:
    return bool(np.ptp(values) <= 1e-12 * max(1.0, abs(reference)))


def constant_interval(value: float, n: int, value_range: ValueRange | None, confidence: float) -> Interval:
    """The interval of a mean when every one of ``n`` prompts gave ``value``: a bootstrap has nothing to
    resample then, yet n prompts cannot pin the mean down.

    Without a ``value_range`` nothing bounds what unseen prompts could give, so the interval is
    ``"degenerate"``: zero width, and the method says so (rather than NaN). With one, ``[lo, hi]``, seeing
    no prompt of n differ from ``value`` bounds the share of prompts that do by
    ``pi = 1 - (alpha/2)^(1/n)``, the exact (Clopper–Pearson) upper limit for 0 events in n trials, and a
    differing prompt moves the mean at most to an end of the range::

        [value - pi * (value - lo),  value + pi * (hi - value)]

    Were the mean outside, more than ``pi`` of prompts would differ, and n equal prompts would have had
    probability below alpha/2. For outcomes in [0, 1] at all wins or all losses this is Clopper–Pearson's
    interval of n of n or 0 of n (40 of 40: [0.025^(1/40), 1] = [0.912, 1]); all ties get 0.5 ± pi/2
    (4 ties: [0.199, 0.801], 40 ties: [0.456, 0.544]).

    Not Wilson's score interval: at n of n its lower limit n / (n + z²) claims more than the exact
    binomial test allows (4 of 4: 0.51, "better than the baseline" from four prompts whose exact two-sided
    p-value is 0.125). Not Clopper–Pearson on wins + ties/2 successes either: that treats every tie as a
    coin flip between a win and a loss, the widest spread a mean of 0.5 can have, although no prompt
    differed (40 ties: [0.34, 0.66]).
    """
    if value_range is None:
        return Interval(value, value, value, "degenerate")
    lo, hi = value_range
    tolerance = 1e-12 * max(1.0, abs(value))   # a mean over seeds can miss an end of the range by a rounding error
    if not lo - tolerance <= value <= hi + tolerance:
        raise StatsError(f"every value is {value}, outside the stated range [{lo}, {hi}]")
    value = float(min(max(value, lo), hi))
    pi = 1 - ((1 - confidence) / 2) ** (1 / n)
    return Interval(value, value - pi * (value - lo), value + pi * (hi - value), "Clopper-Pearson")


def bootstrap_interval(data: tuple[np.ndarray, ...], statistic: Callable, estimate: float, *, paired: bool,
               method: Method, confidence: float, n_resamples: int, seed: int,
               value_range: ValueRange | None = None) -> Interval:
    """``scipy.stats.bootstrap`` with a vectorised ``statistic(*samples, axis)``; BCa falls back to
    percentile (reusing the same resamples) when it returns NaN. Constant data get
    :func:`constant_interval` (``value_range``: the range of one sample's values, for a mean of them), and a
    constant bootstrap distribution of varying data is reported as ``"degenerate"`` rather than as a
    zero-width BCa/NaN interval."""
    check_resampling(confidence, n_resamples)
    if all(is_constant(d, estimate) for d in data):
        return constant_interval(estimate, len(data[0]), value_range, confidence)
    if min(len(d) for d in data) < 2:
        raise StatsError("the bootstrap needs at least 2 prompts in every non-constant sample")
    batch = max(1, _BATCH_ELEMENTS // max(len(d) for d in data))
    common = dict(paired=paired, vectorized=True, confidence_level=confidence, batch=batch)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # BCa's failure is reported through Interval.method, not through a warning.
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap(data, statistic, n_resamples=n_resamples, method=method,
                                    rng=np.random.default_rng(seed), **common)
        if is_constant(res.bootstrap_distribution, estimate):
            return Interval(estimate, estimate, estimate, "degenerate")
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            method = "percentile"
            res = scipy.stats.bootstrap(data, statistic, n_resamples=0, method=method, bootstrap_result=res, **common)
            low, high = res.confidence_interval
    return Interval(estimate, float(low), float(high), method)


def percentile_interval(distribution: np.ndarray, estimate: float, confidence: float) -> Interval:
    if is_constant(distribution, estimate):
        return Interval(estimate, estimate, estimate, "degenerate")
    alpha = 1 - confidence
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high), "percentile")


def _multinomial_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """[size, n] resampling weights: how often each of n units is drawn in n draws with
    replacement, divided by n. ``weights @ values`` is the mean of a resample, without
    materialising the resampled index arrays."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size) / n


# ----------------------------------------------------------------------------- one system, one seed


def win_scores(a: ArrayLike, b: ArrayLike, tol: float = 1e-9) -> np.ndarray:
    """Per-prompt outcome of system ``a`` against ``b`` from pointwise scores: 1 when a scores
    higher, 0 when lower, 0.5 when ``|a - b| <= tol`` (so equal scores are ties, DESIGN.md §5)."""
    a_arr, b_arr = as_array(a, "a", 1), as_array(b, "b", 1)
    same_prompts(a_arr, b_arr, "a and b")
    diff = a_arr - b_arr
    return np.where(np.abs(diff) <= tol, 0.5, (diff > 0).astype(float))


def mean_statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def mean_ci(x: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0,
            method: Method = "BCa", value_range: ValueRange | None = None) -> Interval:
    """Mean of per-prompt values (e.g. win scores, so the mean is the win rate) with a bootstrap
    interval over prompts: BCa by default (second-order accurate for a mean), percentile when
    BCa is not computable or ``method="percentile"``. Constant data give :func:`constant_interval`: an
    exact bound when ``value_range`` says what one prompt can give (``(0, 1)`` for outcomes), else a
    degenerate one."""
    arr = as_array(x, "x", 1)
    return bootstrap_interval((arr,), mean_statistic, float(arr.mean()), paired=False, method=method,
                      confidence=confidence, n_resamples=n_resamples, seed=seed, value_range=value_range)


# ----------------------------------------------------------------------------- several seeds


def _hierarchical_means(x: np.ndarray, prompt_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per replicate: resample x's seeds, average the chosen seed rows, then weight prompts."""
    seed_weights = _multinomial_weights(rng, x.shape[0], len(prompt_weights))
    return np.einsum("bp,bp->b", seed_weights @ x, prompt_weights)


def hierarchical_distribution(samples: Sequence[np.ndarray], signs: Sequence[float], n_resamples: int,
                               seed: int) -> np.ndarray:
    """Bootstrap distribution of ``sum_k sign_k * mean(samples_k)`` where each sample is
    [n_seeds_k, n_prompts]: seeds resampled independently per sample, prompts resampled once per
    replicate and shared by every sample and every chosen seed (keeps the prompt-level pairing)."""
    rng = np.random.default_rng(seed)
    n_prompts = samples[0].shape[1]
    batch = max(1, _BATCH_ELEMENTS // n_prompts)
    out = []
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        prompt_weights = _multinomial_weights(rng, n_prompts, size)
        out.append(sum(sign * _hierarchical_means(s, prompt_weights, rng) for s, sign in zip(samples, signs)))
    return np.concatenate(out)


def hierarchical_mean_ci(x: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000,
                         seed: int = 0, value_range: ValueRange | None = None) -> Interval:
    """Mean over seeds and prompts of a [n_seeds, n_prompts] array (a 1-D array is one seed),
    with a two-level bootstrap: resample seeds with replacement, then prompts with replacement.

    Prompts are drawn once per replicate and the same prompt indices apply to every chosen seed
    row, so a prompt that is hard for one seed stays paired with itself on the others (the
    between-prompt variance is counted once, not once per seed). Percentile interval: BCa's
    jackknife has no natural two-level form. With one seed this is the plain prompt bootstrap
    and agrees with ``mean_ci(..., method="percentile")`` up to Monte-Carlo error. With only
    2-3 seeds the seed level is resampled from very few values, so treat the width as a rough guide.

    Constant data give :func:`constant_interval` over the prompts: a prompt's seeds are not independent
    trials, so n is the number of prompts, and no bound can see the spread of seeds that all agreed.
    """
    check_resampling(confidence, n_resamples)
    arr = seeds_by_prompts(x, "x")
    estimate = float(arr.mean())
    if is_constant(arr, estimate):
        return constant_interval(estimate, arr.shape[1], value_range, confidence)
    distribution = hierarchical_distribution([arr], [1.0], n_resamples, seed)
    return percentile_interval(distribution, estimate, confidence)
