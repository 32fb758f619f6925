"""KL(π‖π_ref) of a trained adapter, estimated on the policy's own samples.

For a response y sampled from π given x, the sequence KL is E_y[Σ_t log π(y_t|·) − log π_ref(y_t|·)].
Replacing each sampled-token term by the full-vocabulary KL at that position,
Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t)), keeps the expectation (the prefixes are still policy samples)
and removes the variance of the sampled token, so a handful of samples per prompt suffices. The
reference is the same model with the adapter disabled, as in training.
"""

from __future__ import annotations

import torch

from prefbench.engine.adapters import adapter_compute
from prefbench.engine.formatting import collate, encode
from prefbench.engine.generation import Completion
from prefbench.engine.logprobs import position_ids_for


def _forward_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=position_ids_for(batch["attention_mask"]), use_cache=False).logits


def response_kl(policy, reference, tokenizer, prompts: list, responses: list[Completion], batch_size: int = 8,
                chunk_size: int = 64) -> list[float]:
    """Σ over response tokens of the full-vocabulary KL(π ‖ π_ref), one value (nats) per response. A response
    cut at the token limit has no end-of-turn token, so it adds no KL term for one."""
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            encoded = [encode(tokenizer, p, r.text, ends=r.finished)
                       for p, r in zip(prompts[start:start + batch_size], responses[start:start + batch_size])]
            batch = {k: v.to(policy.device) for k, v in collate(encoded, tokenizer.pad_token_id).items()}
            with adapter_compute(policy):
                logits_p = _forward_logits(policy, batch)[:, :-1]
            with adapter_compute(reference):
                logits_q = _forward_logits(reference, batch)[:, :-1]
            # position t predicts token t+1: score positions whose *next* token is a response token
            mask = (batch["response_mask"][:, 1:] * batch["attention_mask"][:, 1:]).bool()
            total = torch.zeros(mask.shape[0], dtype=torch.float64, device=mask.device)
            for c in range(0, mask.shape[1], chunk_size):
                logp = torch.log_softmax(logits_p[:, c:c + chunk_size].float(), -1)
                logq = torch.log_softmax(logits_q[:, c:c + chunk_size].float(), -1)
                kl = (logp.exp() * (logp - logq)).sum(-1)
                total += torch.where(mask[:, c:c + chunk_size], kl, torch.zeros_like(kl)).sum(-1).double()
            out += total.clamp_min(0).tolist()
    return out
