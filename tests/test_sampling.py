"""Next-token draws by inverse CDF over the top-p nucleus (prefbench.engine.sampling)."""

import pytest
import torch

from prefbench.engine import sampling
from prefbench.engine.sampling import nucleus_sample, row_uniforms


def test_hand_derived_draws_from_a_nucleus():
    # probabilities 0.5, 0.3, 0.2 at tokens 2, 0, 1; top_p 0.7 keeps {2, 0} (mass before token 1 is 0.8 >= 0.7),
    # renormalised over 0.8: a uniform below 0.5 / 0.8 = 0.625 draws token 2, above it token 0
    logits = torch.tensor([[0.3, 0.2, 0.5]]).log()
    draw = lambda u, p: int(nucleus_sample(logits, torch.tensor([u], dtype=torch.float64), top_p=p)[0])  # noqa: E731
    assert [draw(u, 0.7) for u in (0.0, 0.62, 0.63, 0.999)] == [2, 2, 0, 0]
    # the whole distribution in vocabulary order: [0, 0.3) -> 0, [0.3, 0.5) -> 1, [0.5, 1) -> 2
    assert [draw(u, 1.0) for u in (0.0, 0.29, 0.31, 0.49, 0.51, 0.999)] == [0, 0, 1, 1, 2, 2]
    # top_p at or below the largest probability keeps only the most likely token
    assert {draw(u, 0.5) for u in (0.0, 0.5, 0.999)} == {2}


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95])
def test_nucleus_is_the_one_transformers_keeps(top_p, monkeypatch):
    """Every token a draw can reach is in transformers' TopPLogitsWarper nucleus and every nucleus token is
    reached (uniforms placed at each kept token's CDF interval), with and without the full-sort fallback."""
    from transformers import TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(6, 300) * 3
    warped = TopPLogitsWarper(top_p)(None, logits.clone())
    for candidates in (300, 4):            # 4 candidates: the nucleus reaches past them, rows sorted in full
        monkeypatch.setattr(sampling, "_CANDIDATES", candidates)
        for row in range(len(logits)):
            kept = set(torch.isfinite(warped[row]).nonzero()[:, 0].tolist())
            probs = torch.softmax(logits[row].double(), -1)
            ordered = sorted(kept, key=lambda t: -probs[t])
            edges = torch.tensor([probs[ordered[:i]].sum() for i in range(len(ordered) + 1)]) / probs[ordered].sum()
            middles = (edges[:-1] + edges[1:]) / 2
            drawn = nucleus_sample(logits[row].expand(len(middles), -1), middles, top_p=top_p)
            assert drawn.tolist() == ordered


def test_draw_frequencies_match_the_tempered_nucleus():
    torch.manual_seed(1)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    n = 40_000
    drawn = nucleus_sample(logits.expand(n, -1), torch.rand(n, dtype=torch.float64), temperature=0.7, top_p=0.9)
    probs = torch.softmax(logits[0] / 0.7, -1)
    order = probs.argsort(descending=True)
    kept = order[:int(((probs[order].cumsum(0) - probs[order]) < 0.9).sum())]
    expected = torch.zeros(5)
    expected[kept] = probs[kept] / probs[kept].sum()
    observed = torch.bincount(drawn, minlength=5) / n
    assert torch.allclose(observed, expected.float(), atol=0.01)   # ~4 standard errors at n = 40k
    assert observed[order[-1]] == 0


def test_row_streams_are_reproducible_and_distinct():
    a = row_uniforms(0, (0, 1, 0), 5)
    assert torch.equal(a, row_uniforms(0, (0, 1, 0), 5))
    assert not torch.equal(a, row_uniforms(0, (0, 1, 1), 5))
    assert not torch.equal(a, row_uniforms(1, (0, 1, 0), 5))
    assert torch.equal(row_uniforms(0, (0, 1, 0), 8)[:5], a)          # a longer decode extends the same stream
    assert ((a >= 0) & (a < 1)).all()
