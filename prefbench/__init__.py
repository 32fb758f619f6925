"""prefbench: compare LLM preference-optimization objectives under identical (Q)LoRA settings."""

from prefbench.registry import (
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

__all__ = [
    "Objective",
    "ObjectiveError",
    "ObjectiveOutput",
    "PairLogProbs",
    "Param",
    "UnpairedLogProbs",
    "get_objective",
    "list_objectives",
    "register_objective",
]
__version__ = "0.1.0"
