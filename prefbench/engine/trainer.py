"""The training engine: one objective, (Q)LoRA, cached reference log-probs, resumable.

Everything except the objective (adapter initialisation, data order, batch composition,
optimizer, schedule, step count) is a function of the config and its seed, so runs of different
objectives on the same config differ only in the loss. Writes into ``output_dir``:

    config.yaml         the resolved config
    metrics.jsonl       one line per optimizer step
    checkpoint/         adapter + optimizer/scheduler/RNG state of the last saved step (and the reference
                        log-probs in force, for an objective whose reference moves: TR-DPO)
    adapter/            the final adapter in standard PEFT format, plus fingerprint.json: log-probs
                        of the first pairs (chosen then rejected) under the trained policy

An unpaired objective (``data="unpaired"``: KTO, BCO) trains on labelled examples instead of pairs, each
example's mismatched sequence (its prompt, the next example's response; KTO's KL reference point) standing
in the place of a pair's rejected side, so batching, packing, prefix sharing and the reference cache serve it
unchanged (:func:`~prefbench.engine.encoding.encode_examples`); ``batch_size`` then counts examples.
A listwise objective (``data="listwise"``: LiPO-λ, PRO) trains on lists of scored responses to one instruction
(:func:`~prefbench.engine.encoding.encode_lists`): a list's responses go through one packed row sharing the
instruction, the reference cache holds one value per response, and ``batch_size`` counts lists.
An objective with ``reference_update`` (TR-DPO) gets the current policy as its reference every ``tau`` steps
(:mod:`~prefbench.engine.reference_update`); its metrics lines say where (``reference_updated``).
An objective that reads the pairs' scores (``pair_scores``: ODPO) gets each batch's with its statistics; every pair
it trains on must carry them, which is checked while the data is read.

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
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from prefbench.engine.adapters import add_lora, load_adapter_weights
from prefbench.engine.checkpoint import is_trained, resume, save_adapter, save_checkpoint
from prefbench.engine.config import ConfigError, TrainConfig, TrainingError
from prefbench.engine.encoding import EncodedPairs, encode_examples, encode_lists, encode_pairs
from prefbench.engine.logprobs import SequenceLogProbs, list_logprobs, pair_logprobs, unpaired_logprobs
from prefbench.engine.models import (
    compute_dtype_of,
    enable_checkpointing,
    load_base_model,
    load_tokenizer,
    model_fingerprint,
)
from prefbench.engine.reference import ReferencePolicy, reference_logprobs
from prefbench.engine.reference_update import ReferenceUpdates
from prefbench.engine.statistics import BatchStatistics, packing_matches
from prefbench.engine.tracking import Trackers, require_trackers
from prefbench.formats.listwise import load_lists
from prefbench.formats.preferences import load_preferences
from prefbench.formats.records import ListRecord, PreferenceRecord, UnpairedExample
from prefbench.formats.unpaired import load_examples
from prefbench.registry import Objective, get_objective
from prefbench.util.files import atomic_write_text

log = logging.getLogger("prefbench")

METRIC_KEYS = ("loss", "accuracy", "margin", "chosen_logps", "rejected_logps")


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


def _accelerator(trackers: list | None = None):
    """The accelerator for this run (process group, device, mixed precision from ``accelerate launch``), with the
    experiment trackers it logs to (accelerate's tracker objects: ``Trackers.instances``)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    # split_batches: each step's batch is the global one, divided among the processes, so the prepared
    # scheduler steps once per optimizer step (not once per process); cpu: without CUDA keep to the
    # CPU as load_base_model always did (no MPS/XPU)
    return Accelerator(cpu=not torch.cuda.is_available(), dataloader_config=DataLoaderConfiguration(split_batches=True),
                       log_with=trackers or None)


def process_share(cfg: TrainConfig, num_processes: int) -> int:
    """Pairs of each micro-batch that one process takes; the global batch must split evenly."""
    if cfg.batch_size % (cfg.grad_accum * num_processes):
        raise ConfigError(f"batch_size ({cfg.batch_size}) must be divisible by grad_accum ({cfg.grad_accum}) x "
                          f"processes ({num_processes}) = {cfg.grad_accum * num_processes}")
    return cfg.micro_batch // num_processes


def train(cfg: TrainConfig) -> Path:
    """Train one objective on preference pairs; returns the output folder. Resumes from
    ``output_dir/checkpoint``."""
    if not cfg.data:
        raise ConfigError("no training data: set 'data' (a .jsonl/.json/.parquet file or a datasets name)")
    require_trackers(cfg.report_to)
    # the data is read and checked before any tokenizer or model is loaded, so a bad row fails at once; a
    # finished run does not read it again
    trained = is_trained(Path(cfg.output_dir))
    if get_objective(cfg.objective).data == "listwise":
        lists = [] if trained else _training_lists(cfg)
        return fit(cfg, lambda tokenizer: encode_lists(lists, tokenizer, cfg.max_length))
    if get_objective(cfg.objective).data == "unpaired":
        examples = [] if trained else _training_examples(cfg)
        return fit(cfg, lambda tokenizer: encode_examples(examples, tokenizer, cfg.max_length))
    records = [] if trained else _training_pairs(cfg)
    return fit(cfg, lambda tokenizer: encode_pairs(records, tokenizer, cfg.max_length))


def _training_examples(cfg: TrainConfig) -> list[UnpairedExample]:
    """The labelled examples of ``cfg.data`` (TRL's unpaired format), or of the pairs ``cfg.pair_kinds`` selects,
    each pair split into its chosen response (desirable) and its rejected one (undesirable)."""
    examples = load_examples(cfg.data, cfg.split, cfg.pair_kinds)
    if not examples:
        raise TrainingError(f"{cfg.data}: no {cfg.pair_kinds} pairs; pair_kinds '{cfg.pair_kinds}' leaves nothing to "
                            f"train {cfg.objective} on")
    desirable = sum(e.desirable for e in examples)
    log.info("%s: training on %d examples (%d desirable, %d undesirable) of %s", cfg.objective, len(examples),
             desirable, len(examples) - desirable, cfg.data)
    return examples


def _training_lists(cfg: TrainConfig) -> list[ListRecord]:
    """The lists of ``cfg.data`` (listwise rows), or its conditional pairs as lists of two; a list whose responses
    all have the same score ranks nothing and is left out."""
    lists = load_lists(cfg.data, cfg.split)
    ranked = [r for r in lists if len(set(r.scores)) > 1]
    if not ranked:
        raise TrainingError(f"{cfg.data}: no list with two different scores (nor a conditional pair) among its "
                            f"{len(lists)}; nothing to train {cfg.objective} on")
    log.info("%s: training on %d lists of %d responses in all (%d lists of equal scores left out) of %s",
             cfg.objective, len(ranked), sum(len(r.responses) for r in ranked), len(lists) - len(ranked), cfg.data)
    return ranked


def _training_pairs(cfg: TrainConfig) -> list[PreferenceRecord]:
    """The pairs of ``cfg.data`` that ``cfg.pair_kinds`` selects."""
    records = load_preferences(cfg.data, cfg.split)
    if "pair_scores" in get_objective(cfg.objective).statistics:
        _check_pair_scores(cfg, records)
    counts = f"{sum(r.kind == 'conditional' for r in records)} conditional, " \
             f"{sum(r.kind == 'joint' for r in records)} joint"
    if cfg.pair_kinds != "all":
        records = [r for r in records if r.kind == cfg.pair_kinds]
        if not records:
            raise TrainingError(f"{cfg.data}: no {cfg.pair_kinds} pairs among its {counts}; "
                                f"pair_kinds '{cfg.pair_kinds}' leaves nothing to train {cfg.objective} on")
    log.info("%s: training on %d pairs (%s pairs) of %s (%s)", cfg.objective, len(records), cfg.pair_kinds,
             cfg.data, counts)
    return records


def _check_pair_scores(cfg: TrainConfig, records: list[PreferenceRecord]) -> None:
    """An objective that reads the pairs' scores (ODPO) needs both on every pair it trains on, the chosen
    response's not below the rejected one's (such a pair contradicts its own preference)."""
    for n, r in enumerate(records, 1):
        if cfg.pair_kinds not in ("all", r.kind):
            continue
        if not r.scored:
            raise TrainingError(f"{cfg.data}: pair {n} has no score_chosen/score_rejected, and {cfg.objective} "
                                f"reads each pair's scores; train it on scored pairs (TRL/UltraFeedback-binarized "
                                f"rows with scores, or a prefbench run's on-policy pairs)")
        if r.score_chosen < r.score_rejected:
            raise TrainingError(f"{cfg.data}: pair {n}: score_chosen ({r.score_chosen:g}) is below score_rejected "
                                f"({r.score_rejected:g}); {cfg.objective} needs the chosen response scored at "
                                f"least as high")


def fit(cfg: TrainConfig, encoded: Callable[[Any], EncodedPairs]) -> Path:
    """The engine: ``cfg``'s objective on the sequences ``encoded(tokenizer)`` returns (preference
    pairs, or SFT examples with the ``sft`` objective)."""
    objective = get_objective(cfg.objective)   # it and its hyperparameters were checked with the config
    if "sequence_kl" in objective.statistics and cfg.init_adapter:
        # the live reference forward disables the adapter: its KL would be to the base model, not to this policy
        raise ConfigError(f"{cfg.objective} takes its sequential KL against the base model (the adapter disabled), "
                          f"so it cannot start from init_adapter's policy as its reference; train it without "
                          f"init_adapter")
    out = Path(cfg.output_dir)
    cfg.check_output_dir()
    if is_trained(out):
        log.info("%s is already trained (%s/adapter)", cfg.objective, out)
        return out
    require_trackers(cfg.report_to)
    trackers = Trackers(cfg, out)
    accelerator = _accelerator(trackers.instances)
    share = process_share(cfg, accelerator.num_processes)  # fail on an uneven split before loading anything
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model, cfg.prompt_format)
    pairs = encoded(tokenizer)
    if not pairs.paired and pairs.lists is None and objective.name != "sft":
        raise ConfigError(f"{cfg.objective} needs preference pairs; SFT data (no rejected response) trains only sft")
    if (pairs.labels is not None) != (objective.data == "unpaired"):
        raise ConfigError(f"{cfg.objective} trains on {objective.data} data, and these sequences are "
                          f"{'unpaired' if pairs.labels is not None else 'not unpaired examples'}")
    if (pairs.lists is not None) != (objective.data == "listwise"):
        raise ConfigError(f"{cfg.objective} trains on {objective.data} data, and these sequences are "
                          f"{'lists' if pairs.lists is not None else 'not lists'}")
    device = str(accelerator.device)
    model = add_lora(load_base_model(cfg.model, cfg.quantization, device, cfg.compute_dtype), cfg.lora_r,
                     cfg.lora_alpha, cfg.lora_dropout, cfg.seed)
    if cfg.init_adapter:     # a later round of an iterative objective: the policy (and reference) it ended at
        load_adapter_weights(model, cfg.init_adapter)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    packed = packing_matches(model, pairs, tokenizer.pad_token_id)
    reference = _reference(cfg, objective, model, pairs, tokenizer, accelerator, packed)
    statistics = BatchStatistics(model, pairs, tokenizer.pad_token_id, joint=objective.span == "joint", packed=packed,
                                 share_prefixes=cfg.share_prefixes, statistics=objective.statistics,
                                 span=objective.span)
    _Loop(cfg, objective, accelerator, model, statistics, reference, share, trackers).run(out)
    accelerator.wait_for_everyone()  # every process returns once the adapter is on disk
    return out


def _reference(cfg: TrainConfig, objective: Objective, model, pairs: EncodedPairs, tokenizer, accelerator,
               packed: bool) -> tuple[SequenceLogProbs, SequenceLogProbs] | None:
    """The cached reference pass, for objectives that read it (SimPO, ORPO, SFT never do: no pass): the initial
    policy's log-probs (the base model's, or ``init_adapter``'s policy, extrapolated as ``extrapolation`` says)."""
    if not objective.needs_reference:
        return None
    policy = ReferencePolicy(cfg.init_adapter, cfg.extrapolate_from, cfg.extrapolation)
    # the main process of each machine fills the cache; the others then read it instead of recomputing
    with accelerator.local_main_process_first():
        return reference_logprobs(model, pairs, tokenizer.pad_token_id, reference_key(cfg, model, tokenizer, packed),
                                  packed, policy=policy,
                                  token_span=objective.span if "token_logps" in objective.statistics else None)


def reference_key(cfg: TrainConfig, model, tokenizer, packed: bool) -> dict:
    """What fixes the reference log-probs besides the token ids: a cache filled on another device, in
    another precision or by other library versions is never reused (the reference would no longer be
    the initial policy). Version 3: packed batches; version 2: no bitsandbytes CPU repacking
    (models._never_repack_4bit_weights)."""
    import bitsandbytes
    import peft
    import transformers

    return {"version": 3, "model": model_fingerprint(cfg.model), "quantization": cfg.quantization,
            "max_length": cfg.max_length, "tokenizer": type(tokenizer).__name__, "vocab": len(tokenizer),
            "device": model.device.type, "dtype": str(compute_dtype_of(model)), "packed": packed,
            "versions": {m.__name__: str(m.__version__) for m in (torch, transformers, peft, bitsandbytes)}}


@dataclass
class _Loop:
    """The optimizer steps of one training run, from a resumed checkpoint (or step 0) to the final adapter."""

    cfg: TrainConfig
    objective: Objective
    accelerator: Any
    model: Any                      # the PEFT model (saved), which ``statistics`` computes with
    statistics: BatchStatistics
    reference: tuple[SequenceLogProbs, SequenceLogProbs] | None
    share: int
    trackers: Trackers

    def run(self, out: Path) -> None:
        cfg, acc = self.cfg, self.accelerator
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        start_step = resume(self.model, optimizer, scheduler, out, cfg.objective)
        main = acc.is_main_process
        metrics_path = out / "metrics.jsonl"
        if main:
            out.mkdir(parents=True, exist_ok=True)
            cfg.save_yaml(out / "config.yaml")
            atomic_write_text(out / "data.json", json.dumps({"pair_kinds": cfg.pair_kinds, **self.pairs.summary()},
                                                            indent=2) + "\n")
            # metrics past the checkpoint belong to steps that will be redone
            kept = metrics_path.read_text().splitlines()[:start_step] if metrics_path.exists() else []
            atomic_write_text(metrics_path, "".join(line + "\n" for line in kept))
        self.statistics, optimizer, scheduler = acc.prepare(self.statistics, optimizer, scheduler)
        steps = batch_order(len(self.pairs), cfg)
        updates = None
        if self.objective.reference_update:   # TR-DPO: the policy becomes the reference every tau steps
            updates = ReferenceUpdates(cfg, self.objective.resolve_params(**cfg.objective_params), acc, self.model,
                                       acc.unwrap_model(self.statistics), steps, self.share,
                                       0 if self.objective.batch_level else cfg.max_forward_tokens)
            self.reference = updates.resumed(out, start_step, self.reference)
        self.model.train()
        with self.trackers.running(acc), metrics_path.open("a") if main else open(os.devnull, "w") as metrics_file:
            bar = tqdm(range(start_step, cfg.max_steps), desc=f"train {cfg.objective}", unit="step",
                       initial=start_step, total=cfg.max_steps,
                       # no disable=False: it would override TQDM_DISABLE, which silences a local worker process
                       **({} if acc.is_local_main_process else {"disable": True}))
            for step in bar:
                if updates is not None:
                    self.reference = updates.at(step, self.reference)
                record = self.step(step, steps[step], optimizer, scheduler)
                if updates is not None:
                    record = updates.marked(record)
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                self.trackers.log(acc, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.2f}")
                if main and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.max_steps:
                    save_checkpoint(self.model, optimizer, scheduler, step + 1, out,
                                    reference=None if updates is None else updates.tensors(self.reference))
        if main:
            save_adapter(self.model, self.pairs, self.pad_id, out)

    @property
    def pairs(self) -> EncodedPairs:
        return self.accelerator.unwrap_model(self.statistics).pairs

    @property
    def pad_id(self) -> int:
        return self.accelerator.unwrap_model(self.statistics).pad_id

    def step(self, step: int, indices: list[int], optimizer, scheduler) -> dict:
        """One optimizer step over ``indices`` (in ``grad_accum`` micro-batches); its metrics record."""
        cfg = self.cfg
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        record = dict.fromkeys(METRIC_KEYS, 0.0)
        tokens = 0
        for m in range(cfg.grad_accum):
            micro = indices[m * cfg.micro_batch:(m + 1) * cfg.micro_batch]
            means, micro_tokens = self.micro_step(step, m, micro)
            for key, value in zip(METRIC_KEYS, means):
                record[key] += value / cfg.grad_accum
            tokens += micro_tokens
        grad_norm = self.accelerator.clip_grad_norm_(self.trainable, cfg.max_grad_norm).item()
        if not math.isfinite(grad_norm):
            raise TrainingError(f"{cfg.objective}: gradient norm is {grad_norm} at step {step + 1}; lower lr")
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        seconds = time.perf_counter() - t0
        return {"step": step + 1, **record, "grad_norm": grad_norm, "lr": lr, "tokens": tokens,
                "tokens_per_s": tokens / seconds}

    def micro_step(self, step: int, m: int, micro: list[int]) -> tuple[list[float], int]:
        """Forward and backward of this process's share of one micro-batch, in forwards of at most
        ``max_forward_tokens`` tokens; the global metric means and token count."""
        cfg, acc, rank = self.cfg, self.accelerator, self.accelerator.process_index
        idx = micro[rank * self.share:(rank + 1) * self.share]
        # a batch-level objective must see the micro-batch whole: its losses couple the pairs
        limit = 0 if self.objective.batch_level else cfg.max_forward_tokens
        chunks = self.pairs.forward_chunks(idx, limit, cfg.share_prefixes)
        sums = torch.zeros(len(METRIC_KEYS))
        for c, part in enumerate(chunks):
            # DDP averages gradients once per step, on the last forward's backward
            sync = m == cfg.grad_accum - 1 and c == len(chunks) - 1
            with contextlib.nullcontext() if sync else acc.no_sync(self.statistics):
                loss_sum, chunk_sums = self.forward(part)
                if not math.isfinite(chunk_sums[0]):
                    raise TrainingError(f"{cfg.objective}: loss is {chunk_sums[0]} at step {step + 1} "
                                        f"(micro-batch {m + 1}, pairs {part}); lower lr or check the data")
                # the micro-batch's mean loss, accumulated over its forwards
                acc.backward(loss_sum / (len(idx) * cfg.grad_accum))
            sums += chunk_sums
        local = torch.cat([sums / len(idx), torch.tensor([float(self.pairs.tokens(idx))])]).to(acc.device)
        # one row per process; equal shares, so the global means are the means of the rows
        rows = acc.gather(local[None]).cpu()
        return rows[:, :len(METRIC_KEYS)].mean(0).tolist(), int(rows[:, -1].sum())

    def forward(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective's summed loss over the pairs ``idx`` and the sums over them of each metric."""
        if self.pairs.lists is not None:
            return self.forward_lists(idx)
        chosen, rejected = self.pairs.split(self.statistics(idx))
        ref_c = ref_r = None
        if self.reference is not None:
            ix = torch.tensor(idx)
            ref_c, ref_r = (r.select(ix).to(chosen.response_logps.device) for r in self.reference)
        labels = self.pairs.labels
        if labels is None:
            scores = None
            if "pair_scores" in self.objective.statistics:   # present on every pair: checked before training
                scores = torch.tensor([self.pairs.scores[i] for i in idx], dtype=torch.float32,
                                      device=chosen.response_logps.device)
            stats = pair_logprobs(self.objective.span, chosen, rejected, ref_c, ref_r, scores)
        else:
            # an unpaired batch: "chosen" are the examples, "rejected" their mismatched sequences
            desirable = torch.tensor([labels[i] for i in idx], device=chosen.response_logps.device)
            stats = unpaired_logprobs(self.objective.span, chosen, rejected, desirable, ref_c, ref_r)
        out = self.objective(stats, **self.cfg.objective_params)
        margin = (out.chosen_rewards - out.rejected_rewards).detach()
        if labels is not None:
            # unpaired: the reward's distance from the reference point, signed by the label (accuracy: the share
            # of examples on their label's side); chosen/rejected_logps: the examples and their mismatched sequences
            margin = torch.where(desirable, margin, -margin)
        span_c, span_r = chosen.span(self.objective.span)[0], rejected.span(self.objective.span)[0]
        loss_sum = out.losses.sum()
        sums = torch.stack([loss_sum.detach(), (margin > 0).float().sum(), margin.sum(), span_c.detach().sum(),
                            span_r.detach().sum()]).float().cpu()
        return loss_sum, sums

    def forward_lists(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for the lists ``idx``. The metrics compare each list's best-scored response with its
        worst: accuracy is the share of lists whose best has the higher reward, chosen/rejected_logps are theirs."""
        pairs = self.pairs
        responses = self.statistics(idx)
        ref = None
        if self.reference is not None:   # both sides of the cache hold the responses (lists have no rejected side)
            ref = self.reference[0].select(torch.tensor(pairs.sequences(idx))).to(responses.response_logps.device)
        stats = list_logprobs(self.objective.span, responses, [len(pairs.lists[i]) for i in idx],
                              [pairs.scores[i] for i in idx], ref)
        out = self.objective(stats, **self.cfg.objective_params)
        margin = (out.chosen_rewards - out.rejected_rewards).detach()
        best, worst = stats.best_and_worst(stats.logps.detach())
        loss_sum = out.losses.sum()
        sums = torch.stack([loss_sum.detach(), (margin > 0).float().sum(), margin.sum(), best.sum(),
                            worst.sum()]).float().cpu()
        return loss_sum, sums
