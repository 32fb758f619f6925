"""Statistics for evaluation (numpy and scipy only; nothing here knows about models): per-prompt numbers in, estimates with honest confidence intervals out.

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
* sweeps: :func:`frontier_curve` (score against KL) and :func:`matched_kl` (objectives compared at one KL);
* length bias: :func:`length_controlled_win_rate` (AlpacaEval-style logistic adjustment).

Every interval says which method produced it: ``"BCa"``, ``"percentile"`` when BCa was not
computable (scipy returns NaN when the bootstrap distribution is too lopsided), or, when every
prompt gave the same value (e.g. 40 wins of 40, or all ties) and the bootstrap has nothing to
resample, ``"Clopper-Pearson"`` if the caller gave the range one prompt's value can take
(``value_range``; an exact bound on the share of prompts that could differ, see
:func:`~prefbench.stats.intervals.constant_interval`) and ``"degenerate"``
(``low == high == estimate`` instead of NaN) if not.
"""

from prefbench.stats.differences import (
                                         detectable_difference,
                                         difference_spread,
                                         hierarchical_paired_difference,
                                         holm,
                                         minimum_detectable_difference,
                                         paired_difference,
                                         unpaired_difference,
)
from prefbench.stats.frontier import SweepPoints, frontier_at, frontier_curve, matched_kl
from prefbench.stats.intervals import Interval, StatsError, hierarchical_mean_ci, mean_ci, win_scores
from prefbench.stats.length import length_controlled_win_rate
from prefbench.stats.robustness import cluster_mean_ci, robustness_summary

__all__ = ["Interval", "StatsError", "SweepPoints", "cluster_mean_ci", "detectable_difference", "difference_spread",
           "frontier_at", "frontier_curve", "matched_kl",
           "hierarchical_mean_ci", "hierarchical_paired_difference",
           "holm", "length_controlled_win_rate", "mean_ci", "minimum_detectable_difference", "paired_difference",
           "robustness_summary", "unpaired_difference", "win_scores"]
