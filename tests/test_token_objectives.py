"""Token-level objectives (family "token-level"): TDPO₁/TDPO₂ (sequential KL), SamPO (down-sampled per-token
log-ratios), LD-DPO (length-desensitized log-probs). Hand-derived values, reductions to DPO, gradients, and
parity with the authors' code (TDPO) and TRL (LD-DPO) re-typed below from their sources."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from prefbench import ObjectiveError, PairLogProbs, get_objective
from prefbench.engine.logprobs import pair_logprobs, sequence_logprobs

LN2 = math.log(2.0)


def softplus(x):
    """−log σ(x), stably, in float64."""
    return math.log1p(math.exp(-abs(x))) + max(-x, 0.0)


def f64(values):
    return torch.tensor(values, dtype=torch.float64)


def rows_stats(policy_w, policy_l, ref_w, ref_l, **extra):
    """PairLogProbs from per-token rows (lists of lists, ragged): sums, counts and zero-padded rows agree."""
    def padded(rows):
        width = max(len(r) for r in rows)
        return f64([r + [0.0] * (width - len(r)) for r in rows])

    counts = lambda rows: torch.tensor([len(r) for r in rows])
    sums = lambda rows: f64([math.fsum(r) for r in rows])
    return PairLogProbs(sums(policy_w), sums(policy_l), counts(policy_w), counts(policy_l), sums(ref_w), sums(ref_l),
                        chosen_token_logps=padded(policy_w), rejected_token_logps=padded(policy_l),
                        ref_chosen_token_logps=padded(ref_w), ref_rejected_token_logps=padded(ref_l), **extra)


def random_rows(n, seed, max_len=30, equal=False):
    g = torch.Generator().manual_seed(seed)

    def side(lengths):
        return [(-(0.05 + 2.95 * torch.rand(int(t), generator=g, dtype=torch.float64))).tolist() for t in lengths]

    lw = torch.randint(1, max_len, (n,), generator=g)
    ll = lw.clone() if equal else torch.randint(1, max_len, (n,), generator=g)
    pw, pl = side(lw), side(ll)
    shift = lambda rows: [[v + 0.3 * float(torch.randn((), generator=g)) for v in r] for r in rows]
    return rows_stats(pw, pl, shift(pw), shift(pl))


def with_kl(stats, chosen_kl, rejected_kl):
    return dataclasses.replace(stats, chosen_kl=f64(chosen_kl), rejected_kl=f64(rejected_kl))


def seq_stats(cw, rl, refw, refl, kw, kl):
    one = torch.ones(len(cw), dtype=torch.long)
    return PairLogProbs(f64(cw), f64(rl), one, one, f64(refw), f64(refl), chosen_kl=f64(kw), rejected_kl=f64(kl))


# ---------------------------------------------------------------- declarations and missing statistics


@pytest.mark.parametrize("name, statistics", [("tdpo1", ("sequence_kl",)), ("tdpo2", ("sequence_kl",)),
                                              ("sampo", ("token_logps",)), ("ld_dpo", ("token_logps",))])
def test_declarations(name, statistics):
    obj = get_objective(name)
    assert (obj.family, obj.statistics, obj.span, obj.needs_reference) == ("token-level", statistics, "response", True)
    plain = PairLogProbs(f64([-6.0]), f64([-5.0]), torch.tensor([2]), torch.tensor([3]), f64([-7.0]), f64([-4.0]))
    with pytest.raises(ObjectiveError, match=f"'{name}' needs the '{statistics[0]}' statistics"):
        obj(plain)


def test_missing_reference_rows_are_named():
    s = random_rows(2, seed=0)
    no_ref_rows = dataclasses.replace(s, ref_chosen_token_logps=None, ref_rejected_token_logps=None)
    with pytest.raises(ObjectiveError, match="ref_chosen_token_logps, ref_rejected_token_logps"):
        get_objective("sampo")(no_ref_rows)


def test_token_fields_are_checked():
    s = random_rows(3, seed=0)
    with pytest.raises(ObjectiveError, match=r"chosen_token_logps has shape \(2, \d+\), expected \(3, T\)"):
        dataclasses.replace(s, chosen_token_logps=s.chosen_token_logps[:2])
    with pytest.raises(ObjectiveError, match="ref_chosen_token_logps has shape"):
        dataclasses.replace(s, ref_chosen_token_logps=s.ref_chosen_token_logps[:, :1])
    with pytest.raises(ObjectiveError, match="give both chosen_kl and rejected_kl"):
        dataclasses.replace(s, chosen_kl=f64([0.0, 0.0, 0.0]))


def test_bfloat16_token_rows_are_upcast():
    s = random_rows(4, seed=1)
    low = dataclasses.replace(s, **{f: getattr(s, f).bfloat16() for f in (
        "chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps", "chosen_token_logps",
        "rejected_token_logps", "ref_chosen_token_logps", "ref_rejected_token_logps")})
    assert get_objective("ld_dpo")(low).losses.dtype == torch.float32


# ---------------------------------------------------------------- TDPO


def test_tdpo_hand_derived():
    """Δ_w = −6 − (−7) = 1, Δ_l = −5 − (−4) = −1, D_w = 0.5, D_l = 2.5, β = 0.1.
    TDPO₁: (Δ_w − Δ_l) − (D_l − D_w) = 2 − 2 = 0 → ln 2. TDPO₂ (α = 0.5): 2 − 0.5·2 = 1 → −log σ(0.1) =
    log(1 + e^{−0.1}) = 0.6443966601. Rewards β(Δ + D): 0.15 and 0.15."""
    s = seq_stats([-6.0], [-5.0], [-7.0], [-4.0], [0.5], [2.5])
    one = get_objective("tdpo1")(s)
    assert one.losses.item() == pytest.approx(LN2, abs=1e-12)
    two = get_objective("tdpo2")(s)
    assert two.losses.item() == pytest.approx(0.6443966601, abs=1e-10)
    for out in (one, two):
        assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.15, 0.15))


@pytest.mark.parametrize("name, params", [("tdpo1", {}), ("tdpo2", {}), ("tdpo2", {"alpha": 2.0})])
def test_tdpo_is_dpo_when_the_kl_terms_are_zero(name, params):
    s = with_kl(random_rows(16, seed=2), [0.0] * 16, [0.0] * 16)
    assert torch.equal(get_objective(name)(s, **params).losses, get_objective("dpo")(s).losses)


def test_tdpo2_at_alpha_zero_is_dpo():
    s = with_kl(random_rows(16, seed=3), [0.3 * i for i in range(16)], [0.7] * 16)
    assert torch.equal(get_objective("tdpo2")(s, alpha=0.0).losses, get_objective("dpo")(s).losses)


def test_tdpo_kl_gradients():
    """With u the bracketed margin: TDPO₁ has d loss/d D_l = β σ(−βu) > 0 (descent lowers the rejected KL) and
    d loss/d D_w = −β σ(−βu) (it would raise the chosen KL); TDPO₂ detaches the chosen KL (no gradient) and
    scales the rejected one's by α."""
    for name, params in (("tdpo1", {}), ("tdpo2", {"alpha": 0.5})):
        kw, kl = f64([0.4, 1.0]).requires_grad_(), f64([0.2, 3.0]).requires_grad_()
        s = dataclasses.replace(seq_stats([-6.0, -3.0], [-5.0, -9.0], [-7.0, -3.5], [-4.0, -8.0], [0, 0], [0, 0]),
                                chosen_kl=kw, rejected_kl=kl)
        out = get_objective(name)(s, **params)
        out.losses.sum().backward()
        dw, dl = s.chosen_logps - s.ref_chosen_logps, s.rejected_logps - s.ref_rejected_logps
        alpha = params.get("alpha", 1.0)
        u = (dw - dl) - alpha * (kl.detach() - kw.detach())
        slope = 0.1 * torch.sigmoid(-0.1 * u)            # −d/dx log σ(0.1 x) at x = u, times 0.1
        torch.testing.assert_close(kl.grad, alpha * slope, rtol=0, atol=1e-15)
        if name == "tdpo1":
            torch.testing.assert_close(kw.grad, -slope, rtol=0, atol=1e-15)
        else:
            assert kw.grad is None or torch.equal(kw.grad, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("name", ["tdpo1", "tdpo2"])
def test_tdpo_gradcheck(name):
    """Over every input with a gradient (TDPO₂'s chosen KL has none by design: test_tdpo_kl_gradients)."""
    s = with_kl(random_rows(4, seed=4), [0.1, 0.5, 1.0, 2.0], [1.5, 0.2, 0.3, 0.0])
    names = ["chosen_logps", "rejected_logps", "rejected_kl"] + (["chosen_kl"] if name == "tdpo1" else [])

    def f(*values):
        return get_objective(name)(dataclasses.replace(s, **dict(zip(names, values)))).losses

    assert torch.autograd.gradcheck(f, tuple(getattr(s, n).clone().requires_grad_(True) for n in names))


# Re-typed from github.com/Vance0124/Token-level-Direct-Preference-Optimization at commit
# 2a736ecb285394a8419b461816bce1ba3b093cc9, trainers.py: _tdpo_get_batch_logps and tdpo_loss.
def authors_tdpo_get_batch_logps(logits, reference_logits, labels):
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    reference_logits = reference_logits[:, :-1, :]
    loss_mask = labels != -100
    labels[labels == -100] = 0
    vocab_logps = logits.log_softmax(-1)
    reference_vocab_ps = reference_logits.softmax(-1)
    reference_vocab_logps = reference_vocab_ps.log()
    per_position_kl = (reference_vocab_ps * (reference_vocab_logps - vocab_logps)).sum(-1)
    per_token_logps = torch.gather(vocab_logps, dim=2, index=labels.unsqueeze(2)).squeeze(2)
    per_reference_token_logps = torch.gather(reference_vocab_logps, dim=2, index=labels.unsqueeze(2)).squeeze(2)
    logps_margin = per_token_logps - per_reference_token_logps
    return (logps_margin * loss_mask).sum(-1), (per_position_kl * loss_mask).sum(-1)


def authors_tdpo_loss(chosen_logps_margin, rejected_logps_margin, chosen_position_kl, rejected_position_kl, beta,
                      alpha=0.5, if_tdpo2=True):
    chosen_values = chosen_logps_margin + chosen_position_kl
    rejected_values = rejected_logps_margin + rejected_position_kl
    chosen_rejected_logps_margin = chosen_logps_margin - rejected_logps_margin
    if not if_tdpo2:
        logits = chosen_rejected_logps_margin - (rejected_position_kl - chosen_position_kl)
    else:
        logits = chosen_rejected_logps_margin - alpha * (rejected_position_kl - chosen_position_kl.detach())
    losses = -F.logsigmoid(beta * logits)
    return losses, beta * chosen_values.detach(), beta * rejected_values.detach()


def concatenated_batch(n_pairs, seed, vocab=13, length=9):
    """Chosen rows then rejected rows, right-padded; random prompt and response lengths; random float64 logits of
    the policy and the reference."""
    g = torch.Generator().manual_seed(seed)
    rows = 2 * n_pairs
    ids = torch.randint(1, vocab, (rows, length), generator=g)
    prompt = torch.randint(1, 4, (rows,), generator=g)
    real = prompt + torch.randint(1, length - 3, (rows,), generator=g)
    position = torch.arange(length)
    attention = (position < real[:, None]).long()
    response = ((position >= prompt[:, None]) & (position < real[:, None])).long()
    logits = torch.randn(rows, length, vocab, generator=g, dtype=torch.float64)
    ref_logits = logits + 0.7 * torch.randn(rows, length, vocab, generator=g, dtype=torch.float64)
    return ids, attention, response, logits, ref_logits


@pytest.mark.parametrize("name, tdpo2", [("tdpo1", False), ("tdpo2", True)])
def test_tdpo_matches_the_authors_code(name, tdpo2):
    """From the same logits, the engine's statistics (sequence_logprobs, the padded path's computation) and the
    objective give the authors' losses, rewards and logit gradients."""
    ids, attention, response, logits, ref_logits = concatenated_batch(4, seed=5)
    labels = ids.masked_fill(~(response.bool() & attention.bool()), -100)

    theirs_logits = logits.clone().requires_grad_(True)
    margin, kl = authors_tdpo_get_batch_logps(theirs_logits, ref_logits, labels)
    theirs = authors_tdpo_loss(margin[:4], margin[4:], kl[:4], kl[4:], beta=0.1, alpha=0.5, if_tdpo2=tdpo2)
    theirs[0].sum().backward()

    ours_logits = logits.clone().requires_grad_(True)
    policy = sequence_logprobs(ours_logits, ids, attention, response, ("sequence_kl",), "response", ref_logits)
    reference = sequence_logprobs(ref_logits, ids, attention, response)
    out = get_objective(name)(pair_logprobs("response", *policy.split_pairs(), *reference.split_pairs()))
    out.losses.sum().backward()

    torch.testing.assert_close(out.losses, theirs[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.chosen_rewards, theirs[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.rejected_rewards, theirs[2], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_logits.grad, theirs_logits.grad, rtol=0, atol=1e-12)
    assert (policy.kl > 0).all()


# ---------------------------------------------------------------- SamPO


def test_sampo_equal_lengths_is_dpo():
    s = random_rows(32, seed=6, equal=True)
    torch.testing.assert_close(get_objective("sampo")(s).losses, get_objective("dpo")(s).losses, rtol=0, atol=1e-12)


def test_sampo_hand_derived():
    """Chosen log-ratios r_w = (1, 2, 4) over 3 tokens, rejected r_l = (−1) over 1: one chosen token is kept, so
    the loss is −log σ(0.1 (r + 1)) for the kept r ∈ {1, 2, 4}: 0.5981388693, 0.5543552444 or 0.4740769842 (DPO,
    summing all three, would give −log σ(0.8) = 0.3711006659)."""
    s = rows_stats([[-1.0, -1.0, -1.0]], [[-3.0]], [[-2.0, -3.0, -5.0]], [[-2.0]])
    keep_w, keep_l = kept_tokens(s)
    assert keep_w.sum().item() == 1 and keep_l.tolist() == [[True]]
    kept_ratio = [1.0, 2.0, 4.0][keep_w[0].nonzero().item()]
    out = get_objective("sampo")(s)
    assert out.losses.item() == pytest.approx(softplus(0.1 * (kept_ratio + 1)), abs=1e-12)
    assert min(abs(out.losses.item() - v) for v in (0.5981388693, 0.5543552444, 0.4740769842)) < 1e-9
    assert out.chosen_rewards.item() == pytest.approx(0.1 * kept_ratio)
    assert out.rejected_rewards.item() == pytest.approx(-0.1)


def kept_tokens(stats):
    from prefbench.objectives.sampo import kept_tokens as kept

    return kept(stats)


def test_sampo_keeps_min_length_tokens_of_each_side():
    s = random_rows(64, seed=7)
    keep_w, keep_l = kept_tokens(s)
    m = torch.minimum(s.chosen_tokens, s.rejected_tokens)
    assert torch.equal(keep_w.sum(-1), m) and torch.equal(keep_l.sum(-1), m)
    assert not (keep_w & ~s.token_mask("chosen")).any() and not (keep_l & ~s.token_mask("rejected")).any()
    shorter_w = s.chosen_tokens <= s.rejected_tokens
    assert torch.equal(keep_w[shorter_w], s.token_mask("chosen")[shorter_w])     # the shorter side keeps all


def test_sampo_draw_is_uniform_over_the_longer_sides_tokens():
    """4000 pairs with a 5-token chosen side and a 2-token rejected one: each chosen position is kept with
    probability 2/5; the 4000 draws are independent (seeded by the pair's reference sums), so each position's
    rate is within 5 standard errors (5·√(0.4·0.6/4000) = 0.039) of 0.4."""
    n = 4000
    ref = torch.linspace(-50, -10, n, dtype=torch.float64)
    s = PairLogProbs(torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), torch.full((n,), 5),
                     torch.full((n,), 2), ref, ref - 1, chosen_token_logps=torch.zeros(n, 5, dtype=torch.float64),
                     rejected_token_logps=torch.zeros(n, 2, dtype=torch.float64),
                     ref_chosen_token_logps=torch.zeros(n, 5, dtype=torch.float64),
                     ref_rejected_token_logps=torch.zeros(n, 2, dtype=torch.float64))
    keep_w, _ = kept_tokens(s)
    rates = keep_w.double().mean(0)
    assert ((rates - 0.4).abs() < 0.039).all(), rates


def test_sampo_draw_is_reproducible_and_per_pair():
    """The same pair keeps the same tokens in any batch (a resumed run, another micro-batch split, another order)."""
    s = random_rows(12, seed=8)
    losses = get_objective("sampo")(s).losses
    assert torch.equal(get_objective("sampo")(s).losses, losses)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    permuted = dataclasses.replace(s, **{f.name: getattr(s, f.name)[order] for f in dataclasses.fields(s)
                                         if getattr(s, f.name) is not None})
    assert torch.equal(get_objective("sampo")(permuted).losses, losses[order])
    assert torch.equal(get_objective("sampo")(dataclasses.replace(
        s, **{f.name: getattr(s, f.name)[:5] for f in dataclasses.fields(s) if getattr(s, f.name) is not None}
    )).losses, losses[:5])


def test_sampo_gradient_reaches_only_kept_tokens():
    s = random_rows(6, seed=9)
    rows_w = s.chosen_token_logps.clone().requires_grad_(True)
    rows_l = s.rejected_token_logps.clone().requires_grad_(True)
    get_objective("sampo")(dataclasses.replace(s, chosen_token_logps=rows_w,
                                               rejected_token_logps=rows_l)).losses.sum().backward()
    keep_w, keep_l = kept_tokens(s)
    assert (rows_w.grad[keep_w] < 0).all() and (rows_w.grad[~keep_w] == 0).all()
    assert (rows_l.grad[keep_l] > 0).all() and (rows_l.grad[~keep_l] == 0).all()


# ---------------------------------------------------------------- LD-DPO


def test_ld_dpo_hand_derived():
    """Chosen: policy (−1, −2, −3), reference (−1, −1, −1); rejected: policy (−2), reference (−1); l_p = 1, α = 0.5.
    S̃_θ(w) = −1 + 0.5·(−5) = −3.5, S̃_ref(w) = −1 + 0.5·(−2) = −2 → Δ̃_w = −1.5; Δ̃_l = −2 − (−1) = −1.
    Margin −0.5, β = 0.1: −log σ(−0.05) = log(1 + e^{0.05}) = 0.7184596480; rewards −0.15, −0.1."""
    s = rows_stats([[-1.0, -2.0, -3.0]], [[-2.0]], [[-1.0, -1.0, -1.0]], [[-1.0]])
    out = get_objective("ld_dpo")(s)
    assert out.losses.item() == pytest.approx(0.7184596480, abs=1e-10)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-0.15, -0.1))


def test_ld_dpo_at_alpha_one_is_dpo():
    s = random_rows(32, seed=10)
    torch.testing.assert_close(get_objective("ld_dpo")(s, alpha=1.0).losses, get_objective("dpo")(s).losses,
                               rtol=0, atol=1e-12)


def test_ld_dpo_at_alpha_zero_is_dpo_on_the_common_length():
    """α = 0: both responses cut to the shorter one's length, then DPO."""
    s = random_rows(16, seed=11)
    m = torch.minimum(s.chosen_tokens, s.rejected_tokens)
    cut = lambda rows: rows.where(torch.arange(rows.shape[1]) < m[:, None], 0).sum(-1)
    truncated = PairLogProbs(cut(s.chosen_token_logps), cut(s.rejected_token_logps), m, m,
                             cut(s.ref_chosen_token_logps), cut(s.ref_rejected_token_logps))
    torch.testing.assert_close(get_objective("ld_dpo")(s, alpha=0.0).losses, get_objective("dpo")(truncated).losses,
                               rtol=0, atol=1e-12)


# Re-typed from TRL 1.16.0, trl/trainer/dpo_trainer.py, DPOTrainer._compute_loss (the ``ld_alpha`` branch) and
# the "sigmoid" loss: per-token log-probs laid out as the completion mask has them (prompt and padding zero).
def trl_ld_dpo(per_token_logps, ref_per_token_logps, shift_completion_mask, beta, ld_alpha):
    comp_pos = shift_completion_mask.cumsum(dim=1)
    comp_lens = shift_completion_mask.sum(dim=1).long()
    chosen_lens, rejected_lens = comp_lens.chunk(2, dim=0)
    shared_lens = torch.minimum(chosen_lens, rejected_lens)
    shared_lens = torch.cat([shared_lens, shared_lens], dim=0)
    shared_mask = (comp_pos > 0) & (comp_pos <= shared_lens.unsqueeze(1))
    tail_mask = comp_pos > shared_lens.unsqueeze(1)

    def desensitized(logps):
        return (logps * shared_mask).sum(dim=1) + ld_alpha * (logps * tail_mask).sum(dim=1)

    chosen_logps, rejected_logps = desensitized(per_token_logps).chunk(2, dim=0)
    ref_chosen_logps, ref_rejected_logps = desensitized(ref_per_token_logps).chunk(2, dim=0)
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    return -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_ld_dpo_matches_trl(alpha):
    """From the same logits: TRL's masked per-token log-probs, and the engine's statistics fed to ld_dpo."""
    ids, attention, response, logits, ref_logits = concatenated_batch(5, seed=12)
    mask = (response.bool() & attention.bool())[:, 1:]
    per_token = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * mask
    ref_per_token = torch.log_softmax(ref_logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * mask
    theirs = trl_ld_dpo(per_token, ref_per_token, mask.long(), beta=0.1, ld_alpha=alpha)

    policy = sequence_logprobs(logits, ids, attention, response, ("token_logps",), "response")
    reference = sequence_logprobs(ref_logits, ids, attention, response, ("token_logps",), "response")
    ours = get_objective("ld_dpo")(pair_logprobs("response", *policy.split_pairs(), *reference.split_pairs()),
                                   alpha=alpha)
    torch.testing.assert_close(ours.losses, theirs, rtol=0, atol=1e-12)
