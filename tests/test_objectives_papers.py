"""Sequence-level pairwise objectives from the literature (issue #16): hand-derived values, the invariants
their derivations imply (reductions to DPO/SimPO, inactive penalties, monotonicity in the margin), float64
references for the batch-coupled ones (beta_dpo, alpha_dpo) and for wpo, and numbers computed by the authors'
own code and by TRL. Per-pair float64 references, gradcheck, the sign of the gradient, ln 2 at the reference and
shift invariance for the other new objectives are in tests/test_objectives.py's parametrized lists."""

import math
import os

import pytest
import torch

from prefbench import PairLogProbs, get_objective
from prefbench.registry import link_preference_loss
from tests.test_objectives import LN2, random_stats, softplus, stats

PAPERS = ["rdpo", "dpop", "beta_dpo", "cal_dpo", "fdpo_js", "fdpo_fkl", "fdpo_alpha", "wpo", "alphapo", "focalpo",
          "chipo", "simper", "gpo_exponential", "gpo_truncated_quadratic", "gpo_savage", "alpha_dpo", "cpo"]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def dpo_losses(s, beta):
    return get_objective("dpo")(s, beta=beta).losses


def with_refs(s, ref_w, ref_l):
    return PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens, ref_w, ref_l)


def margin_grid(n=41, dtype=torch.float64):
    """Pairs whose DPO margin z = Δ_w − Δ_l runs from −20 to 20 through the rejected reference alone, so the
    policy's own log-probs (and any weight or reward computed from them) stay fixed along the grid."""
    z = torch.linspace(-20, 20, n, dtype=dtype)
    cw = torch.full((n,), -30.0, dtype=dtype)
    rl = torch.full((n,), -32.0, dtype=dtype)
    tokens = torch.full((n,), 12)
    return z, PairLogProbs(cw, rl, tokens, tokens, cw.clone(), rl + z)


FAMILY = {"alphapo": "reference-free", "simper": "reference-free", "cpo": "reference-free", "cal_dpo": "anchored",
          "fdpo_js": "divergence", "fdpo_fkl": "divergence", "fdpo_alpha": "divergence", "chipo": "divergence",
          "gpo_exponential": "loss-shape", "gpo_savage": "loss-shape", "gpo_truncated_quadratic": "loss-shape"}


def test_registered_with_family_paper_and_formula():
    for name in PAPERS:
        obj = get_objective(name)
        assert obj.family == FAMILY.get(name, "dpo"), name
        assert "arXiv" in obj.paper and obj.summary, name
    assert {n for n in PAPERS if not get_objective(n).needs_reference} == {"alphapo", "simper", "cpo"}
    assert {n for n in PAPERS if get_objective(n).adds_nll} == {"cpo"}
    assert get_objective("dpo_positive") is get_objective("dpop")
    assert get_objective("chi_po") is get_objective("chipo")


@pytest.mark.parametrize("name", ["rdpo", "dpop", "beta_dpo", "fdpo_js", "fdpo_fkl", "fdpo_alpha", "wpo", "focalpo",
                                  "chipo", "gpo_exponential", "gpo_truncated_quadratic", "gpo_savage"])
def test_loss_does_not_increase_with_the_margin(name):
    _, s = margin_grid()
    losses = get_objective(name)(s).losses
    assert (losses[1:] <= losses[:-1] + 1e-12).all(), f"{name} must not penalise a larger margin"
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", PAPERS)
def test_extreme_log_ratios_stay_finite(name):
    """Summed log-ratios of ±500 nats (long responses far from the reference) give finite losses and gradients:
    every exp of a summed log-ratio is capped or clipped."""
    cw = torch.tensor([-10.0, -600.0, -10.0, -600.0], dtype=torch.float32, requires_grad=True)
    rl = torch.tensor([-600.0, -10.0, -10.0, -600.0], dtype=torch.float32)
    refw = torch.tensor([-510.0, -100.0, -510.0, -100.0], dtype=torch.float32)
    refl = torch.tensor([-100.0, -510.0, -510.0, -100.0], dtype=torch.float32)
    tokens = torch.full((4,), 400)
    out = get_objective(name)(PairLogProbs(cw, rl, tokens, tokens, refw, refl))
    assert torch.isfinite(out.losses).all()
    out.losses.sum().backward()
    assert torch.isfinite(cw.grad).all()


# ---------------------------------------------------------------- R-DPO


def test_rdpo_hand_derived():
    """Δ_w = 1, Δ_l = −1, z = 2, β = 0.1, α = 0.01. Chosen 30 tokens, rejected 10: logit = 0.2 + 0.01·20 = 0.4,
    loss = log(1 + e^{−0.4}) = 0.5130152524. Chosen 10, rejected 30: logit = 0.2 − 0.2 = 0 → ln 2."""
    out = get_objective("rdpo")(stats([-6.0, -6.0], [-5.0, -5.0], ct=[30, 10], rt=[10, 30], refw=[-7.0, -7.0],
                                      refl=[-4.0, -4.0]))
    assert out.losses.tolist() == pytest.approx([0.5130152524, LN2], abs=1e-9)
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, 0.1])


def test_rdpo_reduces_to_dpo_and_credits_the_longer_chosen_response():
    s = random_stats(32, seed=11)
    rdpo = get_objective("rdpo")
    assert torch.allclose(rdpo(s, alpha=0.0).losses, dpo_losses(s, 0.1), atol=1e-12)
    same_length = PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.chosen_tokens,
                               s.ref_chosen_logps, s.ref_rejected_logps)
    assert torch.allclose(rdpo(same_length).losses, dpo_losses(same_length, 0.1), atol=1e-12)
    # the paper's sign: a longer chosen response already explains part of the preference, so the loss (and the
    # push on the policy) is smaller than DPO's; a shorter one gets a larger push
    gap = s.chosen_tokens - s.rejected_tokens
    diff = rdpo(s).losses - dpo_losses(s, 0.1)
    assert (diff[gap > 0] < 0).all() and (diff[gap < 0] > 0).all()


# ---------------------------------------------------------------- DPOP


def test_dpop_hand_derived():
    """β = 0.3, λ = 50. Pair 1: Δ_w = 1 ≥ 0, so no penalty: log(1 + e^{−0.3·2}) = 0.4374879505.
    Pair 2: S_θ(y_w) = −7.5 < S_ref(y_w) = −7, Δ_w = −0.5, Δ_l = −1, z = 0.5, penalty 0.5:
    β(0.5 − 50·0.5) = −7.35 → log(1 + e^{7.35}) = 7.3506423860. With λ = 1 the penalty cancels the margin → ln 2."""
    s = stats([-6.0, -7.5], [-5.0, -5.0], refw=[-7.0, -7.0], refl=[-4.0, -4.0])
    assert get_objective("dpop")(s).losses.tolist() == pytest.approx([0.4374879505, 7.3506423860], abs=1e-9)
    assert get_objective("dpop")(s, lam=1.0).losses[1].item() == pytest.approx(LN2, abs=1e-12)


def test_dpop_penalty_only_when_chosen_falls_below_reference():
    s = random_stats(64, seed=12)
    dpop, base = get_objective("dpop")(s).losses, dpo_losses(s, 0.3)
    below = s.chosen_logps < s.ref_chosen_logps
    assert below.any() and (~below).any()
    assert torch.allclose(dpop[~below], base[~below], atol=1e-12)
    assert (dpop[below] > base[below]).all()
    assert torch.allclose(get_objective("dpop")(s, lam=0.0).losses, base, atol=1e-12)


# ---------------------------------------------------------------- β-DPO


def test_beta_dpo_hand_derived():
    """β₀ = 0.1, α = 0.6, M₀ = 0. Margins z = 2 and 0: batch mean 1, β_B = 0.1·(1 + 0.6·1) = 0.16.
    Losses log(1 + e^{−0.32}) = 0.5458929372 and ln 2; rewards use β₀ (0.1·Δ)."""
    out = get_objective("beta_dpo")(stats([-6.0, -5.0], [-5.0, -5.0], refw=[-7.0, -5.0], refl=[-4.0, -5.0]))
    assert out.losses.tolist() == pytest.approx([0.5458929372, LN2], abs=1e-9)
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, 0.0])


def beta_dpo_reference(s, beta, alpha, m0):
    """Float64 reference written from the paper/authors' code with the math module."""
    rows = list(zip(*[getattr(s, f).double().tolist() for f in ("chosen_logps", "rejected_logps", "ref_chosen_logps",
                                                                 "ref_rejected_logps")]))
    z = [(cw - refw) - (rl - refl) for cw, rl, refw, refl in rows]
    b = max(beta * (1 + alpha * (sum(z) / len(z) - m0)), 1e-3)
    return [softplus(b * zi) for zi in z]


@pytest.mark.parametrize("n", [1, 3, 17, 256])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_beta_dpo_matches_float64_reference(n, dtype):
    s = random_stats(n, seed=n, dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for params in ({}, {"m0": 1.5}, {"alpha": 0.0}, {"m0": 1e4}):  # the last drives β_B onto its floor 1e-3
        p = {**get_objective("beta_dpo").defaults, **params}
        got = get_objective("beta_dpo")(s, **params).losses.double().tolist()
        assert got == pytest.approx(beta_dpo_reference(s, **p), rel=tol, abs=tol)


def test_beta_dpo_reductions_and_detached_beta():
    s = random_stats(16, seed=13)
    obj = get_objective("beta_dpo")
    assert torch.allclose(obj(s, alpha=0.0).losses, dpo_losses(s, 0.1), atol=1e-12)
    z = (s.chosen_logps - s.ref_chosen_logps) - (s.rejected_logps - s.ref_rejected_logps)
    # M₀ at the batch's mean margin: β_B = β₀, i.e. DPO
    assert torch.allclose(obj(s, m0=z.mean().item()).losses, dpo_losses(s, 0.1), atol=1e-12)
    # β_B is detached: each pair's gradient is DPO's at the fixed temperature β_B
    beta_b = 0.1 * (1 + 0.6 * z.mean().item())
    grads = []
    for loss_fn in (lambda t: obj(t).losses, lambda t: dpo_losses(t, beta_b)):
        cw = s.chosen_logps.clone().requires_grad_(True)
        loss_fn(PairLogProbs(cw, s.rejected_logps, s.chosen_tokens, s.rejected_tokens, s.ref_chosen_logps,
                             s.ref_rejected_logps)).sum().backward()
        grads.append(cw.grad)
    assert torch.allclose(*grads, atol=1e-12)


# ---------------------------------------------------------------- Cal-DPO


def test_cal_dpo_hand_derived():
    """Δ_w = 1, Δ_l = −1. β = 0.5: targets ±1/(2β) = ±1 are met, loss = log(1 + e^{−2}) = 0.1269280110 (no β in
    the contrastive term). Default β = 0.001: targets ±500, loss = 0.1269280110 + ½(499² + 499²) = 249001.1269280110.
    Rewards are the unscaled log-ratios ±1."""
    s = stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0])
    assert get_objective("cal_dpo")(s, beta=0.5).losses.item() == pytest.approx(0.1269280110, abs=1e-9)
    out = get_objective("cal_dpo")(s)
    assert out.losses.item() == pytest.approx(249001.1269280110, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == (1.0, -1.0)


def test_cal_dpo_is_unit_temperature_dpo_plus_calibration():
    s = random_stats(32, seed=14)
    dw, dl = s.chosen_logps - s.ref_chosen_logps, s.rejected_logps - s.ref_rejected_logps
    calibration = 0.5 * ((dw - 1 / (2 * 0.25)) ** 2 + (dl + 1 / (2 * 0.25)) ** 2)
    got = get_objective("cal_dpo")(s, beta=0.25).losses
    assert torch.allclose(got - calibration, dpo_losses(s, 1.0), atol=1e-12)


# ---------------------------------------------------------------- f-DPO


def test_fdpo_hand_derived():
    """β = 0.1, u = π_θ/π_ref of the response.
    JS, Δ_w = 2, Δ_l = 0: f′(u) = log(2u/(1+u)): f′_w − f′_l = log(2/(1 + e^{−2})) − 0 = 0.5662191695,
    loss = log(1 + e^{−0.05662191695}) = 0.6652369237.
    Forward KL, u_w = 2, u_l = ½: f′ = −1/u: −0.5 + 2 = 1.5, loss = log(1 + e^{−0.15}) = 0.6209570478.
    α = 0.5, u_w = 4, u_l = 1: f′ = (1 − u^{−½})/½: 1 − 0 = 1, loss = log(1 + e^{−0.1}) = 0.6443966601."""
    js = get_objective("fdpo_js")(stats([-3.0], [-5.0], refw=[-5.0], refl=[-5.0]))
    assert js.losses.item() == pytest.approx(0.6652369237, abs=1e-9)
    ln2 = math.log(2)
    fkl = get_objective("fdpo_fkl")(stats([ln2 - 5], [-ln2 - 5], refw=[-5.0], refl=[-5.0]))
    assert fkl.losses.item() == pytest.approx(0.6209570478, abs=1e-9)
    assert fkl.chosen_rewards.item() == pytest.approx(-0.05)
    alpha = get_objective("fdpo_alpha")(stats([math.log(4) - 5], [-5.0], refw=[-5.0], refl=[-5.0]))
    assert alpha.losses.item() == pytest.approx(0.6443966601, abs=1e-9)


def test_reverse_kl_link_is_dpo():
    """f(u) = u log u (reverse KL) has f′(u) = log u + 1: the f-DPO construction with that link is exactly DPO."""
    s = random_stats(32, seed=15)
    reverse_kl = link_preference_loss(s, 0.1, lambda delta: delta + 1)
    assert torch.allclose(reverse_kl.losses, dpo_losses(s, 0.1), atol=1e-12)


def test_alpha_divergence_spans_reverse_and_forward_kl():
    s = random_stats(32, seed=16)
    fdpo_alpha = get_objective("fdpo_alpha")
    assert torch.allclose(fdpo_alpha(s, alpha=1e-9).losses, dpo_losses(s, 0.1), atol=1e-7)   # α → 0: reverse KL
    fkl = get_objective("fdpo_fkl")(s).losses
    assert torch.allclose(fdpo_alpha(s, alpha=1 - 1e-9).losses, fkl, atol=1e-7)             # α → 1: forward KL


def test_js_is_dpo_at_half_the_temperature_for_opposite_log_ratios():
    """f′_JS = log 2 + log σ(Δ) and log σ(x) − log σ(−x) = x, so when Δ_l = −Δ_w the JS margin is
    Δ_w = (Δ_w − Δ_l)/2: f-DPO (JS) at β is DPO at β/2."""
    s = random_stats(16, seed=17)
    d = s.chosen_logps - s.ref_chosen_logps
    mirrored = with_refs(s, s.ref_chosen_logps, s.rejected_logps + d)
    assert torch.allclose(get_objective("fdpo_js")(mirrored).losses, dpo_losses(mirrored, 0.05), atol=1e-12)


# ---------------------------------------------------------------- WPO


def test_wpo_hand_derived():
    """β = 0.1 (override), z = 2: DPO part 0.5981388693. Token-mean log-probs −6/3 = −2 and −5/5 = −1:
    w = e^{−3} = 0.0497870684, loss = 0.0297795808."""
    out = get_objective("wpo")(stats([-6.0], [-5.0], ct=[3], rt=[5], refw=[-7.0], refl=[-4.0]), beta=0.1)
    assert out.losses.item() == pytest.approx(0.0297795808, abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_wpo_matches_float64_reference_and_its_weights_are_detached(dtype):
    s = random_stats(64, seed=18, dtype=dtype)
    rows = zip(*[getattr(s, f).double().tolist() for f in ("chosen_logps", "rejected_logps", "chosen_tokens",
                                                             "rejected_tokens", "ref_chosen_logps", "ref_rejected_logps")])
    expected = [math.exp(cw / ct + rl / rt) * softplus(0.01 * ((cw - refw) - (rl - refl)))
                for cw, rl, ct, rt, refw, refl in rows]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert get_objective("wpo")(s).losses.double().tolist() == pytest.approx(expected, rel=tol, abs=tol)
    if dtype != torch.float64:
        return
    cw = s.chosen_logps.clone().requires_grad_(True)
    get_objective("wpo")(PairLogProbs(cw, s.rejected_logps, s.chosen_tokens, s.rejected_tokens, s.ref_chosen_logps,
                                      s.ref_rejected_logps)).losses.sum().backward()
    weight = torch.exp(s.chosen_logps / s.chosen_tokens + s.rejected_logps / s.rejected_tokens)
    z = (s.chosen_logps - s.ref_chosen_logps) - (s.rejected_logps - s.ref_rejected_logps)
    assert torch.allclose(cw.grad, -weight * 0.01 * torch.sigmoid(-0.01 * z), atol=1e-15)


def test_wpo_is_dpo_for_certain_responses():
    """Responses the policy generates with probability 1 (log-probs 0) get weight 1."""
    zeros, ones = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.long)
    s = PairLogProbs(zeros, zeros, ones, ones, torch.tensor([-1.0, 2.0], dtype=torch.float64), zeros - 0.5)
    assert torch.allclose(get_objective("wpo")(s).losses, dpo_losses(s, 0.01), atol=1e-15)


# ---------------------------------------------------------------- AlphaPO


def test_alphapo_hand_derived():
    """α = 1 (override), β = 2, γ = 1: p̄_w = 0.5 (2 tokens), p̄_l = 0.25 (4 tokens); r = 1 − 1/p̄: −1 and −3.
    2·(−1 + 3) − 1 = 3 → log(1 + e^{−3}) = 0.0485873516; rewards β·r = −2, −6."""
    out = get_objective("alphapo")(stats([2 * math.log(0.5)], [4 * math.log(0.25)], ct=[2], rt=[4]), alpha=1.0)
    assert out.losses.item() == pytest.approx(0.0485873516, abs=1e-9)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-2.0, -6.0))


def test_alphapo_reduces_to_simpo():
    s = random_stats(32, seed=19)
    alphapo, simpo = get_objective("alphapo"), get_objective("simpo")
    for beta, gamma in ((2.0, 1.0), (2.5, 0.3), (10.0, 4.0)):
        ref = simpo(s, beta=beta, gamma=gamma)
        exact = alphapo(s, beta=beta, gamma=gamma, alpha=0.0)
        assert torch.allclose(exact.losses, ref.losses, rtol=0, atol=1e-13)
        assert torch.allclose(exact.chosen_rewards, ref.chosen_rewards, rtol=0, atol=1e-13)
        assert torch.allclose(alphapo(s, beta=beta, gamma=gamma, alpha=1e-9).losses, ref.losses, atol=1e-7)
    assert torch.equal(alphapo(PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens)).losses,
                       alphapo(s).losses)  # no reference used


# ---------------------------------------------------------------- FocalPO


def test_focalpo_hand_derived():
    """z = 2, β = 0.1: p = σ(0.2) = 0.5498339973, −log p = 0.5981388693.
    γ = 1: loss = 0.5498339973·0.5981388693 = 0.3288770855; γ = 0.05 (default): p^γ = 0.9705358440 → 0.5805152125."""
    s = stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0])
    assert get_objective("focalpo")(s, gamma=1.0).losses.item() == pytest.approx(0.3288770855, abs=1e-9)
    assert get_objective("focalpo")(s).losses.item() == pytest.approx(0.5805152125, abs=1e-9)


def test_focalpo_scales_dpo_by_the_probability_of_the_correct_ranking():
    s = random_stats(64, seed=20)
    dpo = dpo_losses(s, 0.1)
    assert torch.allclose(get_objective("focalpo")(s, gamma=0.0).losses, dpo, atol=1e-12)
    z = (s.chosen_logps - s.ref_chosen_logps) - (s.rejected_logps - s.ref_rejected_logps)
    ratio = get_objective("focalpo")(s, gamma=0.5).losses / dpo
    assert torch.allclose(ratio, torch.sigmoid(0.1 * z) ** 0.5, atol=1e-12)
    # misranked pairs (z < 0) keep a smaller share of their DPO loss than correctly ranked ones
    assert ratio[z < 0].max() < ratio[z > 0].min()


# ---------------------------------------------------------------- χPO


def test_chipo_hand_derived():
    """β = 0.1. u_w = 2 (Δ_w = ln 2), u_l = 1 (Δ_l = 0): φ(u) = u + log u: 2.6931471806 − 1 = 1.6931471806,
    loss = log(1 + e^{−0.16931471806}) = 0.6120689836. With R_max = 0.05 the logit is clipped to 0.1:
    log(1 + e^{−0.1}) = 0.6443966601."""
    s = stats([math.log(2) - 5], [-5.0], refw=[-5.0], refl=[-5.0])
    assert get_objective("chipo")(s).losses.item() == pytest.approx(0.6120689836, abs=1e-9)
    assert get_objective("chipo")(s, r_max=0.05).losses.item() == pytest.approx(0.6443966601, abs=1e-9)


def test_chipo_clip_stops_the_gradient():
    cw = torch.tensor([-5.0, 25.0, -5.0], dtype=torch.float64, requires_grad=True)
    rl = torch.tensor([-5.0, -5.0, 30.0], dtype=torch.float64)
    ref = torch.full((3,), -5.0, dtype=torch.float64)
    ones = torch.ones(3, dtype=torch.long)
    out = get_objective("chipo")(PairLogProbs(cw, rl, ones, ones, ref, ref))
    # pair 2: β(e^30 + 30 − 1) far above 2R_max = 10; pair 3: far below −10
    assert out.losses[1:].tolist() == pytest.approx([softplus(10.0), softplus(-10.0)], abs=1e-12)
    out.losses.sum().backward()
    assert cw.grad[1:].tolist() == [0.0, 0.0] and cw.grad[0] < 0


# ---------------------------------------------------------------- SimPER


def test_simper_hand_derived():
    """Inverse perplexities exp(S/|y|): chosen exp(2·ln 0.5 / 2) = 0.5, rejected exp(4·ln 0.25 / 4) = 0.25:
    loss = 0.25 − 0.5 = −0.25; rewards the token-mean log-probs ln 0.5, ln 0.25."""
    out = get_objective("simper")(stats([2 * math.log(0.5)], [4 * math.log(0.25)], ct=[2], rt=[4]))
    assert out.losses.item() == pytest.approx(-0.25, abs=1e-12)
    assert out.chosen_rewards.item() == pytest.approx(math.log(0.5))


def test_simper_is_bounded_antisymmetric_and_reference_free():
    s = random_stats(64, seed=21)
    simper = get_objective("simper")
    losses = simper(s).losses
    assert ((losses > -1) & (losses < 1)).all()
    swapped = PairLogProbs(s.rejected_logps, s.chosen_logps, s.rejected_tokens, s.chosen_tokens)
    assert torch.allclose(simper(swapped).losses, -losses, atol=1e-15)
    assert torch.equal(simper(PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens,
                                           s.rejected_tokens)).losses, losses)


# ---------------------------------------------------------------- GPO


def test_gpo_hand_derived():
    """z = 2, β = 0.1, βz = 0.2: exponential e^{−0.2} = 0.8187307531; truncated quadratic (1 − 0.2)² = 0.64;
    Savage σ(−0.2)² = 0.4501660027² = 0.2026494300. At the reference (z = 0): 1, 1, ¼."""
    s = stats([-6.0, -5.0], [-5.0, -5.0], refw=[-7.0, -5.0], refl=[-4.0, -5.0])
    assert get_objective("gpo_exponential")(s).losses.tolist() == pytest.approx([0.8187307531, 1.0], abs=1e-9)
    assert get_objective("gpo_truncated_quadratic")(s).losses.tolist() == pytest.approx([0.64, 1.0], abs=1e-12)
    assert get_objective("gpo_savage")(s).losses.tolist() == pytest.approx([0.2026494300, 0.25], abs=1e-9)


def test_gpo_truncated_quadratic_is_zero_past_the_unit_margin_and_savage_is_bounded():
    z, s = margin_grid()
    tq = get_objective("gpo_truncated_quadratic")(s).losses
    assert (tq[0.1 * z >= 1] == 0).all() and (tq[0.1 * z < 1] > 0).all()
    savage = get_objective("gpo_savage")(s).losses
    assert ((savage > 0) & (savage < 1)).all()


# ---------------------------------------------------------------- α-DPO


def test_alpha_dpo_hand_derived():
    """β = 2.5, γ = 1.5, α = 0.2 (αβ = 0.5); one-token responses. Both pairs: ū_w − ū_l = −1 − (−2) = 1.
    Reference margins 0 and 1, so δ = 1 and 0; over two pairs the z-scores are ±1/√2 (unbiased std).
    Logits 2.5 − 1.5 − 0.5/√2 = 0.6464466094 and 1 + 0.5/√2 = 1.3535533906:
    losses 0.4212755347 and 0.2297780649. A single pair has ẑ = 0: log(1 + e^{−1}) = 0.3132616875 (SimPO)."""
    s = stats([-1.0, -1.0], [-2.0, -2.0], refw=[-1.0, -1.0], refl=[-1.0, -2.0])
    assert get_objective("alpha_dpo")(s).losses.tolist() == pytest.approx([0.4212755347, 0.2297780649], abs=1e-9)
    one = stats([-1.0], [-2.0], refw=[-1.0], refl=[-1.0])
    assert get_objective("alpha_dpo")(one).losses.item() == pytest.approx(0.3132616875, abs=1e-9)


def alpha_dpo_reference(s, beta, gamma, alpha):
    rows = list(zip(*[getattr(s, f).double().tolist() for f in ("chosen_logps", "rejected_logps", "chosen_tokens",
                                                                 "rejected_tokens", "ref_chosen_logps",
                                                                 "ref_rejected_logps")]))
    u = [cw / ct - rl / rt for cw, rl, ct, rt, _, _ in rows]
    delta = [ui - (refw / ct - refl / rt) for ui, (_, _, ct, rt, refw, refl) in zip(u, rows)]
    mean = sum(delta) / len(delta)
    std = math.sqrt(sum((d - mean) ** 2 for d in delta) / (len(delta) - 1)) if len(delta) > 1 else 1.0
    return [softplus(beta * ui - gamma - alpha * beta * (d - mean) / std) for ui, d in zip(u, delta)]


@pytest.mark.parametrize("n", [1, 3, 17, 256])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_alpha_dpo_matches_float64_reference(n, dtype):
    s = random_stats(n, seed=n, dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    got = get_objective("alpha_dpo")(s).losses.double().tolist()
    assert got == pytest.approx(alpha_dpo_reference(s, **get_objective("alpha_dpo").defaults), rel=tol, abs=tol)


def test_alpha_dpo_reduces_to_simpo_and_its_margin_is_detached():
    s = random_stats(32, seed=22)
    alpha_dpo, simpo = get_objective("alpha_dpo"), get_objective("simpo")
    assert torch.allclose(alpha_dpo(s, alpha=0.0).losses, simpo(s, beta=2.5, gamma=1.5).losses, atol=1e-12)
    # the adaptive margin is a constant for the gradient: d loss / d S_θ(y_w) is SimPO's at the same logit
    cw = s.chosen_logps.clone().requires_grad_(True)
    out = alpha_dpo(PairLogProbs(cw, s.rejected_logps, s.chosen_tokens, s.rejected_tokens, s.ref_chosen_logps,
                                 s.ref_rejected_logps))
    out.losses.sum().backward()
    logit = torch.log(torch.expm1(out.losses.detach())).neg()  # softplus(−x) = L  ⇒  x = −log(e^L − 1)
    assert torch.allclose(cw.grad, -2.5 / s.chosen_tokens * torch.sigmoid(-logit), atol=1e-10)


# ---------------------------------------------------------------- CPO


def test_cpo_hand_derived():
    """β = 0.1: summed log-probs −4 and −6, logit 0.1·2 = 0.2, log(1 + e^{−0.2}) = 0.5981388693; NLL of the chosen
    response 4/2 = 2 → 2.5981388693; rewards β·S = −0.4, −0.6. α = 0 leaves the preference term alone."""
    s = stats([-4.0], [-6.0], ct=[2], rt=[3])
    out = get_objective("cpo")(s)
    assert out.losses.item() == pytest.approx(2.5981388693, abs=1e-9)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-0.4, -0.6))
    assert get_objective("cpo")(s, alpha=0.0).losses.item() == pytest.approx(0.5981388693, abs=1e-9)


def test_cpo_is_dpo_against_a_uniform_reference_plus_nll():
    s = random_stats(32, seed=23)
    zeros = torch.zeros_like(s.chosen_logps)
    no_ref_dpo = dpo_losses(with_refs(s, zeros, zeros), 0.1)
    nll = -s.chosen_logps / s.chosen_tokens
    assert torch.allclose(get_objective("cpo")(s).losses, no_ref_dpo + nll, atol=1e-12)


# ---------------------------------------------------------------- against the authors' code and TRL

# Six pairs (the inputs of tests/fixtures/trl_reference.json): summed response log-probs and token counts.
CW = [-12.0, -30.5, -7.25, -55.0, -20.0, -3.0]
RL = [-14.0, -28.0, -9.5, -60.0, -20.0, -8.0]
REFW = [-13.0, -29.0, -8.0, -57.0, -21.0, -4.0]
REFL = [-13.5, -29.5, -9.0, -58.0, -19.5, -6.5]
CT = [10, 25, 6, 40, 16, 3]
RT = [12, 20, 8, 44, 16, 7]

# Per-pair losses computed by running the authors' released loss code (extracted verbatim from the files named, in
# float64, on the inputs above; the code itself is not part of this repository):
AUTHORS = {
    # alecwangcq/f-divergence-dpo @ 07d9369f4dba2fe0eb50abfa3dac1abd22e9eb47, trainers.py:
    # js_dpo_loss / forward_dpo_loss / alpha_dpo_loss(alpha=0.5, 0.3), beta=0.1
    ("fdpo_js", ()): [0.6606521625101546, 0.7709570477895321, 0.6642178333225263, 0.5981388693815918,
                      0.6606521625101546, 0.6261463756102285],
    ("fdpo_fkl", ()): [0.6311543835721054, 0.9285750271206774, 0.6360582112491656, 0.39483844070691143,
                       0.6311543835721054, 0.5084634798614683],
    ("fdpo_alpha", ()): [0.6276909470685579, 0.8710740922075515, 0.6352529811727131, 0.4854782594760572,
                         0.6276909470685579, 0.553464717667117],
    ("fdpo_alpha", (("alpha", 0.3),)): [0.625437693864315, 0.8602434291358851, 0.634426390435639, 0.5032805093509768,
                                        0.625437693864315, 0.5647118875372141],
    # tengxiao1/SimPER @ db08c97f22268a4e0e5d129a179a82fb3468d78b, scripts/simper_trainer.py: simpo_loss with
    # loss_type="SimPER" on token-averaged log-probs (average_log_prob=True)
    ("simper", ()): [0.010209012002395601, -0.048633202982407725, 0.00628807942238091, 0.00288956410835417, 0.0,
                     -0.04897288384747189],
    # junkangwu/beta-DPO @ 1629047374915ba319477caa4f6c6b2d1f172e5d, trainers.py: preference_loss with
    # mode_loss="beta_DPO", beta=0.1, a=0.6, mode_weight=0 (no pair filtered out), gap_mean = M₀, gap_std = 1
    ("beta_dpo", ()): [0.5688572631788988, 0.9944306900294969, 0.5883506641649702, 0.3998789997905983,
                       0.5688572631788988, 0.4956870966492469],
    ("beta_dpo", (("m0", 1.5),)): [0.6296739570490257, 0.8329858452825178, 0.6399542971134813, 0.533382155418777,
                                   0.6296739570490257, 0.5897417378836574],
    # junkangwu/alpha-DPO @ fab32091cd1e36a275ad0b08adb09920c01cd65f, scripts/dpo_trainer.py:
    # AlphaDPOTrainer.dpo_loss with loss_type="alpha-dpo", beta=2.5, gamma_beta_ratio=0.6, alpha=0.2, on
    # token-averaged log-probs (ln=True), its running mean/std pinned to this batch's mean and (unbiased) std
    ("alpha_dpo", ()): [1.744913739197133, 0.9111921927932822, 1.8046247909932693, 1.6156266633758434,
                        1.5898739268723758, 2.14996662371323],
}
# tengxiao1/Cal-DPO @ 7d16b466e52733269bbd6f7544a807faa555772b, scripts/dpo_trainer.py: dpo_loss with
# loss_type="Cal-DPO" returns per-pair DPO terms plus the batch-mean calibration (F.mse_loss), so only its batch
# mean is comparable to our per-pair losses: beta=0.001 and beta=0.5
CAL_DPO_BATCH_MEAN = {0.001: 249356.38860544187, 0.5: 1.9302721085158299}


def paper_stats():
    def f64(values):
        return torch.tensor(values, dtype=torch.float64)

    return PairLogProbs(f64(CW), f64(RL), torch.tensor(CT), torch.tensor(RT), f64(REFW), f64(REFL))


@pytest.mark.parametrize("case", sorted(AUTHORS, key=str), ids=lambda c: c[0] + "".join(f"-{k}={v}" for k, v in c[1]))
def test_losses_match_the_authors_code(case):
    name, params = case
    assert get_objective(name)(paper_stats(), **dict(params)).losses.tolist() == pytest.approx(AUTHORS[case],
                                                                                              rel=1e-12)


def test_alpha_dpo_rewards_match_the_authors_code():
    out = get_objective("alpha_dpo")(paper_stats())
    assert out.chosen_rewards.tolist() == pytest.approx([-3.05, -3.02, -3.083333333333333, -3.4625, -3.15625,
                                                         -2.6666666666666665], rel=1e-12)
    assert out.rejected_rewards.tolist() == pytest.approx([-2.8958333333333335, -3.5375, -2.9375, -3.3863636363636362,
                                                           -3.109375, -2.7499999999999996], rel=1e-12)


@pytest.mark.parametrize("beta", sorted(CAL_DPO_BATCH_MEAN))
def test_cal_dpo_batch_mean_matches_the_authors_code(beta):
    got = get_objective("cal_dpo")(paper_stats(), beta=beta).losses.mean().item()
    assert got == pytest.approx(CAL_DPO_BATCH_MEAN[beta], rel=1e-12)


# TRL 1.16.0, trl.experimental.cpo.CPOTrainer.cpo_loss, called on object.__new__(CPOTrainer) as
# tests/fixtures/make_trl_reference.py calls it for simpo:
# * cpo: loss_type="sigmoid", beta=0.1, label_smoothing=0, alpha=0 on the SUMMED log-probs (CPOTrainer uses
#   average_log_prob=False for "sigmoid"); TRL adds cpo_alpha·NLL outside cpo_loss, with the NLL pooled over the
#   batch's chosen tokens, so the per-pair total is cpo_loss + 1.0·S_θ(y_w)/|y_w|·(−1), computed here.
# * alphapo: loss_type="simpo", beta=2.0, simpo_gamma=1.0, label_smoothing=0, alpha=0.25 on token-averaged
#   log-probs (average_log_prob=True for "simpo"); cpo_alpha=0, as TRL's loss_type="alphapo" sets it.
TRL_CPO_LOSS = {  # cpo_loss's own per-pair losses (before the NLL), recorded from TRL 1.16.0
    "cpo": [0.5981388693815918, 0.8259394198788436, 0.5869620020497037, 0.4740769841801067, 0.6931471805599453,
            0.4740769841801067],
    "alphapo": [1.3795552416892392, 0.9743631132869195, 1.3546660221639346, 1.3367594960564009, 1.3132616875182228,
                1.054681715822138],
}
TRL_CPO_CHOSEN_REWARDS = {
    "cpo": [-1.2000000000000002, -3.0500000000000003, -0.7250000000000001, -5.5, -2.0, -0.30000000000000004],
    "alphapo": [-2.7988704606080255, -2.853000024049793, -2.82139155873252, -3.281808279405686, -2.9347035293903705,
                -2.272203333501931],
}


def test_cpo_and_alphapo_match_recorded_trl_numbers():
    s = paper_stats()
    nll = [-cw / ct for cw, ct in zip(CW, CT)]
    cpo = get_objective("cpo")(s)
    assert cpo.losses.tolist() == pytest.approx([t + n for t, n in zip(TRL_CPO_LOSS["cpo"], nll)], rel=1e-12)
    assert cpo.chosen_rewards.tolist() == pytest.approx(TRL_CPO_CHOSEN_REWARDS["cpo"], rel=1e-12)
    alphapo = get_objective("alphapo")(s)
    assert alphapo.losses.tolist() == pytest.approx(TRL_CPO_LOSS["alphapo"], rel=1e-12)
    assert alphapo.chosen_rewards.tolist() == pytest.approx(TRL_CPO_CHOSEN_REWARDS["alphapo"], rel=1e-12)


def test_cpo_and_alphapo_match_trl_called_live():
    """The same comparison calling TRL itself, where it is installed (it is not a project dependency)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    cpo_module = pytest.importorskip("trl.experimental.cpo")

    class _Accelerator:
        device = torch.device("cpu")

    def trl_cpo_loss(chosen, rejected, **attrs):
        trainer = object.__new__(cpo_module.CPOTrainer)
        for key, value in {"accelerator": _Accelerator(), "label_smoothing": 0.0, "cpo_alpha": 0.0,
                           "simpo_gamma": 0.5, **attrs}.items():
            object.__setattr__(trainer, key, value)
        return trainer.cpo_loss(chosen, rejected)

    s = paper_stats()
    losses, chosen_rewards, _ = trl_cpo_loss(s.chosen_logps, s.rejected_logps, loss_type="sigmoid", beta=0.1,
                                             alpha=0.0, cpo_alpha=1.0)
    total = losses - s.chosen_logps / s.chosen_tokens
    assert get_objective("cpo")(s).losses.tolist() == pytest.approx(total.tolist(), rel=1e-12)
    assert get_objective("cpo")(s).chosen_rewards.tolist() == pytest.approx(chosen_rewards.tolist(), rel=1e-12)
    losses, chosen_rewards, _ = trl_cpo_loss(s.chosen_logps / s.chosen_tokens, s.rejected_logps / s.rejected_tokens,
                                             loss_type="simpo", beta=2.0, simpo_gamma=1.0, alpha=0.25)
    assert get_objective("alphapo")(s).losses.tolist() == pytest.approx(losses.tolist(), rel=1e-12)
    assert get_objective("alphapo")(s).chosen_rewards.tolist() == pytest.approx(chosen_rewards.tolist(), rel=1e-12)


# ---------------------------------------------------------------- iterative objectives (tests/test_iterative.py has
# their rounds): each round's loss is DPO's against the round's reference, which the engine supplies


def test_iterative_dpo_and_accelerated_po_hand_derived():
    """Δ_w = −6 − (−7) = 1, Δ_l = −5 − (−4) = −1, z = 2; β = 0.1: log(1 + e^{−0.2}) = 0.5981388693, rewards
    ±0.1. For APO the reference in the stats is already the extrapolated one (the engine's), and TR-DPO's is the one in
    force since its last update (the engine's), so the loss is the same."""
    s = stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0])
    for name in ("iterative_dpo", "accelerated_po", "tr_dpo"):
        out = get_objective(name)(s)
        assert out.losses.item() == pytest.approx(0.5981388693, abs=1e-9)
        assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.1, -0.1))


@pytest.mark.parametrize("name", ["iterative_dpo", "accelerated_po"])
def test_iterative_objectives_are_dpo_per_round(name):
    """Float64 DPO on random pairs, whatever the rounds and the extrapolation (both act in the run); ln 2 at the
    reference; shift invariance; gradcheck."""
    s = random_stats(64, seed=31)
    extra = {"rounds": 5, **({"extrapolation": 0.6} if name == "accelerated_po" else {})}
    obj = get_objective(name)
    z = (s.chosen_logps - s.ref_chosen_logps) - (s.rejected_logps - s.ref_rejected_logps)
    expected = [softplus(0.3 * zi) for zi in z.tolist()]     # −log σ(0.3 z), written out in float64
    assert obj(s, beta=0.3, **extra).losses.tolist() == pytest.approx(expected, abs=1e-12)
    same = with_refs(s, s.chosen_logps, s.rejected_logps)
    assert obj(same).losses.tolist() == pytest.approx([LN2] * 64, abs=1e-12)
    c = torch.linspace(-40, 40, 64, dtype=torch.float64)
    shifted = PairLogProbs(s.chosen_logps + c, s.rejected_logps - c, s.chosen_tokens, s.rejected_tokens,
                           s.ref_chosen_logps + c, s.ref_rejected_logps - c)
    assert torch.allclose(obj(s).losses, obj(shifted).losses, atol=1e-10)
    small = random_stats(4, seed=7)

    def f(cw, rl, refw, refl):
        return obj(PairLogProbs(cw, rl, small.chosen_tokens, small.rejected_tokens, refw, refl)).losses

    assert torch.autograd.gradcheck(f, tuple(t.clone().requires_grad_(True) for t in (
        small.chosen_logps, small.rejected_logps, small.ref_chosen_logps, small.ref_rejected_logps)))
