"""The objective API: statistics in (:class:`PairLogProbs`, :class:`UnpairedLogProbs`, :class:`ListLogProbs`),
losses out (:class:`ObjectiveOutput`), and the registry that finds objectives by name (built-ins and entry-point
plugins alike)."""

from prefbench.registry.inputs import (
    DATA,
    SPANS,
    TOKEN_STATISTICS,
    ListLogProbs,
    ObjectiveError,
    ObjectiveOutput,
    PairLogProbs,
    Span,
    UnpairedLogProbs,
)
from prefbench.registry.objective import (
                                          ENTRY_POINT_GROUP,
                                          FAMILIES,
                                          Objective,
                                          Param,
                                          get_objective,
                                          list_objectives,
                                          parse_objective_list,
                                          register_objective,
)
from prefbench.registry.terms import (
    capped_exp,
    link_preference_loss,
    log_ratio_margin,
    mean_nll,
    sigmoid_preference_loss,
    smoothed_logistic_loss,
)

__all__ = [
    "DATA",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "SPANS",
    "TOKEN_STATISTICS",
    "ListLogProbs",
    "Objective",
    "ObjectiveError",
    "ObjectiveOutput",
    "PairLogProbs",
    "Param",
    "Span",
    "UnpairedLogProbs",
    "capped_exp",
    "get_objective",
    "link_preference_loss",
    "list_objectives",
    "log_ratio_margin",
    "mean_nll",
    "parse_objective_list",
    "register_objective",
    "sigmoid_preference_loss",
    "smoothed_logistic_loss",
]
