"""A reference that moves during training (TR-DPO's hard update): every ``tau`` optimizer steps the reference
becomes the current policy.

The reference log-probs are cached and the data order is fixed in advance (``trainer.batch_order``), so the
update is exact and cheap: at step s = kτ (k ≥ 1, counted in steps done) the pairs that steps s … s+τ−1 use
are scored once under the current policy (no grad, eval mode, adapter on) and stand in for the reference
until the next update. The update step's own pairs are scored in exactly the forwards that step trains in
(same chunks, same packing, same process shares), so with dropout off their policy and reference numbers are
bit-identical: that step's margins are 0 and a DPO loss is ln 2. The block's other pairs are scored once each
(a pair drawn twice in a block keeps its first score). Each process scores its shares and the scores are
gathered, so every process holds the whole block's reference, which the main process saves with each
checkpoint: a run resumed inside a block reads it back and is bit-identical to one never stopped.

Steps 0 … τ−1 use the cached reference (the initial policy), so τ past the last step is exactly the objective
with a fixed reference, at no cost. An update costs one gradient-free forward of each distinct pair of its
block: about a third of a training step per step, less when a block holds a pair more than once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from prefbench.engine.checkpoint import CheckpointError, saved_reference
from prefbench.engine.logprobs import SequenceLogProbs
from prefbench.registry import Objective
from prefbench.util.errors import ConfigError

log = logging.getLogger("prefbench")

_SIDES = ("chosen", "rejected")
_FIELDS = ("response_logps", "response_tokens", "joint_logps", "joint_tokens")   # what the reference cache holds


def check_update_params(objective: Objective, params: dict[str, float]) -> None:
    """A reference-updating objective's ``tau`` (whole steps) and ``alpha`` (1 only), checked with the config."""
    name, tau = objective.name, params["tau"]
    if tau != int(tau):
        raise ConfigError(f"objective '{name}': tau counts optimizer steps between reference updates and must "
                          f"be a whole number, got {tau:g}")
    if params.get("alpha", 1.0) < 1:
        raise ConfigError(f"objective '{name}': alpha {params['alpha']:g} < 1 (a soft reference update) is not "
                          f"supported: mixing LoRA factors is not mixing the weights (ΔW = BA), so the mixed reference "
                          f"has no adapter form; use alpha 1, the hard update every tau steps")
    if objective.statistics:    # an update rescores sequence sums only; per-token statistics would go stale
        raise ConfigError(f"objective '{name}': reference updates and token statistics "
                          f"({', '.join(objective.statistics)}) together are not supported")
    if objective.data == "listwise":    # an update rescores a pair's two sides (or an example and its mismatch)
        raise ConfigError(f"objective '{name}': reference updates on listwise data are not supported")


class ReferenceUpdates:
    """The reference in force at each step of one run of a reference-updating objective (``tau`` from its
    parameters). ``statistics`` is the unwrapped :class:`~prefbench.engine.statistics.BatchStatistics` the steps
    train with; ``steps`` the pair indices of every step; ``share`` the pairs of a micro-batch one process
    takes; ``limit`` the tokens of one forward (``_Loop.micro_step``'s)."""

    def __init__(self, cfg, params: dict[str, float], accelerator, model, statistics, steps: list[list[int]],
                 share: int, limit: int):
        self.tau = int(params["tau"])
        self.cfg, self.accelerator, self.model, self.statistics = cfg, accelerator, model, statistics
        self.steps, self.share, self.limit = steps, share, limit
        self.updated, self.seconds = False, 0.0     # at the last step asked for: an update, and its scoring time

    def resumed(self, out: Path, start_step: int,
                reference: tuple[SequenceLogProbs, SequenceLogProbs]) -> tuple[SequenceLogProbs, SequenceLogProbs]:
        """The reference in force at ``start_step``: the one the checkpoint saved, or ``reference`` at step 0."""
        if start_step == 0:
            return reference
        tensors = saved_reference(out)
        n = len(self.statistics.pairs)
        names = [f"{side}.{name}" for side in _SIDES for name in _FIELDS]
        if sorted(tensors) != sorted(names) or any(tensors[k].shape != (n,) for k in names):
            raise CheckpointError(f"cannot resume from {Path(out) / 'checkpoint'}: it holds no reference log-probs of "
                                  f"this run's {n} pairs; delete the folder to train from step 0")
        return tuple(SequenceLogProbs(*(tensors[f"{side}.{name}"] for name in _FIELDS)) for side in _SIDES)

    @staticmethod
    def tensors(reference: tuple[SequenceLogProbs, SequenceLogProbs]) -> dict[str, torch.Tensor]:
        """The reference as named tensors, for the checkpoint."""
        return {f"{side}.{name}": getattr(logps, name).contiguous()
                for side, logps in zip(_SIDES, reference) for name in _FIELDS}

    def at(self, step: int, reference: tuple[SequenceLogProbs, SequenceLogProbs]
           ) -> tuple[SequenceLogProbs, SequenceLogProbs]:
        """The reference for ``step`` (0-based): ``reference``, or the policy's log-probs after ``step`` steps
        when ``step`` is a positive multiple of τ."""
        self.updated = step > 0 and step % self.tau == 0
        if not self.updated:
            return reference
        started = time.perf_counter()
        block = self.steps[step:step + self.tau]
        n_proc, rank = self.accelerator.num_processes, self.accelerator.process_index
        first = [self._forwards(block[0], r) for r in range(n_proc)]     # each process's forwards of this step
        seen = {i for parts in first for part in parts for i in part}
        rest = list(dict.fromkeys(i for indices in block[1:] for i in indices if i not in seen))
        # the rest in equal shares, so that the scores gather (a short share repeats pairs)
        per = -(-len(rest) // n_proc)
        shares = [[rest[(r + n_proc * j) % len(rest)] for j in range(per)] for r in range(n_proc)]
        parts = first[rank] + [part for g in range(0, per, self.share) for part in
                               self.statistics.pairs.forward_chunks(shares[rank][g:g + self.share], self.limit,
                                                                    self.cfg.share_prefixes)]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                scores = torch.cat([self._score(part) for part in parts])
        finally:
            self.model.train(was_training)
        gathered = self.accelerator.gather(scores.to(self.accelerator.device)).cpu()
        # the gathered rows: process 0's forwards of this step and its share of the rest, then process 1's, ...
        order: list[int] = []
        for r in range(n_proc):
            order += [i for part in first[r] for i in part] + shares[r]
        row_of: dict[int, int] = {}
        for row, i in enumerate(order):
            row_of.setdefault(i, row)
        pairs, rows = torch.tensor(list(row_of)), torch.tensor(list(row_of.values()))
        new = []
        for k, side in enumerate(reference):
            columns = []
            for c, name in enumerate(_FIELDS):
                column = getattr(side, name).clone()
                column[pairs] = gathered[rows, 4 * k + c].to(column.dtype)
                columns.append(column)
            new.append(SequenceLogProbs(*columns))
        self.seconds = time.perf_counter() - started
        log.info("%s: reference reset to the policy after %d steps (%d pairs scored in %.1f s)", self.cfg.objective,
                 step, len(row_of), self.seconds)
        return new[0], new[1]

    def marked(self, record: dict) -> dict:
        """A step's metrics record with ``reference_updated``; an update's scoring time counts in the step's
        ``tokens_per_s``, so throughput compares honestly with objectives whose reference stays."""
        if self.updated:
            record["tokens_per_s"] = record["tokens"] / (record["tokens"] / record["tokens_per_s"] + self.seconds)
        return {**record, "reference_updated": self.updated}

    def _forwards(self, indices: list[int], rank: int) -> list[list[int]]:
        """The forwards process ``rank`` trains the step of ``indices`` in, as ``_Loop.micro_step`` splits it."""
        cfg, micro = self.cfg, self.cfg.micro_batch
        shares = [indices[m * micro:(m + 1) * micro][rank * self.share:(rank + 1) * self.share]
                  for m in range(cfg.grad_accum)]
        return [part for idx in shares for part in self.statistics.pairs.forward_chunks(idx, self.limit,
                                                                                        cfg.share_prefixes)]

    def _score(self, part: list[int]) -> torch.Tensor:
        """[pairs, 8]: the chosen sequences' four statistics, then the rejected ones', under the current policy."""
        chosen, rejected = self.statistics.pairs.split(self.statistics(part))
        return torch.stack([getattr(side, name).double() for side in (chosen, rejected) for name in _FIELDS], 1).cpu()
