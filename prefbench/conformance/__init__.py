"""Conformance for other people's code: check a loss implementation from another library against prefbench's
golden cases for an objective (``prefbench conformance``, or :func:`assert_conforms` in that library's tests).

The cases (``golden.json``, written by ``python -m prefbench.conformance.golden``) are prefbench's own float64
losses on hand-derived, random and edge-case inputs, plus invariants; the implementation is called through a small
adapter for its signature (:mod:`prefbench.conformance.impl`), TRL 1.16's DPOTrainer loss types through a built-in
one (:mod:`prefbench.conformance.trl_adapter`).
"""

from prefbench.conformance.cases import ConformanceError, KnownDifference, Unsupported, load_golden
from prefbench.conformance.check import CaseResult, Report, assert_conforms, check_conformance
from prefbench.conformance.impl import ADAPTERS, parse_params

__all__ = ["ADAPTERS", "CaseResult", "ConformanceError", "KnownDifference", "Report", "Unsupported",
           "assert_conforms", "check_conformance", "load_golden", "parse_params"]
