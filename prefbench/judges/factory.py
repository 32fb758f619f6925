"""Building a judge from the one-line spec the CLI and configs use.

    gold                                  the task's own judge
    reward-model:PATH_OR_ID               a local reward model
    local:PATH_OR_ID                      a local causal LM as pairwise judge
    openai:MODEL@BASE_URL                 an OpenAI-compatible endpoint, e.g.
                                          openai:gpt-4o-mini@https://api.openai.com/v1
"""

from __future__ import annotations

from prefbench.judges.local_lm import LocalLMJudge
from prefbench.judges.openai_compatible import OpenAICompatibleJudge
from prefbench.judges.pairwise import PairwiseJudge
from prefbench.judges.pointwise import GoldJudge, PointwiseJudge, RewardModelJudge
from prefbench.judges.verdicts import JudgeError
from prefbench.tasks import has_scorer
from prefbench.tasks.base import Task
from prefbench.util.names import suggest

JUDGE_SPECS = ("gold", "reward-model:PATH_OR_ID", "local:PATH_OR_ID", "openai:MODEL@BASE_URL")
_KINDS = tuple(spec.split(":")[0] for spec in JUDGE_SPECS)


def make_judge(spec: str, task: Task | None = None, template: str | None = None) -> PointwiseJudge | PairwiseJudge:
    """``template``: the prompt a pairwise judge renders (default :data:`DEFAULT_TEMPLATE`)."""
    kind, sep, arg = spec.strip().partition(":")
    if kind not in _KINDS:
        raise JudgeError(f"unknown judge kind {kind!r} in {spec!r}{suggest(kind, _KINDS, 0.6)}; valid: "
                         f"{', '.join(JUDGE_SPECS)}")
    usage = JUDGE_SPECS[_KINDS.index(kind)]
    if template is not None and kind in ("gold", "reward-model"):
        raise JudgeError(f"{spec!r} is a pointwise judge and renders no prompt; a template needs local: or openai:")
    pairwise_options = {} if template is None else {"template": template}
    if kind == "gold":
        if sep:
            raise JudgeError(f"the gold judge takes no argument, got {spec!r}")
        if task is None:
            raise JudgeError("the gold judge scores with the task's own judge; pass the task")
        if not has_scorer(task):
            raise JudgeError(f"benchmark task '{task.name}' has no built-in scorer: its answers are compared with "
                             "gold responses by a pairwise judge; pass --judge local:PATH_OR_ID or "
                             "--judge openai:MODEL@BASE_URL")
        return GoldJudge(task)
    if not arg:
        raise JudgeError(f"judge {spec!r} is missing its argument; expected {usage}")
    if kind == "reward-model":
        return RewardModelJudge(arg)
    if kind == "local":
        return LocalLMJudge(arg, **pairwise_options)
    # The last "@" splits: model ids may contain "@" (e.g. "claude-3@20240229" on Vertex), URLs should not.
    model, at, base_url = arg.rpartition("@")
    if not at or not model or not base_url:
        raise JudgeError(f"judge {spec!r} needs a model and an endpoint; expected {usage}, "
                         "e.g. openai:gpt-4o-mini@https://api.openai.com/v1")
    return OpenAICompatibleJudge(base_url=base_url, model=model, **pairwise_options)
