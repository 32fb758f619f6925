"""The report's plain-language reading: who beats the baseline (interval excludes 50%), who loses to
it, who is indistinguishable, and which pairwise differences survive the multiplicity correction."""

from __future__ import annotations

from prefbench.reporting.formatting import (
    DASH,
    baseline_phrase,
    correction,
    fmt_mde,
    fmt_points,
    fmt_win_rate,
    join_names,
    p_clause,
    ranked,
    significant,
    verdict,
)

# Below this share of order-consistent pairwise verdicts, most outcomes are ties and the reading says so.
LOW_CONSISTENCY = 0.5


def pairwise_reading(results: dict) -> str:
    """Which paired differences survive the correction, winner first; the rest are only counted,
    because naming a difference that is within noise invites reading it as a result."""
    comparisons = results.get("comparisons") or []
    method = correction(results).capitalize()
    if not comparisons:
        return "No pairwise comparisons between systems were computed."
    real = [c for c in comparisons if significant(c, results)]
    if not real:
        widest = max((c["diff"]["high"] - c["diff"]["low"]) * 50 for c in comparisons)
        mdes = sorted({f"{100 * c['mde']:.1f}" for c in comparisons if c.get("mde") is not None}, key=float)
        power = (f" With {results.get('n_prompts', DASH)} prompts a true difference had to be about "
                 f"{'–'.join(dict.fromkeys([mdes[0], mdes[-1]]))} points"
                 f"{' (depending on the pair)' if len(comparisons) > 1 else ''} to be detected with "
                 "80% power after the correction." if mdes else "")
        which = "The pairwise difference does not survive" if len(comparisons) == 1 else \
            f"None of the {len(comparisons)} pairwise differences survives"
        return (f"{which} {method} correction, so this "
                f"run cannot tell these systems apart (intervals are up to ±{widest:.1f} percentage points wide)."
                + power + _not_estimable(comparisons, "−"))
    p_name = f"p_{correction(results)}"
    phrases = []
    for c in real:
        a, b, d = c["a"], c["b"], c["diff"]
        if d["estimate"] < 0:  # say it as "winner beats loser by a positive amount"
            a, b, d = b, a, {"estimate": -d["estimate"], "low": -d["high"], "high": -d["low"]}
        phrases.append(f"{a} beats {b} by {fmt_points(d)} ({p_clause(p_name, c.get(p_name))})")
    rest = len(comparisons) - len(real)
    tail = f"; the other {rest} difference{'s do' if rest != 1 else ' does'} not" if rest else ""
    return (f"{len(real)} of {len(comparisons)} pairwise differences survive{'s' * (len(real) == 1)} "
            f"{method} correction: {'; '.join(phrases)}{tail}.")


def head_to_head_reading(results: dict) -> str:
    """The direct comparisons (one answer against the other, by gold score) that differ from 50% after the
    correction, and the detectable differences of those that do not."""
    entries = results.get("head_to_head") or []
    if not entries:
        return ""
    method = correction(results).capitalize()
    p_name = f"p_{correction(results)}"
    real = [h for h in entries if significant(h, results)]
    phrases = []
    for h in real:
        a, b, w = h["a"], h["b"], h["win_rate"]
        if w["estimate"] < 0.5:
            a, b, w = b, a, {"estimate": 1 - w["estimate"], "low": 1 - w["high"], "high": 1 - w["low"]}
        phrases.append(f"{a} beats {b} on {fmt_win_rate(w)} of prompts ({p_clause(p_name, h.get(p_name))})")
    mdes = sorted(100 * h["mde"] for h in entries if h not in real and h.get("mde") is not None)
    detectable = (f" (detectable differences {mdes[0]:.1f}–{mdes[-1]:.1f} points)" if len(mdes) > 1 else
                  f" (detectable difference {mdes[0]:.1f} points)" if mdes else "")
    rest = len(entries) - len(real)
    unknown = _not_estimable([h for h in entries if h not in real], "vs")
    if not real:
        which = "the pair does not differ" if len(entries) == 1 else f"none of the {len(entries)} pairs differs"
        return (f"Head to head (each prompt's two answers compared directly), {which} from 50% after {method} "
                f"correction{detectable}.{unknown}")
    tail = f"; the other {rest} do{'es' * (rest == 1)} not{detectable}" if rest else ""
    return (f"Head to head (each prompt's two answers compared directly), {len(real)} of {len(entries)} pairs "
            f"differ{'s' * (len(real) == 1)} from 50% after {method} correction: {'; '.join(phrases)}{tail}.{unknown}")


def _not_estimable(entries: list[dict], between: str) -> str:
    """A sentence naming the comparisons without a detectable difference, and why (so a missing number is
    not read as a small one)."""
    unknown = [e for e in entries if "mde" in e and e["mde"] is None]
    return (" Detectable difference of " + "; of ".join(f"{e['a']} {between} {e['b']}: {fmt_mde(e)}" for e in unknown)
            + "." if unknown else "")


def sweep_reading(sweep: dict) -> str:
    """Which settings the sweep chose, and what the matched-KL comparison says."""
    chosen = []
    for name, entry in sweep["objectives"].items():
        point = next(p for p in entry["points"] if p["chosen"])
        settings = ", ".join([f"{k} {v:g}" for k, v in point["params"].items()] + [f"lr {point['lr']:g}"])
        chosen.append(f"{name} at {settings} (of {len(entry['points'])} points; KL {point['kl']['estimate']:.2f} "
                      "nats on the validation prompts)")
    text = (f"Each objective was tuned on {sweep['validation_prompts']} validation prompts apart from the eval "
            f"prompts: {join_names(chosen)}.")
    matched = sweep.get("matched_kl") or {}
    if matched.get("differences"):
        real = [d for d in matched["differences"] if d["p_holm"] < 1 - matched["confidence"]]
        text += (f" At matched KL ({matched['kl']:.2f} nats) on the validation prompts, "
                 + ("; ".join(f"{d['a']} − {d['b']} = {fmt_points(d['diff'])}" for d in real)
                    + " after Holm correction." if real else
                    "no frontier differs from another after Holm correction."))
    return text


def plain_reading(results: dict) -> str:
    """One paragraph: who beats the reference (interval excludes 50%), who loses to it, who is
    indistinguishable, then which pairwise differences are real."""
    conf = f"{results.get('confidence', 0.95):.0%}"
    groups: dict[str | None, list[str]] = {"better": [], "worse": [], None: []}
    for s in ranked(results["systems"]):
        groups[verdict(s["win_rate"])].append(f"{s['name']} ({fmt_win_rate(s['win_rate'])})")
    n = len(results["systems"])
    baseline = baseline_phrase(results)
    sentences = []
    if groups["better"]:
        sentences.append(f"{len(groups['better'])} of {n} systems beat {baseline} significantly, their "
                         f"{conf} interval of the win rate excluding 50%: {join_names(groups['better'])}.")
    elif groups["worse"]:
        sentences.append(f"No system beats {baseline} significantly (no win-rate interval lies above 50%).")
    else:
        sentences.append(f"No system differs significantly from {baseline}: every {conf} interval of "
                         "the win rate includes 50%.")
    if groups["worse"]:
        sentences.append(f"Worse than {baseline}: {join_names(groups['worse'])}.")
    if groups[None] and (groups["better"] or groups["worse"]):
        sentences.append(f"Indistinguishable from it: {join_names(groups[None])}.")
    sentences.append(f"These are per-system {conf} intervals, not adjusted for multiplicity.")
    sentences.append(pairwise_reading(results))
    if results.get("head_to_head"):
        sentences.append(head_to_head_reading(results))
    if results.get("sweep"):
        sentences.append(sweep_reading(results["sweep"]))
    consistency = ((results.get("judge") or {}).get("diagnostics") or {}).get("position_consistency")
    if consistency is not None and consistency < LOW_CONSISTENCY:
        sentences.append(f"Caution: the judge gave the same verdict in both orders for only {consistency:.0%} of the "
                         "pairs it was asked about; the rest count as ties, which pulls every win rate toward 50% "
                         "and hides differences. A stronger judge would tell more.")
    return " ".join(sentences)
