"""LoRA adapters on a frozen base: added with cheap dropout, computed in the base's precision, and
merged into base weights for generation or saving.

A run computing in bfloat16 runs its forwards under autocast (:func:`adapter_compute`): matrix products
in bfloat16, everything else, the adapter's float32 master weights included, in float32.
"""

from __future__ import annotations

import contextlib
import copy as copying
import hashlib
import json
import logging
from pathlib import Path

import torch

from prefbench.engine.models import compute_dtype_of, load_inference_model, load_tokenizer
from prefbench.util.errors import ConfigError
from prefbench.util.files import atomic_dir, atomic_write_text

log = logging.getLogger("prefbench")


class LoRADropout(torch.nn.Module):
    """Inverted dropout for a LoRA branch's input, with ``p`` rounded to a multiple of 1/256 (0.05 acts as
    13/256 = 0.0508). torch's CPU generator draws one number per element, which made dropout a fifth
    of a training step; here each 64-bit draw gives eight random bytes."""

    def __init__(self, p: float):
        super().__init__()
        self.cut = round(p * 256)            # a byte below this drops its element
        self.p = self.cut / 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        if torch.is_autocast_enabled(x.device.type):   # the LoRA product casts its input anyway: mask half the bytes
            x = x.to(torch.get_autocast_dtype(x.device.type))
        n = x.numel()
        draws = torch.empty((n + 7) // 8, dtype=torch.int64, device=x.device).random_(-2**63, 2**63 - 1)
        dropped = draws.view(torch.uint8)[:n].view(x.shape) < self.cut
        return x.masked_fill(dropped, 0) * (1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"


def add_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, seed: int = 0):
    """Wrap ``model`` with a LoRA adapter on every linear layer, initialised from ``seed``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    for module in peft_model.modules():
        for name, layer in getattr(module, "lora_dropout", {}).items():
            if isinstance(layer, torch.nn.Dropout):
                module.lora_dropout[name] = LoRADropout(layer.p)
    return peft_model


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")   # what fixes the policy an adapter folder is


def adapter_digest(adapter: str | Path) -> str:
    """A digest of an adapter folder's content (its config and weights): what keys values computed with the
    policy it makes, so a folder rewritten at the same path (a round trained again) is never taken for the old one."""
    h = hashlib.sha256()
    for name in ADAPTER_FILES:
        path = Path(adapter) / name
        if not path.is_file():
            raise ConfigError(f"{adapter}: not a PEFT adapter folder ({name} is missing)")
        h.update(path.read_bytes())
    return h.hexdigest()[:24]


def load_adapter_weights(model, adapter: str | Path) -> None:
    """Copy the weights of the saved adapter ``adapter`` into ``model``'s LoRA adapter, which must have its rank,
    scale and layers (an earlier round of the same run's, or any adapter trained with these LoRA settings)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_digest(adapter)    # both files are there
    saved = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    ours = model.peft_config["default"]
    for name in ("r", "lora_alpha"):
        if saved.get(name) != getattr(ours, name):
            raise ConfigError(f"{adapter}: its {name} is {saved.get(name)}, this run's LoRA has {getattr(ours, name)}; "
                              f"an adapter to start from must have the run's lora_r and lora_alpha")
    weights = load_file(Path(adapter) / "adapter_model.safetensors")
    try:
        loaded = set_peft_model_state_dict(model, weights)
    except RuntimeError as exc:     # torch's "size mismatch": another base model
        problem = str(exc).splitlines()[-1].strip()
        raise ConfigError(f"{adapter}: does not fit this model's adapter ({problem})") from None
    missing = [k for k in loaded.missing_keys if "lora_" in k]
    if loaded.unexpected_keys or missing:
        raise ConfigError(f"{adapter}: adapts other layers than this run's LoRA (e.g. "
                          f"{(loaded.unexpected_keys or missing)[0]})")


@contextlib.contextmanager
def policy_of(model, adapter: str | Path | None):
    """``model`` (PEFT-wrapped) computing as the policy ``adapter`` makes: the base model for None or "" (its
    adapter disabled), else its adapter holding that folder's weights; its own weights are restored after."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if not adapter:
        with model.disable_adapter():
            yield model
        return
    own = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    load_adapter_weights(model, adapter)
    try:
        yield model
    finally:
        set_peft_model_state_dict(model, own)


def adapter_compute(model):
    """The context a forward of ``model`` (PEFT-wrapped or not, loaded by ``load_base_model``) runs in: for a
    compute dtype below float32, autocast to it, with PEFT's cast of a LoRA branch's input to the adapter
    weights' dtype off (autocast casts the matmul inputs to the compute dtype anyway); otherwise nothing."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dtype = compute_dtype_of(model)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(base.device.type, dtype=dtype))
    if hasattr(model, "get_base_model"):
        from peft.helpers import disable_input_dtype_casting

        stack.enter_context(disable_input_dtype_casting(model))
    return stack


def with_adapter(base, adapter: Path, copy: bool = True):
    """``base`` with the LoRA adapter: merged into its weights (W + s·BA) when they are float32, the trained
    policy with no per-step adapter cost; kept apart when they are in a lower precision, where the sum
    would be rounded to it, so the policy computes as it did in training (each product rounded
    separately), as :class:`LoRALinear` layers. By default on a copy, so ``base`` itself stays the reference."""
    from peft import PeftModel

    policy = PeftModel.from_pretrained(copying.deepcopy(base) if copy else base, str(adapter))
    if base.dtype == torch.float32:
        return policy.merge_and_unload().eval()
    # the adapter's weights in the compute dtype once: autocast would round them to it at every call of every
    # adapted layer (it caches casts only of weights that train), the same numbers each time
    for name, p in policy.named_parameters():
        if "lora_" in name:
            p.data = p.data.to(base.dtype)
    return _without_peft(policy).eval()


class LoRALinear(torch.nn.Module):
    """An adapted linear layer for inference: ``base(x) + B(A(x))·s``, the products PEFT's ``lora.Linear``
    computes, in the same order (so the same numbers), without its per-call bookkeeping (argument checks,
    adapter-name lookups, dropout and dtype-cast calls), which decoding pays at every adapted layer of every
    token: 4% more answers/s on the embedded model, identical answers (``perf/generation.py``)."""

    def __init__(self, base: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, scaling: float):
        super().__init__()
        self.base = base
        self.a, self.b = torch.nn.Parameter(a, requires_grad=False), torch.nn.Parameter(b, requires_grad=False)
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + torch.nn.functional.linear(torch.nn.functional.linear(x, self.a), self.b) * self.scaling


def _without_peft(policy):
    """The PEFT model's own transformers model with every single-adapter ``lora.Linear`` as :class:`LoRALinear`."""
    from peft.tuners.lora import Linear

    model = policy.get_base_model()
    for name, module in list(model.named_modules()):
        if isinstance(module, Linear):
            (adapter,) = module.active_adapters
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(
                module.base_layer, module.lora_A[adapter].weight, module.lora_B[adapter].weight,
                module.scaling[adapter]))
    return model


def merge_and_save(model: str, quantization: str, adapter: Path, target: Path) -> None:
    """``model`` with ``adapter`` merged into its weights, saved with its tokenizer to ``target``."""
    merged = with_adapter(load_inference_model(model, quantization), adapter, copy=False)
    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp)
        load_tokenizer(model, prompt_format=None).save_pretrained(tmp)
        atomic_write_text(tmp / "prefbench_sft.json", json.dumps({"base": model, "quantization": quantization,
                                                                  "adapter": str(adapter)}, indent=2) + "\n")
    log.info("SFT model saved: %s", target)
