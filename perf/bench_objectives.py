"""Forward+backward time of every registered objective on 256 pairs, or 256 labelled examples for an unpaired
objective (pytest-benchmark).

Run: .venv/bin/python -m pytest perf/bench_objectives.py --benchmark-only
The loss should be negligible next to one forward pass of the model on the same batch;
docs/performance.md compares the two.
"""

import pytest
import torch

from prefbench import PairLogProbs, UnpairedLogProbs, list_objectives

N = 256


def make_stats():
    """256 pairs, with the token-level statistics a token-level objective reads: each side's sum spread evenly over
    its tokens (rows zero-padded to the longest), and sequential KLs of 0.01 nats per token."""
    g = torch.Generator().manual_seed(0)
    ct, rt = torch.randint(20, 200, (N,), generator=g), torch.randint(20, 200, (N,), generator=g)
    cw, rl = -1.2 * ct.float(), -1.3 * rt.float()
    refw, refl = cw + torch.randn(N, generator=g), rl + torch.randn(N, generator=g)
    width = int(max(ct.max(), rt.max()))

    def rows(total, tokens):
        return torch.where(torch.arange(width) < tokens[:, None], (total / tokens)[:, None], 0.0)

    return PairLogProbs(cw.requires_grad_(), rl.requires_grad_(), ct, rt, refw, refl, cw.detach() * 0.5, ct // 2 + 1,
                        rows(cw.detach(), ct).requires_grad_(), rows(rl.detach(), rt).requires_grad_(),
                        rows(refw, ct), rows(refl, rt), (0.01 * ct).requires_grad_(), (0.01 * rt).requires_grad_())


def make_examples():
    """The pairs' chosen side as 256 examples, half of them desirable, the rejected side as mismatched sequences."""
    pairs = make_stats()
    desirable = torch.arange(N) % 2 == 0
    return UnpairedLogProbs(pairs.chosen_logps, pairs.chosen_tokens, desirable, pairs.ref_chosen_logps,
                            pairs.rejected_logps.detach(), pairs.ref_rejected_logps, pairs.rejected_tokens)


@pytest.mark.parametrize("obj", list_objectives(), ids=lambda o: o.name)
def test_objective_forward_backward_256_pairs(benchmark, obj):
    stats = make_examples() if obj.data == "unpaired" else make_stats()

    def step():
        loss = obj(stats).losses.mean()
        loss.backward()
        return loss

    assert torch.isfinite(benchmark(step))
