"""``prefbench demo``: a few identical QLoRA steps of each objective on the embedded model.

Real work end to end on a CPU in a couple of minutes: the embedded SmolLM2 in 4-bit, reference
log-probs computed once with the adapter disabled, then for each objective the *same* adapter
initialisation, batch, optimizer and step count, so the objective is the only difference.
"""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from prefbench.example_pairs import EXAMPLE_PAIRS
from prefbench.formatting import collate, encode
from prefbench.logprobs import SequenceLogProbs, model_sequence_logprobs, pair_logprobs
from prefbench.models import EMBEDDED, add_lora, load_base_model, load_tokenizer
from prefbench.objective import Objective

log = logging.getLogger("prefbench")


def _split(stats: SequenceLogProbs, n: int) -> tuple[SequenceLogProbs, SequenceLogProbs]:
    """Chosen and rejected travel in one forward pass of 2n sequences; split them back."""
    parts = [SequenceLogProbs(*(t[s] for t in (stats.response_logps, stats.response_tokens,
                                               stats.joint_logps, stats.joint_tokens)))
             for s in (slice(0, n), slice(n, 2 * n))]
    return parts[0], parts[1]


def run_demo(objectives: list[Objective], steps: int = 8, seed: int = 0, lr: float = 5e-4,
             model_name: str = EMBEDDED, quantization: str = "4bit") -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_name)
    model = add_lora(load_base_model(model_name, quantization), seed=seed)
    init_adapter = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}

    n = len(EXAMPLE_PAIRS)
    encoded = [encode(tokenizer, r["prompt_chosen"], r["response_chosen"]) for r in EXAMPLE_PAIRS]
    encoded += [encode(tokenizer, r["prompt_rejected"], r["response_rejected"]) for r in EXAMPLE_PAIRS]
    batch = collate(encoded, tokenizer.pad_token_id)
    tokens = int(batch["attention_mask"].sum())
    log.info("%d pairs (%d conditional, %d joint), %d tokens per step, %s base + LoRA",
             n, sum(r["kind"] == "conditional" for r in EXAMPLE_PAIRS), sum(r["kind"] == "joint" for r in EXAMPLE_PAIRS),
             tokens, "4-bit NF4" if quantization == "4bit" else "full-precision")

    model.eval()  # reference = base with the adapter disabled and dropout off
    with torch.no_grad(), model.disable_adapter():
        ref_chosen, ref_rejected = _split(model_sequence_logprobs(model, **batch), n)

    results = []
    for obj in objectives:
        model.load_state_dict(init_adapter, strict=False)
        torch.manual_seed(seed)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=lr)
        model.train()
        history, start = [], time.perf_counter()
        for _ in tqdm(range(steps), desc=f"{obj.name:>8}", unit="step", leave=False):
            chosen, rejected = _split(model_sequence_logprobs(model, **batch), n)
            out = obj(pair_logprobs(obj.span, chosen, rejected, ref_chosen, ref_rejected))
            loss = out.losses.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            margin = out.chosen_rewards - out.rejected_rewards
            history.append({"loss": loss.item(), "accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()})
        seconds = (time.perf_counter() - start) / steps
        results.append({"objective": obj.name, "first": history[0], "last": history[-1], "s_per_step": seconds,
                        "tokens_per_s": tokens / seconds})
    _print_table(results)
    return results


def _print_table(results: list[dict]) -> None:
    print(f"\n{'objective':<10}{'loss first→last':>22}{'reward acc first→last':>25}{'margin last':>13}{'tokens/s':>10}")
    for r in results:
        f, l = r["first"], r["last"]
        print(f"{r['objective']:<10}{f['loss']:>10.4f} → {l['loss']:<9.4f}{f['accuracy']:>11.2f} → {l['accuracy']:<11.2f}"
              f"{l['margin']:>13.4f}{r['tokens_per_s']:>10.0f}")
