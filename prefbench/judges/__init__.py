"""Judges: who decides, per prompt, whether a system's answer beats the baseline's.

Pointwise judges score one response (:class:`GoldJudge`, :class:`RewardModelJudge`); pairwise
judges compare two (:class:`OpenAICompatibleJudge`, :class:`LocalLMJudge`) and are always asked in
both orders through :func:`judge_pair` / :func:`judge_many`, with verdicts cached on disk.
"""

from __future__ import annotations

from prefbench.judges.cache import JudgmentCache, judgment_key
from prefbench.judges.factory import JUDGE_SPECS, make_judge
from prefbench.judges.local_lm import LocalLMJudge
from prefbench.judges.openai_compatible import OpenAICompatibleJudge
from prefbench.judges.pairwise import JudgeDiagnostics, PairJudgment, PairwiseJudge, judge_many, judge_pair
from prefbench.judges.pointwise import GoldJudge, PointwiseJudge, RewardModelJudge, score_outcome
from prefbench.judges.verdicts import DEFAULT_TEMPLATE, JudgeError, Verdict, parse_verdict

__all__ = [
    "DEFAULT_TEMPLATE", "JUDGE_SPECS", "GoldJudge", "JudgeDiagnostics", "JudgeError", "JudgmentCache",
    "LocalLMJudge", "OpenAICompatibleJudge", "PairJudgment", "PairwiseJudge", "PointwiseJudge",
    "RewardModelJudge", "Verdict", "judge_many", "judge_pair", "judgment_key", "make_judge",
    "parse_verdict", "score_outcome",
]
