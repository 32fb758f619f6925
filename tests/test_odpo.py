"""ODPO and the pair scores it reads: hand-derived values, a float64 reference, gradients, parity with the authors'
code, reduction to DPO; the scores through the readers, the on-policy pairs, the encoder and the trainer."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from prefbench import ObjectiveError, PairLogProbs, get_objective
from prefbench.engine.config import TrainConfig, TrainingError
from prefbench.formats.preferences import load_preferences, write_preferences
from prefbench.formats.records import DataError, PreferenceRecord

ODPO = get_objective("odpo")


def stats(cw, rl, refw, refl, sw, sl, dtype=torch.float64):
    t = lambda v: None if v is None else torch.tensor(v, dtype=dtype)
    n = len(cw)
    return PairLogProbs(t(cw), t(rl), torch.ones(n, dtype=torch.long), torch.ones(n, dtype=torch.long), t(refw),
                        t(refl), chosen_scores=t(sw), rejected_scores=t(sl))


def random_stats(n, seed, dtype=torch.float64):
    """Summed log-probs of 1…59 tokens, a reference within a few nats, and scores in [0, 10) with s_w > s_l."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 60, (2, n), generator=g)
    cw, rl = (-(0.05 + 2.95 * torch.rand(n, generator=g, dtype=torch.float64)) * tokens[i] for i in range(2))
    refw, refl = (x + torch.randn(n, generator=g, dtype=torch.float64) for x in (cw, rl))
    sl = 5 * torch.rand(n, generator=g, dtype=torch.float64)
    sw = sl + 0.01 + 4.99 * torch.rand(n, generator=g, dtype=torch.float64)
    cast = lambda x: x.to(dtype)
    return PairLogProbs(cast(cw), cast(rl), tokens[0], tokens[1], cast(refw), cast(refl), chosen_scores=sw,
                        rejected_scores=sl)


# ---------------------------------------------------------------- the loss


def test_hand_derived():
    """Δ_w = −6 − (−7) = 1, Δ_l = −5 − (−4) = −1, z = 2, β = 0.1; s_w = 9, s_l = 2, α = 1: Δ_r = log 7,
    loss = −log σ(0.2 − log 7) = log(1 + 7e^{−0.2}) = log(6.7311152717) = 1.9067408464.
    α = 0.5: log(1 + √7·e^{−0.2}) = 1.1525188539. ∂loss/∂S_θ(y_w) = −β·σ(log 7 − 0.2) = −0.1·0.8514362094."""
    s = stats([-6.0], [-5.0], [-7.0], [-4.0], [9.0], [2.0])
    out = ODPO(s)
    assert out.losses.item() == pytest.approx(1.9067408464, abs=1e-9)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.1, -0.1))
    assert ODPO(s, alpha=0.5).losses.item() == pytest.approx(1.1525188539, abs=1e-9)
    cw = s.chosen_logps.clone().requires_grad_(True)
    ODPO(dataclasses.replace(s, chosen_logps=cw)).losses.sum().backward()
    assert cw.grad.item() == pytest.approx(-0.08514362094, abs=1e-10)


def softplus(x):
    """−log σ(x) = log(1 + e^{−x}), stably in float64."""
    return math.log1p(math.exp(-abs(x))) + max(-x, 0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("beta,alpha", [(0.1, 1.0), (0.5, 0.3), (0.05, 2.0)])
def test_matches_float64_reference(dtype, beta, alpha):
    s = random_stats(64, seed=3, dtype=dtype)
    out = ODPO(s, beta=beta, alpha=alpha)
    assert out.losses.dtype != torch.bfloat16
    rows = zip(*(getattr(s, f).double().tolist() for f in ("chosen_logps", "rejected_logps", "ref_chosen_logps",
                                                             "ref_rejected_logps", "chosen_scores", "rejected_scores")))
    expected = [softplus(beta * ((cw - refw) - (rl - refl)) - alpha * math.log(sw - sl))
                for cw, rl, refw, refl, sw, sl in rows]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert out.losses.double().tolist() == pytest.approx(expected, rel=tol, abs=tol)


def test_gradcheck():
    s = random_stats(5, seed=7)

    def f(cw, rl, refw, refl):
        return ODPO(dataclasses.replace(s, chosen_logps=cw, rejected_logps=rl, ref_chosen_logps=refw,
                                        ref_rejected_logps=refl), beta=0.2, alpha=1.3).losses

    inputs = tuple(t.clone().requires_grad_(True) for t in (s.chosen_logps, s.rejected_logps, s.ref_chosen_logps,
                                                             s.ref_rejected_logps))
    assert torch.autograd.gradcheck(f, inputs)


def test_reduces_to_dpo():
    """α = 0 is DPO exactly, whatever the scores (tied or reversed ones too: no offset is computed); so is a score
    gap of 1 at any α (log 1 = 0)."""
    s = random_stats(32, seed=4)
    dpo = get_objective("dpo")(s, beta=0.3).losses
    assert torch.equal(ODPO(s, beta=0.3, alpha=0.0).losses, dpo)
    odd = dataclasses.replace(s, chosen_scores=torch.linspace(-3, 3, 32, dtype=torch.float64),
                              rejected_scores=torch.zeros(32, dtype=torch.float64))
    assert torch.equal(ODPO(odd, beta=0.3, alpha=0.0).losses, dpo)
    unit = dataclasses.replace(s, chosen_scores=s.rejected_scores + 1)
    assert torch.allclose(ODPO(unit, beta=0.3, alpha=2.5).losses, dpo, rtol=0, atol=1e-14)


def test_offset_grows_with_the_score_gap():
    """At a fixed margin the loss rises with s_w − s_l (the pair must be separated by more), and at the reference
    (z = 0) it is log(1 + (s_w − s_l)^α)."""
    gaps = torch.tensor([0.5, 1.0, 2.0, 7.0, 100.0], dtype=torch.float64)
    zeros = torch.zeros(5, dtype=torch.float64)
    ones = torch.ones(5, dtype=torch.long)
    s = PairLogProbs(zeros, zeros, ones, ones, zeros, zeros, chosen_scores=gaps + 3,
                     rejected_scores=zeros + 3)
    losses = ODPO(s, alpha=0.7).losses
    assert (losses.diff() > 0).all()
    assert losses.tolist() == pytest.approx([math.log1p(g ** 0.7) for g in gaps.tolist()], rel=1e-12)


def test_tie_has_no_loss_and_no_gradient():
    """s_w = s_l: Δ_r = −∞, so −log σ(+∞) = 0 and the gradient is 0 (the authors' code gives the same)."""
    s = stats([-6.0, -6.0], [-5.0, -5.0], [-7.0, -7.0], [-4.0, -4.0], [4.0, 9.0], [4.0, 2.0])
    cw = s.chosen_logps.clone().requires_grad_(True)
    out = ODPO(dataclasses.replace(s, chosen_logps=cw))
    out.losses.sum().backward()
    assert out.losses[0].item() == 0.0 and cw.grad[0].item() == 0.0
    assert out.losses[1].item() == pytest.approx(1.9067408464, abs=1e-9) and torch.isfinite(cw.grad).all()


def test_missing_or_reversed_scores_are_refused():
    s = random_stats(3, seed=1)
    with pytest.raises(ObjectiveError, match=r"needs the 'pair_scores' statistics \(chosen_scores, rejected_scores\)"):
        ODPO(dataclasses.replace(s, chosen_scores=None, rejected_scores=None))
    with pytest.raises(ObjectiveError, match="give both chosen_scores and rejected_scores, or neither"):
        dataclasses.replace(s, rejected_scores=None)
    reversed_ = dataclasses.replace(s, chosen_scores=s.rejected_scores, rejected_scores=s.chosen_scores)
    with pytest.raises(ObjectiveError, match=r"odpo: pair 0 of the batch has score_chosen .* below score_rejected"):
        ODPO(reversed_)


def test_declares_pair_scores():
    assert (ODPO.family, ODPO.statistics, ODPO.span, ODPO.needs_reference) == ("dpo", ("pair_scores",), "response",
                                                                                True)
    assert ODPO.defaults == {"beta": 0.1, "alpha": 1.0}
    with pytest.raises(ObjectiveError, match="'alpha' must be >= 0"):
        ODPO(random_stats(2, seed=0), alpha=-1.0)


def test_pair_scores_belong_to_paired_objectives():
    from prefbench.registry import register_objective

    with pytest.raises(ObjectiveError, match="'pair_scores' are scores of a pair's two responses; unpaired data"):
        register_objective("scored_kto", span="response", needs_reference=True, data="unpaired",
                           statistics=("pair_scores",))


# ---------------------------------------------------------------- parity with the authors' code


def authors_preference_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                            reference_rejected_logps, beta, alpha, chosen_rewards, rejected_rewards):
    """Re-typed from github.com/rycolab/odpo at commit 6152f67c8cddc223ca5affc7e261d967568068ee, trainers.py,
    ``preference_loss`` with ``offset=True, ratio=False, reference_free=False`` (the branch ``loss.name=odpo``
    takes; ``chosen_rewards``/``rejected_rewards`` are the batch's lists of per-pair score tensors)."""
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    margin = torch.stack(chosen_rewards, dim=0) - torch.stack(rejected_rewards, dim=0)
    margin = torch.log(margin.to(logits.device))
    losses = -F.logsigmoid(beta * logits - alpha * margin)
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


@pytest.mark.parametrize("beta,alpha", [(0.1, 1.0), (0.5, 1.0), (0.1, 0.4)])
def test_matches_the_authors_code(beta, alpha):
    s = random_stats(48, seed=11)
    ties = s.chosen_scores.clone()
    ties[::7] = s.rejected_scores[::7]     # a tie every 7th pair: loss 0 in both
    s = dataclasses.replace(s, chosen_scores=ties)
    ours_inputs = [t.clone().requires_grad_(True) for t in (s.chosen_logps, s.rejected_logps)]
    theirs_inputs = [t.clone().requires_grad_(True) for t in (s.chosen_logps, s.rejected_logps)]
    ours = ODPO(dataclasses.replace(s, chosen_logps=ours_inputs[0], rejected_logps=ours_inputs[1]), beta=beta,
                alpha=alpha)
    theirs = authors_preference_loss(*theirs_inputs, s.ref_chosen_logps, s.ref_rejected_logps, beta, alpha,
                                     list(s.chosen_scores), list(s.rejected_scores))
    assert torch.allclose(ours.losses, theirs[0], rtol=1e-12, atol=1e-14)
    assert (ours.losses[::7] == 0).all()
    assert torch.allclose(ours.chosen_rewards, theirs[1], rtol=1e-12) and torch.allclose(ours.rejected_rewards,
                                                                                        theirs[2], rtol=1e-12)
    ours.losses.sum().backward()
    theirs[0].sum().backward()
    for a, b in zip(ours_inputs, theirs_inputs):
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- scores in the data


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ultrafeedback_binarized_rows_carry_their_scores(tmp_path):
    user = {"role": "user", "content": "Name a fruit"}
    rows = [{"prompt": "Name a fruit", "prompt_id": "x1", "messages": [user, {"role": "assistant", "content": "pear"}],
             "chosen": [user, {"role": "assistant", "content": "pear"}],
             "rejected": [user, {"role": "assistant", "content": "rock"}], "score_chosen": 8.5, "score_rejected": 3},
            {"chosen": [user, {"role": "assistant", "content": "fig"}],
             "rejected": [user, {"role": "assistant", "content": "sand"}], "score_chosen": 7, "score_rejected": 6.25},
            {"prompt": "Say hi", "chosen": "hi", "rejected": "no", "score_chosen": None, "score_rejected": None}]
    records = load_preferences(write_rows(tmp_path / "uf.jsonl", rows))
    assert records[0] == PreferenceRecord("Name a fruit", "pear", "Name a fruit", "rock", "conditional",
                                          score_chosen=8.5, score_rejected=3.0)
    assert (records[1].prompt_chosen, records[1].score_chosen, records[1].score_rejected) == ([user], 7.0, 6.25)
    assert not records[2].scored and records[2].score_rejected is None


@pytest.mark.parametrize("extra,message", [
    ({"score_chosen": "high", "score_rejected": 1},
     "b.jsonl: row 1: field 'score_chosen': expected a finite number, got 'high'"),
    ({"score_chosen": 2, "score_rejected": True}, "field 'score_rejected': expected a finite number, got True"),
    ({"score_chosen": 2}, "b.jsonl: row 1: field 'score_rejected': is missing (give both scores of the pair, or neither)"),
    ({"score_rejected": 2}, "field 'score_chosen': is missing"),
])
@pytest.mark.parametrize("layout", ["trl", "prefbench"])
def test_bad_scores_are_one_line_errors(tmp_path, extra, message, layout):
    base = {"prompt": "Q", "chosen": "a", "rejected": "b"} if layout == "trl" else \
        {"prompt_chosen": "Q", "response_chosen": "a", "prompt_rejected": "Q", "response_rejected": "b"}
    with pytest.raises(DataError) as err:
        load_preferences(write_rows(tmp_path / "b.jsonl", [{**base, **extra}]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_prefbench_files_round_trip_scores_and_unscored_rows_stay_as_they_were(tmp_path):
    scored = PreferenceRecord("Q", "a", "R", "b", "joint", rejected_finished=False, score_chosen=0.75,
                              score_rejected=-1.0)
    plain = PreferenceRecord("Q", "a", "Q", "b", "conditional")
    assert plain.to_json() == {"prompt_chosen": "Q", "response_chosen": "a", "prompt_rejected": "Q",
                               "response_rejected": "b", "kind": "conditional"}
    assert scored.to_json()["score_chosen"] == 0.75 and scored.to_json()["score_rejected"] == -1.0
    write_preferences([scored, plain], tmp_path / "p.jsonl")
    assert load_preferences(tmp_path / "p.jsonl") == [scored, plain]


def test_on_policy_pairs_record_the_judge_scores():
    from types import SimpleNamespace

    from prefbench.data.onpolicy import build_pairs
    from prefbench.tasks.base import TaskPrompt

    prompts = [TaskPrompt(f"t/{i}", f"instruction {i}") for i in range(2)]
    answers = [[("good0", 1.0), ("mid0", 0.5), ("bad0", 0.0)], [("good1", 0.9), ("bad1", 0.2)]]
    data = SimpleNamespace(min_gap=0.3, max_pairs_per_prompt=2, joint_pairs_per_prompt=1, keep_truncated=False)
    pairs = build_pairs(prompts, answers, data, seed=0)
    score = {t: s for ans in answers for t, s in ans}
    assert pairs and all((p.score_chosen, p.score_rejected) == (score[p.response_chosen], score[p.response_rejected])
                         for p in pairs)
    assert {p.kind for p in pairs} == {"conditional", "joint"}


# ---------------------------------------------------------------- the engine


def test_encoded_pairs_keep_the_scores_only_when_every_pair_has_them(tiny_model_dir):
    from prefbench.engine.encoding import encode_pairs
    from prefbench.engine.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    a = PreferenceRecord("Q", "a", "Q", "b", "conditional", score_chosen=3.0, score_rejected=1.0)
    b = PreferenceRecord("R", "c", "R", "d", "conditional", score_chosen=2.0, score_rejected=2.0)
    assert encode_pairs([a, b], tokenizer, 64).scores == [(3.0, 1.0), (2.0, 2.0)]
    assert encode_pairs([a, PreferenceRecord("R", "c", "R", "d", "conditional")], tokenizer, 64).scores is None


def test_pair_logprobs_carry_scores_only_when_given():
    from prefbench.engine.logprobs import SequenceLogProbs, pair_logprobs

    side = SequenceLogProbs(torch.tensor([-3.0, -4.0]), torch.tensor([2, 3]), torch.tensor([-5.0, -6.0]),
                            torch.tensor([4, 5]))
    plain = pair_logprobs("response", side, side)
    assert plain.chosen_scores is None and plain.rejected_scores is None
    scored = pair_logprobs("response", side, side, scores=torch.tensor([[3.0, 1.0], [2.0, 0.5]]))
    assert scored.chosen_scores.tolist() == [3.0, 2.0] and scored.rejected_scores.tolist() == [1.0, 0.5]


def odpo_config(model_dir, data, out, **kw):
    base = {"model": str(model_dir), "data": str(data), "quantization": "none", "batch_size": 4, "max_steps": 2,
            "lr": 5e-3, "warmup_steps": 1, "output_dir": str(out), "objective": "odpo"}
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("row,message", [
    ({"prompt": "Q", "chosen": "a", "rejected": "b"},
     "pair 2 has no score_chosen/score_rejected, and odpo reads each pair's scores"),
    ({"prompt": "Q", "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 4.5},
     ("pair 2: score_chosen (1) is below score_rejected (4.5); odpo needs the chosen response scored at least "
      "as high")),
])
def test_pairs_without_usable_scores_fail_before_training(tmp_path, monkeypatch, row, message):
    """Refused while reading the data: no tokenizer or model is loaded (the model path does not exist)."""
    from prefbench.engine.trainer import train

    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    path = write_rows(tmp_path / "d.jsonl", [{"prompt": "P", "chosen": "x", "rejected": "y", "score_chosen": 2,
                                              "score_rejected": 1}, row])
    with pytest.raises(TrainingError) as err:
        train(odpo_config(tmp_path / "no-model", path, tmp_path / "out"))
    assert str(err.value).startswith(f"{path}: {message}")
    assert "\n" not in str(err.value)


def test_train_cli_on_a_scored_trl_file(tiny_model_dir, tmp_path, monkeypatch):
    """End to end: ``prefbench train --objective odpo`` on UltraFeedback-binarized-style rows. Every pair's scores
    differ by 3, so at step 1 (policy = reference, z = 0) the loss is −log σ(−α log 3) = log(1 + 3^α)."""
    from prefbench.cli import main

    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    rows = [{"prompt": f"Name fruit {i}", "chosen": [{"role": "user", "content": f"Name fruit {i}"},
                                                    {"role": "assistant", "content": "apple"}],
             "rejected": [{"role": "user", "content": f"Name fruit {i}"},
                          {"role": "assistant", "content": "mountain ocean green"}],
             "score_chosen": 5.0 + i, "score_rejected": 2.0 + i} for i in range(8)]
    path = write_rows(tmp_path / "uf.jsonl", rows)
    out = tmp_path / "out"
    assert main(["train", "--data", str(path), "--objective", "odpo", "--output-dir", str(out), "--model",
                 str(tiny_model_dir), "--quantization", "none", "--max-steps", "2", "--batch-size", "4",
                 "--param", "alpha=0.5"]) == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(math.isfinite(s["loss"]) and s["grad_norm"] > 0 for s in steps)
    assert steps[0]["loss"] == pytest.approx(math.log1p(3 ** 0.5), rel=1e-4)
    assert json.loads((out / "data.json").read_text())["pairs"] == 8
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_a_run_trains_odpo_on_the_judge_scores_of_its_on_policy_pairs(tiny_model_dir, tmp_path, monkeypatch):
    """``prefbench run``: the data stage's train.jsonl carries each pair's gold-judge scores (those of its two
    samples), and odpo's training reads them (an unscored pair would have stopped it before training)."""
    import yaml

    import prefbench.engine.trainer as train_mod
    from prefbench.pipeline.run import run
    from tests.test_run import SPEC, config

    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "objective_params": {"dpo": {"beta": 0.1}}}))
    trained = []   # the scores of the pairs each training run encodes
    encode = train_mod.encode_pairs

    def recording(records, *a):
        pairs = encode(records, *a)
        trained.append(pairs.scores)
        return pairs

    monkeypatch.setattr(train_mod, "encode_pairs", recording)
    out = tmp_path / "run"
    run(config(tiny_model_dir, spec_file, out, objectives=["odpo"]))
    samples = [json.loads(line) for line in (out / "data" / "samples.jsonl").read_text().splitlines()]
    score = {s["response"].strip(): s["score"] for s in samples}
    pairs = load_preferences(out / "data" / "train.jsonl")
    assert pairs and all((p.score_chosen, p.score_rejected) == (score[p.response_chosen], score[p.response_rejected])
                         for p in pairs)
    conditional = [(p.score_chosen, p.score_rejected) for p in pairs if p.kind == "conditional"]
    assert trained == [conditional]   # the matched arm: odpo (response span) trains on the conditional pairs
    steps = [json.loads(line) for line in (out / "odpo" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert steps and all(math.isfinite(s["loss"]) for s in steps)
