"""TRL 1.16's DPOTrainer losses, called as TRL computes them: the harness and the conformance adapter.

No loss formula is written here. TRL 1.16 has no standalone DPO loss function; the loss is computed inline in
``DPOTrainer._compute_loss(model, inputs, return_outputs)``. :func:`trl_dpo_loss` makes the trainer with
``object.__new__(DPOTrainer)``, sets only the attributes that method reads, and passes a stub "model" whose
fused-LM-head output carries per-token log-probs summing exactly to the given summed log-probs (the whole value on
the last completion position, zeros elsewhere); reference log-probs go in as precomputed
(``precompute_ref_logps=True``), and a ``completion_mask`` with each response's token count of ones, so the loss
types that average over tokens (ipo, sigmoid_norm) do it exactly as TRL's trainer does. ``_compute_loss`` returns the
batch MEAN: per-pair losses come from one call per pair. ``tests/fixtures/make_trl_reference.py`` uses the same
harness. TRL is imported only when a loss is computed; it is not a dependency of prefbench.
"""

from __future__ import annotations

import os
import types
from collections import defaultdict

import torch
from torch import Tensor

from prefbench.conformance.cases import ConformanceError, KnownDifference, Unsupported
from prefbench.registry import Objective
from prefbench.util.names import suggest

TRL_VERSION = "1.16.0"   # the release whose DPOTrainer._compute_loss this harness stubs
# DPOTrainer's loss types in TRL 1.16 (its _compute_loss lists them in its "Unknown loss type" error)
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
# prefbench parameter -> DPOTrainer attribute, per loss type; DPOConfig's defaults for the rest
_DEFAULT_MAPPING = {"beta": "beta", "label_smoothing": "label_smoothing"}
PARAMETERS = {"ipo": {"tau": "beta"},   # TRL's IPO reads β as the paper's τ: (z̄ − 1/(2β))²
              "discopop": {"beta": "beta", "tau": "discopop_tau"}}
TRL_DEFAULTS = {"beta": 0.1, "label_smoothing": 0.0, "discopop_tau": 0.05}
# prefbench parameters TRL has no setting for, at the value that is TRL's fixed behaviour
IMPLICIT = {"delta": 0.0}   # bco_pair: TRL 1.16 keeps no reward shift
# every loss type: _compute_loss works in the dtype of the log-probs it is given
BF16 = {"bf16_inputs": KnownDifference(
    "TRL 1.16 computes the loss in the dtype of the log-probs it is given: from bf16 log-probs its margins of summed "
    "log-probs are rounded to bf16's 8 significant bits before the loss", rtol=2 ** -5, atol=2 ** -5)}
KNOWN_DIFFERENCES = {
    "exo_pair": {"*": KnownDifference(
        "TRL 1.16 builds ε as torch.tensor(label_smoothing), a float32 tensor, so its log ε and log(1−ε) carry "
        "float32 rounding (about 2e-8 relative in the losses)", rtol=1e-7, atol=1e-9)},
    "discopop": {"extreme_margins*": KnownDifference(
        "TRL 1.16 computes σ(βz/τ)·exp(−βz): at a hugely negative margin that is 0·inf = NaN, where prefbench's loss "
        "is finite", nonfinite=True)},
}


class FakeAccelerator:
    """What DPOTrainer/CPOTrainer/ORPOTrainer read of their accelerator: the device and identity gathers."""

    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x

    @staticmethod
    def gather(x):
        return x


class StubPolicy:
    """Stands in for the policy model: returns TRL's fused-LM-head output fields with fixed per-token logps."""

    training = False  # -> mode "eval" (skips the train-only token counter)

    def __init__(self, per_token_logps: Tensor):
        self.per_token_logps = per_token_logps

    def __call__(self, **kwargs):
        lp = self.per_token_logps
        return types.SimpleNamespace(log_probs=lp, entropy=torch.zeros_like(lp), mean_logits=torch.zeros_like(lp),
                                     is_top1=torch.zeros_like(lp, dtype=torch.bool))


def import_trl():
    """(trl, DPOTrainer), or a one-line error when TRL is not installed."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import trl
        from trl.trainer.dpo_trainer import DPOTrainer
    except ImportError as exc:
        raise ConformanceError(f"the trl adapter needs TRL, which is not installed here ({exc}); "
                               f"install it with: pip install trl=={TRL_VERSION}") from None
    return trl, DPOTrainer


def make_dpo_trainer(loss_type: str, beta: float, label_smoothing: float, discopop_tau: float = 0.05):
    """A DPOTrainer with only what ``_compute_loss`` reads, for loss type ``loss_type`` (no model, no data)."""
    _, DPOTrainer = import_trl()
    trainer = object.__new__(DPOTrainer)
    attrs = dict(
        accelerator=FakeAccelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=0.5,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=discopop_tau),
    )
    for key, value in attrs.items():
        object.__setattr__(trainer, key, value)
    return trainer


def dpo_inputs(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, reference_chosen_logps: Tensor,
               reference_rejected_logps: Tensor, chosen_tokens: Tensor, rejected_tokens: Tensor):
    """(stub model, inputs) for a batch of pairs, laid out [chosen..., rejected...] as TRL's collator does: one prompt
    token, then each completion right-padded; the summed log-prob sits on the shifted position of its last token."""
    seq_logps = torch.cat([policy_chosen_logps, policy_rejected_logps])
    lens = [int(n) for n in torch.cat([chosen_tokens, rejected_tokens])]
    length = 1 + max(lens)
    rows = len(lens)
    completion_mask = torch.zeros(rows, length, dtype=torch.long)
    attention_mask = torch.zeros(rows, length, dtype=torch.long)
    per_token = torch.zeros(rows, length - 1, dtype=seq_logps.dtype)
    for b, n in enumerate(lens):
        completion_mask[b, 1:1 + n] = 1
        attention_mask[b, :1 + n] = 1
        per_token[b, n - 1] = seq_logps[b]  # the sum over the row is exactly the summed log-prob
    inputs = {"input_ids": torch.ones(rows, length, dtype=torch.long), "attention_mask": attention_mask,
              "completion_mask": completion_mask, "ref_chosen_logps": reference_chosen_logps,
              "ref_rejected_logps": reference_rejected_logps}
    return StubPolicy(per_token), inputs


def trl_dpo_loss(loss_type: str, policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                 reference_chosen_logps: Tensor, reference_rejected_logps: Tensor, chosen_tokens: Tensor,
                 rejected_tokens: Tensor, *, beta: float, label_smoothing: float = 0.0, discopop_tau: float = 0.05):
    """(TRL's loss for the batch — the mean over its pairs —, the trainer, whose ``_metrics["eval"]`` holds what TRL
    logged: ``rewards/chosen`` etc.)."""
    trainer = make_dpo_trainer(loss_type, beta, label_smoothing, discopop_tau)
    model, inputs = dpo_inputs(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                               reference_rejected_logps, chosen_tokens, rejected_tokens)
    trainer.model = model
    return trainer._compute_loss(model, inputs, return_outputs=False), trainer


def trl_adapter(loss_type: str, objective: Objective):
    """The conformance adapter for DPOTrainer's ``loss_type``, checked as ``objective``: per-pair losses from one
    ``_compute_loss`` call per pair, or, for a batch-level objective, TRL's own loss (the mean) over the whole batch
    in one call, which is where aot/aot_unpaired sort across the batch."""
    if loss_type not in LOSS_TYPES:
        raise ConformanceError(f"TRL 1.16's DPOTrainer has no loss type '{loss_type}'{suggest(loss_type, LOSS_TYPES)}; "
                               f"its loss types: {', '.join(LOSS_TYPES)}")
    trl, _ = import_trl()
    mapping = PARAMETERS.get(loss_type, _DEFAULT_MAPPING)

    def adapter(policy_chosen_logps, policy_rejected_logps, chosen_tokens, rejected_tokens,
                reference_chosen_logps=None, reference_rejected_logps=None, **params):
        settings = dict(TRL_DEFAULTS)
        for name, value in params.items():
            if name in mapping:
                settings[mapping[name]] = value
            elif IMPLICIT.get(name) != value:
                raise Unsupported(f"TRL's loss_type='{loss_type}' has no setting for {name}={value:g}")
        zeros = torch.zeros_like(policy_chosen_logps)   # a reference-free objective (sft): TRL still wants one
        batch = (policy_chosen_logps, policy_rejected_logps,
                 zeros if reference_chosen_logps is None else reference_chosen_logps,
                 zeros if reference_rejected_logps is None else reference_rejected_logps,
                 chosen_tokens, rejected_tokens)
        if objective.batch_level:
            return trl_dpo_loss(loss_type, *batch, **settings)[0]
        return torch.stack([trl_dpo_loss(loss_type, *(t[i:i + 1] for t in batch), **settings)[0]
                            for i in range(len(policy_chosen_logps))])

    adapter.__name__ = adapter.__qualname__ = f"trl:{loss_type}"
    adapter.known_differences = {**BF16, **KNOWN_DIFFERENCES.get(loss_type, {})}
    adapter.description = (f"TRL {trl.__version__} DPOTrainer loss_type='{loss_type}' "
                           f"(harness written for {TRL_VERSION})")
    return adapter
