"""Trust-Region DPO (TR-DPO): DPO whose reference is reset to the policy every τ optimizer steps."""

from prefbench.registry import ObjectiveOutput, PairLogProbs, Param, register_objective, sigmoid_preference_loss


@register_objective("tr_dpo", family="iterative", span="response", needs_reference=True, reference_update=True,
                    params={"beta": Param(0.1, gt=0, doc="inverse temperature on the log-ratio margin"),
                            "tau": Param(512, ge=1, doc="τ, optimizer steps between reference updates (a whole "
                                                        "number)"),
                            "alpha": Param(1.0, gt=0, le=1, doc="α of the update θ_ref ← αθ + (1−α)θ_ref; only 1, "
                                                                "the hard update, has an exact LoRA form")},
                    paper="Gorbatovski et al. 2024, 'Learn Your Reference Model for Real Good Alignment', "
                          "arXiv 2404.09656")
def tr_dpo(stats: PairLogProbs, *, beta: float, tau: float, alpha: float) -> ObjectiveOutput:
    """TR-DPO^τ: −log σ(β z) as in DPO, the reference π_ref being the policy of the last multiple of τ steps.

    The loss is DPO's (summed response log-probs, rewards β·Δ); τ and α act in the engine
    (:mod:`prefbench.engine.reference_update`), not here: after every τ optimizer steps the reference
    becomes the current policy (the paper's hard update, θ_ref ← θ; TRL's ``sync_ref_model`` with
    ``ref_model_mixup_alpha=1``), so the step right after an update starts at margin 0, loss ln 2. With
    the cached reference log-probs this is exact: at each update the sequences of the next τ steps are
    scored once under the current policy (no grad, eval mode), and the block's scores are saved with
    every checkpoint, so a resumed run is bit-identical. τ larger than the run's steps is exactly DPO.
    The paper's soft update θ_ref ← αθ + (1−α)θ_ref (α < 1) is refused: the policy is base + LoRA, and
    mixing the factors A and B is not mixing the weights (ΔW = BA is bilinear), so the mixed reference
    Σ_k α(1−α)^(K−k) B_k A_k has no adapter form of rank r; keeping it exactly would need a dense copy of
    every adapted weight (a full-size model delta, which a 4-bit base cannot even absorb) saved with every
    checkpoint. TRL refuses ``sync_ref_model`` with PEFT altogether.
    Defaults β = 0.1, τ = 512 (the paper's best hard update; TRL's ``ref_model_sync_steps`` default), α = 1.
    """
    del tau, alpha   # the engine's, see above
    return sigmoid_preference_loss(stats, beta)
