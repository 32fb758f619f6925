"""Instruction robustness: a system's scores on a prompt's variants, with intervals from a cluster
bootstrap that resamples prompts together with all their variants."""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from prefbench.stats.intervals import Interval, Method, StatsError, as_array, bootstrap_interval, mean_ci

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
    arr = as_array(values, "values", 2, allow_nan=True)
    estimate = float(statistic(arr))

    def on_rows(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        # scipy resamples row indices; the statistic sees the rows they pick.
        rows = arr[idx.astype(np.intp)]  # [..., k, V]
        if vectorized:
            return np.asarray(statistic(rows), dtype=float)
        flat = rows.reshape(-1, *rows.shape[-2:])
        return np.array([statistic(r) for r in flat], dtype=float).reshape(rows.shape[:-2])

    return bootstrap_interval((np.arange(arr.shape[0], dtype=float),), on_rows, estimate, paired=False,
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
    arr = as_array(scores, "scores", 2, allow_nan=True)
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
        out = as_array(outcomes, "outcomes", 2, allow_nan=True)
        if out.shape != arr.shape:
            raise StatsError(f"outcomes has shape {out.shape}, scores has {arr.shape}: they must describe the same cells")
        _check_rows(out, "outcomes")
        flipped, present = (cells.sum(axis=1) for cells in _flips(out))

        def ratio(f: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
            return f.sum(axis=axis) / p.sum(axis=axis)

        summary["flip_rate"] = bootstrap_interval((flipped, present), ratio, float(flipped.sum() / present.sum()),
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
