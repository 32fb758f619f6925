"""Turning a finished run directory into report.md, a self-contained report.html and plots/*.png,
and putting several runs side by side.

Input is what earlier stages wrote: ``results.json`` (schema 1: win rates, scores, robustness and
KL as Intervals ``{"estimate", "low", "high", "method"}``, paired comparisons with Holm-adjusted
p-values), ``config.yaml`` and ``<objective>/seed<k>/metrics.jsonl``. The Markdown is the single
source of the content; the HTML is converted from it with its images inlined as base64 data URIs,
so the file can be mailed or archived alone. Nothing depends on the clock: the same run directory
gives the same files.

The report's job is to show which differences are real. A system "beats the reference" only when
its win-rate interval excludes 50%, and a pairwise difference counts only when it survives the
run's multiplicity correction; the plain-language reading says so, including when nothing does.
Optional fields (KL, flip rate, judge diagnostics, timings) may be null or missing and show as "—".
"""

from __future__ import annotations

import base64
import difflib
import json
import re
from pathlib import Path
from typing import Any

import markdown

from prefbench import plots
from prefbench.artifacts import atomic_write_text

SCHEMA = 1
DASH = "—"
ROBUSTNESS_FIELDS = ("mean", "drop", "worst", "spread", "flip_rate")
# Below this share of order-consistent pairwise verdicts, most outcomes are ties and the reading says so.
LOW_CONSISTENCY = 0.5
CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;
max-width:1300px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:.3em .6em}td{white-space:nowrap}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;display:block;margin:1em 0}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:.85em}
details{margin:1em 0}summary{cursor:pointer;font-weight:600}
"""


class ReportError(ValueError):
    """A run directory that cannot be reported: names the path and what to do about it."""


# ---------------------------------------------------------------- loading


def load_results(run_dir: Path) -> dict[str, Any]:
    """Read and check ``run_dir/results.json`` (schema 1)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        siblings = [p.name for p in run_dir.parent.iterdir() if p.is_dir()] if run_dir.parent.is_dir() else []
        close = difflib.get_close_matches(run_dir.name, siblings, n=1)
        hint = f"; did you mean {run_dir.parent / close[0]}?" if close else ""
        raise ReportError(f"run directory {run_dir} does not exist{hint}")
    path = run_dir / "results.json"
    if not path.is_file():
        raise ReportError(f"{path} not found: run `prefbench eval {run_dir}` first "
                          "(it judges the generations and writes results.json)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e}); re-run `prefbench eval {run_dir}`") from e
    _check_results(results, path)
    return results


def _check_interval(value: Any, where: str, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an interval {{estimate, low, high}}, got {value!r}")
    for key in ("estimate", "low", "high"):
        if not isinstance(value.get(key), (int, float)):
            raise ReportError(f"{where}.{key}: expected a number, got {value.get(key)!r}")


def _check_robustness(rob: Any, where: str) -> None:
    if rob is None:
        return
    for key in ROBUSTNESS_FIELDS:
        _check_interval(rob.get(key), f"{where}.{key}")


def _check_results(results: Any, path: Path) -> None:
    """Fail on a field the report cannot do without, naming it; optional fields may be null."""
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        found = results.get("schema") if isinstance(results, dict) else type(results).__name__
        raise ReportError(f"{path}: schema {found!r}, but this prefbench reads schema {SCHEMA}; "
                          "re-run `prefbench eval` with this version")
    systems = results.get("systems")
    if not isinstance(systems, list) or not systems:
        raise ReportError(f"{path}: 'systems' must be a non-empty list")
    for i, s in enumerate(systems):
        where = f"{path}: systems[{i}]"
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise ReportError(f"{where}.name: expected a string")
        _check_interval(s.get("win_rate"), f"{where}.win_rate", required=True)
        _check_interval(s.get("mean_score"), f"{where}.mean_score")
        _check_interval(s.get("kl"), f"{where}.kl")
        _check_robustness(s.get("robustness"), f"{where}.robustness")
        for k, entry in enumerate(s.get("training") or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), str):
                raise ReportError(f"{where}.training[{k}].metrics: expected the metrics.jsonl path relative to the run")
    reference = results.get("reference") or {}
    _check_interval(reference.get("mean_score"), f"{path}: reference.mean_score")
    _check_robustness(reference.get("robustness"), f"{path}: reference.robustness")
    names = [s["name"] for s in systems]
    for i, c in enumerate(results.get("comparisons") or []):
        where = f"{path}: comparisons[{i}]"
        for key in ("a", "b"):
            if c.get(key) not in names:
                close = difflib.get_close_matches(str(c.get(key)), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ReportError(f"{where}.{key}: {c.get(key)!r} is not one of the systems {names}{hint}")
        _check_interval(c.get("diff"), f"{where}.diff", required=True)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """One training-metrics record per line of ``metrics.jsonl``."""
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}: line {n} is not valid JSON ({e})") from e
        if "step" not in records[-1]:
            raise ReportError(f"{path}: line {n} has no 'step'")
    return records


def training_metrics(run_dir: Path, systems: list[dict]) -> tuple[dict[str, list[list[dict]]], list[str]]:
    """Per system, the metrics of each seed; and the metrics files that are missing (as named in
    results.json). A system's ``training`` entries name its files, relative to the run directory;
    without them the layout ``<objective>/seed<k>/metrics.jsonl`` is assumed."""
    metrics: dict[str, list[list[dict]]] = {}
    missing: list[str] = []
    for s in systems:
        folder = s.get("objective") or s["name"]
        entries = s.get("training") or [{"seed": k, "metrics": f"{folder}/seed{k}/metrics.jsonl"}
                                        for k in s.get("seeds") or []]
        for entry in entries:
            path = run_dir / entry["metrics"]
            if path.is_file():
                metrics.setdefault(s["name"], []).append(read_metrics(path))
            else:
                missing.append(entry["metrics"])
    return metrics, missing


# ---------------------------------------------------------------- formatting


def fmt_interval(iv: dict | None, scale: float = 1.0, digits: int = 3, unit: str = "", signed: bool = False) -> str:
    """``estimate[unit] [low, high]``, e.g. ``62.5% [51.0, 73.1]``; "—" for a missing interval."""
    if iv is None:
        return DASH
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{iv['estimate'] * scale:{spec}}{unit} [{iv['low'] * scale:{spec}}, {iv['high'] * scale:{spec}}]"


def fmt_win_rate(iv: dict | None) -> str:
    return fmt_interval(iv, 100, 1, "%")


def fmt_points(iv: dict | None) -> str:
    """A difference of win rates in percentage points, signed: ``+8.0 pp [+1.2, +14.9]``."""
    return fmt_interval(iv, 100, 1, " pp", signed=True)


def fmt_number(x: float | None, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    return DASH if x is None else f"{x * scale:.{digits}f}{unit}"


def fmt_p(p: float | None) -> str:
    return DASH if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def p_clause(name: str, p: float | None) -> str:
    """``p_holm = 0.012`` or ``p_holm < 0.001``."""
    text = fmt_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def _cell(text: Any) -> str:
    """A pipe inside a cell would split it; other Markdown in cells (bold verdicts) is intended."""
    return str(text).replace("|", r"\|")


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A pipe table; columns from ``numeric_from`` on are right-aligned so digits line up."""
    align = ["---" if i < numeric_from else "--:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(_cell(c) if line is not align else c for c in line) + " |"
                     for line in lines) + "\n"


def _verdict(win_rate: dict) -> str | None:
    """"better"/"worse" when the interval excludes 50%, else None."""
    if win_rate["low"] > 0.5:
        return "better"
    if win_rate["high"] < 0.5:
        return "worse"
    return None


def _setup(s: dict) -> str:
    """The system's hyperparameters, led by its objective when the name does not already say it."""
    params = ", ".join(f"{k}={v}" for k, v in (s.get("params") or {}).items())
    objective = s.get("objective")
    return " ".join(p for p in (objective if objective and objective != s["name"] else "", params) if p) or DASH


def _ranked(systems: list[dict]) -> list[dict]:
    return sorted(systems, key=lambda s: (-s["win_rate"]["estimate"], s["name"]))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------- the reading


def _correction(results: dict) -> str:
    return str(results.get("correction") or "holm")


def _significant(c: dict, results: dict) -> bool:
    """The comparison's own flag; without one, adjusted p below 1 − confidence."""
    if c.get("significant") is not None:
        return bool(c["significant"])
    p = c.get(f"p_{_correction(results)}")
    return p is not None and p < 1 - results.get("confidence", 0.95)


def pairwise_reading(results: dict) -> str:
    """Which paired differences survive the correction, winner first; the rest are only counted,
    because naming a difference that is within noise invites reading it as a result."""
    comparisons = results.get("comparisons") or []
    correction = _correction(results).capitalize()
    if not comparisons:
        return "No pairwise comparisons between systems were computed."
    real = [c for c in comparisons if _significant(c, results)]
    if not real:
        widest = max((c["diff"]["high"] - c["diff"]["low"]) * 50 for c in comparisons)
        mdes = sorted({f"{100 * c['mde']:.1f}" for c in comparisons if c.get("mde") is not None}, key=float)
        power = (f" With {results.get('n_prompts', DASH)} prompts a true difference had to be about "
                 f"{'–'.join(dict.fromkeys([mdes[0], mdes[-1]]))} points (depending on the pair) to be detected with "
                 "80% power after the correction." if mdes else "")
        return (f"None of the {len(comparisons)} pairwise differences survives {correction} correction, so this "
                f"run cannot tell these systems apart (intervals are up to ±{widest:.1f} percentage points wide)."
                + power)
    p_name = f"p_{_correction(results)}"
    phrases = []
    for c in real:
        a, b, d = c["a"], c["b"], c["diff"]
        if d["estimate"] < 0:  # say it as "winner beats loser by a positive amount"
            a, b, d = b, a, {"estimate": -d["estimate"], "low": -d["high"], "high": -d["low"]}
        phrases.append(f"{a} beats {b} by {fmt_points(d)} ({p_clause(p_name, c.get(p_name))})")
    rest = len(comparisons) - len(real)
    tail = f"; the other {rest} difference{'s do' if rest != 1 else ' does'} not" if rest else ""
    return (f"{len(real)} of {len(comparisons)} pairwise differences survive{'s' * (len(real) == 1)} "
            f"{correction} correction: {'; '.join(phrases)}{tail}.")


def plain_reading(results: dict) -> str:
    """One paragraph: who beats the reference (interval excludes 50%), who loses to it, who is
    indistinguishable, then which pairwise differences are real."""
    conf = f"{results.get('confidence', 0.95):.0%}"
    groups: dict[str | None, list[str]] = {"better": [], "worse": [], None: []}
    for s in _ranked(results["systems"]):
        groups[_verdict(s["win_rate"])].append(f"{s['name']} ({fmt_win_rate(s['win_rate'])})")
    n = len(results["systems"])
    baseline = _baseline_phrase(results)
    sentences = []
    if groups["better"]:
        sentences.append(f"{len(groups['better'])} of {n} systems beat {baseline} significantly, their "
                         f"{conf} interval of the win rate excluding 50%: {_join(groups['better'])}.")
    elif groups["worse"]:
        sentences.append(f"No system beats {baseline} significantly (no win-rate interval lies above 50%).")
    else:
        sentences.append(f"No system differs significantly from {baseline}: every {conf} interval of "
                         "the win rate includes 50%.")
    if groups["worse"]:
        sentences.append(f"Worse than {baseline}: {_join(groups['worse'])}.")
    if groups[None] and (groups["better"] or groups["worse"]):
        sentences.append(f"Indistinguishable from it: {_join(groups[None])}.")
    sentences.append(f"These are per-system {conf} intervals, not adjusted for multiplicity.")
    sentences.append(pairwise_reading(results))
    consistency = ((results.get("judge") or {}).get("diagnostics") or {}).get("position_consistency")
    if consistency is not None and consistency < LOW_CONSISTENCY:
        sentences.append(f"Caution: the judge gave the same verdict in both orders for only {consistency:.0%} of the "
                         "pairs it was asked about; the rest count as ties, which pulls every win rate toward 50% "
                         "and hides differences. A stronger judge would tell more.")
    return " ".join(sentences)


def _baseline_phrase(results: dict) -> str:
    name = results.get("baseline", "reference")
    return {"reference": "the reference model", "gold": "the gold responses"}.get(name, f"the {name} baseline")


# ---------------------------------------------------------------- report sections


def _seed_list(s: dict) -> str:
    return ", ".join(str(k) for k in s.get("seeds") or []) or DASH


def _seeds(systems: list[dict]) -> str:
    """One list when every system used the same seeds, else per system."""
    seeds = {s["name"]: _seed_list(s) for s in systems}
    if len(set(seeds.values())) == 1:
        return next(iter(seeds.values()))
    return "; ".join(f"{name}: {v}" for name, v in seeds.items())


def _header(results: dict) -> str:
    judge = results.get("judge") or {}
    methods = sorted({s["win_rate"].get("method") for s in results["systems"] if s["win_rate"].get("method")})
    items = [("benchmark", f"{results.get('benchmark', DASH)} (preset {results.get('preset', DASH)})"),
             ("model", results.get("model", DASH) + (f" → SFT stage → `{results['start_model']}` (the reference, and "
                                                     "every objective's starting point)"
                                                     if results.get("start_model") else "")),
             ("judge", f"{judge.get('name', DASH)} ({judge.get('kind', DASH)})"),
             ("baseline", results.get("baseline", "reference")),
             ("eval prompts", results.get("n_prompts", DASH)),
             ("seeds", _seeds(results["systems"])),
             ("intervals", f"{results.get('confidence', 0.95):.0%}" + (f" ({', '.join(methods)})" if methods else "")),
             ("multiple comparisons", _correction(results).capitalize())]
    return "\n".join(f"- **{k}**: {v}" for k, v in items) + "\n"


def _leaderboard(results: dict) -> str:
    baseline = results.get("baseline", "reference")
    header = ["system", "hyperparameters", "seeds", f"win rate vs {baseline} (CI)", "verdict", "W/T/L", "LC win rate",
              "mean score (CI)", "mean length (words)", "robustness drop (CI)", "KL, nats (CI)"]
    rows = []
    ref = results.get("reference") or {}
    gold = any(s.get("vs_gold") for s in [*results["systems"], ref])
    if gold:
        header.insert(4, "win rate vs gold (CI)")
    def cells(s: dict, win_rate: str, kl: str) -> list[str]:
        """From the win rate on; the reference has no verdict or counts against itself."""
        wtl = [s.get(k) for k in ("wins", "ties", "losses")]
        verdict = _verdict(s["win_rate"]) if s.get("win_rate") else None
        return [win_rate, *([_vs_gold(s)] if gold else []),
                f"**{verdict}**" if verdict else "n.s." if s.get("win_rate") else DASH,
                DASH if None in wtl else "/".join(str(v) for v in wtl),
                fmt_number(s.get("lc_win_rate"), 1, 100, "%"), fmt_interval(s.get("mean_score")),
                fmt_number(s.get("mean_length")), fmt_interval((s.get("robustness") or {}).get("drop"), signed=True),
                kl]

    for s in _ranked(results["systems"]):
        rows.append([s["name"], _setup(s), _seed_list(s),
                     *cells(s, fmt_win_rate(s["win_rate"]), fmt_interval(s.get("kl"), digits=2))])
    rows.append([_reference_label(results), "SFT model" if results.get("start_model") else "base model", DASH,
                 *cells(ref, _reference_win_rate(results), "0")])
    return (_table(header, rows, numeric_from=3)
            + f"\n*verdict*: **better**/**worse** than {_baseline_phrase(results)} when the win-rate interval excludes 50%, "
              "*n.s.* when it does not. "
              "Win rate counts ties as half. *Robustness drop*: score on original prompts minus the mean over "
              "variants (positive: less robust). *KL*: KL(policy ‖ reference) per response.\n")


def _vs_gold(s: dict) -> str:
    """Win rate against the gold responses with its interval and W/T/L."""
    g = s.get("vs_gold")
    return f"{fmt_win_rate(g['win_rate'])} ({g['wins']}/{g['ties']}/{g['losses']})" if g else DASH


def _reference_label(results: dict) -> str:
    return "reference (baseline)" if results.get("baseline", "reference") == "reference" else "reference model"


def _reference_win_rate(results: dict) -> str:
    """Against itself the reference wins half by definition; against another baseline (gold
    responses) it has a win rate like every system."""
    if results.get("baseline", "reference") == "reference":
        return "50% by definition"
    rate = (results.get("reference") or {}).get("win_rate")
    return fmt_win_rate(rate) if rate else DASH


def _comparisons(results: dict) -> str:
    c_name = _correction(results)
    rows = [[f"{c['a']} − {c['b']}", fmt_points(c["diff"]), fmt_p(c.get("p")), fmt_p(c.get(f"p_{c_name}")),
             "**yes**" if _significant(c, results) else "no", fmt_number(c.get("mde"), 1, 100, " pp")]
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
            f"from the spread of the per-prompt differences); a smaller real gap can hide behind \"no\".\n")
    return _table(header, rows) + note


def _robustness_table(results: dict) -> str:
    entries = [(s["name"], s.get("robustness")) for s in _ranked(results["systems"])]
    entries.append(("reference", (results.get("reference") or {}).get("robustness")))
    rows = [[name, fmt_interval(rob.get("mean")), fmt_interval(rob.get("drop"), signed=True),
             fmt_interval(rob.get("worst")), fmt_interval(rob.get("spread")),
             fmt_interval(rob.get("flip_rate"), 100, 1, "%")]
            for name, rob in entries if rob]
    header = ["system", "mean score over variants (CI)", "drop (CI)", "worst variant (CI)", "spread (CI)",
              "win/loss flip rate (CI)"]
    return _table(header, rows) if rows else ""


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
    return _table(["diagnostic", "value"], rows) + note


def _timings(results: dict) -> str:
    timings = results.get("timings")
    if not timings:
        return "Timings were not recorded.\n"
    total = timings.get("total")
    rows = [[stage, fmt_number(seconds, 1, unit=" s"),
             fmt_number(seconds / total, 1, 100, "%") if total and seconds is not None and stage != "total" else DASH]
            for stage, seconds in timings.items()]
    return _table(["stage", "wall time", "share of total"], rows)


def _config(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return f"{DASH} ({path} not found)\n"
    text = path.read_text(encoding="utf-8")
    # a fence longer than any backtick run inside keeps the config verbatim
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return (f'<details markdown="1"><summary>config.yaml (exact resolved run config)</summary>\n\n'
            f"{fence}yaml\n{text}{'' if text.endswith(chr(10)) else chr(10)}{fence}\n\n</details>\n")


def _figures(results: dict, run_dir: Path) -> dict[str, str]:
    """Draws every plot the data allows; returns per figure the Markdown that shows it (an image, or
    a note saying why it is absent). Stale files of skipped plots are removed so the folder matches."""
    out = run_dir / "plots"
    systems = results["systems"]
    colours = plots.system_colours([s["name"] for s in systems])
    conf = results.get("confidence", 0.95)
    shown: dict[str, str] = {}

    def show(name: str, alt: str) -> None:
        shown[name] = f"![{alt}](plots/{name}.png)\n"

    def skip(name: str, why: str) -> None:
        (out / f"{name}.png").unlink(missing_ok=True)
        shown[name] = f"*{why}*\n"

    comparisons = results.get("comparisons") or []
    if comparisons:
        p_name = f"p_{_correction(results)}"
        plots.forest_plot([f"{c['a']} − {c['b']}" for c in comparisons], [c["diff"] for c in comparisons],
                          [_significant(c, results) for c in comparisons],
                          [p_clause(p_name, c.get(p_name)) for c in comparisons],
                          _correction(results).capitalize(), conf, out / "forest.png")
        show("forest", "Forest plot of paired differences in win rate")
    else:
        skip("forest", "No pairwise comparisons to plot.")
    baseline = results.get("baseline", "reference")
    ref = results.get("reference") or {}
    bars = systems + ([{"name": "reference", **ref}] if ref.get("win_rate") else [])
    plots.win_rate_bars(bars, colours, conf, out / "win_rate.png", baseline)
    show("win_rate", f"Win rate vs {baseline} per system")

    metrics, missing = training_metrics(run_dir, systems)
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
            shown["reward_kl"] += f"\nNo KL estimate or mean score for {_join(absent)} (not plotted).\n"
    else:
        skip("reward_kl", "Reward-vs-KL plot skipped: no system has both a KL estimate and a mean score "
                          "in results.json.")
    return shown


def _title(results: dict) -> str:
    return f"prefbench report: {results.get('benchmark', DASH)}, {results.get('model', DASH)}"


def report_markdown(results: dict, run_dir: Path) -> str:
    """The whole report as Markdown (drawing the plots it shows into ``run_dir/plots``)."""
    fig = _figures(results, run_dir)
    parts = [f"# {_title(results)}\n", _header(results),
             "## Reading\n", plain_reading(results) + "\n",
             "## Leaderboard\n", _leaderboard(results),
             "## Paired differences\n", fig["forest"], _comparisons(results),
             f"## Win rate vs {results.get('baseline', 'reference')}\n", fig["win_rate"],
             "## Training\n", fig["training"],
             "## Instruction robustness\n", fig["robustness"], _robustness_table(results),
             "## Reward vs KL\n", fig["reward_kl"],
             "## Judge diagnostics\n", _judge(results),
             "## Timings\n", _timings(results),
             "## Config\n", _config(run_dir)]
    return "\n".join(parts)


def markdown_to_html(text: str, base_dir: Path, title: str) -> str:
    """Convert the report Markdown to one standalone HTML page: local ``plots/*.png`` become base64
    data URIs, styling is inline, and nothing is fetched from anywhere."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "md_in_html"])

    def inline(m: re.Match) -> str:
        data = base64.b64encode((base_dir / m.group(1)).read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(plots/[^"/]+\.png)"', inline, body)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``plots/*.png``, ``report.md`` and ``report.html`` into the run directory; returns the
    paths of the Markdown and HTML reports."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    text = report_markdown(results, run_dir)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    atomic_write_text(md_path, text)
    atomic_write_text(html_path, markdown_to_html(text, run_dir, _title(results)))
    return md_path, html_path


# ---------------------------------------------------------------- several runs


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
    about = _table(["run", "benchmark", "preset", "model", "judge", "baseline", "seeds", "eval prompts"],
                   [[label, r.get("benchmark", DASH), r.get("preset", DASH), r.get("model", DASH),
                     (r.get("judge") or {}).get("name", DASH), r.get("baseline", "reference"), _seeds(r["systems"]),
                     str(r.get("n_prompts", DASH))]
                    for label, r in runs.items()], numeric_from=7)
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
            row += [f"**{rate}**" if _verdict(s["win_rate"]) else rate, fmt_interval(s.get("mean_score"))]
        rows.append(row)
    rows.append(["reference model"] + [c for r in runs.values()
                                       for c in (_reference_win_rate(r),
                                                 fmt_interval((r.get("reference") or {}).get("mean_score")))])
    findings = "\n".join(f"- **{label}**: {pairwise_reading(r)}" for label, r in runs.items())
    return "\n".join(["# prefbench: runs compared\n", "## Runs\n", about,
                      "## Win rate and mean score\n", _table(header, rows),
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
