"""The objective registry: what an objective declares, and how it is registered and found.

An objective is a pure function of per-sequence log-probability statistics. It never sees the
model, the tokenizer or the trainer, so it can be unit-tested on hand-written tensors and reused
by any training loop. Built-ins live one per file in ``objectives/`` (installed as
``prefbench.objectives``); third-party objectives register through the ``prefbench.objectives``
entry-point group and are indistinguishable from built-ins once loaded.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Callable

from prefbench.registry.inputs import (
    DATA,
    SPANS,
    TOKEN_STATISTICS,
    Data,
    ListLogProbs,
    ObjectiveError,
    ObjectiveOutput,
    PairLogProbs,
    Span,
    UnpairedLogProbs,
)
from prefbench.util.names import suggest

ENTRY_POINT_GROUP = "prefbench.objectives"
BUILTIN_PACKAGE = "prefbench.objectives"

# How objectives group in `prefbench objectives` and in reports: by the form of the preference term.
FAMILIES = {
    "dpo": "the logistic loss of the chosen-minus-rejected policy-to-reference log-ratio margin, re-weighted, "
           "re-scaled or with a term added (DPO and its variants)",
    "robust": "DPO-style margins made robust to flipped or noisy preference labels",
    "loss-shape": "another convex function of the margin than the logistic (GPO's family: squared = IPO, hinge, "
                  "exponential, savage)",
    "divergence": "another divergence to the reference than the reverse KL (f-divergences, chi-squared, EXO's "
                  "reverse direction)",
    "anchored": "each response's own log-ratio pushed towards a target, not only their margin (NCA, BCO, APO, SPPO, "
                "Cal-DPO)",
    "distributional": "margins compared across the batch rather than pair by pair (AOT)",
    "reference-free": "no reference model: length-normalised log-likelihoods or odds ratios",
    "joint": "preferences over (instruction, response) pairs, the instructions possibly different (JPO/DOVE)",
    "unpaired": "one response at a time with a desirable/undesirable label (KTO, BCO)",
    "supervised": "the likelihood of the chosen response alone",
    "token-level": "functions of per-token log-probabilities or per-position divergences, not only their sums "
                   "(TDPO, SamPO, LD-DPO)",
    "listwise": "k ranked or scored responses per instruction at once (LiPO-λ, PRO)",
    "iterative": "trained in rounds on the policy's own judged samples, the reference moving between rounds "
                 "(iterative/online DPO, APO) or during training (TR-DPO)",
    "other": "not declared (a plugin's default)",
}


@dataclass(frozen=True)
class Param:
    """A hyperparameter's default and its valid range (bounds are optional)."""

    default: float
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    doc: str = ""

    def check(self, objective: str, name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ObjectiveError(f"objective '{objective}': parameter '{name}' must be a finite number, got {value!r}")
        violated = (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )
        if violated:
            raise ObjectiveError(
                f"objective '{objective}': parameter '{name}' must be {self.range_text()}, got {value!r}"
            )
        return float(value)

    def range_text(self) -> str:
        low = f"> {self.gt:g}" if self.gt is not None else f">= {self.ge:g}" if self.ge is not None else ""
        high = f"< {self.lt:g}" if self.lt is not None else f"<= {self.le:g}" if self.le is not None else ""
        return " and ".join(p for p in (low, high) if p) or "any finite number"


LossFn = Callable[..., ObjectiveOutput]

# The PairLogProbs fields each of TOKEN_STATISTICS fills, given whether the objective reads the reference.
_STATISTIC_FIELDS: dict[str, Callable[[bool], tuple[str, ...]]] = {
    "token_logps": lambda reference: ("chosen_token_logps", "rejected_token_logps")
    + (("ref_chosen_token_logps", "ref_rejected_token_logps") if reference else ()),
    "sequence_kl": lambda reference: ("chosen_kl", "rejected_kl"),
    "pair_scores": lambda reference: ("chosen_scores", "rejected_scores"),
}


@dataclass(frozen=True)
class Objective:
    """A registered objective: its loss function plus the metadata the engine and docs need."""

    name: str
    fn: LossFn
    span: Span
    needs_reference: bool
    adds_nll: bool
    params: dict[str, Param] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    paper: str = ""
    source: str = "built-in"
    family: str = "other"
    batch_level: bool = False   # a pair's loss depends on the other pairs of its micro-batch (AOT's sort, β-DPO's β)
    data: Data = "paired"       # "unpaired": trains on labelled single responses (UnpairedLogProbs), not pairs
    # extra statistics the engine computes only for objectives that ask (TOKEN_STATISTICS): per-token log-probs,
    # the per-position KL to the reference summed over the span
    statistics: tuple[str, ...] = ()
    reference_update: bool = False   # the engine resets the reference to the policy every ``tau`` steps (TR-DPO)
    iterative: bool = False          # trained in ``rounds`` on-policy rounds by the run pipeline

    @property
    def defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.params.items()}

    @property
    def summary(self) -> str:
        """First line of the loss function's docstring."""
        lines = (self.fn.__doc__ or "").strip().splitlines()
        return lines[0] if lines else ""

    def resolve_params(self, **overrides: object) -> dict[str, float]:
        """Defaults merged with overrides, validated; unknown names are errors with a suggestion."""
        for key in overrides:
            if key not in self.params:
                raise ObjectiveError(
                    f"objective '{self.name}' has no parameter '{key}'{suggest(key, self.params)}; "
                    f"its parameters are: {', '.join(self.params) or 'none'}"
                )
        merged = {**self.defaults, **overrides}
        return {k: self.params[k].check(self.name, k, v) for k, v in merged.items()}

    def __call__(self, stats: PairLogProbs | UnpairedLogProbs | ListLogProbs, **overrides: object) -> ObjectiveOutput:
        params = self.resolve_params(**overrides)
        expected = {"unpaired": UnpairedLogProbs, "listwise": ListLogProbs}.get(self.data, PairLogProbs)
        if not isinstance(stats, expected):
            raise ObjectiveError(f"objective '{self.name}' trains on {self.data} data and takes {expected.__name__}, "
                                 f"got {type(stats).__name__}")
        if self.needs_reference and not stats.has_reference:
            names = "ref_chosen_logps/ref_rejected_logps" if self.data == "paired" else "ref_logps"
            raise ObjectiveError(f"objective '{self.name}' needs reference log-probs ({names})")
        for statistic in self.statistics:
            missing = [name for name in _STATISTIC_FIELDS[statistic](self.needs_reference)
                       if getattr(stats, name, None) is None]
            if missing:
                raise ObjectiveError(f"objective '{self.name}' needs the {statistic!r} statistics "
                                     f"({', '.join(missing)})")
        out = self.fn(stats.at_least_float32(), **params)
        return ObjectiveOutput(out.losses, out.chosen_rewards.detach(), out.rejected_rewards.detach())


_REGISTRY: dict[str, Objective] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def register_objective(
    name: str,
    *,
    span: Span,
    needs_reference: bool,
    adds_nll: bool = False,
    params: dict[str, Param] | None = None,
    aliases: tuple[str, ...] = (),
    paper: str = "",
    family: str = "other",
    batch_level: bool = False,
    data: Data = "paired",
    statistics: tuple[str, ...] = (),
    reference_update: bool = False,
    iterative: bool = False,
) -> Callable[[LossFn], Objective]:
    """Decorator: register ``fn(stats, **params) -> ObjectiveOutput`` under ``name``; ``family`` is one of
    :data:`FAMILIES`. ``batch_level``: the losses are a function of the whole batch given (a sort, a batch
    statistic), so the engine passes each micro-batch in one forward, whatever ``max_forward_tokens`` says.
    ``data``: ``"paired"`` (``fn`` takes :class:`PairLogProbs`) or ``"unpaired"`` (``fn`` takes
    :class:`UnpairedLogProbs` and returns per-example losses) or ``"listwise"`` (``fn`` takes
    :class:`ListLogProbs` and returns per-list losses). ``statistics``: extra inputs from
    :data:`TOKEN_STATISTICS` the engine computes for this objective only. ``reference_update``: the engine
    resets the reference to the current policy every ``tau`` steps (a parameter the objective must declare).
    ``iterative``: the run pipeline trains it in ``rounds`` rounds (a parameter it must declare) of sampling,
    judging, pairing and training."""
    if span not in SPANS:
        raise ObjectiveError(f"objective '{name}': span must be one of {SPANS}, got {span!r}")
    if data not in DATA:
        raise ObjectiveError(f"objective '{name}': data must be one of {DATA}, got {data!r}")
    unknown = [s for s in statistics if s not in TOKEN_STATISTICS]
    if unknown:
        raise ObjectiveError(f"objective '{name}': statistics must be among {', '.join(TOKEN_STATISTICS)}, "
                             f"got {unknown[0]!r}{suggest(unknown[0], TOKEN_STATISTICS)}")
    if "pair_scores" in statistics and data != "paired":
        raise ObjectiveError(f"objective '{name}': 'pair_scores' are scores of a pair's two responses; {data} data "
                             f"has no pairs")
    for flag, param in ((reference_update, "tau"), (iterative, "rounds")):
        if flag and param not in (params or {}):
            raise ObjectiveError(f"objective '{name}': declares {'reference_update' if param == 'tau' else 'iterative'}"
                                 f" but no '{param}' parameter")
    if family not in FAMILIES:
        raise ObjectiveError(f"objective '{name}': family must be one of {', '.join(FAMILIES)}, got {family!r}"
                             f"{suggest(family, FAMILIES)}")

    def decorator(fn: LossFn) -> Objective:
        module = fn.__module__ or ""
        source = "built-in" if module.startswith("prefbench.") else module
        obj = Objective(name, fn, span, needs_reference, adds_nll, dict(params or {}), tuple(aliases), paper, source,
                        family, batch_level, data, tuple(statistics), reference_update, iterative)
        for key in (name, *aliases):
            owner = _REGISTRY.get(key) or _REGISTRY.get(_ALIASES.get(key, ""))
            if owner is not None and owner.fn is not fn:
                raise ObjectiveError(f"objective name '{key}' is already registered by {owner.source}")
        _REGISTRY[name] = obj
        for alias in aliases:
            _ALIASES[alias] = name
        return obj

    return decorator


def _load_all() -> None:
    """Import the built-ins, then every plugin in the entry-point group (once). The built-ins are
    found by package name, like plugins: the registry itself depends on no objective."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    builtins = importlib.import_module(BUILTIN_PACKAGE)
    for info in pkgutil.iter_modules(builtins.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()  # importing the plugin module runs its @register_objective decorators
        except Exception as exc:  # a broken plugin must not take the built-ins down with it
            warnings.warn(f"prefbench: could not load objective plugin '{ep.name}' ({ep.value}): {exc}", stacklevel=2)


def get_objective(name: str) -> Objective:
    """Look an objective up by name or alias; unknown names get a did-you-mean suggestion."""
    _load_all()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        known = sorted([*_REGISTRY, *_ALIASES])
        raise ObjectiveError(f"unknown objective '{name}'{suggest(key, known)}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def list_objectives() -> list[Objective]:
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def parse_objective_list(text: str) -> list[Objective]:
    """``"dpo,jpo"`` -> objectives, each name checked (so a typo fails before any work starts)."""
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    if not names:
        raise ObjectiveError("no objective named; try e.g. --objectives dpo,jpo")
    return [get_objective(n) for n in names]
