"""LoRA adapters: the engine's dropout and the precision adapted forwards run in."""

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
