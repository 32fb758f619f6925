"""The training engine: one objective, (Q)LoRA, cached reference log-probs, resumable.

Everything except the objective (adapter initialisation, data order, batch composition,
optimizer, schedule, step count) is a function of the config and its seed, so runs of different
objectives on the same config differ only in the loss. Writes into ``output_dir``:

    config.yaml         the resolved config
    metrics.jsonl       one line per optimizer step
    checkpoint/         adapter + optimizer/scheduler/RNG state of the last saved step
    adapter/            the final adapter in standard PEFT format, plus fingerprint.json: log-probs
                        of the first pairs (chosen then rejected) under the trained policy

One code path for one process and many: ``train`` runs under an ``accelerate.Accelerator``, a no-op
wrapper in a plain process (CPU or one GPU). For data-parallel training on N GPUs launch it with

    accelerate launch --multi_gpu --num_processes 4 -m prefbench.cli train --config train.yaml

Every process loads the model on its own GPU (QLoRA included) and takes a contiguous share of each
micro-batch (``batch_size`` must be divisible by ``grad_accum * num_processes``); DDP averages the
gradients, so the global batch per optimizer step, the data order and, with ``lora_dropout: 0``, the
numbers match a one-process run up to float summation order (with dropout each process draws its own
masks). Metrics are global means. The main process of each machine computes the reference log-probs
while the others wait, then they read its cache (a pass longer than the NCCL timeout, 10 minutes by
default, would need the cache filled beforehand by a one-process run); the main process writes every
file, so ``output_dir`` must be visible to all processes. Without GPUs the same command runs N CPU
processes over gloo (``--cpu`` would start only one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from prefbench.artifacts import atomic_write_text
from prefbench.config import ConfigError, TrainConfig
from prefbench.data import PreferenceRecord, load_preferences
from prefbench.formatting import collate, encode
from prefbench.logprobs import SequenceLogProbs, model_sequence_logprobs, pair_logprobs
from prefbench.models import (add_lora, cache_root, enable_checkpointing, load_base_model, load_tokenizer,
                              model_fingerprint)
from prefbench.objective import get_objective

log = logging.getLogger("prefbench")


class TrainingError(RuntimeError):
    pass


@dataclass
class EncodedPairs:
    """Token ids and response masks of every pair's chosen and rejected side. SFT data has no
    rejected side (``rejected`` empty): then each example is one sequence."""

    chosen: list[tuple[list[int], list[int]]]
    rejected: list[tuple[list[int], list[int]]]
    truncated: int

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def paired(self) -> bool:
        return bool(self.rejected)

    def batch(self, indices: list[int], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Chosen sequences first, then rejected, in one padded batch (one forward pass for both)."""
        rejected = [self.rejected[i] for i in indices] if self.paired else []
        tensors = collate([self.chosen[i] for i in indices] + rejected, pad_id)
        return {k: v.to(device) for k, v in tensors.items()}

    def split(self, stats: SequenceLogProbs) -> tuple[SequenceLogProbs, SequenceLogProbs]:
        """A batch's statistics as (chosen, rejected); without a rejected side both are the one sequence."""
        return stats.split_pairs() if self.paired else (stats, stats)

    def digest(self) -> str:
        h = hashlib.sha256()
        for side in (self.chosen, self.rejected):
            for ids, mask in side:
                h.update(json.dumps([ids, mask]).encode())
        return h.hexdigest()


def _encode_sequences(items: list[tuple], tokenizer, max_length: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """``(prompt, response)`` items as (ids, response mask), cut to ``max_length``; and how many were cut."""
    out, truncated = [], 0
    for prompt, response in items:
        ids, mask = encode(tokenizer, prompt, response)
        if len(ids) > max_length:
            truncated += 1
            ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            raise TrainingError(f"a prompt is longer than max_length={max_length} tokens, leaving no response "
                                f"tokens; raise max_length or shorten the prompt ({str(prompt)[:60]!r}...)")
        out.append((ids, mask))
    if truncated:
        log.warning("truncated %d of %d sequences to max_length=%d tokens", truncated, len(items), max_length)
    return out, truncated


def encode_pairs(records: list[PreferenceRecord], tokenizer, max_length: int) -> EncodedPairs:
    items = [(r.prompt_chosen, r.response_chosen) for r in records] + \
            [(r.prompt_rejected, r.response_rejected) for r in records]
    encoded, truncated = _encode_sequences(items, tokenizer, max_length)
    return EncodedPairs(encoded[:len(records)], encoded[len(records):], truncated)


def encode_responses(examples: list, tokenizer, max_length: int) -> EncodedPairs:
    """SFT examples (``.prompt``, ``.response``) as sequences without a rejected side."""
    encoded, truncated = _encode_sequences([(e.prompt, e.response) for e in examples], tokenizer, max_length)
    return EncodedPairs(encoded, [], truncated)


def reference_logprobs(model, pairs: EncodedPairs, pad_id: int, key: dict, batch_size: int = 8
                       ) -> tuple[SequenceLogProbs, SequenceLogProbs]:
    """Log-probs of every sequence under the base model (adapter disabled, dropout off), both spans,
    cached on disk under a hash of (model, quantization, tokenizer output for this data)."""
    digest = hashlib.sha256(json.dumps({**key, "data": pairs.digest()}, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / "reference" / f"{digest}.pt"
    if path.exists():
        saved = torch.load(path)
        log.info("reference log-probs: reused cache %s", path)
        return SequenceLogProbs(**saved["chosen"]), SequenceLogProbs(**saved["rejected"])
    was_training = model.training
    model.eval()
    parts = []
    n = len(pairs)
    with torch.no_grad(), model.disable_adapter():
        for start in tqdm(range(0, n, batch_size), desc="reference log-probs", unit="batch"):
            idx = list(range(start, min(start + batch_size, n)))
            stats = model_sequence_logprobs(model, **pairs.batch(idx, pad_id, model.device)).to("cpu")
            parts.append(pairs.split(stats))
    model.train(was_training)
    chosen, rejected = SequenceLogProbs.cat([c for c, _ in parts]), SequenceLogProbs.cat([r for _, r in parts])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"chosen": vars(chosen), "rejected": vars(rejected), "key": key}, tmp)
    tmp.replace(path)
    return chosen, rejected


def lr_lambda(cfg: TrainConfig):
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to 0 at ``max_steps``."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def batch_order(n_pairs: int, cfg: TrainConfig) -> list[list[int]]:
    """Pair indices for every step: seeded reshuffles, epoch after epoch; same for every objective."""
    g = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    while len(order) < cfg.max_steps * cfg.batch_size:
        order += torch.randperm(n_pairs, generator=g).tolist()
    return [order[s * cfg.batch_size:(s + 1) * cfg.batch_size] for s in range(cfg.max_steps)]


def _save_checkpoint(model, optimizer, scheduler, step: int, out: Path) -> None:
    tmp = out / ".checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
    final = out / "checkpoint"
    old = out / ".checkpoint.old"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _accelerator():
    """The accelerator for this run (process group, device, mixed precision from ``accelerate launch``)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    # split_batches: each step's batch is the global one, divided among the processes, so the prepared
    # scheduler steps once per optimizer step (not once per process); cpu: without CUDA keep to the
    # CPU as load_base_model always did (no MPS/XPU)
    return Accelerator(cpu=not torch.cuda.is_available(), dataloader_config=DataLoaderConfiguration(split_batches=True))


def process_share(cfg: TrainConfig, num_processes: int) -> int:
    """Pairs of each micro-batch that one process takes; the global batch must split evenly."""
    if cfg.batch_size % (cfg.grad_accum * num_processes):
        raise ConfigError(f"batch_size ({cfg.batch_size}) must be divisible by grad_accum ({cfg.grad_accum}) x "
                          f"processes ({num_processes}) = {cfg.grad_accum * num_processes}")
    return cfg.micro_batch // num_processes


def _check_same_run(cfg: TrainConfig, out: Path) -> None:
    saved = out / "config.yaml"
    if saved.exists():
        previous = TrainConfig.from_yaml(saved).identity()
        if previous != cfg.identity():
            changed = sorted(k for k in previous if previous[k] != cfg.identity()[k])
            raise ConfigError(f"{out} holds a run with a different config (changed: {', '.join(changed)}); "
                              "use another output_dir or delete it")


def train(cfg: TrainConfig) -> Path:
    """Train one objective on preference pairs; returns the output folder. Resumes from
    ``output_dir/checkpoint``."""
    if not cfg.data:
        raise ConfigError("no training data: set 'data' (a .jsonl/.json/.parquet file or a datasets name)")

    def encoded(tokenizer) -> EncodedPairs:
        records = load_preferences(cfg.data, cfg.split)
        log.info("%d pairs (%d conditional, %d joint) from %s", len(records),
                 sum(r.kind == "conditional" for r in records), sum(r.kind == "joint" for r in records), cfg.data)
        return encode_pairs(records, tokenizer, cfg.max_length)

    return fit(cfg, encoded)


def fit(cfg: TrainConfig, encoded: Callable[[Any], EncodedPairs]) -> Path:
    """The engine: ``cfg``'s objective on the sequences ``encoded(tokenizer)`` returns (preference
    pairs, or SFT examples with the ``sft`` objective)."""
    objective = get_objective(cfg.objective)
    objective.resolve_params(**cfg.objective_params)  # fail on bad hyperparameters before loading anything
    out = Path(cfg.output_dir)
    _check_same_run(cfg, out)
    if (out / "adapter" / "adapter_config.json").exists():
        log.info("%s is already trained (%s/adapter)", cfg.objective, out)
        return out
    accelerator = _accelerator()
    share = process_share(cfg, accelerator.num_processes)  # fail on an uneven split before loading anything
    main = accelerator.is_main_process
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    pairs = encoded(tokenizer)
    if not pairs.paired and objective.name != "sft":
        raise ConfigError(f"{cfg.objective} needs preference pairs; SFT data (no rejected response) trains only sft")

    device = accelerator.device
    model = add_lora(load_base_model(cfg.model, cfg.quantization, str(device)), cfg.lora_r, cfg.lora_alpha,
                     cfg.lora_dropout, cfg.seed)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    # version 2: computed without bitsandbytes' in-place CPU repacking (models._never_repack_4bit_weights)
    ref_key = {"version": 2, "model": model_fingerprint(cfg.model), "quantization": cfg.quantization,
               "max_length": cfg.max_length,
               "tokenizer": type(tokenizer).__name__, "vocab": len(tokenizer)}
    ref_chosen = ref_rejected = None
    if objective.needs_reference:  # SimPO, ORPO, SFT never read it: skip a whole pass over the data
        # the main process of each machine fills the cache; the others then read it instead of recomputing
        with accelerator.local_main_process_first():
            ref_chosen, ref_rejected = reference_logprobs(model, pairs, tokenizer.pad_token_id, ref_key)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    start_step = 0
    metrics_path = out / "metrics.jsonl"
    if (out / "checkpoint" / "trainer_state.pt").exists():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = torch.load(out / "checkpoint" / "trainer_state.pt", map_location="cpu", weights_only=False)
        set_peft_model_state_dict(model, load_file(out / "checkpoint" / "adapter_model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_step = state["step"]
        log.info("resuming %s from step %d", cfg.objective, start_step)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save_yaml(out / "config.yaml")
        # metrics past the checkpoint belong to steps that will be redone
        kept = metrics_path.read_text().splitlines()[:start_step] if metrics_path.exists() else []
        atomic_write_text(metrics_path, "".join(line + "\n" for line in kept))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    steps = batch_order(len(pairs), cfg)
    rank = accelerator.process_index
    model.train()
    bar = tqdm(range(start_step, cfg.max_steps), desc=f"train {cfg.objective}", unit="step",
               initial=start_step, total=cfg.max_steps, disable=not accelerator.is_local_main_process)
    keys = ("loss", "accuracy", "margin", "chosen_logps", "rejected_logps")
    with metrics_path.open("a") if main else open(os.devnull, "w") as metrics_file:
        for step in bar:
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            record = dict.fromkeys(keys, 0.0)
            tokens = 0
            for m in range(cfg.grad_accum):
                micro = steps[step][m * cfg.micro_batch:(m + 1) * cfg.micro_batch]
                idx = micro[rank * share:(rank + 1) * share]
                # DDP averages gradients once per step, on the last micro-batch's backward
                sync = m == cfg.grad_accum - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    batch = pairs.batch(idx, tokenizer.pad_token_id, device)
                    chosen, rejected = pairs.split(model_sequence_logprobs(model, **batch))
                    ix = torch.tensor(idx)
                    ref_c, ref_r = ((r.select(ix).to(device) for r in (ref_chosen, ref_rejected))
                                    if ref_chosen is not None else (None, None))
                    out_ = objective(pair_logprobs(objective.span, chosen, rejected, ref_c, ref_r),
                                     **cfg.objective_params)
                    loss = out_.losses.mean()
                    margin = (out_.chosen_rewards - out_.rejected_rewards).detach()
                    span_c, span_r = chosen.span(objective.span)[0], rejected.span(objective.span)[0]
                    local = torch.stack([loss.detach(), (margin > 0).float().mean(), margin.mean(),
                                         span_c.detach().mean(), span_r.detach().mean(),
                                         batch["attention_mask"].sum()]).float()
                    # one row per process; equal shares, so the global means are the means of the rows
                    rows = accelerator.gather(local[None]).cpu()
                    means = rows[:, :len(keys)].mean(0).tolist()
                    if not math.isfinite(means[0]):
                        raise TrainingError(f"{cfg.objective}: loss is {means[0]} at step {step + 1} "
                                            f"(micro-batch {m + 1}, pairs {micro}); lower lr or check the data")
                    accelerator.backward(loss / cfg.grad_accum)
                for key, value in zip(keys, means):
                    record[key] += value / cfg.grad_accum
                tokens += int(rows[:, -1].sum())
            grad_norm = accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm).item()
            if not math.isfinite(grad_norm):
                raise TrainingError(f"{cfg.objective}: gradient norm is {grad_norm} at step {step + 1}; lower lr")
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            seconds = time.perf_counter() - t0
            record = {"step": step + 1, **record, "grad_norm": grad_norm, "lr": lr, "tokens": tokens,
                      "tokens_per_s": tokens / seconds}
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.2f}")
            if main and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.max_steps:
                _save_checkpoint(unwrapped, optimizer, scheduler, step + 1, out)
    if main:
        _save_adapter(unwrapped, pairs, tokenizer.pad_token_id, out)
    accelerator.wait_for_everyone()  # every process returns once the adapter is on disk
    return out


def _save_adapter(model, pairs: EncodedPairs, pad_id: int, out: Path) -> None:
    """The final adapter, with a fingerprint to check that it reproduces the trained policy when reloaded."""
    tmp = out / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    model.eval()
    fp_pairs = list(range(min(4, len(pairs))))
    with torch.no_grad():
        fingerprint = model_sequence_logprobs(model, **pairs.batch(fp_pairs, pad_id, model.device))
    atomic_write_text(tmp / "fingerprint.json", json.dumps({"pairs": fp_pairs,
                                                            "response_logps": fingerprint.response_logps.tolist(),
                                                            "joint_logps": fingerprint.joint_logps.tolist()}))
    tmp.rename(out / "adapter")
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
