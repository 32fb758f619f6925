"""prefbench: compare LLM preference-optimization objectives under identical (Q)LoRA settings."""

from prefbench.pipeline.api import ReportFiles, load_results, report, run
from prefbench.registry import (
    ListLogProbs,
    Objective,
    ObjectiveError,
    ObjectiveOutput,
    PairLogProbs,
    Param,
    UnpairedLogProbs,
    get_objective,
    list_objectives,
    register_objective,
)
from prefbench.reporting.run_results import Results

__all__ = [
    "ListLogProbs",
    "Objective",
    "ObjectiveError",
    "ObjectiveOutput",
    "PairLogProbs",
    "Param",
    "ReportFiles",
    "Results",
    "UnpairedLogProbs",
    "get_objective",
    "list_objectives",
    "load_results",
    "register_objective",
    "report",
    "run",
]
__version__ = "0.1.0"
