"""Joint Preference Optimization (DOVE): preferences over instruction-response pairs."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("jpo", family="joint", span="joint", needs_reference=True, aliases=("dove",),
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature")},
                    paper="Bansal et al. 2024, 'Comparing Bad Apples to Good Oranges', arXiv 2404.00530")
def jpo(stats: PairLogProbs, *, beta: float) -> ObjectiveOutput:
    """JPO: −log σ(β [(S_θ(x_w,y_w) − S_ref(x_w,y_w)) − (S_θ(x_l,y_l) − S_ref(x_l,y_l))]).

    S(x,y) sums the log-probs of every token of the formatted instruction+response sequence except
    the first (prompt tokens are *not* masked), so the two instructions may differ. When
    x_w == x_l the instruction terms cancel and JPO equals DPO exactly. Default β = 0.1 (paper).
    """
    return sigmoid_preference_loss(stats, beta)
