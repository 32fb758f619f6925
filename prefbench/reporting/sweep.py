"""The report's sweep section: every grid point on the validation prompts, the chosen settings, each objective's
score-against-KL frontier and the comparison at matched KL (results.json ``sweep``, written by
:mod:`prefbench.pipeline.sweep`)."""

from __future__ import annotations

from prefbench.reporting.formatting import fmt_interval, fmt_number, fmt_p, fmt_points, fmt_win_rate, table


def _params(point: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in point["params"].items()) or "—"


def grid_edges(points: list[dict]) -> list[str]:
    """The swept settings (parameters with several values, the learning rate) at which the chosen point sits at the
    smallest or largest value tried, e.g. ``["beta 0.03 (smallest)", "lr 0.0005 (largest)"]``."""
    chosen = next(p for p in points if p["chosen"])
    values = {k: [p["params"][k] for p in points] for k in chosen["params"]}
    values["lr"] = [p["lr"] for p in points]
    out = []
    for key, tried in values.items():
        value = chosen["lr"] if key == "lr" else chosen["params"][key]
        if len(set(tried)) > 1 and value in (min(tried), max(tried)):
            out.append(f"{key} {value:g} ({'smallest' if value == min(tried) else 'largest'})")
    return out


def sweep_section(results: dict, figure: str) -> str:
    sweep = results.get("sweep")
    if not sweep:
        return ""
    baseline = sweep.get("baseline", "reference")
    rows = []
    for name, entry in sweep["objectives"].items():
        for p in entry["points"]:
            mark = (lambda text: f"**{text}**") if p["chosen"] else str
            rows.append([mark(name), mark(_params(p)), mark(f"{p['lr']:g}"), mark(fmt_win_rate(p["win_rate"])),
                         fmt_interval(p["kl"], digits=2), fmt_number(p.get("mean_score"), 3),
                         fmt_number(p.get("truncated"), 0, 100, "%"), fmt_number(p.get("gaming"), 0, 100, "%"),
                         "**chosen**" if p["chosen"] else ""])
    points = table(["objective", "parameters", "lr", f"validation win rate vs {baseline} (CI)", "KL (CI)",
                    "mean score", "cut off", "gaming", ""], rows, numeric_from=3)
    judge = sweep.get("judge", "the run's judge")
    intro = (f"Before the comparison, every objective trained once (seed {sweep['seed']}) at each point of its grid "
             f"(its own strength parameters × learning rates) and answered {sweep['validation_prompts']} *validation* "
             "prompts, drawn apart from the eval prompts (never the same prompt; on ifeval-lite and sentiment, "
             f"training topics only), judged by {judge}. The point with the highest "
             "validation win rate (ties: the lower KL), in "
             "**bold**, is the setting every seed above trained at. The eval prompts played no part in the choice.\n")
    edges = [f"{name} ({', '.join(where)})" for name, entry in sweep["objectives"].items()
             if (where := grid_edges(entry["points"]))]
    if edges:
        intro += ("\n*At the edge of its grid*: " + "; ".join(edges) + ". The best setting may lie beyond the values "
                  "tried; widen the grid there in a new run directory (`--set sweep.grid.OBJECTIVE.PARAM=[...]`, "
                  "`--set sweep.lr=[...]`, `--output-dir`).\n")
    matched = sweep.get("matched_kl") or {}
    part = ""
    if matched:
        values = [[name, fmt_win_rate(iv)] for name, iv in matched["values"].items()]
        part = (f"\n### At matched KL ({matched['kl']:.2f} nats)\n\n"
                "Objectives move the policy by different amounts, so their chosen points are not at the same "
                "distance from the reference. Each objective's *frontier* is the best validation win rate it reaches "
                "within a KL budget (the upper hull of its points and the reference's, mixing two points; flat past "
                "its best point). Read at the largest KL every objective's grid reaches "
                f"({matched['kl']:.2f} nats), with {round(100 * matched['confidence'])}% percentile intervals from one "
                "bootstrap over the validation prompts that re-draws every point of every objective and recomputes "
                "every frontier:\n\n" + table(["objective", f"frontier win rate at {matched['kl']:.2f} nats (CI)"],
                                                values))
        if matched["differences"]:
            diffs = [[f"{d['a']} − {d['b']}", fmt_points(d["diff"]), fmt_p(d["p"]), fmt_p(d["p_holm"]),
                      "**yes**" if d["p_holm"] < 1 - matched["confidence"] else "no"]
                     for d in matched["differences"]]
            part += "\n" + table(["comparison (a − b)", "difference at matched KL (CI)", "p (bootstrap)",
                                  "p (Holm)", "significant after Holm"], diffs)
        part += ("\nOne training per grid point: the spread between training seeds is not in these intervals, and "
                 "the frontier is read on the same validation prompts the points were chosen on (it describes the "
                 "grid, it does not test the chosen settings; the sections above do, on the eval prompts).\n")
    return "\n".join([intro, points, figure, part])
