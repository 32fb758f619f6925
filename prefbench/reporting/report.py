"""Turning a finished run directory into report.md, a self-contained report.html and plots/*.png.

Input is what earlier stages wrote: ``results.json`` (win rates, scores, robustness and KL as
Intervals ``{"estimate", "low", "high", "method"}``, paired comparisons with Holm-adjusted p-values),
``config.yaml`` and ``<objective>/seed<k>/metrics.jsonl``. The Markdown is the single source of the
content; the HTML is converted from it with its images inlined, so the file can be mailed or archived
alone. Nothing depends on the clock: the same run directory gives the same files.

The report's job is to show which differences are real. A system "beats the reference" only when
its win-rate interval excludes 50%, and a pairwise difference counts only when it survives the
run's multiplicity correction; the plain-language reading says so, including when nothing does.
Optional fields (KL, flip rate, judge diagnostics, timings) may be null or missing and show as "—".
"""

from __future__ import annotations

import re
from pathlib import Path

from prefbench.reporting.figures import draw_figures
from prefbench.reporting.formatting import (
    DASH,
    correction,
    fmt_interval,
    fmt_mde,
    fmt_number,
    fmt_p,
    fmt_points,
    fmt_win_rate,
    interval_methods,
    methods_explained,
    ranked,
    seeds_text,
    significant,
    table,
)
from prefbench.reporting.html import markdown_to_html
from prefbench.reporting.leaderboard import families, families_markdown, leaderboard_csv, leaderboard_markdown
from prefbench.reporting.load import load_results
from prefbench.reporting.reading import plain_reading
from prefbench.reporting.sweep import sweep_section
from prefbench.util.files import atomic_write_text


def _header(results: dict) -> str:
    judge = results.get("judge") or {}
    methods = methods_explained(interval_methods(results))
    items = [("benchmark", f"{results.get('benchmark', DASH)} (preset {results.get('preset', DASH)})"),
             ("model", results.get("model", DASH) + (f" → SFT stage → `{results['start_model']}` (the reference, and "
                                                     "every objective's starting point)"
                                                     if results.get("start_model") else "")),
             ("judge", f"{judge.get('name', DASH)} ({judge.get('kind', DASH)})"),
             ("baseline", results.get("baseline", "reference")),
             ("eval prompts", results.get("n_prompts", DASH)),
             ("seeds", seeds_text(results["systems"])),
             ("intervals", f"{results.get('confidence', 0.95):.0%}" + (f" ({methods})" if methods else "")),
             ("multiple comparisons", correction(results).capitalize())]
    return "\n".join(f"- **{k}**: {v}" for k, v in items) + "\n"


def _comparisons(results: dict) -> str:
    c_name = correction(results)
    rows = [[f"{c['a']} − {c['b']}", fmt_points(c["diff"]), fmt_p(c.get("p")), fmt_p(c.get(f"p_{c_name}")),
             "**yes**" if significant(c, results) else "no", fmt_mde(c)]
            for c in results.get("comparisons") or []]
    header = ["comparison (a − b)", "difference in win rate (CI)", "p", f"p ({c_name.capitalize()})",
              f"significant after {c_name.capitalize()}", "detectable difference"]
    if not rows:
        return ""
    seeded = any(len(s.get("seeds") or []) > 1 for s in results.get("systems", []))
    method = ("two-level bootstrap over seeds and prompts (paired on prompts)" if seeded
              else "paired bootstrap over prompts")
    test = "the same bootstrap, shifted to the null" if seeded else "paired sign-flip permutation test"
    note = (f"\n*CI*: per-comparison {round(100 * results.get('confidence', 0.95))}% interval ({method}), "
            f"not adjusted for the {len(rows)} comparisons; *p*: {test}. Only "
            f"*significant after {c_name.capitalize()}* accounts for multiplicity, so an interval that excludes 0 "
            f"next to \"no\" is not evidence of a difference. *Detectable difference*: the smallest true difference "
            f"this run would find with 80% power at the strictest {c_name.capitalize()} level (normal approximation "
            f"from the spread of the per-prompt differences{', and between seeds' if seeded else ''}); a smaller "
            f"real gap can hide behind \"no\".{_no_spread_note(results.get('comparisons') or [], 'diff')}\n")
    return table(header, rows) + note


def _head_to_head(results: dict) -> str:
    entries = results.get("head_to_head") or []
    if not entries:
        return ""
    c_name = correction(results)
    rows = [[f"{h['a']} vs {h['b']}", fmt_win_rate(h["win_rate"]), f"{h['wins']}/{h['ties']}/{h['losses']}",
             fmt_p(h.get("p")), fmt_p(h.get(f"p_{c_name}")), "**yes**" if significant(h, results) else "no",
             fmt_mde(h)] for h in entries]
    header = ["a vs b", "a's win rate over b (CI)", "W/T/L", "p", f"p ({c_name.capitalize()})",
              f"differs from 50% after {c_name.capitalize()}", "detectable difference"]
    seeded = any(len(s.get("seeds") or []) > 1 for s in results.get("systems", []))
    note = ("\nEach prompt's answers of the two systems compared directly by their gold scores (a higher score wins, "
            "equal scores tie)" + (", seed against seed" if seeded else "") + ": the share of prompts on which a's "
            "answer is the better one, where the paired differences above compare each system with the reference "
            "separately (a distance from 50% here and a difference of two win rates there are different scales). "
            "*Detectable difference*: the smallest true distance from 50% found with 80% power at the strictest "
            f"{c_name.capitalize()} level" + (", the spread between training seeds counted" if seeded else
                                              " (one training seed: the spread between seeds is not counted)") + "."
            + _no_spread_note(entries, "win_rate") + "\n")
    return table(header, rows) + note


def _no_spread_note(entries: list[dict], interval: str) -> str:
    """What the table's rows from prompts that all gave the same difference mean, when there are any."""
    exact = any(e[interval].get("method") == "Clopper-Pearson" for e in entries)
    unknown = any("mde" in e and e["mde"] is None for e in entries)
    return ((" Where every prompt gave the same difference there is nothing to resample: the CI is then an exact "
             "(Clopper–Pearson) bound on the share of prompts that could differ, each moving the mean at most to "
             "the end of its range." if exact else "")
            + (" *Not estimable*: no spread in the per-prompt differences (or under 2 prompts) leaves the normal "
               "approximation nothing to scale; it does not mean any gap would have been found." if unknown else ""))


def _robustness_table(results: dict) -> str:
    entries = [(s["name"], s.get("robustness")) for s in ranked(results["systems"])]
    entries.append(("reference", (results.get("reference") or {}).get("robustness")))
    rows = [[name, fmt_interval(rob.get("mean")), fmt_interval(rob.get("drop"), signed=True),
             fmt_interval(rob.get("worst")), fmt_interval(rob.get("spread")),
             fmt_interval(rob.get("flip_rate"), 100, 1, "%")]
            for name, rob in entries if rob]
    header = ["system", "mean score over variants (CI)", "drop (CI)", "worst variant (CI)", "spread (CI)",
              "win/loss flip rate (CI)"]
    return table(header, rows) if rows else ""


def _trained_on(run: dict) -> str:
    """The pair kinds a system trained on; for a listwise objective its lists, for an unpaired one its labelled
    examples (the pair columns are empty for both)."""
    if "lists" in run:
        return f"{run['lists']:,} lists of {run['responses']:,} answers"
    if "desirable" in run:
        return f"{run.get('pair_kinds', 'all')} pairs as {run['examples']:,} examples ({run['desirable']:,} desirable)"
    return run.get("pair_kinds", DASH)


def _training_data(results: dict) -> str:
    """What each system trained on (its data arm's pair kinds, pairs of each kind, steps, tokens) and how many
    of its eval answers were cut at the generation limit."""
    systems = ranked(results["systems"])
    runs = {s["name"]: (s.get("training") or [{}])[0] for s in systems}
    if not any("pair_kinds" in run for run in runs.values()):
        return ""
    rows = [[s["name"], _trained_on(runs[s["name"]]),
             *(fmt_number(runs[s["name"]].get(key), 0) for key in ("conditional", "joint", "steps", "tokens_seen")),
             f"{runs[s['name']]['lr']:g}" if runs[s["name"]].get("lr") else DASH,
             fmt_number(s.get("truncated"), 1, 100, "%")] for s in systems]
    rows.append(["reference", *[DASH] * 6, fmt_number((results.get("reference") or {}).get("truncated"), 1, 100, "%")])
    header = ["system", "pairs trained on", "conditional pairs", "joint pairs", "steps", "tokens seen",
              "learning rate", "eval answers cut off"]
    arm = results.get("arm")
    meaning = ": response-span objectives train on conditional pairs (one instruction, two answers), joint-span " \
              "objectives (jpo, sft_jpo) on conditional and joint (cross-instruction) pairs" if arm == "matched" else ""
    data = results.get("data") or {}
    if data.get("truncated_samples") is not None:
        fate = "paired without an end-of-turn token" if data["truncated_samples_paired"] else "left out of the pairs"
        meaning += (f". Of the reference's {data['samples']} samples for the pairs, {data['truncated_samples']} "
                    f"({data['truncated_share']:.0%}) were cut at the generation limit and {fate}")
    note = (f"\nData arm **{arm}**{meaning}. " if arm else "\n") + (
        "Every objective takes the same optimizer steps with the same pairs per step; tokens seen count both "
        "sides of every pair, for the first seed. *Eval answers cut off*: share of the system's eval answers "
        "(robustness variants included) that reached the generation limit instead of ending.\n")
    return table(header, rows) + note


def _judge(results: dict) -> str:
    judge = results.get("judge") or {}
    diag = judge.get("diagnostics") or {}
    rows = [["judge", f"{judge.get('name', DASH)} ({judge.get('kind', DASH)})"],
            ["items judged", fmt_number(diag.get("judged"), 0)],
            ["position consistency", fmt_number(diag.get("position_consistency"), 1, 100, "%")],
            ["first-slot win rate", fmt_number(diag.get("first_slot_win_rate"), 1, 100, "%")],
            ["unparseable verdicts", fmt_number(diag.get("unparseable"), 0)]]
    note = ("\nA pointwise judge scores each answer alone, so position diagnostics do not apply.\n"
            if judge.get("kind") == "pointwise" else
            "\nPosition consistency: share of items with the same verdict in both orders (inconsistent ones count "
            "as ties). First-slot win rate far from 50% means the judge favours a position.\n")
    return table(["diagnostic", "value"], rows) + note


def _timings(results: dict) -> str:
    timings = results.get("timings")
    if not timings:
        return "Timings were not recorded.\n"
    total = timings.get("total")
    rows = [[stage, fmt_number(seconds, 1, unit=" s"),
             fmt_number(seconds / total, 1, 100, "%") if total and seconds is not None and stage != "total" else DASH]
            for stage, seconds in timings.items()]
    return table(["stage", "wall time", "share of total"], rows)


def _config(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return f"{DASH} ({path} not found)\n"
    text = path.read_text(encoding="utf-8")
    # a fence longer than any backtick run inside keeps the config verbatim
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return (f'<details markdown="1"><summary>config.yaml (exact resolved run config)</summary>\n\n'
            f"{fence}yaml\n{text}{'' if text.endswith(chr(10)) else chr(10)}{fence}\n\n</details>\n")


def _title(results: dict) -> str:
    return f"prefbench report: {results.get('benchmark', DASH)}, {results.get('model', DASH)}"


def report_markdown(results: dict, run_dir: Path) -> str:
    """The whole report as Markdown (drawing the plots it shows into ``run_dir/plots``)."""
    fig = draw_figures(results, run_dir)
    parts = [f"# {_title(results)}\n", _header(results),
             "## Reading\n", plain_reading(results) + "\n",
             "## Leaderboard\n", leaderboard_markdown(results),
             *(["## By objective family\n", families_markdown(results)] if families(results) else []),
             "## Paired differences\n", fig["forest"], _comparisons(results),
             *(["## Head to head\n", _head_to_head(results)] if results.get("head_to_head") else []),
             f"## Win rate vs {results.get('baseline', 'reference')}\n", fig["win_rate"],
             *(["## Sweep (validation prompts)\n", sweep_section(results, fig["frontier"])]
               if results.get("sweep") else []),
             "## Training\n", _training_data(results), fig["training"],
             "## Instruction robustness\n", fig["robustness"], _robustness_table(results),
             "## Reward vs KL\n", fig["reward_kl"],
             "## Judge diagnostics\n", _judge(results),
             "## Timings\n", _timings(results),
             "## Config\n", _config(run_dir)]
    return "\n".join(parts)


def render_report(run_dir: Path) -> tuple[Path, Path]:
    """Write everything derived from ``results.json`` into the run directory: ``leaderboard.csv``,
    ``plots/*.png``, ``report.md`` and ``report.html``; returns the paths of the two reports."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    text = report_markdown(results, run_dir)
    atomic_write_text(run_dir / "leaderboard.csv", leaderboard_csv(results))
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    atomic_write_text(md_path, text)
    atomic_write_text(html_path, markdown_to_html(text, run_dir, _title(results)))
    return md_path, html_path
