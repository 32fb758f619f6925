"""The objective reference, generated from the registry so it cannot drift from the code: the table
``prefbench objectives`` prints, and the Markdown page ``docs/objectives.md`` holds."""

from __future__ import annotations

import inspect

from prefbench.registry.objective import FAMILIES, Objective, list_objectives

# What the engine computes for an objective that declares each of TOKEN_STATISTICS, and what it costs.
_TOKEN_LEVEL = {
    "token_logps": "Token-level: reads each span token's log-prob (policy and reference), not only their sums; the "
                   "reference's are cached with its sums.",
    "sequence_kl": "Token-level: reads each response's sequential KL, Σ_t KL(π_ref(·|y<t) ‖ π_θ(·|y<t)) over the "
                   "full vocabulary, which the cached reference cannot give: every forward adds a gradient-free "
                   "forward of the base model (adapter disabled) on the same batch.",
    "pair_scores": "Scored pairs: reads each response's score from the data (`score_chosen`/`score_rejected`, a "
                   "judge's or a reward model's; `prefbench run`'s on-policy pairs carry the gold judge's), and "
                   "refuses data whose pairs lack them before training starts.",
}


def _defaults(obj: Objective) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in obj.defaults.items()) or "-"


def objectives_table() -> str:
    rows = [("name", "family", "data", "span", "reference", "+NLL", "defaults", "source", "paper")]
    for obj in list_objectives():
        rows.append((obj.name, obj.family, obj.data, obj.span, "yes" if obj.needs_reference else "no",
                     "yes" if obj.adds_nll else "no", _defaults(obj), obj.source, obj.paper or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def objectives_markdown() -> str:
    """One section per objective: what it declares, its parameters with their ranges, its paper and
    its docstring (formula, choices, defaults)."""
    objectives = [o for o in list_objectives() if o.source == "built-in"]
    lines = ["# Objectives", "",
             "Generated from the registry by `prefbench objectives --markdown`; a test keeps this page equal to it.", "",
             "| name | family | data | span | reference | +NLL | defaults | paper |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| [`{o.name}`](#{o.name}) | {o.family} | {o.data} | {o.span} | {'yes' if o.needs_reference else 'no'} | "
              f"{'yes' if o.adds_nll else 'no'} | {_defaults(o)} | {o.paper} |" for o in objectives]
    lines += ["", "Families: " + "; ".join(f"**{k}**: {v}" for k, v in FAMILIES.items() if k != "other") + "."]
    for o in objectives:
        lines += ["", f"## {o.name}", ""]
        if o.aliases:
            lines += [f"Aliases: {', '.join(f'`{a}`' for a in o.aliases)}.", ""]
        if o.paper:
            lines += [f"Paper: {o.paper}.", ""]
        if o.batch_level:
            lines += ["Batch-level: a pair's loss depends on the other pairs of its micro-batch, which the engine "
                      "therefore passes in one forward (so results depend on the micro-batch size).", ""]
        if o.data == "unpaired":
            lines += [("Unpaired: trains on single responses labelled desirable or undesirable; paired data is split "
                       "into examples (each pair's chosen response desirable, its rejected one undesirable)."), ""]
        if o.statistics:
            lines += [_TOKEN_LEVEL[s] for s in o.statistics] + [""]
        if o.params:
            lines += ["| parameter | default | valid | meaning |", "|---|---|---|---|"]
            lines += [f"| `{k}` | {p.default:g} | {p.range_text()} | {p.doc} |" for k, p in o.params.items()]
            lines.append("")
        lines.append(inspect.cleandoc(o.fn.__doc__ or ""))
    return "\n".join(lines) + "\n"
