"""A finished run's ``results.json`` as typed Python objects: what ``prefbench.load_results`` and ``prefbench.run``
return. The file is read and checked by :func:`prefbench.reporting.load.load_results`; this module only gives its
fields names and types (the JSON Schema, ``results.schema.json``, describes each one). Fields a reader does not know
are ignored, as the schema asks; the whole file stays at hand as ``Results.raw``.

Nothing here imports more than the standard library, so ``import prefbench`` stays as light as the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (at ``Results.confidence``)."""

    estimate: float
    low: float
    high: float
    method: str | None = None    # BCa, percentile, Clopper-Pearson, ... (results.json names it)

    def excludes(self, value: float) -> bool:
        """Whether ``value`` lies outside the interval: a win rate whose interval excludes 0.5 differs from the
        baseline, a difference whose interval excludes 0 is non-zero (before any multiplicity correction)."""
        return value < self.low or value > self.high

    def negated(self) -> Interval:
        """The interval of minus this quantity (a difference read the other way round)."""
        return Interval(-self.estimate, -self.high, -self.low, self.method)


@dataclass(frozen=True)
class Outcomes:
    """Win rate and wins/ties/losses against the gold responses."""

    win_rate: Interval
    wins: int
    ties: int
    losses: int


@dataclass(frozen=True)
class Robustness:
    """Scores on the reworded prompts (typo, paraphrase, distractor, ...) against the original ones."""

    mean: Interval | None
    drop: Interval | None          # original score minus the variants' mean
    worst: Interval | None
    spread: Interval | None
    flip_rate: Interval | None     # share of variants whose outcome differs from the original's
    per_variant: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Training:
    """One seed of a system: where its metrics are and what it trained on."""

    seed: int
    metrics: Path                  # its metrics.jsonl
    pair_kinds: str | None = None  # all | conditional | joint
    pairs: int | None = None
    pairs_by_kind: dict[str, int] = field(default_factory=dict)   # {"conditional": n, "joint": m}
    steps: int | None = None
    tokens_seen: int | None = None
    lr: float | None = None


@dataclass(frozen=True)
class SystemResult:
    """One objective, all its seeds together: its win rate against the baseline and everything else measured."""

    name: str
    objective: str
    family: str | None
    params: dict[str, float]
    seeds: tuple[int, ...]
    win_rate: Interval
    wins: int
    ties: int
    losses: int
    lc_win_rate: float | None      # length-controlled (None when length cannot be separated out)
    mean_score: Interval | None    # pointwise judges only
    mean_length: float             # words
    robustness: Robustness | None
    kl: Interval | None            # KL(policy || reference), sampled
    vs_gold: Outcomes | None
    truncated: float | None        # share of answers cut at the generation limit
    gaming_rate: Interval | None   # share of answers that game the task's scorer; None without a detector
    training: tuple[Training, ...]


@dataclass(frozen=True)
class Comparison:
    """Objective ``a`` against objective ``b`` on the same prompts: the difference of their win rates."""

    a: str
    b: str
    diff: Interval                 # win rate of a minus win rate of b
    p: float
    p_holm: float                  # adjusted for every comparison of the run
    significant: bool              # p_holm below 1 - confidence
    mde: float | None              # the smallest difference this run could detect (power 0.8)

    def reversed(self) -> Comparison:
        return Comparison(self.b, self.a, self.diff.negated(), self.p, self.p_holm, self.significant, self.mde)


@dataclass(frozen=True)
class HeadToHead:
    """Pointwise judges: ``a``'s answer against ``b``'s on each prompt by their scores (a tie counts half)."""

    a: str
    b: str
    win_rate: Interval
    wins: int
    ties: int
    losses: int
    p: float
    p_holm: float
    significant: bool
    mde: float | None


@dataclass(frozen=True)
class Reference:
    """The reference model (no adapter). Against itself (baseline ``reference``) it has no win rate."""

    mean_length: float
    mean_score: Interval | None
    robustness: Robustness | None
    vs_gold: Outcomes | None
    truncated: float | None
    gaming_rate: Interval | None
    win_rate: Interval | None


@dataclass(frozen=True)
class Judge:
    name: str
    kind: str                      # pointwise | pairwise
    diagnostics: dict[str, Any] | None   # a pairwise judge's position consistency, first-slot win rate, ...


@dataclass(frozen=True)
class Results:
    """A run's results: per system (highest win rate first) the win rate against the baseline with its interval,
    every pair of objectives compared (Holm-adjusted), head to head where the judge is pointwise."""

    run_dir: Path
    benchmark: str
    preset: str
    model: str
    baseline: str                  # reference | gold
    confidence: float
    n_prompts: int
    correction: str
    judge: Judge
    reference: Reference
    systems: tuple[SystemResult, ...]
    comparisons: tuple[Comparison, ...]
    head_to_head: tuple[HeadToHead, ...]
    arm: str | None                # which pairs each objective trained on (matched, same, conditional, joint-only)
    data: dict[str, Any] | None    # the training data's summary: its source, pairs of each kind, sampling statistics
    start_model: str | None        # the SFT model every objective started from, where the benchmark has one
    sweep: dict[str, Any] | None   # results.json's sweep section, as written (--sweep runs)
    timings: dict[str, float]
    raw: dict[str, Any] = field(repr=False)   # the whole results.json

    def system(self, name: str) -> SystemResult:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(f"no system {name!r} in {self.run_dir} (systems: {', '.join(s.name for s in self.systems)})")

    def comparison(self, a: str, b: str) -> Comparison:
        """``a`` against ``b`` (``a - b``), whichever order results.json holds them in."""
        for c in self.comparisons:
            if (c.a, c.b) == (a, b):
                return c
            if (c.b, c.a) == (a, b):
                return c.reversed()
        raise KeyError(f"no comparison of {a!r} with {b!r} in {self.run_dir}")


def results_from_json(results: dict[str, Any], run_dir: Path) -> Results:
    """``results`` as :func:`prefbench.reporting.load.load_results` returns it (checked) -> :class:`Results`."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    judge = results.get("judge") or {}
    return Results(
        run_dir=run_dir, benchmark=results.get("benchmark", ""), preset=results.get("preset", ""),
        model=results.get("model", ""), baseline=results.get("baseline", "reference"),
        confidence=float(results.get("confidence", 0.95)), n_prompts=int(results.get("n_prompts") or 0),
        correction=str(results.get("correction") or "holm"),
        judge=Judge(str(judge.get("name", "")), str(judge.get("kind", "")), judge.get("diagnostics")),
        reference=_reference(results["reference"], f"{path}: reference"),
        systems=tuple(_system(s, run_dir, f"{path}: systems[{i}]") for i, s in enumerate(results["systems"])),
        comparisons=tuple(_comparison(c, f"{path}: comparisons[{i}]")
                          for i, c in enumerate(results.get("comparisons") or [])),
        head_to_head=tuple(_head_to_head(h, f"{path}: head_to_head[{i}]")
                           for i, h in enumerate(results.get("head_to_head") or [])),
        arm=results.get("arm"), data=results.get("data"), start_model=results.get("start_model"), sweep=results.get("sweep"),
        timings=dict(results.get("timings") or {}), raw=results)


def _required(entry: dict, key: str, where: str) -> Any:
    """A field the schema requires that the report can do without (so the loader lets its absence pass)."""
    if entry.get(key) is None:
        # imported here: the loader pulls in numpy and scipy, which the typed results do without
        from prefbench.reporting.load import ReportError

        raise ReportError(f"{where}.{key} is missing; re-run `prefbench eval` to rewrite results.json")
    return entry[key]


def _interval(value: dict | None) -> Interval | None:
    if value is None:
        return None
    return Interval(float(value["estimate"]), float(value["low"]), float(value["high"]), value.get("method"))


def _robustness(value: dict | None) -> Robustness | None:
    if not value:
        return None
    return Robustness(*(_interval(value.get(k)) for k in ("mean", "drop", "worst", "spread", "flip_rate")),
                      per_variant=dict(value.get("per_variant") or {}))


def _outcomes(value: dict | None, where: str) -> Outcomes | None:
    if value is None:
        return None
    return Outcomes(_interval(value["win_rate"]),
                    *(int(_required(value, k, where)) for k in ("wins", "ties", "losses")))


def _training(entry: dict, run_dir: Path) -> Training:
    return Training(seed=int(entry.get("seed", 0)), metrics=run_dir / entry["metrics"],
                    pair_kinds=entry.get("pair_kinds"), pairs=entry.get("pairs"),
                    pairs_by_kind={k: entry[k] for k in ("conditional", "joint") if k in entry},
                    steps=entry.get("steps"), tokens_seen=entry.get("tokens_seen"), lr=entry.get("lr"))


def _system(s: dict, run_dir: Path, where: str) -> SystemResult:
    return SystemResult(
        name=s["name"], objective=s.get("objective") or s["name"], family=s.get("family"),
        params=dict(s.get("params") or {}), seeds=tuple(s.get("seeds") or ()), win_rate=_interval(s["win_rate"]),
        **{k: int(_required(s, k, where)) for k in ("wins", "ties", "losses")},
        lc_win_rate=s.get("lc_win_rate"), mean_score=_interval(s.get("mean_score")),
        mean_length=float(s["mean_length"]),
        robustness=_robustness(s.get("robustness")), kl=_interval(s.get("kl")),
        vs_gold=_outcomes(s.get("vs_gold"), f"{where}.vs_gold"), truncated=s.get("truncated"),
        gaming_rate=_interval(s.get("gaming_rate")),
        training=tuple(_training(t, run_dir) for t in s.get("training") or ()))


def _tested(c: dict, where: str) -> dict:
    """The fields every comparison and head-to-head entry shares."""
    return {"a": c["a"], "b": c["b"], "p": float(_required(c, "p", where)),
            "p_holm": float(_required(c, "p_holm", where)), "significant": bool(_required(c, "significant", where)),
            "mde": c.get("mde")}


def _comparison(c: dict, where: str) -> Comparison:
    return Comparison(diff=_interval(c["diff"]), **_tested(c, where))


def _head_to_head(h: dict, where: str) -> HeadToHead:
    return HeadToHead(win_rate=_interval(h["win_rate"]),
                      **{k: int(_required(h, k, where)) for k in ("wins", "ties", "losses")}, **_tested(h, where))


def _reference(r: dict, where: str) -> Reference:
    return Reference(mean_length=float(r["mean_length"]), mean_score=_interval(r.get("mean_score")),
                     robustness=_robustness(r.get("robustness")),
                     vs_gold=_outcomes(r.get("vs_gold"), f"{where}.vs_gold"), truncated=r.get("truncated"), gaming_rate=_interval(r.get("gaming_rate")),
                     win_rate=_interval(r.get("win_rate")))
