"""Iterative DPO: DPO in on-policy rounds, the reference moving to the previous round's policy."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("iterative_dpo", family="iterative", span="response", needs_reference=True, iterative=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "rounds": Param(3, ge=1, doc="on-policy rounds the run splits max_steps into (a whole "
                                                         "number; 1 is DPO)")},
                    paper="Xiong et al. 2024, 'Iterative Preference Learning from Human Feedback: Bridging Theory and "
                          "Practice for RLHF under KL-Constraint', arXiv 2312.11456; Xu et al. 2023, 'Some things are "
                          "more CRINGE than others: Iterative Preference Optimization with the Pairwise Cringe Loss', "
                          "arXiv 2312.16682")
def iterative_dpo(stats: PairLogProbs, *, beta: float, rounds: float) -> ObjectiveOutput:
    """Iterative DPO: round r minimises −log σ(β z) with the previous round's policy π_{r−1} as reference.

    z = [S_θ(y_w|x) − S_{r−1}(y_w|x)] − [S_θ(y_l|x) − S_{r−1}(y_l|x)]: each round's loss is DPO's (summed
    response log-probs, prompt tokens masked; rewards β·Δ). What makes it iterative is the run (``prefbench
    run``, pipeline/rounds.py): max_steps is split into ``rounds`` rounds; round 1 trains on the reference
    model's on-policy pairs, round r > 1 on pairs of the run's training prompts sampled from round r−1's policy
    and judged by the task's judge, starting from that policy, which is also its reference π_{r−1} (so every
    round starts at loss ln 2). Outside a run (``prefbench train``) this trains a single round on the data
    given: DPO, from ``init_adapter`` if set.
    Choices: the reference moves with the rounds, the iterative DPO of APO's framework (He et al. 2024,
    Algorithm 1 at α = 0: round t's reference is the policy it starts from); Xiong et al.'s released loop keeps
    the initial model as every round's reference instead, while starting each round from the last one
    (RLHFlow/Online-RLHF, run_loop.sh at 138f5278, ``--ref_model $initial_model``), a variant not offered
    here. Pairs follow the data stage's best-against-worst rule (Xiong et al.'s ``max_min`` choice) with its
    min_gap. Defaults β = 0.1 (TRL's DPO default, which that loop keeps); rounds = 3, the iterations of that
    loop and of APO's experiments (the shipped benchmarks' quick presets' 20 steps make rounds of 7/7/6).
    """
    return sigmoid_preference_loss(stats, beta)
