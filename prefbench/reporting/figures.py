"""The report's figures: which plots the data allows, drawn into ``plots/``, and the Markdown that
shows each one (or says why it is absent)."""

from __future__ import annotations

from pathlib import Path

from prefbench.reporting import plots
from prefbench.reporting.formatting import correction, join_names, p_clause, significant
from prefbench.reporting.load import training_metrics


def draw_figures(results: dict, run_dir: Path) -> dict[str, str]:
    """Draws every plot the data allows; returns per figure the Markdown that shows it (an image, or
    a note saying why it is absent). Stale files of skipped plots are removed so the folder matches."""
    out = run_dir / "plots"
    systems = results["systems"]
    colours = plots.system_colours([s["name"] for s in systems])
    conf = results.get("confidence", 0.95)
    shown: dict[str, str] = {}
    metrics, missing = training_metrics(run_dir, systems)   # read first: a damaged file stops before any plot is drawn

    def show(name: str, alt: str) -> None:
        shown[name] = f"![{alt}](plots/{name}.png)\n"

    def skip(name: str, why: str) -> None:
        (out / f"{name}.png").unlink(missing_ok=True)
        shown[name] = f"*{why}*\n"

    comparisons = results.get("comparisons") or []
    if comparisons:
        p_name = f"p_{correction(results)}"
        plots.forest_plot([f"{c['a']} − {c['b']}" for c in comparisons], [c["diff"] for c in comparisons],
                          [significant(c, results) for c in comparisons],
                          [p_clause(p_name, c.get(p_name)) for c in comparisons],
                          correction(results).capitalize(), conf, out / "forest.png")
        show("forest", "Forest plot of paired differences in win rate")
    else:
        skip("forest", "No pairwise comparisons to plot.")
    baseline = results.get("baseline", "reference")
    ref = results.get("reference") or {}
    bars = systems + ([{"name": "reference", **ref}] if ref.get("win_rate") else [])
    plots.win_rate_bars(bars, colours, conf, out / "win_rate.png", baseline)
    show("win_rate", f"Win rate vs {baseline} per system")

    if metrics:
        plots.training_curves(metrics, colours, out / "training.png")
        show("training", "Training curves: loss, reward accuracy, reward margin")
    else:
        skip("training", "No training metrics found.")
    if missing:
        shown["training"] += "\nMissing training metrics (not plotted): " + ", ".join(
            f"`{p}`" for p in missing) + "\n"

    per_variant = {s["name"]: s["robustness"]["per_variant"] for s in systems
                   if (s.get("robustness") or {}).get("per_variant")}
    ref_rob = (results.get("reference") or {}).get("robustness") or {}
    if ref_rob.get("per_variant"):
        per_variant = {"reference": ref_rob["per_variant"], **per_variant}
    if per_variant:
        plots.robustness_bars(per_variant, colours, out / "robustness.png")
        show("robustness", "Mean score per prompt variant and system")
    else:
        skip("robustness", "No per-variant robustness scores in results.json.")

    points = [{"name": s["name"], "kl": s["kl"], "score": s["mean_score"]} for s in systems
              if s.get("kl") and s.get("mean_score")]
    if points:
        plots.reward_kl_scatter(points, (results.get("reference") or {}).get("mean_score"), colours, conf,
                                out / "reward_kl.png")
        show("reward_kl", "Mean score vs KL to the reference")
        absent = [s["name"] for s in systems if not (s.get("kl") and s.get("mean_score"))]
        if absent:
            shown["reward_kl"] += f"\nNo KL estimate or mean score for {join_names(absent)} (not plotted).\n"
    else:
        skip("reward_kl", "Reward-vs-KL plot skipped: no system has both a KL estimate and a mean score "
                          "in results.json.")
    sweep = results.get("sweep")
    if sweep:
        plots.frontier_plot(sweep, plots.system_colours(list(sweep["objectives"])), out / "frontier.png")
        show("frontier", "Sweep: validation win rate against KL per grid point, with each objective's frontier")
    else:
        skip("frontier", "No sweep in this run.")
    return shown
