"""The leaderboard: one list of rows (systems ranked by win rate, then the reference), rendered for
the report (Markdown), for spreadsheets (``leaderboard.csv``) and for the terminal."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from prefbench.reporting.formatting import (
    DASH,
    baseline_phrase,
    fmt_interval,
    fmt_mde,
    fmt_number,
    fmt_win_rate,
    ranked,
    reference_win_rate,
    seed_list,
    table,
    verdict,
)


@dataclass(frozen=True)
class Row:
    """One line of the leaderboard: a system's results.json entry, or the reference model's."""

    entry: dict
    is_reference: bool

    @property
    def name(self) -> str:
        return "reference" if self.is_reference else self.entry["name"]

    @property
    def win_rate(self) -> dict | None:
        """None for the reference judged against itself (it has no win rate then)."""
        return self.entry.get("win_rate")

    @property
    def wtl(self) -> tuple[int, int, int] | None:
        counts = tuple(self.entry.get(k) for k in ("wins", "ties", "losses"))
        return None if None in counts else counts

    def estimate(self, key: str) -> float | None:
        """The point estimate of an interval field (``mean_score``, ``kl``), None when absent."""
        value = self.entry.get(key)
        return value["estimate"] if value else None

    @property
    def drop(self) -> dict | None:
        return (self.entry.get("robustness") or {}).get("drop")

    @property
    def kl(self) -> float | None:
        """The reference is its own reference: KL 0."""
        return 0.0 if self.is_reference else self.estimate("kl")


def leaderboard_rows(results: dict) -> list[Row]:
    """Systems by win rate (ties by name), then the reference."""
    return [Row(s, False) for s in ranked(results["systems"])] + [Row(results.get("reference") or {}, True)]


def leaderboard_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["system", "win_rate", "win_low", "win_high", "wins", "ties", "losses", "lc_win_rate", "mean_score",
                "mean_length", "robustness_drop", "kl", "gaming_rate"])
    for row in leaderboard_rows(results):
        rate = row.win_rate
        w.writerow([row.name, *(round(rate[k], 4) if rate else "" for k in ("estimate", "low", "high")),
                    *(row.wtl or ("", "", "")), _rounded(row.entry.get("lc_win_rate")),
                    _rounded(row.estimate("mean_score")), round(row.entry["mean_length"], 2),
                    _rounded(row.drop and row.drop["estimate"]), _rounded(row.kl), _rounded(row.estimate("gaming_rate"))])
    return buf.getvalue()


def _rounded(x: float | None) -> object:
    return "" if x is None else round(x, 4)


def leaderboard_text(results: dict) -> str:
    """The leaderboard for the terminal, and the pairwise differences that survive the correction."""
    against = f"win rate vs {results.get('baseline', 'reference')} (95% CI)"
    gaming = any(row.estimate("gaming_rate") is not None for row in leaderboard_rows(results))
    lines = [f"{'system':<10}{against:>34}{'W/T/L':>12}{'score':>8}{'words':>7}{'drop':>8}{'KL':>7}"
             + (f"{'gaming':>8}" if gaming else "")]
    for row in leaderboard_rows(results):
        w = row.win_rate
        ci = f"{100 * w['estimate']:.1f}% [{100 * w['low']:.1f}, {100 * w['high']:.1f}]" if w else "(baseline)"
        wtl = f"{row.wtl[0]:>5}/{row.wtl[1]}/{row.wtl[2]:<4}" if w and row.wtl else ""
        score = f"{row.estimate('mean_score'):.3f}" if row.estimate("mean_score") is not None else DASH
        drop = f"{row.drop['estimate']:+.3f}" if row.drop else DASH
        kl = DASH if row.kl is None else "0" if row.is_reference else f"{row.kl:.2f}"
        rate = row.estimate("gaming_rate")
        lines.append(f"{row.name:<10}{ci:>34}{wtl:>12}{score:>8}{row.entry['mean_length']:>7.1f}{drop:>8}{kl:>7}"
                     + (f"{fmt_number(rate, 1, 100, '%'):>8}" if gaming else ""))
    sig = [c for c in results["comparisons"] if c["significant"]]
    lines.append("")
    lines.append("pairwise differences significant after Holm correction: " +
                 (", ".join(f"{c['a']} − {c['b']} = {100 * c['diff']['estimate']:+.1f} pts (p_holm={c['p_holm']:.3f})"
                            for c in sig) if sig else "none"))
    for h in results.get("head_to_head") or []:
        w = h["win_rate"]
        lines.append(f"head to head {h['a']} vs {h['b']}: {h['a']} wins {100 * w['estimate']:.1f}% "
                     f"[{100 * w['low']:.1f}, {100 * w['high']:.1f}] (W/T/L {h['wins']}/{h['ties']}/{h['losses']}, "
                     f"p_holm={h['p_holm']:.3f}" + (f", detectable difference {fmt_mde(h, ' pts')}" if "mde" in h
                                                     else "") + ")")
    return "\n".join(lines)


def families(results: dict) -> dict[str, list[dict]]:
    """The systems of each objective family, ranked, families ordered by their best system; empty when the run
    compares objectives of one family only (or its results predate families)."""
    groups: dict[str, list[dict]] = {}
    for s in ranked(results["systems"]):
        groups.setdefault(s.get("family") or "", []).append(s)
    return {} if len(groups) < 2 or "" in groups else groups


def families_markdown(results: dict) -> str:
    """One row per family: its systems from best to worst win rate, and its best one's win rate."""
    rows = [[family, ", ".join(s["name"] for s in members), fmt_win_rate(members[0]["win_rate"]),
             verdict(members[0]["win_rate"]) or "n.s."] for family, members in families(results).items()]
    baseline = results.get("baseline", "reference")
    return table(["family", "systems (best first)", f"best win rate vs {baseline} (CI)", "verdict"], rows, numeric_from=2)


def leaderboard_markdown(results: dict) -> str:
    baseline = results.get("baseline", "reference")
    header = ["system", "hyperparameters", "seeds", f"win rate vs {baseline} (CI)", "verdict", "W/T/L", "LC win rate",
              "mean score (CI)", "mean length (words)", "robustness drop (CI)", "KL, nats (CI)"]
    rows = leaderboard_rows(results)
    gold = any(row.entry.get("vs_gold") for row in rows)
    if gold:
        header.insert(4, "win rate vs gold (CI)")
    gaming = any(row.entry.get("gaming_rate") for row in rows)
    if gaming:
        header.append("gaming rate (CI)")
    lines = []
    for row in rows:
        s = row.entry
        if row.is_reference:
            lead = [_reference_label(results), "SFT model" if results.get("start_model") else "base model", DASH,
                    reference_win_rate(results)]
        else:
            lead = [s["name"], _setup_text(s), seed_list(s), fmt_win_rate(s["win_rate"])]
        judged = verdict(row.win_rate) if row.win_rate else None
        lines.append([*lead, *([_vs_gold_text(s)] if gold else []),
                      f"**{judged}**" if judged else "n.s." if row.win_rate else DASH,
                      DASH if row.wtl is None else "/".join(str(v) for v in row.wtl),
                      fmt_number(s.get("lc_win_rate"), 1, 100, "%"), fmt_interval(s.get("mean_score")),
                      fmt_number(s.get("mean_length")), fmt_interval(row.drop, signed=True),
                      "0" if row.is_reference else fmt_interval(s.get("kl"), digits=2),
                      *([fmt_interval(s.get("gaming_rate"), 100, 1, "%")] if gaming else [])])
    return (table(header, lines, numeric_from=3)
            + f"\n*verdict*: **better**/**worse** than {baseline_phrase(results)} when the win-rate interval excludes 50%, "
              "*n.s.* when it does not. "
              "Win rate counts ties as half. *Robustness drop*: score on original prompts minus the mean over "
              "variants (positive: less robust). *KL*: KL(policy ‖ reference) per response."
            + (" *Gaming rate*: share of answers that satisfy the task's scorer without answering (keyword dumps, "
               "minimal answers, restated instructions, repeated lines, lexicon stuffing), which the gold score "
               "discounts to a quarter; a rising rate means an objective learned to game the scorer."
               if gaming else "") + "\n")


def _setup_text(s: dict) -> str:
    """The system's hyperparameters, led by its objective when the name does not already say it."""
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"   # rounds=2, not rounds=2.0
                       for k, v in (s.get("params") or {}).items())
    objective = s.get("objective")
    return " ".join(p for p in (objective if objective and objective != s["name"] else "", params) if p) or DASH


def _vs_gold_text(s: dict) -> str:
    """Win rate against the gold responses with its interval and W/T/L."""
    g = s.get("vs_gold")
    return f"{fmt_win_rate(g['win_rate'])} ({g['wins']}/{g['ties']}/{g['losses']})" if g else DASH


def _reference_label(results: dict) -> str:
    return "reference (baseline)" if results.get("baseline", "reference") == "reference" else "reference model"
