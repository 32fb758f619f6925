"""Conservative DPO: DPO with label smoothing (preference labels assumed flipped with probability ε)."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("cdpo", family="robust", span="response", needs_reference=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature"),
                            "label_smoothing": Param(0.1, ge=0, lt=0.5, doc="ε, probability a label is flipped")},
                    paper="Mitchell 2023, 'A note on DPO with noisy preferences'")
def cdpo(stats: PairLogProbs, *, beta: float, label_smoothing: float) -> ObjectiveOutput:
    """cDPO: −(1−ε) log σ(β z) − ε log σ(−β z), z as in DPO (summed response log-ratios).

    ε must lie in [0, 0.5): at 0.5 the loss no longer prefers either response. ε = 0 is exactly
    DPO — the smoothing term is never silently dropped (a bug other libraries shipped).
    Defaults β = 0.1, ε = 0.1.
    """
    return sigmoid_preference_loss(stats, beta, label_smoothing)
