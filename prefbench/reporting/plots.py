"""The report's figures, drawn from results.json pieces and training metrics.

Figures use matplotlib's object API (``Figure`` with the Agg canvas, never pyplot), so rendering
needs no display, changes no global backend and leaves no open figures behind. Every system keeps
one colour in every figure of a report (``system_colours``); the reference model is always grey.
Win rates and paired differences are drawn in percent / percentage points, scores on their 0–1 scale.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from prefbench.util.files import atomic_write_bytes

DPI = 120
REFERENCE_COLOUR = "#7f7f7f"
# Built-in objectives keep the same colour in every report; tab10 without its grey (the reference's).
_FIXED = {"dpo": "#1f77b4", "ipo": "#ff7f0e", "simpo": "#2ca02c", "jpo": "#d62728", "sft_jpo": "#9467bd",
          "cdpo": "#8c564b", "orpo": "#e377c2", "rpo": "#bcbd22", "sft": "#17becf"}
_EXTRA = ["#393b79", "#e6550d", "#31a354", "#843c39", "#7b4173", "#3182bd", "#636363", "#bd9e39",
          "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#e7969c", "#969696", "#a55194", "#8ca252"]
VARIANT_ORDER = ("original", "paraphrase", "typo", "case", "distractor")
CURVES = (("loss", "loss (objective's own scale)", 1.0),
          ("accuracy", "pairs ranked correctly (%)", 100.0),
          ("margin", "reward margin (chosen − rejected)", 1.0))


def system_colours(names: list[str]) -> dict[str, str]:
    """One colour per system: fixed for built-in objective names, the rest from a second palette
    in sorted order, so a given set of systems is coloured the same way in every figure."""
    colours = {n: _FIXED[n] for n in names if n in _FIXED}
    pool = iter(c for c in _EXTRA if c not in colours.values())
    for name in sorted(set(names) - set(colours)):
        colours[name] = next(pool, REFERENCE_COLOUR)
    colours["reference"] = REFERENCE_COLOUR
    return colours


def save_png(fig: Figure, path: Path) -> Path:
    """Write the figure atomically (temp file + rename), without the matplotlib version stamp, so
    the same input gives byte-identical files."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return path


def _errors(intervals: list[dict], scale: float) -> np.ndarray:
    """Asymmetric error-bar lengths [2, n] from Intervals."""
    return np.array([[(iv["estimate"] - iv["low"]) * scale for iv in intervals],
                     [(iv["high"] - iv["estimate"]) * scale for iv in intervals]])


def forest_plot(labels: list[str], diffs: list[dict], significant: list[bool], notes: list[str],
                correction: str, confidence: float, path: Path) -> Path:
    """Paired differences (Intervals of win-rate differences, one per label) with their intervals;
    filled markers survived the multiplicity correction, hollow ones did not. ``notes`` (the
    adjusted p-values) are printed on the right, level with their rows."""
    n = len(diffs)
    fig = Figure(figsize=(8, 1.6 + 0.45 * n), layout="constrained")
    ax = fig.add_subplot()
    ys = np.arange(n)[::-1]  # first comparison on top
    for y, d, sig in zip(ys, diffs, significant):
        ax.plot([d["low"] * 100, d["high"] * 100], [y, y], color="black", lw=1.6)
        ax.plot(d["estimate"] * 100, y, "o", ms=8, color="black", mfc="black" if sig else "white")
    ax.axvline(0, color=REFERENCE_COLOUR, ls="--", lw=1)
    lo = min(0.0, *(d["low"] * 100 for d in diffs))
    hi = max(0.0, *(d["high"] * 100 for d in diffs))
    pad = max(1.0, 0.08 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(ys, labels)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(ys, notes)
    right.tick_params(length=0)
    ax.set_xlabel("difference in win rate (percentage points)")
    ax.set_title(f"Paired differences in win rate, a − b ({confidence:.0%} CI; > 0: a wins more often)")
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color="black", mfc=fill, label=f"{verdict} after {correction}")
               for fill, verdict in (("black", "significant"), ("white", "not significant"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    return save_png(fig, path)


def win_rate_bars(systems: list[dict], colours: dict[str, str], confidence: float, path: Path,
                  baseline: str = "reference") -> Path:
    """Win rate against the baseline per system, best first, with interval whiskers; a bar whose
    interval includes 50% is drawn faded, so the systems that really differ stand out."""
    systems = sorted(systems, key=lambda s: (-s["win_rate"]["estimate"], s["name"]))
    fig = Figure(figsize=(max(6.5, 1.0 + 0.9 * len(systems)), 4.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(systems))
    rates = [s["win_rate"] for s in systems]
    for xi, s, iv in zip(x, systems, rates):
        clear = iv["low"] > 0.5 or iv["high"] < 0.5
        ax.bar(xi, iv["estimate"] * 100, color=colours[s["name"]], alpha=1.0 if clear else 0.35,
               edgecolor="black", linewidth=0.6)
    ax.errorbar(x, [iv["estimate"] * 100 for iv in rates], yerr=_errors(rates, 100), fmt="none",
                ecolor="black", capsize=5, lw=1.2)
    ax.axhline(50, color=REFERENCE_COLOUR, ls="--", lw=1.2)
    # values go in the tick labels: above the bars they would collide with whiskers and the 50% line
    ax.set_xticks(x, [f"{s['name']}\n{iv['estimate'] * 100:.1f}%" for s, iv in zip(systems, rates)],
                  rotation=30 if len(systems) > 6 else 0, ha="right" if len(systems) > 6 else "center")
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"win rate vs {baseline} (%)")
    ax.set_title(f"Win rate vs {baseline} with {confidence:.0%} CI")
    handles = [Line2D([], [], color=REFERENCE_COLOUR, ls="--", label=f"as good as {baseline} (50%)"),
               Patch(facecolor="#555555", edgecolor="black", label="CI excludes 50%"),
               Patch(facecolor="#555555", alpha=0.35, edgecolor="black", label="CI includes 50%")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    return save_png(fig, path)


def mean_over_seeds(runs: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the mean of ``key`` over the seeds that reached that step (seeds may stop at
    different steps when a run was cut short). Returns (steps, means)."""
    by_step: dict[int, list[float]] = {}
    for records in runs:
        for r in records:
            if r.get(key) is not None:
                by_step.setdefault(int(r["step"]), []).append(float(r[key]))
    steps = np.array(sorted(by_step))
    return steps, np.array([np.mean(by_step[s]) for s in steps])


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that shrinks at the ends instead of padding."""
    if window <= 1 or len(values) < 3:
        return values
    kernel = np.ones(window)
    return np.convolve(values, kernel, "same") / np.convolve(np.ones_like(values), kernel, "same")


def training_curves(metrics: dict[str, list[list[dict]]], colours: dict[str, str], path: Path) -> Path:
    """Loss, reward accuracy and reward margin vs optimizer step; one line per system, the mean over
    its seeds. Per-step values from small batches are noisy, so the bold line is a moving average
    and the raw mean is drawn faintly behind it. Losses of different objectives are on different
    scales (IPO's squared error vs DPO's log-sigmoid), so the loss axis goes logarithmic when they
    span more than a factor 30."""
    longest = max((len(records) for runs in metrics.values() for records in runs), default=1)
    window = max(1, round(longest ** 0.5 / 2)) | 1  # ~3 steps of 20, 7 of 200; odd, so it stays centred
    fig = Figure(figsize=(12.5, 4.3), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (key, label, scale) in zip(axes, CURVES):
        lows, highs = [], []
        for name, runs in metrics.items():
            steps, mean = mean_over_seeds(runs, key)
            if not len(steps):
                continue
            mean = mean * scale
            lows.append(mean.min())
            highs.append(mean.max())
            ax.plot(steps, mean, color=colours[name], lw=0.8, alpha=0.25)
            ax.plot(steps, _smooth(mean, window), color=colours[name], lw=2)
        if key == "loss" and lows and min(lows) > 0 and max(highs) / min(lows) > 30:
            ax.set_yscale("log")
            label += ", log scale"
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.set_title(label.split(" (")[0].capitalize())
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[name], lw=2, label=f"{name} ({len(runs)} seed{'s' * (len(runs) != 1)})")
               for name, runs in metrics.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), frameon=False)
    smoothing = f"moving average over {window} steps" if window > 1 else "raw per-step values"
    fig.suptitle(f"Training curves (mean over seeds; bold: {smoothing})")
    return save_png(fig, path)


def robustness_bars(per_variant: dict[str, dict[str, float]], colours: dict[str, str], path: Path) -> Path:
    """Mean judge score per variant kind (x groups), one bar per system (reference first); a kind a
    system has no score for (None or absent) leaves a gap."""
    kinds = [k for k in VARIANT_ORDER if any(k in v for v in per_variant.values())]
    kinds += sorted({k for v in per_variant.values() for k in v} - set(kinds))
    names = list(per_variant)
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(7.0, 1.2 * len(kinds) + 0.25 * len(kinds) * len(names)), 4.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(kinds))
    for i, name in enumerate(names):
        values = [np.nan if per_variant[name].get(k) is None else per_variant[name][k] for k in kinds]
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, color=colours[name], edgecolor="black",
               linewidth=0.4, label=name)
    ax.set_xticks(x, kinds)
    ax.set_xlabel("prompt variant")
    ax.set_ylabel("mean judge score (0–1)")
    ax.set_ylim(0, 1.0)
    ax.set_title("Instruction robustness: mean score per prompt variant")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", frameon=False)
    return save_png(fig, path)


def reward_kl_scatter(points: list[dict[str, Any]], reference_score: dict | None, colours: dict[str, str],
                      confidence: float, path: Path) -> Path:
    """Mean judge score against KL(policy ‖ reference), with intervals both ways. ``points`` hold
    ``name``, ``kl`` and ``score`` Intervals. The reference sits at KL 0."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    if reference_score is not None:
        points = [{"name": "reference", "kl": {"estimate": 0.0, "low": 0.0, "high": 0.0},
                   "score": reference_score}] + points
    for p in points:
        kl, score = p["kl"], p["score"]
        ax.errorbar(kl["estimate"], score["estimate"], xerr=_errors([kl], 1.0), yerr=_errors([score], 1.0),
                    fmt="o", ms=7, color=colours[p["name"]], ecolor=colours[p["name"]], capsize=3)
        ax.annotate(p["name"], (kl["estimate"], score["estimate"]), xytext=(6, 6), textcoords="offset points",
                    fontsize=9, color=colours[p["name"]])
    ax.set_xlabel("KL(policy ‖ reference) (nats per response)")
    ax.set_ylabel("mean judge score (0–1)")
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    ax.set_title(f"Reward vs KL ({confidence:.0%} CI both ways)")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def grouped_win_rates(table: dict[str, dict[str, dict | None]], colours: dict[str, str], path: Path) -> Path:
    """Runs side by side: ``table[run][system]`` is a win-rate Interval or None (system not in that
    run). One group of bars per run, one colour per system, whiskers for the intervals."""
    runs = list(table)
    names = sorted({s for row in table.values() for s in row})
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(7.0, 1.0 + 0.35 * len(runs) * len(names)), 4.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(runs))
    for i, name in enumerate(names):
        offset = x - 0.4 + width * (i + 0.5)
        for xi, run in zip(offset, runs):
            iv = table[run].get(name)
            if iv is None:
                ax.text(xi, 2, "n/a", ha="center", va="bottom", rotation=90, fontsize=8, color="#444444")
                continue
            ax.bar(xi, iv["estimate"] * 100, width, color=colours[name], edgecolor="black", linewidth=0.4,
                   yerr=_errors([iv], 100), capsize=3, error_kw={"lw": 1})
        ax.bar(np.nan, 0, color=colours[name], label=name)  # one legend entry per system
    ax.axhline(50, color=REFERENCE_COLOUR, ls="--", lw=1.2, label="as good as the baseline (50%)")
    ax.set_xticks(x, runs)
    ax.set_xlabel("run")
    ax.set_ylim(0, 105)
    ax.set_ylabel("win rate vs each run's baseline (%)")
    ax.set_title("Win rate per run (n/a: system not in that run)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", frameon=False)
    return save_png(fig, path)


def frontier_plot(sweep: dict, colours: dict[str, str], path: Path) -> Path:
    """Validation win rate against KL for every sweep point, each objective's frontier (best win rate within a
    KL budget, :mod:`prefbench.stats.frontier`), its chosen point ringed, and the matched KL as a dashed line."""
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()
    reference = sweep["reference"]["win_rate"]["estimate"] * 100
    ax.plot([0], [reference], "o", ms=8, color=REFERENCE_COLOUR)
    ax.annotate("reference", (0, reference), xytext=(6, -12), textcoords="offset points", fontsize=9,
                color=REFERENCE_COLOUR)
    for name, entry in sweep["objectives"].items():
        colour = colours.get(name, REFERENCE_COLOUR)
        kl = [p["kl"]["estimate"] for p in entry["points"]]
        win = [p["win_rate"]["estimate"] * 100 for p in entry["points"]]
        ax.plot(kl, win, "o", ms=5, alpha=0.55, color=colour)
        corners = entry["frontier"]
        xs, ys = list(corners["kl"]), [s * 100 for s in corners["score"]]
        if max(kl) > xs[-1]:                       # past its best point the frontier stays flat
            xs, ys = xs + [max(kl)], ys + [ys[-1]]
        ax.plot(xs, ys, "-", lw=2, color=colour, label=name)
        chosen = next(p for p in entry["points"] if p["chosen"])
        ax.plot(chosen["kl"]["estimate"], chosen["win_rate"]["estimate"] * 100, "o", ms=13, mfc="none", mew=2,
                color=colour)
    matched = sweep.get("matched_kl")
    if matched:
        ax.axvline(matched["kl"], ls="--", color="black", lw=1, alpha=0.6)
        ax.annotate(f"matched KL {matched['kl']:.2f}", (matched["kl"], ax.get_ylim()[1]), xytext=(4, -14),
                    textcoords="offset points", fontsize=9)
    ax.axhline(50, color="black", lw=0.8, alpha=0.3)
    ax.set_xlabel("KL(policy ‖ reference) on validation prompts (nats per response)")
    ax.set_ylabel(f"validation win rate vs {sweep.get('baseline', 'reference')} (%)")
    ax.set_title("Sweep: win rate against KL (lines: frontier; rings: chosen points)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return save_png(fig, path)
