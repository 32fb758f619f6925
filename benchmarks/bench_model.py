"""One no-grad forward of the embedded model (4-bit NF4 and fp32) on a preference batch, to put
the objectives' cost (bench_objectives.py) in proportion. Slow: a few seconds a round.

Run: .venv/bin/python -m pytest benchmarks/bench_model.py --benchmark-only -m slow
"""

import pytest
import torch

from prefbench.logprobs import model_sequence_logprobs
from prefbench.models import EMBEDDED, load_base_model

PAIRS, TOKENS = 16, 128  # 32 sequences of 128 tokens; scale per pair to compare with 256 pairs


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["4bit", "none"])
def test_embedded_forward_16_pairs(benchmark, quantization):
    torch.set_num_threads(torch.get_num_threads())
    model = load_base_model(EMBEDDED, quantization).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2 * PAIRS, TOKENS), generator=g)
    attn = torch.ones_like(ids)
    resp = torch.zeros_like(ids)
    resp[:, TOKENS // 2:] = 1

    def forward():
        with torch.inference_mode():
            return model_sequence_logprobs(model, ids, attn, resp)

    out = benchmark.pedantic(forward, rounds=2, warmup_rounds=1)
    assert torch.isfinite(out.joint_logps).all()
    benchmark.extra_info["tokens"] = int(attn.sum())
