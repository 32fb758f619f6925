"""Forward+backward time of every registered objective on 256 pairs, or 256 labelled examples for an unpaired
objective, or 256 lists of 4 scored responses for a listwise one (pytest-benchmark).

Run: .venv/bin/python -m pytest perf/bench_objectives.py --benchmark-only
The loss should be negligible next to one forward pass of the model on the same batch;
docs/performance.md compares the two.
"""

import pytest
import torch

from prefbench import ListLogProbs, PairLogProbs, UnpairedLogProbs, list_objectives

N = 256


def make_stats():
    """256 pairs, with the token-level statistics a token-level objective reads: each side's sum spread evenly over
    its tokens (rows zero-padded to the longest), sequential KLs of 0.01 nats per token, and scores in [0, 10)
    with the chosen one higher (ODPO's pair_scores)."""
    g = torch.Generator().manual_seed(0)
    ct, rt = torch.randint(20, 200, (N,), generator=g), torch.randint(20, 200, (N,), generator=g)
    cw, rl = -1.2 * ct.float(), -1.3 * rt.float()
    refw, refl = cw + torch.randn(N, generator=g), rl + torch.randn(N, generator=g)
    width = int(max(ct.max(), rt.max()))

    def rows(total, tokens):
        return torch.where(torch.arange(width) < tokens[:, None], (total / tokens)[:, None], 0.0)

    return PairLogProbs(cw.requires_grad_(), rl.requires_grad_(), ct, rt, refw, refl, cw.detach() * 0.5, ct // 2 + 1,
                        rows(cw.detach(), ct).requires_grad_(), rows(rl.detach(), rt).requires_grad_(),
                        rows(refw, ct), rows(refl, rt), (0.01 * ct).requires_grad_(), (0.01 * rt).requires_grad_(),
                        chosen_scores=5 + 5 * torch.rand(N, generator=g), rejected_scores=5 * torch.rand(N, generator=g))


def make_examples():
    """The pairs' chosen side as 256 examples, half of them desirable, the rejected side as mismatched sequences."""
    pairs = make_stats()
    desirable = torch.arange(N) % 2 == 0
    return UnpairedLogProbs(pairs.chosen_logps, pairs.chosen_tokens, desirable, pairs.ref_chosen_logps,
                            pairs.rejected_logps.detach(), pairs.ref_rejected_logps, pairs.rejected_tokens)


def make_lists(k: int = 4):
    """256 lists of k responses (the last list entry missing in every other list), with distinct scores in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(20, 200, (N, k), generator=g)
    logps = (-1.2 * tokens.float()).requires_grad_()
    mask = torch.ones(N, k, dtype=torch.bool)
    mask[::2, -1] = False
    return ListLogProbs(logps, tokens, torch.rand(N, k, generator=g), mask,
                        logps.detach() + torch.randn(N, k, generator=g))


MAKERS = {"paired": make_stats, "unpaired": make_examples, "listwise": make_lists}


@pytest.mark.parametrize("obj", list_objectives(), ids=lambda o: o.name)
def test_objective_forward_backward_256_pairs(benchmark, obj):
    stats = MAKERS[obj.data]()

    def step():
        loss = obj(stats).losses.mean()
        loss.backward()
        return loss

    assert torch.isfinite(benchmark(step))
