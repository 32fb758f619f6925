"""Statistics for evaluation: per-prompt numbers in, estimates with honest confidence intervals out.

The unit of analysis is the prompt (DESIGN.md §5). Every interval comes from a bootstrap over
prompts, seeded with ``np.random.default_rng(seed)`` so a report is reproducible:

* one system, one seed: :func:`mean_ci` (BCa via ``scipy.stats.bootstrap``, percentile fallback);
* two systems on the same prompts: :func:`paired_difference` (paired bootstrap + sign-flip
  permutation p-value); :func:`unpaired_difference` exists to show how much pairing buys;
* several seeds: :func:`hierarchical_mean_ci` / :func:`hierarchical_paired_difference`
  (resample seeds, then prompts);
* several comparisons: :func:`holm` adjusts the p-values; :func:`minimum_detectable_difference`
  says how large a difference the run could have detected, so "not significant" can be read;
* instruction variants: :func:`cluster_mean_ci` / :func:`robustness_summary` (resample prompts
  together with all their variants);
* length bias: :func:`length_controlled_win_rate` (AlpacaEval-style logistic adjustment).

Every interval says which method produced it: ``"BCa"``, ``"percentile"`` when BCa was not
computable (scipy returns NaN when the bootstrap distribution is too lopsided), or
``"degenerate"`` when every resample gave the same value (e.g. all ties), in which case
``low == high == estimate`` instead of NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
from numpy.typing import ArrayLike

Method = Literal["BCa", "percentile"]

# Resamples per vectorised batch are chosen so one batch holds about this many floats (~32 MB):
# fast (10,000 x 500 prompts in well under a second) without a 10,000 x n matrix on a small machine.
_BATCH_ELEMENTS = 4_000_000

# Ridge weight on the length coefficient of the length-controlled fit (see that function).
_LC_RIDGE = 1e-3


class StatsError(ValueError):
    """Input the statistics cannot use (wrong shape, NaN, mismatched prompts); says which input and where."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval and the method that produced the interval."""

    estimate: float
    low: float
    high: float
    method: str  # "BCa", "percentile" or "degenerate"

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "method": self.method}


# ----------------------------------------------------------------------------- input checks


def _as_array(x: ArrayLike, name: str, ndim: int, allow_nan: bool = False) -> np.ndarray:
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


def _seeds_by_prompts(x: ArrayLike, name: str) -> np.ndarray:
    """A [n_seeds, n_prompts] array; a 1-D array is taken as a single seed."""
    arr = np.asarray(x, dtype=float)
    return _as_array(arr[None, :] if arr.ndim == 1 else arr, name, ndim=2)


def _same_prompts(x: np.ndarray, y: np.ndarray, names: str) -> None:
    if x.shape[-1] != y.shape[-1]:
        raise StatsError(f"{names} must score the same prompts: got {x.shape[-1]} and {y.shape[-1]} prompts")


def _check_resampling(confidence: float, n_resamples: int) -> None:
    if not 0 < confidence < 1:
        raise StatsError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise StatsError(f"n_resamples must be at least 1, got {n_resamples}")


# ----------------------------------------------------------------------------- shared machinery


def _is_constant(values: np.ndarray, reference: float) -> bool:
    return bool(np.ptp(values) <= 1e-12 * max(1.0, abs(reference)))


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable, estimate: float, *, paired: bool,
               method: Method, confidence: float, n_resamples: int, seed: int) -> Interval:
    """``scipy.stats.bootstrap`` with a vectorised ``statistic(*samples, axis)``; BCa falls back to
    percentile (reusing the same resamples) when it returns NaN, and a constant bootstrap
    distribution is reported as ``"degenerate"`` rather than as a zero-width BCa/NaN interval."""
    _check_resampling(confidence, n_resamples)
    if all(_is_constant(d, estimate) for d in data):
        return Interval(estimate, estimate, estimate, "degenerate")
    if min(len(d) for d in data) < 2:
        raise StatsError("the bootstrap needs at least 2 prompts in every non-constant sample")
    batch = max(1, _BATCH_ELEMENTS // max(len(d) for d in data))
    common = dict(paired=paired, vectorized=True, confidence_level=confidence, batch=batch)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # BCa's failure is reported through Interval.method, not through a warning.
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap(data, statistic, n_resamples=n_resamples, method=method,
                                    rng=np.random.default_rng(seed), **common)
        if _is_constant(res.bootstrap_distribution, estimate):
            return Interval(estimate, estimate, estimate, "degenerate")
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            method = "percentile"
            res = scipy.stats.bootstrap(data, statistic, n_resamples=0, method=method, bootstrap_result=res, **common)
            low, high = res.confidence_interval
    return Interval(estimate, float(low), float(high), method)


def _percentile_interval(distribution: np.ndarray, estimate: float, confidence: float) -> Interval:
    if _is_constant(distribution, estimate):
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
    a_arr, b_arr = _as_array(a, "a", 1), _as_array(b, "b", 1)
    _same_prompts(a_arr, b_arr, "a and b")
    diff = a_arr - b_arr
    return np.where(np.abs(diff) <= tol, 0.5, (diff > 0).astype(float))


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def mean_ci(x: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0,
            method: Method = "BCa") -> Interval:
    """Mean of per-prompt values (e.g. win scores, so the mean is the win rate) with a bootstrap
    interval over prompts: BCa by default (second-order accurate for a mean), percentile when
    BCa is not computable or ``method="percentile"``; constant data gives a degenerate interval."""
    arr = _as_array(x, "x", 1)
    return _bootstrap((arr,), _mean, float(arr.mean()), paired=False, method=method,
                      confidence=confidence, n_resamples=n_resamples, seed=seed)


# ----------------------------------------------------------------------------- two systems


def paired_difference(x: ArrayLike, y: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> tuple[Interval, float]:
    """``mean(x - y)`` over the same prompts, its paired bootstrap interval and a two-sided p-value.

    Resampling prompts and carrying both systems' values along is the same as bootstrapping the
    per-prompt differences ``d = x - y``, so the interval is :func:`mean_ci` of ``d``; pairing
    removes the prompt-difficulty variance both systems share, which is why these intervals are
    narrower than :func:`unpaired_difference` on correlated data.

    p-value: a paired sign-flip permutation test (``scipy.stats.permutation_test`` with
    ``permutation_type="samples"`` on the single sample ``d``). Under H0 "x and y are
    exchangeable within each prompt" every ``d_i`` is as likely to be ``-d_i``, so the null
    distribution of ``mean(d)`` comes from flipping signs independently; the p-value is the share
    of flips with ``|mean| >= |observed mean|`` (exact when ``2**n <= n_resamples``).
    """
    x_arr, y_arr = _as_array(x, "x", 1), _as_array(y, "y", 1)
    _same_prompts(x_arr, y_arr, "x and y")
    d = x_arr - y_arr
    interval = mean_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    res = scipy.stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                       n_resamples=n_resamples, alternative="two-sided",
                                       rng=np.random.default_rng(seed))
    return interval, float(min(1.0, res.pvalue))


def unpaired_difference(x: ArrayLike, y: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 10_000,
                        seed: int = 0) -> Interval:
    """``mean(x) - mean(y)`` with an independent-samples bootstrap (each sample resampled on its
    own, BCa with percentile fallback). For systems scored on the same prompts use
    :func:`paired_difference`; this one ignores the pairing and so is wider when scores correlate."""
    x_arr, y_arr = _as_array(x, "x", 1), _as_array(y, "y", 1)

    def difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    return _bootstrap((x_arr, y_arr), difference, float(x_arr.mean() - y_arr.mean()), paired=False,
                      method="BCa", confidence=confidence, n_resamples=n_resamples, seed=seed)


def minimum_detectable_difference(d: ArrayLike, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean paired difference a two-sided level-``alpha`` test detects with
    probability ``power``, given the spread of the observed per-prompt differences ``d``:

        MDE = (z_{1-alpha/2} + z_{power}) * sd(d) / sqrt(n)

    (normal approximation; the sign-flip test of :func:`paired_difference` has that power at that
    difference within a few points, see the tests). A non-significant comparison whose MDE is larger
    than the effect of interest says "this run could not have told", not "there is no difference".
    """
    arr = _as_array(d, "d", 1)
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise StatsError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    if arr.size < 2:
        raise StatsError("need at least 2 prompts to estimate the spread of the differences")
    z = scipy.stats.norm.ppf(1 - alpha / 2) + scipy.stats.norm.ppf(power)
    return float(z * arr.std(ddof=1) / math.sqrt(arr.size))


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


# ----------------------------------------------------------------------------- several seeds


def _hierarchical_means(x: np.ndarray, prompt_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per replicate: resample x's seeds, average the chosen seed rows, then weight prompts."""
    seed_weights = _multinomial_weights(rng, x.shape[0], len(prompt_weights))
    return np.einsum("bp,bp->b", seed_weights @ x, prompt_weights)


def _hierarchical_distribution(samples: Sequence[np.ndarray], signs: Sequence[float], n_resamples: int,
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
                         seed: int = 0) -> Interval:
    """Mean over seeds and prompts of a [n_seeds, n_prompts] array (a 1-D array is one seed),
    with a two-level bootstrap: resample seeds with replacement, then prompts with replacement.

    Prompts are drawn once per replicate and the same prompt indices apply to every chosen seed
    row, so a prompt that is hard for one seed stays paired with itself on the others (the
    between-prompt variance is counted once, not once per seed). Percentile interval: BCa's
    jackknife has no natural two-level form. With one seed this is the plain prompt bootstrap
    and agrees with ``mean_ci(..., method="percentile")`` up to Monte-Carlo error. With only
    2-3 seeds the seed level is resampled from very few values, so treat the width as a rough guide.
    """
    _check_resampling(confidence, n_resamples)
    arr = _seeds_by_prompts(x, "x")
    distribution = _hierarchical_distribution([arr], [1.0], n_resamples, seed)
    return _percentile_interval(distribution, float(arr.mean()), confidence)


def hierarchical_paired_difference(x: ArrayLike, y: ArrayLike, *, confidence: float = 0.95,
                                   n_resamples: int = 10_000, seed: int = 0) -> tuple[Interval, float]:
    """``mean(x) - mean(y)`` for [seeds_x, n_prompts] and [seeds_y, n_prompts] arrays on the same
    prompts (use when either system has more than one seed; a 1-D array is one seed).

    Each replicate resamples x's seeds and y's seeds independently (different training runs are
    not paired) and the prompts once, jointly for both systems (the same prompts are paired).
    Percentile interval.

    p-value: two-sided, from the bootstrap distribution shifted to the null (Hall & Wilson, 1991):
    with observed difference ``t`` and replicates ``t*``, ``p = (1 + #{|t* - t| >= |t|}) / (B + 1)``,
    i.e. how often resampling noise alone moves the difference as far as it moved from 0. The +1
    keeps p > 0 with finitely many resamples; p = 1 when ``t = 0``.
    """
    _check_resampling(confidence, n_resamples)
    x_arr, y_arr = _seeds_by_prompts(x, "x"), _seeds_by_prompts(y, "y")
    _same_prompts(x_arr, y_arr, "x and y")
    estimate = float(x_arr.mean() - y_arr.mean())
    distribution = _hierarchical_distribution([x_arr, y_arr], [1.0, -1.0], n_resamples, seed)
    interval = _percentile_interval(distribution, estimate, confidence)
    if abs(estimate) <= 1e-12:
        return interval, 1.0
    extreme = np.count_nonzero(np.abs(distribution - estimate) >= abs(estimate))
    return interval, float(min(1.0, (1 + extreme) / (n_resamples + 1)))


# ----------------------------------------------------------------------------- length control


def length_controlled_win_rate(outcomes: ArrayLike, len_a: ArrayLike, len_b: ArrayLike) -> float:
    """AlpacaEval-style length-controlled win rate of system a against b.

    Fits ``P(a wins | prompt) = sigmoid(w0 + w1 * tanh(delta / std(delta)))`` with
    ``delta = len_a - len_b`` by maximising the fractional-response (weighted) logistic
    likelihood ``sum_i y_i log p_i + (1 - y_i) log(1 - p_i)`` with ``y_i`` in {1, 0.5, 0} (a tie
    counts as half a win and half a loss), using ``scipy.optimize.minimize`` (BFGS, analytic
    gradient). The LC win rate is the prediction at zero length difference, ``sigmoid(w0)``: the
    win rate a would have if both answers were equally long. The tanh keeps a few very long
    answers from dominating the fit, as in AlpacaEval; std(delta) is not centred, so zero still
    means equal length.

    A tiny ridge term ``0.5 * 1e-3 * w1**2`` keeps the fit finite when length separates wins
    from losses perfectly; it is negligible otherwise. With equal lengths everywhere the length
    term is zero and the result is the plain win rate; all wins (or all losses) give 1 (or 0).
    """
    y = _as_array(outcomes, "outcomes", 1)
    a, b = _as_array(len_a, "len_a", 1), _as_array(len_b, "len_b", 1)
    _same_prompts(y, a, "outcomes and len_a")
    _same_prompts(y, b, "outcomes and len_b")
    if ((y < 0) | (y > 1)).any():
        raise StatsError(f"outcomes must lie in [0, 1] (1 win, 0.5 tie, 0 loss); got {y[(y < 0) | (y > 1)][0]}")
    win_rate = float(y.mean())
    if win_rate in (0.0, 1.0):
        return win_rate  # the intercept's MLE is infinite; the limit is the plain rate
    delta = a - b
    scale = float(np.std(delta))
    if scale == 0.0:
        if delta.any():
            raise StatsError("len_a - len_b is the same nonzero value for every prompt, so a length effect cannot "
                             "be told apart from a plain preference for a; report the plain win rate instead")
        return win_rate
    z = np.tanh(delta / scale)
    n = len(y)

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = w[0] + w[1] * z
        # -log-likelihood per prompt, written with logaddexp so large |eta| cannot overflow.
        loss = np.sum(y * np.logaddexp(0, -eta) + (1 - y) * np.logaddexp(0, eta)) / n + 0.5 * _LC_RIDGE * w[1] ** 2
        residual = scipy.special.expit(eta) - y
        grad = np.array([residual.mean(), (residual * z).mean() + _LC_RIDGE * w[1]])
        return float(loss), grad

    start = np.array([math.log(win_rate / (1 - win_rate)), 0.0])
    fit = scipy.optimize.minimize(loss_and_grad, start, jac=True, method="BFGS", options={"gtol": 1e-10})
    return float(scipy.special.expit(fit.x[0]))


# ----------------------------------------------------------------------------- instruction variants


def cluster_mean_ci(values: ArrayLike, statistic: Callable[[np.ndarray], float], *, confidence: float = 0.95,
                    n_resamples: int = 10_000, seed: int = 0, method: Method = "percentile",
                    vectorized: bool = False) -> Interval:
    """Cluster bootstrap over prompts: resample rows of a [n_prompts, n_variants] array with
    replacement, each row carrying all its variants, and apply ``statistic`` ([k, V] -> float).

    Resampling whole prompts keeps the correlation between a prompt's variants, which a
    bootstrap over individual (prompt, variant) cells would ignore and so understate the
    uncertainty. Percentile interval by default; ``method="BCa"`` is valid for statistics that
    are smooth functions of per-prompt means (all of :func:`robustness_summary`'s), and falls back
    to percentile when not computable. ``vectorized=True`` promises that ``statistic`` also takes a
    [..., k, V] stack and reduces the last two axes, which is much faster.
    """
    arr = _as_array(values, "values", 2, allow_nan=True)
    estimate = float(statistic(arr))

    def on_rows(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        # scipy resamples row indices; the statistic sees the rows they pick.
        rows = arr[idx.astype(np.intp)]  # [..., k, V]
        if vectorized:
            return np.asarray(statistic(rows), dtype=float)
        flat = rows.reshape(-1, *rows.shape[-2:])
        return np.array([statistic(r) for r in flat], dtype=float).reshape(rows.shape[:-2])

    return _bootstrap((np.arange(arr.shape[0], dtype=float),), on_rows, estimate, paired=False,
                      method=method, confidence=confidence, n_resamples=n_resamples, seed=seed)


def _flips(outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell (prompt, variant): whether the outcome crossed 0.5 relative to the original's
    (win <-> loss; a tie on either side is no flip), and whether the cell exists (not NaN)."""
    original, variants = outcomes[..., :1], outcomes[..., 1:]
    side_original, side_variant = np.sign(original - 0.5), np.sign(variants - 0.5)
    present = ~np.isnan(variants)
    flipped = present & (side_original * side_variant < 0)
    return flipped.astype(float), present.astype(float)


def robustness_summary(scores: ArrayLike, variant_names: list[str], outcomes: ArrayLike | None = None, *,
                       confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Instruction-robustness numbers for one system, each with a cluster-bootstrap interval.

    ``scores`` is [n_prompts, n_columns]: column 0 the original prompt, the others its variants
    (NaN where a prompt lacks that variant kind; NaNs are ignored). ``variant_names`` names every
    column, the original included. Per prompt i with original ``o_i`` and present variant scores
    ``v_ij``, averaged over prompts (every prompt weighs the same):

    * ``mean``   mean_j v_ij;
    * ``drop``   o_i - mean_j v_ij (positive = worse on variants);
    * ``worst``  min_j v_ij (variants only);
    * ``spread`` population std (ddof=0) of {o_i, v_ij} (original and variants);
    * ``flip_rate`` (only with ``outcomes``, the same layout of 1/0.5/0 outcomes against the
      baseline): flipped cells / present variant cells, where a cell flips when its outcome is
      on the other side of 0.5 than the original's (win <-> loss; ties never flip);
    * ``per_variant`` name -> mean score of that column over the prompts that have it (no CI;
      None for a column no prompt has).

    Intervals: a cluster bootstrap over prompts (BCa, percentile fallback). Every statistic
    above depends on a resample of whole prompt rows only through per-prompt summaries (a value
    per prompt; for the flip rate, flipped and present cell counts per prompt), so resampling
    those summaries is exactly :func:`cluster_mean_ci` on the rows, only without re-reducing
    [n_resamples, n_prompts, n_columns] stacks.
    """
    arr = _as_array(scores, "scores", 2, allow_nan=True)
    n_columns = arr.shape[1]
    if n_columns < 2:
        raise StatsError(f"scores has {n_columns} column(s); need the original in column 0 and at least one variant")
    if len(variant_names) != n_columns:
        raise StatsError(f"variant_names has {len(variant_names)} names for {n_columns} score columns "
                         "(name every column, the original in column 0 included)")
    _check_rows(arr, "scores")
    ci = dict(confidence=confidence, n_resamples=n_resamples, seed=seed)
    variants_mean = np.nanmean(arr[:, 1:], axis=1)
    per_prompt = {
        "mean": variants_mean,
        "drop": arr[:, 0] - variants_mean,
        "worst": np.nanmin(arr[:, 1:], axis=1),
        "spread": np.nanstd(arr, axis=1),
    }
    summary: dict = {name: mean_ci(values, **ci) for name, values in per_prompt.items()}
    summary["flip_rate"] = None
    if outcomes is not None:
        out = _as_array(outcomes, "outcomes", 2, allow_nan=True)
        if out.shape != arr.shape:
            raise StatsError(f"outcomes has shape {out.shape}, scores has {arr.shape}: they must describe the same cells")
        _check_rows(out, "outcomes")
        flipped, present = (cells.sum(axis=1) for cells in _flips(out))

        def ratio(f: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
            return f.sum(axis=axis) / p.sum(axis=axis)

        summary["flip_rate"] = _bootstrap((flipped, present), ratio, float(flipped.sum() / present.sum()),
                                          paired=True, method="BCa", **ci)
    # None (JSON null) for a column no prompt has, rather than NaN, which JSON cannot carry.
    summary["per_variant"] = {name: None if np.isnan(arr[:, j]).all() else float(np.nanmean(arr[:, j]))
                              for j, name in enumerate(variant_names)}
    return summary


def _check_rows(arr: np.ndarray, name: str) -> None:
    """The original must be present and every prompt needs at least one variant, so every
    per-prompt statistic is defined (a resample of such rows never averages over nothing)."""
    missing_original = np.flatnonzero(np.isnan(arr[:, 0]))
    if missing_original.size:
        raise StatsError(f"{name}: prompt row {missing_original[0]} has no value for the original (column 0)")
    no_variant = np.flatnonzero(np.isnan(arr[:, 1:]).all(axis=1))
    if no_variant.size:
        raise StatsError(f"{name}: prompt row {no_variant[0]} has no variant values (all NaN in columns 1+); "
                         "drop the row or fill its variants")
