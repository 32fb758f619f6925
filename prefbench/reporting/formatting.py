"""Numbers and tables as the report prints them, and the small judgements every section shares
(which systems differ from the baseline, which comparisons survive the correction)."""

from __future__ import annotations

from typing import Any

DASH = "—"

# Intervals that no bootstrap produced, and when: results.json's Interval.method -> what the report adds to it.
METHOD_WHEN = {"Clopper-Pearson": "where every prompt gave the same outcome, an exact bound on the share of prompts "
                                  "that could differ",
               "degenerate": "where every prompt gave the same value, zero width"}


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


def fmt_mde(entry: dict, unit: str = " pp") -> str:
    """A comparison's detectable difference, ``4.6 pp``; ``not estimable (why)`` when results.json could not
    give one (e.g. no spread in the per-prompt differences); "—" when the field is absent."""
    if "mde" not in entry:
        return DASH
    if entry["mde"] is None:
        return "not estimable" + (f" ({entry['mde_note']})" if entry.get("mde_note") else "")
    return fmt_number(entry["mde"], 1, 100, unit)


def interval_methods(results: dict) -> list[str]:
    """The methods behind the win-rate and difference intervals, as results.json names them."""
    intervals = ([s["win_rate"] for s in results["systems"]] + [c["diff"] for c in results.get("comparisons") or []]
                 + [h["win_rate"] for h in results.get("head_to_head") or []])
    return sorted({iv["method"] for iv in intervals if iv.get("method")})


def methods_explained(methods: list[str]) -> str:
    """``BCa; Clopper-Pearson where every prompt gave the same outcome, ...``: each method that is not a
    bootstrap with when it was used."""
    return "; ".join(f"{m} {METHOD_WHEN[m]}" if m in METHOD_WHEN else m for m in methods)


def fmt_p(p: float | None) -> str:
    return DASH if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def p_clause(name: str, p: float | None) -> str:
    """``p_holm = 0.012`` or ``p_holm < 0.001``."""
    text = fmt_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def cell(text: Any) -> str:
    """A pipe inside a cell would split it; other Markdown in cells (bold verdicts) is intended."""
    return str(text).replace("|", r"\|")


def table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A pipe table; columns from ``numeric_from`` on are right-aligned so digits line up."""
    align = ["---" if i < numeric_from else "--:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cell(c) if line is not align else c for c in line) + " |"
                     for line in lines) + "\n"


def verdict(win_rate: dict) -> str | None:
    """"better"/"worse" when the interval excludes 50%, else None."""
    if win_rate["low"] > 0.5:
        return "better"
    if win_rate["high"] < 0.5:
        return "worse"
    return None


def ranked(systems: list[dict]) -> list[dict]:
    return sorted(systems, key=lambda s: (-s["win_rate"]["estimate"], s["name"]))


def join_names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def correction(results: dict) -> str:
    return str(results.get("correction") or "holm")


def significant(c: dict, results: dict) -> bool:
    """The comparison's own flag; without one, adjusted p below 1 − confidence."""
    if c.get("significant") is not None:
        return bool(c["significant"])
    p = c.get(f"p_{correction(results)}")
    return p is not None and p < 1 - results.get("confidence", 0.95)


def baseline_phrase(results: dict) -> str:
    name = results.get("baseline", "reference")
    return {"reference": "the reference model", "gold": "the gold responses"}.get(name, f"the {name} baseline")


def seed_list(s: dict) -> str:
    return ", ".join(str(k) for k in s.get("seeds") or []) or DASH


def seeds_text(systems: list[dict]) -> str:
    """One list when every system used the same seeds, else per system."""
    seeds = {s["name"]: seed_list(s) for s in systems}
    if len(set(seeds.values())) == 1:
        return next(iter(seeds.values()))
    return "; ".join(f"{name}: {v}" for name, v in seeds.items())


def reference_win_rate(results: dict) -> str:
    """Against itself the reference wins half by definition; against another baseline (gold
    responses) it has a win rate like every system."""
    if results.get("baseline", "reference") == "reference":
        return "50% by definition"
    rate = (results.get("reference") or {}).get("win_rate")
    return fmt_win_rate(rate) if rate else DASH
