"""LoRA adapters: the engine's dropout and the precision adapted forwards run in."""

import copy

import pytest
import torch

from prefbench.engine.adapters import LoRADropout, adapter_compute, add_lora
from prefbench.engine.models import load_base_model


def test_lora_dropout_drops_at_its_rate_and_keeps_the_mean():
    dropout = LoRADropout(0.05)
    assert dropout.p == 13 / 256                       # the rate rounded to a multiple of 1/256
    x = torch.ones(1000, 1000)
    torch.manual_seed(0)
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(13 / 256, abs=0.002)   # 1e6 draws: standard error 0.0002
    assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - 13 / 256))]
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)  # inverted dropout keeps the expectation
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y)                  # seeded like the rest of training
    dropout.eval()
    assert dropout(x) is x


def test_peft_dropout_is_replaced_and_no_dropout_stays_free(tiny_model_dir):
    model = add_lora(load_base_model(str(tiny_model_dir), "none"), dropout=0.05)
    layers = [m for m in model.modules() if isinstance(m, LoRADropout)]
    assert layers and all(layer.p == 13 / 256 for layer in layers)
    free = add_lora(load_base_model(str(tiny_model_dir), "none"), dropout=0.0)
    assert not any(isinstance(m, (LoRADropout, torch.nn.Dropout)) for m in free.modules())


def test_bfloat16_compute_autocasts_and_float32_does_not(tiny_model_dir):
    mixed = add_lora(load_base_model(str(tiny_model_dir), "none", dtype="bfloat16"))
    full = add_lora(load_base_model(str(tiny_model_dir), "none", dtype="float32"))
    # weights stay float32 on a CPU: the residual stream and the adapter's master weights are float32
    assert mixed.get_base_model().dtype == torch.float32
    with adapter_compute(mixed):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with adapter_compute(full):
        assert not torch.is_autocast_enabled("cpu")


def test_norm_outputs_are_cast_once_under_autocast_and_left_alone_otherwise(tiny_model_dir):
    model = load_base_model(str(tiny_model_dir), "none", dtype="bfloat16")
    norm = model.model.layers[0].input_layernorm
    x = torch.randn(1, 3, norm.weight.shape[0])
    assert norm(x).dtype == torch.float32
    with adapter_compute(model):
        assert norm(x).dtype == torch.bfloat16
        assert torch.equal(norm(x), norm.forward(x).to(torch.bfloat16))   # the same numbers a linear layer would cast


BF16_TOLERANCE = 0.02   # nats per token, mean |bfloat16 - float32| of summed log-probs (docs/performance.md)


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_bfloat16_statistics_agree_with_float32_within_the_stated_tolerance(tiny_model_dir, tiny_4bit_dir, prefs,
                                                                            quantization):
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.models import load_tokenizer
    from prefbench.engine.statistics import BatchStatistics
    from prefbench.formats.preferences import load_preferences

    folder = str(tiny_model_dir if quantization == "none" else tiny_4bit_dir)
    pairs = encode_pairs(load_preferences(prefs), load_tokenizer(folder), 512)
    stats = {}
    for dtype in ("float32", "bfloat16"):
        model = load_base_model(folder, quantization, dtype=dtype).eval()
        with torch.no_grad():
            stats[dtype] = BatchStatistics(model, pairs, 0, joint=True, packed=True, share_prefixes=True)(
                list(range(len(pairs))))
    full, half = stats["float32"], stats["bfloat16"]
    for span in ("response", "joint"):
        logps, tokens = full.span(span)
        per_token = (half.span(span)[0] - logps).abs().sum() / tokens.sum()
        assert 0 < per_token < BF16_TOLERANCE, (span, per_token)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_an_applied_adapter_computes_the_peft_policy_exactly(tiny_model_dir, tmp_path, dtype):
    """with_adapter's policy (LoRALinear layers in bfloat16, merged weights in float32) against PEFT's own model
    with the same adapter: the same logits, bit for bit in bfloat16 (the same products in the same order)."""
    from peft import PeftModel

    from prefbench.engine.adapters import LoRALinear, with_adapter
    from prefbench.engine.models import load_inference_model

    trained = add_lora(load_base_model(str(tiny_model_dir), "none"), dropout=0.05)
    torch.manual_seed(1)
    for name, p in trained.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)          # B starts at zero: give the adapter something to add
    trained.save_pretrained(tmp_path / "adapter")
    base = load_inference_model(str(tiny_model_dir), "none", dtype)
    policy = with_adapter(base, tmp_path / "adapter")
    peft_policy = PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "adapter")).eval()
    for name, p in peft_policy.named_parameters():
        if "lora_" in name:
            p.data = p.data.to(base.dtype)
    ids = torch.randint(0, 200, (3, 11))
    with torch.inference_mode(), adapter_compute(policy):
        mine = policy(ids).logits
    with torch.inference_mode(), adapter_compute(peft_policy):
        theirs = peft_policy(ids).logits
        plain = base(ids).logits
    assert not torch.equal(theirs, plain)                            # the adapter changes the policy
    if dtype == "bfloat16":
        assert sum(isinstance(m, LoRALinear) for m in policy.modules()) == 2 * 7   # every linear of 2 layers
        assert torch.equal(mine, theirs)
    else:
        assert not any(isinstance(m, LoRALinear) for m in policy.modules())    # merged into float32 weights
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
