"""The golden cases: their file format, how they are read, and the tensors an implementation is given.

``golden.json`` (package data, written by ``python -m prefbench.conformance.golden``) holds, for every built-in
objective, cases of inputs, parameters and prefbench's float64 losses, plus invariants any implementation must
meet. Inputs are shared between objectives and named; an objective receives only the keywords it reads
(:func:`keywords_for`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from prefbench.registry import Objective
from prefbench.util.errors import UserError

FORMAT = "prefbench-conformance-golden"
FORMAT_VERSION = 1
GOLDEN_PATH = Path(__file__).with_name("golden.json")

# Pass when |got − expected| ≤ atol + rtol·|expected|, element by element, at the dtype of the case's inputs:
# float64 inputs leave only the order of float64 operations; float32 inputs allow float32 arithmetic; bf16 inputs
# allow a bf16 result (its own rounding is 2⁻⁹ relative), so a loss computed from bf16-rounded margins fails.
TOLERANCES = {"float64": {"rtol": 1e-9, "atol": 1e-12},
              "float32": {"rtol": 1e-5, "atol": 1e-5},
              "bfloat16": {"rtol": 2 ** -8, "atol": 2 ** -8}}
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}

# The keyword names an implementation receives; inputs store them under the same names.
POLICY = ("policy_chosen_logps", "policy_rejected_logps")
REFERENCE = ("reference_chosen_logps", "reference_rejected_logps")
TOKENS = ("chosen_tokens", "rejected_tokens")
RESPONSE = ("chosen_response_logps", "chosen_response_tokens")
COUNTS = {"chosen_tokens", "rejected_tokens", "chosen_response_tokens"}


class ConformanceError(UserError, ValueError):
    """A conformance check that cannot run: unknown objective, an implementation that cannot be imported or called
    as the contract says, a result of the wrong shape, parameters no golden case has."""


class Unsupported(Exception):
    """Raised by an implementation (an adapter) for a case it cannot express, e.g. a parameter its library lacks:
    the case is reported as skipped, not failed."""


@dataclass(frozen=True)
class KnownDifference:
    """A documented way an implementation differs on the cases its pattern names (``fnmatch`` on the case name).

    Elements that fail the golden tolerance there are reported as "known difference", never as a pass, when they
    stay within ``rtol``/``atol`` or, with ``nonfinite``, are NaN or ±inf; with neither given any value is accepted.
    Anything else still fails.
    """

    reason: str
    rtol: float | None = None
    atol: float = 0.0
    nonfinite: bool = False

    def explains(self, got: float, expected: float) -> bool:
        if self.nonfinite and not _finite(got):
            return True
        if self.rtol is not None:
            return _finite(got) and abs(got - expected) <= self.atol + self.rtol * abs(expected)
        return not self.nonfinite


def _finite(x: float) -> bool:
    return math.isfinite(x)


def keywords_for(objective: Objective, reads_response: bool) -> tuple[str, ...]:
    """The tensors an implementation of ``objective`` is called with (its parameters come after them)."""
    return (*POLICY, *(REFERENCE if objective.needs_reference else ()), *TOKENS, *(RESPONSE if reads_response else ()))


def input_tensors(values: dict, keywords: tuple[str, ...], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Fresh tensors for one case (so an implementation that writes into its inputs spoils nothing): counts as
    int64, log-probs in the input's dtype (or ``dtype``)."""
    dtype = dtype or DTYPES[values["dtype"]]
    return {k: torch.tensor(values[k], dtype=torch.long if k in COUNTS else dtype) for k in keywords}


@lru_cache(maxsize=1)
def load_golden(path: str = str(GOLDEN_PATH)) -> dict:
    try:
        golden = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConformanceError(f"cannot read the golden cases {path}: {exc}") from None
    if golden.get("format") != FORMAT or golden.get("format_version") != FORMAT_VERSION:
        raise ConformanceError(f"{path} is not a golden-case file of format {FORMAT} version {FORMAT_VERSION}")
    return golden
