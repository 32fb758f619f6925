"""TR-DPO: the engine resets the reference to the policy every τ steps (prefbench.engine.reference_update).

At an update step the reference is the policy, scored in the same forwards, so the step's margins are exactly 0
and its DPO loss ln 2; between updates they are not. τ past the last step is DPO bit for bit, and a run killed
inside a block resumes from the block's saved reference to the numbers of an uninterrupted run. TRL's
``SyncRefModelCallback`` (TRL 1.16, trl/trainer/callbacks.py) syncs after global steps τ, 2τ, ... with α = 1
copying the weights: the steps that follow, τ+1, 2τ+1, ..., are the ones that start from the new reference.
"""

import json
import math

import pytest
import torch

from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.trainer import train
from prefbench.registry import PairLogProbs, get_objective

LN2_F32 = torch.tensor(math.log(2)).item()     # the loss is computed and logged from float32


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))


def cfg(model_dir, data, out, objective="tr_dpo", **kw):
    base = dict(model=str(model_dir), data=str(data), quantization="none", compute_dtype="float32", batch_size=4,
                max_steps=6, lr=5e-3, warmup_steps=1, save_every=3, output_dir=str(out), objective=objective)
    return TrainConfig(**{**base, **kw})


def metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def test_the_loss_is_dpos():
    g = torch.Generator().manual_seed(0)
    stats = PairLogProbs(*(torch.randn(5, generator=g, dtype=torch.float64) for _ in range(2)),
                         torch.ones(5), torch.ones(5), *(torch.randn(5, generator=g, dtype=torch.float64)
                                                         for _ in range(2)))
    ours, dpo = get_objective("tr_dpo")(stats, beta=0.3, tau=4), get_objective("dpo")(stats, beta=0.3)
    assert torch.equal(ours.losses, dpo.losses) and torch.equal(ours.chosen_rewards, dpo.chosen_rewards)
    z = (stats.chosen_logps - stats.ref_chosen_logps) - (stats.rejected_logps - stats.ref_rejected_logps)
    assert ours.losses.tolist() == pytest.approx(torch.log1p(torch.exp(-0.3 * z)).tolist(), rel=1e-12)
    assert get_objective("tr_dpo").family == "iterative" and get_objective("tr_dpo").reference_update


@pytest.mark.parametrize("grad_accum, max_forward_tokens", [(1, 0), (2, 40)])
def test_each_update_step_starts_at_margin_0_and_loss_ln2(tiny_model_dir, prefs, tmp_path, grad_accum,
                                                           max_forward_tokens):
    out = train(cfg(tiny_model_dir, prefs, tmp_path / "run", objective_params={"tau": 2}, max_steps=7,
                    grad_accum=grad_accum, max_forward_tokens=max_forward_tokens))
    rows = metrics(out)
    assert [r["reference_updated"] for r in rows] == [False, False, True, False, True, False, True]
    for r in rows:
        if r["reference_updated"]:     # steps 3, 5, 7: the policy after steps 2, 4, 6 is the reference
            assert r["margin"] == 0.0 and r["accuracy"] == 0.0
            assert r["loss"] == pytest.approx(LN2_F32, abs=2e-7)     # a float32 mean of ln 2's
        elif r["step"] > 1:            # the policy has moved since the update
            assert abs(r["loss"] - math.log(2)) > 1e-4 and r["margin"] != 0.0
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)   # the initial policy (cached reference pass)


@pytest.mark.parametrize("mode", [dict(gradient_checkpointing=True), dict(compute_dtype="bfloat16"),
                                  dict(share_prefixes=False), dict(quantization="4bit")])
def test_update_steps_are_exact_in_every_engine_mode(tiny_model_dir, tiny_4bit_dir, prefs, tmp_path, mode):
    """Recomputed activations, bfloat16 autocast, unshared prefixes, a 4-bit base: the update step's forwards are the
    scoring's, so its margins are still exactly 0."""
    model = tiny_4bit_dir if mode.get("quantization") == "4bit" else tiny_model_dir
    rows = metrics(train(cfg(model, prefs, tmp_path / "run", objective_params={"tau": 2}, max_steps=5, **mode)))
    assert [r["step"] for r in rows if r["reference_updated"]] == [3, 5]
    assert all(r["margin"] == 0.0 and r["loss"] == pytest.approx(LN2_F32, abs=2e-7)
               for r in rows if r["reference_updated"])
    assert rows[1]["margin"] != 0.0 and rows[3]["margin"] != 0.0


def test_an_updates_scoring_time_counts_in_its_steps_throughput():
    """100 tokens trained in 1 s plus 1 s of rescoring: 50 tokens/s on the update step, 100 on the others."""
    from prefbench.engine.reference_update import ReferenceUpdates

    updates = ReferenceUpdates(TrainConfig(data="x"), {"tau": 2}, None, None, None, [], 1, 0)
    updates.updated, updates.seconds = True, 1.0
    assert updates.marked({"tokens": 100, "tokens_per_s": 100.0}) == \
        {"tokens": 100, "tokens_per_s": 50.0, "reference_updated": True}
    updates.updated = False
    assert updates.marked({"tokens": 100, "tokens_per_s": 100.0}) == \
        {"tokens": 100, "tokens_per_s": 100.0, "reference_updated": False}


def test_tau_past_the_last_step_is_dpo_bit_for_bit(tiny_model_dir, prefs, tmp_path):
    dpo = train(cfg(tiny_model_dir, prefs, tmp_path / "dpo", objective="dpo"))
    tr = train(cfg(tiny_model_dir, prefs, tmp_path / "tr", objective_params={"tau": 6}))
    tr_rows = metrics(tr)
    assert not any(r.pop("reference_updated") for r in tr_rows)
    assert tr_rows == metrics(dpo)
    assert (tr / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (dpo / "adapter" / "adapter_model.safetensors").read_bytes()


def test_updates_move_the_training_away_from_dpo(tiny_model_dir, prefs, tmp_path):
    dpo = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "dpo", objective="dpo")))
    tr = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "tr", objective_params={"tau": 3})))
    assert [r.pop("reference_updated") for r in tr] == [False] * 3 + [True] + [False] * 2
    assert tr[:3] == dpo[:3] and tr[3]["loss"] != dpo[3]["loss"]


@pytest.mark.parametrize("lora_dropout", [0.0, 0.1])
def test_a_run_killed_inside_a_block_resumes_bit_identical(tiny_model_dir, prefs, tmp_path, monkeypatch,
                                                          lora_dropout):
    """τ = 2, a checkpoint after step 3 (inside the block the update after step 2 opened), killed in step 5: the
    resumed run reads the block's reference from the checkpoint (it is no longer the policy of any saved state)."""
    from safetensors.torch import load_file

    from prefbench.engine.checkpoint import saved_reference

    settings = dict(objective_params={"tau": 2}, lora_dropout=lora_dropout)
    full = train(cfg(tiny_model_dir, prefs, tmp_path / "full", **settings))
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tiny_model_dir, prefs, tmp_path / "killed", **settings))
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    saved = saved_reference(tmp_path / "killed")
    assert sorted(saved) == sorted(f"{side}.{f}" for side in ("chosen", "rejected")
                                   for f in ("response_logps", "response_tokens", "joint_logps", "joint_tokens"))
    assert saved["chosen.response_logps"].shape == (12,)
    (cached,) = (tmp_path / "cache" / "reference").glob("*.safetensors")     # the initial policy's
    assert not torch.equal(saved["chosen.response_logps"], load_file(cached)["chosen.response_logps"])
    resumed = train(cfg(tiny_model_dir, prefs, tmp_path / "killed", **settings))
    assert metrics(resumed) == metrics(full)
    assert (resumed / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (full / "adapter" / "adapter_model.safetensors").read_bytes()


def test_a_checkpoint_without_the_blocks_reference_is_refused(tiny_model_dir, prefs, tmp_path, monkeypatch):
    """A tr_dpo checkpoint inside an updated block that holds no reference (as a checkpoint saved without it would
    be) cannot resume: the block's reference is the policy of a step no longer saved anywhere."""
    import prefbench.engine.trainer as engine
    from prefbench.engine.checkpoint import CheckpointError

    def killed(*args):
        raise KeyboardInterrupt

    settings = dict(objective_params={"tau": 2}, max_steps=4)
    real_save = engine.save_checkpoint
    with monkeypatch.context() as m:
        m.setattr(engine, "save_checkpoint", lambda *args, reference=None: real_save(*args))
        m.setattr(engine, "save_adapter", killed)       # the run stops with its checkpoint after step 3 in place
        with pytest.raises(KeyboardInterrupt):
            train(cfg(tiny_model_dir, prefs, tmp_path / "run", **settings))
    with pytest.raises(CheckpointError, match="holds no reference log-probs of this run's 12 pairs"):
        train(cfg(tiny_model_dir, prefs, tmp_path / "run", **settings))


@pytest.mark.parametrize("params, message", [
    ({"alpha": 0.6}, "alpha 0.6 < 1 \\(a soft reference update\\) is not supported: mixing LoRA factors"),
    ({"tau": 2.5}, "tau counts optimizer steps .* whole number, got 2.5"),
    ({"tau": 0}, "parameter 'tau' must be >= 1"),
])
def test_unsupported_parameters_fail_with_the_config(params, message):
    from prefbench.registry import ObjectiveError

    with pytest.raises((ConfigError, ObjectiveError), match=message):
        TrainConfig(data="x", objective="tr_dpo", objective_params=params)


def test_reference_updates_refuse_what_an_update_does_not_rescore():
    """An update rescores each pair's two sequences' summed log-probs only: a token-level objective's per-token
    reference statistics would stay those of the initial policy, and a list has more than two sequences."""
    from dataclasses import replace

    from prefbench.engine.reference_update import check_update_params

    token_level = replace(get_objective("tr_dpo"), statistics=("token_logps",))
    with pytest.raises(ConfigError, match="reference updates and token statistics \\(token_logps\\) together"):
        check_update_params(token_level, token_level.defaults)
    listwise = replace(get_objective("tr_dpo"), data="listwise")
    with pytest.raises(ConfigError, match="reference updates on listwise data are not supported"):
        check_update_params(listwise, listwise.defaults)


def reset_accelerator_state():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_trl_syncs_after_the_same_steps_and_alpha_1_copies_the_weights():
    """TRL's own callback on a stand-in policy that moves every step: with α = 1 and τ = 2 the reference equals the
    policy after global steps 2, 4, 6 (and only then), so steps 3, 5, 7 start from a fresh reference, as ours do."""
    pytest.importorskip("trl")
    from accelerate import Accelerator
    from transformers import TrainerControl, TrainerState
    from trl.trainer.callbacks import SyncRefModelCallback

    policy, reference = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    callback = SyncRefModelCallback(ref_model=reference, accelerator=None)
    args = type("Args", (), {"ref_model_sync_steps": 2, "ref_model_mixup_alpha": 1.0})()
    synced = []
    Accelerator(cpu=True)     # the callback reads the process's accelerator state (for DeepSpeed ZeRO-3)
    try:
        for global_step in range(1, 7):
            with torch.no_grad():
                for p in policy.parameters():
                    p.add_(0.1 * global_step)                  # an optimizer step
            callback.on_step_end(args, TrainerState(global_step=global_step), TrainerControl(), model=policy)
            if all(torch.equal(p, q) for p, q in zip(policy.parameters(), reference.parameters())):
                synced.append(global_step)
    finally:
        reset_accelerator_state()
    # the steps after these, 3, 5, 7, train against the copy: ours update before steps 3, 5, 7
    # (test_each_update_step_starts_at_margin_0_and_loss_ln2)
    assert synced == [2, 4, 6]


class _Process:
    """What ReferenceUpdates uses of an ``accelerate.Accelerator``: process ``rank`` of ``n``, whose ``gather``
    meets the other processes (threads here) at a barrier and concatenates their tensors in rank order."""

    def __init__(self, rank, n, barrier, deposits):
        self.process_index, self.num_processes, self.device = rank, n, "cpu"
        self.barrier, self.deposits = barrier, deposits

    def gather(self, tensor):
        self.deposits[self.process_index] = tensor
        self.barrier.wait()
        return torch.cat([self.deposits[r] for r in range(self.num_processes)])


def test_two_processes_score_their_shares_and_gather_one_reference(tiny_model_dir, prefs):
    """Data-parallel: each process scores its half of the update step in its own forwards, and a share of the
    block's other pairs; after the gather both hold the same reference, which is the policy's log-probs of
    every pair of the block (as one process scores them, up to the rounding of other batch compositions)."""
    import copy
    import threading

    from prefbench.engine.adapters import add_lora
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.logprobs import SequenceLogProbs
    from prefbench.engine.models import load_base_model, load_tokenizer
    from prefbench.engine.reference_update import ReferenceUpdates
    from prefbench.engine.statistics import BatchStatistics
    from prefbench.engine.trainer import batch_order
    from prefbench.formats.preferences import load_preferences

    config = cfg(tiny_model_dir, prefs, "unused", objective_params={"tau": 2}, max_steps=5, max_forward_tokens=40)
    params = get_objective("tr_dpo").resolve_params(tau=2)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pairs = encode_pairs(load_preferences(prefs), tokenizer, 512)
    model = add_lora(load_base_model(str(tiny_model_dir), "none"), r=4, alpha=8, dropout=0.0)
    with torch.no_grad():     # a policy that has moved away from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05)
    steps = batch_order(len(pairs), config)
    nan = torch.full((len(pairs),), float("nan"))
    initial = (SequenceLogProbs(nan, nan, nan, nan), SequenceLogProbs(nan, nan, nan, nan))

    def updates(model, accelerator, share):
        statistics = BatchStatistics(model, pairs, tokenizer.pad_token_id, joint=False, packed=True,
                                     share_prefixes=True)
        return ReferenceUpdates(config, params, accelerator, model, statistics, steps, share, 40)

    barrier, deposits, results = threading.Barrier(2), {}, {}

    def run(rank):
        process = _Process(rank, 2, barrier, deposits)
        process_updates = updates(copy.deepcopy(model), process, share=2)
        results[rank] = process_updates.at(2, initial), process_updates.updated

    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (ref0, updated0), (ref1, updated1) = results[0], results[1]
    assert updated0 and updated1
    one = updates(model, _Process(0, 1, threading.Barrier(1), {}), share=4).at(2, initial)
    block = sorted({i for indices in steps[2:4] for i in indices})
    others = [i for i in range(len(pairs)) if i not in block]
    for side0, side1, side in zip(ref0, ref1, one):
        for name in ("response_logps", "response_tokens"):
            a, b, c = getattr(side0, name), getattr(side1, name), getattr(side, name)
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)    # one reference in both processes
            assert a[block].tolist() == pytest.approx(c[block].tolist(), abs=1e-5)
            assert not a[block].isnan().any() and a[others].isnan().all()
        assert side0.joint_logps[block].isnan().all()    # joint=False: a response-span objective's statistics


def test_trl_dpo_trainer_starts_the_same_steps_at_ln2(tiny_model_dir, prefs, tmp_path):
    """TRL 1.16's DPOTrainer itself (full fine-tuning: TRL refuses sync_ref_model with PEFT), sync_ref_model with
    α = 1 and τ = 2 on the tiny model: its logged loss is ln 2 exactly at steps 1, 3, 5 and only there, as ours."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class Losses(TrainerCallback):
        def __init__(self):
            self.by_step = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.by_step[state.global_step] = logs["loss"]

    rows = [{"prompt": f"Name fruit {i}", "chosen": " apple", "rejected": " mountain ocean green"} for i in range(6)]
    losses = Losses()
    # float32 as ours (TRL defaults to bf16=True); its Trainer's accelerator state is process-wide, so it is
    # cleared afterwards for the engine runs that follow
    args = DPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, per_device_train_batch_size=2,
                     max_steps=5, learning_rate=5e-3, lr_scheduler_type="constant", beta=0.1, sync_ref_model=True,
                     ref_model_mixup_alpha=1.0, ref_model_sync_steps=2, logging_steps=1, report_to="none",
                     save_strategy="no", seed=0)
    try:
        DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args,
                   train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
                   callbacks=[losses]).train()
    finally:
        reset_accelerator_state()
    ours = metrics(train(cfg(tiny_model_dir, prefs, tmp_path / "ours", objective_params={"tau": 2}, max_steps=5)))
    trl_at_ln2 = [s for s, loss in sorted(losses.by_step.items()) if abs(loss - math.log(2)) < 1e-6]
    assert trl_at_ln2 == [r["step"] for r in ours if abs(r["loss"] - math.log(2)) < 1e-6] == [1, 3, 5]
    assert sorted(losses.by_step) == [1, 2, 3, 4, 5]
