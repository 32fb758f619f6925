"""Score against KL: each objective's frontier over its sweep, and objectives compared at matched KL.

An objective swept over its strength and learning rate gives points (KL to the reference, win rate). Its
*frontier* F(k) is the best win rate it reaches within a KL budget k, mixing points: the upper concave hull of
its points and the reference's own point (KL 0, the reference's win rate; 0.5 against itself), with F constant
past the hull's best point, since more budget cannot hurt (a mixture of two policies has the mixed score and at
most the mixed KL, KL being convex). F is non-decreasing and defined for every k >= 0.

Objectives move the policy by different amounts, so comparing their single chosen points mixes "better" with
"moved further". The matched comparison reads every frontier at one KL, k* = the smallest of the objectives'
largest KLs (every frontier is then informed up to k*, none extrapolated), with intervals and paired
differences from one bootstrap over prompts that resamples the same prompts for every point of every objective
(KL and outcomes are per prompt) and recomputes every frontier (:func:`matched_kl`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from prefbench.stats.differences import holm
from prefbench.stats.intervals import (
    StatsError,
    _multinomial_weights,
    as_array,
    check_resampling,
    percentile_interval,
)


def hull(kl: np.ndarray, score: np.ndarray, anchor: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The frontier's corners: the upper concave hull of the points and ``anchor`` (KL 0), from KL 0 up to the
    best score (ties in score: the lowest KL), as (kl, score) arrays increasing in both."""
    ks = np.concatenate([[anchor[0]], np.asarray(kl, float)])
    ss = np.concatenate([[anchor[1]], np.asarray(score, float)])
    order = np.lexsort((-ss, ks))          # by KL, the higher score first among equal KLs
    corners: list[tuple[float, float]] = []
    for k, s in zip(ks[order], ss[order]):
        if corners and s <= corners[-1][1]:
            continue                       # dominated: no better than a point of lower (or equal) KL
        # pop corners below the chord from the one before them to this point (keeps the hull concave)
        while len(corners) >= 2 and _cross(corners[-2], corners[-1], (k, s)) >= 0:
            corners.pop()
        corners.append((k, s))
    arr = np.array(corners)
    return arr[:, 0], arr[:, 1]


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def frontier_at(kl: np.ndarray, score: np.ndarray, anchor: tuple[float, float], at: float) -> float:
    """F(``at``): the frontier interpolated between its corners, constant past the last one."""
    hk, hs = hull(kl, score, anchor)
    return float(np.interp(at, hk, hs))   # np.interp holds the end values outside the corners


@dataclass(frozen=True)
class SweepPoints:
    """One objective's sweep on the validation prompts: per point, per prompt, its KL and its outcome."""

    kl: np.ndarray        # [points, prompts]
    outcome: np.ndarray   # [points, prompts]


def matched_kl(points: dict[str, SweepPoints], anchor: np.ndarray, *, confidence: float = 0.95,
               n_resamples: int = 4000, seed: int = 0) -> dict:
    """Each objective's frontier at k* (see the module docstring) with a percentile interval, and every pair's
    difference there with a two-sided bootstrap p-value (Holm-adjusted over the pairs). ``anchor``: the
    reference's per-prompt outcomes (its point sits at KL 0)."""
    check_resampling(confidence, n_resamples)
    if not points:
        raise StatsError("matched_kl needs at least one objective")
    anchor = as_array(anchor, "anchor", 1)
    n = anchor.size
    for name, p in points.items():
        for field in ("kl", "outcome"):
            arr = as_array(getattr(p, field), f"{name}.{field}", 2)
            if arr.shape[1] != n:
                raise StatsError(f"{name}.{field} must cover the anchor's {n} prompts, got {arr.shape[1]}")
    at = float(min(p.kl.mean(axis=1).max() for p in points.values()))

    def values(weights: np.ndarray) -> dict[str, np.ndarray]:
        """[resamples] frontier value at k* per objective, for prompt weights [resamples, prompts]."""
        base = weights @ anchor
        out = {}
        for name, p in points.items():
            kls, scores = weights @ p.kl.T, weights @ p.outcome.T          # [resamples, points]
            out[name] = np.array([frontier_at(k, s, (0.0, b), at) for k, s, b in zip(kls, scores, base)])
        return out

    estimate = {k: float(v[0]) for k, v in values(np.full((1, n), 1.0 / n)).items()}
    boot = values(_multinomial_weights(np.random.default_rng(seed), n, n_resamples))
    result = {"kl": at, "confidence": confidence, "n_prompts": n,
              "values": {k: percentile_interval(boot[k], estimate[k], confidence).to_json() for k in points},
              "differences": []}
    for a, b in itertools.combinations(points, 2):
        d = boot[a] - boot[b]
        p_value = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
        result["differences"].append({"a": a, "b": b, "p": p_value, "diff": percentile_interval(
            d, estimate[a] - estimate[b], confidence).to_json()})
    for entry, adjusted in zip(result["differences"], holm([e["p"] for e in result["differences"]])):
        entry["p_holm"] = adjusted
    return result


def frontier_curve(kl: np.ndarray, score: np.ndarray, anchor: tuple[float, float]) -> dict:
    """The frontier's corners for a plot or a table: ``{"kl": [...], "score": [...]}``."""
    hk, hs = hull(kl, score, anchor)
    return {"kl": hk.tolist(), "score": hs.tolist()}

