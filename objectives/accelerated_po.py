"""Accelerated Preference Optimization (APO): iterative DPO with a Nesterov-extrapolated reference."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("accelerated_po", family="iterative", span="response", needs_reference=True, iterative=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "rounds": Param(3, ge=1, doc="on-policy rounds the run splits max_steps into (a whole "
                                                         "number)"),
                            "extrapolation": Param(0.3, ge=0, lt=1, doc="α, Nesterov's extrapolation of the reference "
                                                                        "(0 is iterative_dpo)")},
                    paper="He, Yuan, Gu 2024, 'Accelerated Preference Optimization for Large Language Model "
                          "Alignment', arXiv 2410.06293")
def accelerated_po(stats: PairLogProbs, *, beta: float, rounds: float, extrapolation: float) -> ObjectiveOutput:
    """APO: iterative DPO whose round-r reference is log π̂_{r−1} = log π_{r−1} + α (log π_{r−1} − log π_{r−2}).

    Round r minimises −log σ(β z), z = [S_θ(y_w|x) − Ŝ_{r−1}(y_w|x)] − [S_θ(y_l|x) − Ŝ_{r−1}(y_l|x)], summed
    response log-probs; π_r is round r's trained policy and π_0 the base model, so round 2's reference is
    π_1 (π_1/π_0)^α and round 1's the base model. This is the paper's Algorithm 1 with DPO's loss: each
    round's proximal step against the extrapolated policy, whose Nesterov extrapolation
    log π̂ = log π + α (log π − log π_prev) is applied here to the log-probs of the round's pairs, exactly (the
    normaliser Z(x) of the extrapolated policy cancels within a pair sharing its instruction); the output is
    the last round's policy before extrapolation, as the paper's. The run does the rounds (pipeline/rounds.py:
    max_steps split into ``rounds``, each later round sampling and judging the run's training prompts); the
    loss itself is DPO's, rewards β·Δ against the extrapolated reference. Outside a run (``prefbench train``)
    a single round is trained: DPO against the base model, or against ``init_adapter``'s policy extrapolated
    away from ``extrapolate_from``'s by ``extrapolation``.
    Not done as the paper: its rounds sample from the extrapolated policy, realised in its experiments as an
    extrapolation of the model weights (θ_{r−1} + α(θ_{r−1} − θ_{r−2})); here a round samples, and starts
    training, from the last trained policy π_{r−1}, and only the reference is extrapolated (a LoRA's weights
    do not extrapolate its product BA linearly). β is one value for every round (the paper raised it per
    iteration, 0.01, 0.1, 1.0). α = 0 is exactly iterative_dpo.
    Defaults β = 0.1 (DPO's), rounds = 3 and α = 0.3: the paper's three iterations at its constant α
    (hyperparameters in its appendix; its ablation over α found 0.3 the most stable across iterations).
    """
    return sigmoid_preference_loss(stats, beta)
