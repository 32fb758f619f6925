"""Several finished runs side by side (e.g. two models, or two judges)."""

from __future__ import annotations

from pathlib import Path

from prefbench.reporting import plots
from prefbench.reporting.formatting import (
    DASH,
    METHOD_WHEN,
    fmt_interval,
    fmt_win_rate,
    interval_methods,
    methods_explained,
    reference_win_rate,
    seeds_text,
    table,
    verdict,
)
from prefbench.reporting.html import markdown_to_html
from prefbench.reporting.load import ReportError, load_results
from prefbench.reporting.reading import pairwise_reading
from prefbench.util.files import atomic_write_text


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Each run's directory name, lengthened by parent folders only where two runs share it
    (``a/run1`` vs ``b/run1``); the same directory given twice is numbered."""
    parts = [Path(d).resolve().parts for d in run_dirs]
    labels = []
    for i, p in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i and q != p]
        depth = 1
        while depth < len(p) and any(q[-depth:] == p[-depth:] for q in others):
            depth += 1
        labels.append("/".join(p[-depth:]))
    counts: dict[str, int] = {}
    numbered = []
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
        numbered.append(label if labels.count(label) == 1 else f"{label} #{counts[label]}")
    return numbered


def compare_markdown(runs: dict[str, dict], out_dir: Path) -> str:
    """Runs side by side: what each run is, win rate and mean score per system and run (union of
    systems, "—" where a run lacks one), a grouped win-rate plot, and each run's real differences."""
    win = {label: {s["name"]: s["win_rate"] for s in r["systems"]} for label, r in runs.items()}
    names = sorted({n for row in win.values() for n in row},
                   key=lambda n: (-sum(row[n]["estimate"] for row in win.values() if n in row)
                                  / sum(n in row for row in win.values()), n))
    plots.grouped_win_rates(win, plots.system_colours(names), out_dir / "plots" / "compare_win_rate.png")
    about = table(["run", "benchmark", "preset", "model", "judge", "baseline", "seeds", "intervals", "eval prompts"],
                   [[label, r.get("benchmark", DASH), r.get("preset", DASH), r.get("model", DASH),
                     (r.get("judge") or {}).get("name", DASH), r.get("baseline", "reference"), seeds_text(r["systems"]),
                     ", ".join(interval_methods(r)) or DASH, str(r.get("n_prompts", DASH))]
                    for label, r in runs.items()], numeric_from=8)
    unusual = [m for m in sorted({m for r in runs.values() for m in interval_methods(r)}) if m in METHOD_WHEN]
    about += f"\n*Intervals*: {methods_explained(unusual)}.\n" if unusual else ""
    header = ["system"] + [f"{label}: {col}" for label in runs for col in ("win rate (CI)", "mean score (CI)")]
    rows = []
    for name in names:
        row = [name]
        for r in runs.values():
            s = next((s for s in r["systems"] if s["name"] == name), None)
            if s is None:
                row += [DASH, DASH]
                continue
            rate = fmt_win_rate(s["win_rate"])
            row += [f"**{rate}**" if verdict(s["win_rate"]) else rate, fmt_interval(s.get("mean_score"))]
        rows.append(row)
    rows.append(["reference model"] + [c for r in runs.values()
                                       for c in (reference_win_rate(r),
                                                 fmt_interval((r.get("reference") or {}).get("mean_score")))])
    findings = "\n".join(f"- **{label}**: {pairwise_reading(r)}" for label, r in runs.items())
    return "\n".join(["# prefbench: runs compared\n", "## Runs\n", about,
                      "## Win rate and mean score\n", table(header, rows),
                      "\n**Bold** win rate: its interval excludes 50% (differs from that run's baseline, named "
                      "in the run table).\n",
                      "![Win rate per run and system](plots/compare_win_rate.png)\n",
                      "## Pairwise differences within each run\n", findings + "\n"])


def compare_runs(run_dirs: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Write ``compare.md``, ``compare.html`` and ``plots/compare_win_rate.png`` into ``out_dir``
    for several finished runs (e.g. two models, or two judges); returns the Markdown and HTML paths."""
    if not run_dirs:
        raise ReportError("compare_runs needs at least one run directory")
    out_dir = Path(out_dir)
    runs = {label: load_results(Path(d)) for label, d in zip(run_labels(run_dirs), run_dirs)}
    text = compare_markdown(runs, out_dir)
    md_path, html_path = out_dir / "compare.md", out_dir / "compare.html"
    atomic_write_text(md_path, text)
    atomic_write_text(html_path, markdown_to_html(text, out_dir, "prefbench: runs compared"))
    return md_path, html_path
