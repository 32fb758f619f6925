"""KTO (the unpaired family): hand-derived values, a float64 reference, gradients and invariants."""

import json
import math

import pytest
import torch

from prefbench import UnpairedLogProbs, get_objective

KTO = get_objective("kto")


def stats(logps, ref, desirable, kl=None, ref_kl=None, dtype=torch.float64):
    t = lambda x: None if x is None else torch.tensor(x, dtype=dtype)
    n = len(logps)
    return UnpairedLogProbs(t(logps), torch.full((n,), 5), torch.tensor(desirable), t(ref), t(kl), t(ref_kl))


def test_hand_derived():
    # Δ = +2 (desirable), −3 (undesirable); mismatched log-ratios 1 and 1, so z_ref = 1; β = 0.1:
    # desirable 1 − σ(0.1·(2 − 1)) = 1 − σ(0.1) = 0.47502081252106; undesirable 1 − σ(0.1·(1 + 3)) = 1 − σ(0.4)
    # = 0.40131233988755
    s = stats([-10.0, -15.0], [-12.0, -12.0], [True, False], [-5.0, -7.0], [-6.0, -8.0])
    out = KTO(s)
    assert out.losses.tolist() == pytest.approx([0.47502081252106, 0.40131233988755], abs=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([0.2, -0.3])
    assert out.rejected_rewards.tolist() == pytest.approx([0.1, 0.1])
    # the weights scale each label's losses
    weighted = KTO(s, desirable_weight=1.33, undesirable_weight=0.5).losses
    assert weighted.tolist() == pytest.approx([1.33 * 0.47502081252106, 0.5 * 0.40131233988755], abs=1e-12)


def test_reference_point_is_clamped_at_zero_and_detached():
    s = stats([-10.0, -15.0], [-12.0, -12.0], [True, False], [-9.0, -9.0], [-5.0, -5.0])   # mean KL −4 → 0
    assert s.kl_reference_point().item() == 0.0
    no_kl = stats([-10.0, -15.0], [-12.0, -12.0], [True, False])
    assert torch.equal(KTO(s).losses, KTO(no_kl).losses)
    kl = torch.tensor([-5.0, -7.0], dtype=torch.float64, requires_grad=True)
    s = UnpairedLogProbs(torch.tensor([-10.0, -15.0], dtype=torch.float64), torch.tensor([5, 5]),
                         torch.tensor([True, False]), torch.tensor([-12.0, -12.0], dtype=torch.float64), kl,
                         torch.tensor([-6.0, -8.0], dtype=torch.float64))
    assert not KTO(s).losses.requires_grad


@pytest.mark.parametrize("n", [1, 4, 33])
def test_policy_equals_reference_gives_half_lambda(n):
    logps = (-torch.rand(n, dtype=torch.float64) * 50).tolist()
    desirable = [i % 3 != 0 for i in range(n)]
    out = KTO(stats(logps, logps, desirable), desirable_weight=1.2, undesirable_weight=0.8)
    assert out.losses.tolist() == pytest.approx([(1.2 if d else 0.8) / 2 for d in desirable], abs=1e-15)


def test_flipping_labels_mirrors_the_loss():
    g = torch.Generator().manual_seed(0)
    logps = (-torch.rand(8, generator=g, dtype=torch.float64) * 40).tolist()
    ref = [x + float(torch.randn(1, generator=g)) for x in logps]
    kl, ref_kl = [-20.0] * 8, [-21.0] * 8
    desirable = [True, False] * 4
    s = stats(logps, ref, desirable, kl, ref_kl)
    flipped = stats(logps, ref, [not d for d in desirable], kl, ref_kl)
    # 1 − σ(a) + 1 − σ(−a) = 1: the two labels' losses of one example sum to λ
    assert (KTO(s).losses + KTO(flipped).losses).tolist() == pytest.approx([1.0] * 8, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_matches_float64_reference(dtype):
    g = torch.Generator().manual_seed(7)
    n = 17
    tokens = torch.randint(1, 60, (n,), generator=g)
    logps = -(0.05 + 2.95 * torch.rand(n, generator=g, dtype=torch.float64)) * tokens
    ref = logps + torch.randn(n, generator=g, dtype=torch.float64)
    kl = -(0.05 + 2.95 * torch.rand(n, generator=g, dtype=torch.float64)) * tokens
    ref_kl = kl - 0.3 + torch.randn(n, generator=g, dtype=torch.float64)
    desirable = torch.rand(n, generator=g) < 0.5
    s = UnpairedLogProbs(*(x.to(dtype) for x in (logps,)), tokens, desirable,
                         *(x.to(dtype) for x in (ref, kl, ref_kl)))
    # the independent float64 reference, one example at a time, from the paper's eq. 7
    q = lambda x: x.to(dtype).double()
    d = q(logps) - q(ref)
    z = max(0.0, float((q(kl) - q(ref_kl)).mean()))
    expected = [1 - 1 / (1 + math.exp(-0.1 * ((di - z) if de else (z - di)))) for di, de in zip(d.tolist(), desirable.tolist())]
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-6}[dtype]
    assert KTO(s).losses.double().tolist() == pytest.approx(expected, abs=tol)


def test_gradcheck_and_gradient_direction():
    n = 6
    logps = (-torch.rand(n, dtype=torch.float64) * 30).requires_grad_(True)
    ref = logps.detach() + torch.randn(n, dtype=torch.float64)
    desirable = torch.tensor([True, False] * 3)
    kl = -torch.rand(n, dtype=torch.float64) * 30

    def f(x):
        return KTO(UnpairedLogProbs(x, torch.full((n,), 5), desirable, ref, kl, kl - 0.5),
                   desirable_weight=1.3).losses

    assert torch.autograd.gradcheck(f, (logps,))
    f(logps).sum().backward()
    # a desirable response's log-prob is pushed up (loss falls as it rises), an undesirable one's down
    assert (logps.grad[desirable] < 0).all() and (logps.grad[~desirable] > 0).all()


def test_bad_inputs():
    from prefbench import ObjectiveError
    with pytest.raises(ObjectiveError, match="bool"):
        UnpairedLogProbs(torch.zeros(2), torch.ones(2), torch.ones(2))
    with pytest.raises(ObjectiveError, match="shape"):
        UnpairedLogProbs(torch.zeros(2), torch.ones(3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ObjectiveError, match="both kl_logps"):
        UnpairedLogProbs(torch.zeros(2), torch.ones(2), torch.ones(2, dtype=torch.bool), torch.zeros(2), torch.zeros(2))


# ---------------------------------------------------------------- data: TRL's unpaired format, pairs split


def test_pairs_split_into_labelled_examples(tmp_path):
    from prefbench.formats.preferences import write_preferences
    from prefbench.formats.records import make_record
    from prefbench.formats.unpaired import load_examples

    path = tmp_path / "pairs.jsonl"
    write_preferences([make_record("p1", "good", "p1", "bad", finished_l=False), make_record("q", "x", "r", "y")], path)
    examples = load_examples(path)
    assert [(e.prompt, e.completion, e.desirable, e.finished) for e in examples] == [
        ("p1", "good", True, True), ("q", "x", True, True), ("p1", "bad", False, False), ("r", "y", False, True)]
    assert [e.completion for e in load_examples(path, pair_kinds="conditional")] == ["good", "bad"]


def test_trl_unpaired_rows(tmp_path):
    from prefbench.formats.unpaired import load_examples

    path = tmp_path / "kto.jsonl"
    rows = [{"prompt": "Name a fruit", "completion": "apple", "label": True},
            {"prompt": [{"role": "user", "content": "Name a fruit"}],
             "completion": [{"role": "assistant", "content": "ocean"}], "label": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load_examples(path)
    assert [(e.completion, e.desirable) for e in examples] == [("apple", True), ("ocean", False)]
    assert examples[1].prompt == [{"role": "user", "content": "Name a fruit"}]


def test_mismatched_sequences_pair_each_prompt_with_the_next_response(tiny_model_dir):
    from prefbench.engine.encoding import encode_examples
    from prefbench.engine.formatting import encode
    from prefbench.engine.models import load_tokenizer
    from prefbench.formats.records import UnpairedExample

    tok = load_tokenizer(str(tiny_model_dir))
    examples = [UnpairedExample("a", "one", True), UnpairedExample("b", "two", False), UnpairedExample("c", "three", True)]
    enc = encode_examples(examples, tok, 64)
    assert enc.labels == [True, False, True] and enc.paired
    assert tuple(enc.rejected[0]) == tuple(encode(tok, "a", "two", ends=True))
    assert tuple(enc.rejected[2]) == tuple(encode(tok, "c", "one", ends=True))   # the last wraps to the first
    assert enc.summary()["desirable"] == 2 and enc.summary()["undesirable"] == 1


def test_train_cli_on_trl_unpaired_file(tiny_model_dir, tmp_path, monkeypatch):
    from prefbench.cli import main

    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "kto.jsonl"
    rows = [{"prompt": f"Name fruit {i}", "completion": c, "label": lab}
            for i in range(4) for c, lab in (("apple", True), ("mountain ocean green", False))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["train", "--data", str(path), "--objective", "kto", "--output-dir", str(out), "--model",
                 str(tiny_model_dir), "--quantization", "none", "--max-steps", "2", "--batch-size", "4"]) == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(math.isfinite(s["loss"]) for s in steps)
    assert steps[0]["loss"] == pytest.approx(0.5, rel=1e-3)   # policy == reference at step 1
    assert json.loads((out / "data.json").read_text())["examples"] == 8
    assert (out / "adapter" / "adapter_model.safetensors").exists()


# ---------------------------------------------------------------- parity with TRL's KTOTrainer


@pytest.mark.parametrize("beta,wd,wu", [(0.1, 1.0, 1.0), (0.5, 1.33, 0.7)])
@pytest.mark.parametrize("kl_shift", [-0.5, 0.8])   # mean KL below 0 (clamped) and above
def test_matches_trl_kto_loss(beta, wd, wu, kl_shift):
    """TRL 1.16 has no standalone KTO loss function: its loss is inline in ``KTOTrainer._compute_loss``. It runs
    here on a stub trainer and a stub model whose per-token log-probs are the statistics (one completion token per
    sequence, precomputed reference log-probs); TRL returns the batch mean of the weighted losses."""
    from collections import defaultdict
    from types import MethodType, SimpleNamespace

    kto_trainer = pytest.importorskip("trl.trainer.kto_trainer")
    g = torch.Generator().manual_seed(3)
    n = 7
    logps = -torch.rand(n, generator=g, dtype=torch.float64) * 20
    ref = logps + torch.randn(n, generator=g, dtype=torch.float64)
    kl = -torch.rand(n, generator=g, dtype=torch.float64) * 20
    ref_kl = kl - kl_shift + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    desirable = torch.tensor([True, False, True, True, False, False, True])
    value = {200 + i: logps[i] for i in range(n)} | {300 + i: kl[i] for i in range(n)}

    class Model:
        training = True

        def __call__(self, input_ids, **_):
            lp = torch.stack([value[int(t)] for t in input_ids[:, 1]])[:, None]
            return SimpleNamespace(log_probs=lp, entropy=torch.zeros_like(lp), mean_logits=torch.zeros_like(lp))

    ids = torch.stack([torch.arange(100, 100 + n), torch.arange(200, 200 + n)], 1)
    kl_ids = torch.stack([torch.arange(100, 100 + n), torch.arange(300, 300 + n)], 1)
    mask = torch.ones(n, 2, dtype=torch.long)
    completion = torch.tensor([[0, 1]] * n)
    batch = {"input_ids": ids, "attention_mask": mask, "completion_mask": completion, "KL_input_ids": kl_ids,
             "KL_attention_mask": mask, "KL_completion_mask": completion, "label": desirable, "ref_logps": ref,
             "ref_KL_logps": ref_kl}
    gather = lambda t: t
    stub = SimpleNamespace(model=Model(), accelerator=SimpleNamespace(device="cpu", gather_for_metrics=gather),
                           calculate_KL=True, precompute_ref_logps=True, loss_type="kto", beta=beta,
                           desirable_weight=wd, undesirable_weight=wu, aux_loss_enabled=False,
                           _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    stub._compute_kl_logps = MethodType(kto_trainer.KTOTrainer._compute_kl_logps, stub)
    trl_loss = kto_trainer.KTOTrainer._compute_loss(stub, stub.model, batch, return_outputs=False)
    ours = KTO(UnpairedLogProbs(logps, torch.ones(n, dtype=torch.long), desirable, ref, kl, ref_kl), beta=beta,
               desirable_weight=wd, undesirable_weight=wu).losses.mean()
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-12)
    assert stub._metrics["train"]["kl"][-1] == pytest.approx(max(0.0, float((kl - ref_kl).mean())), abs=1e-12)


# ---------------------------------------------------------------- BCO (unpaired), the family's second member


def test_bco_hand_derived_and_invariants():
    bco = get_objective("bco")
    # Δ = +2, −3 → rewards 0.2, −0.3, δ = −0.05: −log σ(0.25) = 0.57593942...; −log σ(0.25) for the undesirable too
    out = bco(stats([-10.0, -15.0], [-12.0, -12.0], [True, False]))
    expected = math.log1p(math.exp(-0.25))
    assert out.losses.tolist() == pytest.approx([expected, expected], abs=1e-12)
    assert out.rejected_rewards.tolist() == pytest.approx([-0.05, -0.05])
    same = bco(stats([-3.0, -4.0, -5.0], [-3.0, -4.0, -5.0], [True, False, True]))
    assert same.losses.tolist() == pytest.approx([math.log(2)] * 3, abs=1e-15)
    logps = torch.tensor([-10.0, -15.0, -7.0], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-12.0, -12.0, -6.0], dtype=torch.float64)
    desirable = torch.tensor([True, False, False])
    f = lambda x: bco.fn(UnpairedLogProbs(x, torch.ones(3), desirable, ref), beta=0.1).losses
    f(logps).sum().backward()
    # δ is detached, so the gradient is the classifier's alone: −s β (1 − σ(s (β Δ − δ))), s = ±1 by label
    r = 0.1 * (logps.detach() - ref)
    s = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(logps.grad, -s * 0.1 * (1 - torch.sigmoid(s * (r - r.mean()))), atol=1e-15)
    assert logps.grad[0] < 0 and (logps.grad[1:] > 0).all()
