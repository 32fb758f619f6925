"""Objective regression tests: hand-derived values, an independent float64 reference, gradients,
the invariants of DESIGN.md §3, and a contract every registered objective must meet."""

import dataclasses
import math

import pytest
import torch

from prefbench import ListLogProbs, ObjectiveError, PairLogProbs, UnpairedLogProbs, get_objective, list_objectives

LN2 = math.log(2.0)


def stats(cw, rl, ct=None, rt=None, refw=None, refl=None, crl=None, crt=None, dtype=torch.float64):
    """PairLogProbs from plain lists (token counts default to 1)."""
    t = lambda v: None if v is None else torch.tensor(v, dtype=dtype)  # noqa: E731
    n = len(cw)
    return PairLogProbs(
        t(cw), t(rl),
        torch.tensor(ct or [1] * n), torch.tensor(rt or [1] * n),
        t(refw), t(refl),
        t(crl), None if crt is None else torch.tensor(crt),
    )


def softplus(x):
    """−log σ(x) = log(1 + e^{−x}), computed stably in float64."""
    return math.log1p(math.exp(-abs(x))) + max(-x, 0.0)


# ---------------------------------------------------------------- hand-derived values


def test_dpo_hand_derived():
    """Δ_w = −6 − (−7) = 1, Δ_l = −5 − (−4) = −1, z = 2, β = 0.1:
    loss = −log σ(0.2) = log(1 + e^{−0.2}) = log(1.8187307531) = 0.5981388693; rewards ±0.1."""
    out = get_objective("dpo")(stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0]))
    assert out.losses.item() == pytest.approx(0.5981388693, abs=1e-9)
    assert out.chosen_rewards.item() == pytest.approx(0.1)
    assert out.rejected_rewards.item() == pytest.approx(-0.1)


def test_cdpo_hand_derived():
    """z = 2, β = 0.1, ε = 0.1: 0.9·log(1+e^{−0.2}) + 0.1·log(1+e^{0.2})
    = 0.9·0.5981388693 + 0.1·0.7981388693 = 0.6181388693 (log(1+e^{x}) = x + log(1+e^{−x}))."""
    out = get_objective("cdpo")(stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0]))
    assert out.losses.item() == pytest.approx(0.6181388693, abs=1e-9)
    # ε = 0 must be exactly DPO, never silently a different loss
    plain = get_objective("cdpo")(stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0]), label_smoothing=0.0)
    assert plain.losses.item() == pytest.approx(0.5981388693, abs=1e-9)


def test_ipo_hand_derived():
    """τ = 0.1 → target 1/(2τ) = 5. Pair 1: Δ_w = 12 over 4 tokens → 3, Δ_l = −6 over 3 → −2,
    z̄ = 5 → loss 0. Pair 2: Δ_w = 4 over 4 → 1, Δ_l = −6 over 3 → −2, z̄ = 3 → (3 − 5)² = 4.
    Summing instead of averaging would give z̄ = 18 and 10 → losses 169 and 25."""
    s = stats([-8.0, -16.0], [-18.0, -18.0], ct=[4, 4], rt=[3, 3], refw=[-20.0, -20.0], refl=[-12.0, -12.0])
    out = get_objective("ipo")(s)
    assert out.losses.tolist() == pytest.approx([0.0, 4.0], abs=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([3.0, 1.0])


def test_simpo_hand_derived():
    """β = 2, γ = 1: chosen −4 over 4 tokens → −1, rejected −6 over 2 → −3;
    β(−1 − (−3)) − γ = 3 → loss = log(1 + e^{−3}) = 0.0485873516; rewards −2, −6."""
    out = get_objective("simpo")(stats([-4.0], [-6.0], ct=[4], rt=[2]))
    assert out.losses.item() == pytest.approx(0.0485873516, abs=1e-9)
    assert out.chosen_rewards.item() == pytest.approx(-2.0)
    assert out.rejected_rewards.item() == pytest.approx(-6.0)


def test_orpo_hand_derived():
    """λ = 0.1. Chosen mean log-prob log 0.5 → odds 1 → log-odds 0; rejected log 0.2 → odds 0.25.
    −log σ(0 − log 0.25) = log(1 + 0.25) = 0.2231435513; NLL = −log 0.5 = 0.6931471806.
    loss = 0.6931471806 + 0.1·0.2231435513 = 0.7154615357 (sums over 2 tokens, means as above)."""
    out = get_objective("orpo")(stats([2 * math.log(0.5)], [2 * math.log(0.2)], ct=[2], rt=[2]))
    assert out.losses.item() == pytest.approx(0.7154615357, abs=1e-9)


def test_rpo_hand_derived():
    """DPO part 0.5981388693 (z = 2, β = 0.1) + α·NLL with NLL = 6/3 = 2 → 2.5981388693."""
    out = get_objective("rpo")(stats([-6.0], [-5.0], ct=[3], rt=[3], refw=[-7.0], refl=[-4.0]))
    assert out.losses.item() == pytest.approx(2.5981388693, abs=1e-9)


def test_sft_hand_derived():
    """NLL = −(−6)/3 = 2, whatever the rejected response is."""
    out = get_objective("sft")(stats([-6.0], [-1.0], ct=[3], rt=[5]))
    assert out.losses.item() == pytest.approx(2.0)


def test_jpo_and_sft_jpo_hand_derived():
    """Joint-span sums: Δ_w = −26 − (−27) = 1, Δ_l = −25 − (−24) = −1 → JPO = 0.5981388693.
    SFT+JPO adds NLL of the chosen *response* only: 3/2 = 1.5 → 2.0981388693 (not the joint mean 26/13 = 2)."""
    s = stats([-26.0], [-25.0], ct=[13], rt=[13], refw=[-27.0], refl=[-24.0], crl=[-3.0], crt=[2])
    assert get_objective("jpo")(s).losses.item() == pytest.approx(0.5981388693, abs=1e-9)
    assert get_objective("sft_jpo")(s).losses.item() == pytest.approx(2.0981388693, abs=1e-9)


# ---------------------------------------------------------------- independent float64 reference


def reference_loss(name, cw, rl, ct, rt, refw, refl, crl, crt, p):
    """Scalar float64 formulas written from the papers with the math module, one pair at a time."""
    dw, dl = cw - refw, rl - refl
    if name == "sft":
        return -cw / ct
    if name in ("dpo", "jpo"):
        return softplus(p["beta"] * (dw - dl))
    if name == "cdpo":
        e = p["label_smoothing"]
        return (1 - e) * softplus(p["beta"] * (dw - dl)) + e * softplus(-p["beta"] * (dw - dl))
    if name == "ipo":
        return (dw / ct - dl / rt - 1 / (2 * p["tau"])) ** 2
    if name == "simpo":
        return softplus(p["beta"] * (cw / ct - rl / rt) - p["gamma"])
    if name == "orpo":
        mw, ml = cw / ct, rl / rt
        log_odds = lambda m: m - math.log(1 - math.exp(m))  # noqa: E731
        return -mw + p["lam"] * softplus(log_odds(mw) - log_odds(ml))
    if name == "rpo":
        return softplus(p["beta"] * (dw - dl)) - p["alpha"] * cw / ct
    if name == "sft_jpo":
        return softplus(p["beta"] * (dw - dl)) - p["alpha"] * crl / crt
    # TRL 1.16 DPOTrainer loss types (issue #16); aot/aot_unpaired sort across the batch: see
    # tests/test_objectives_trl_family.py for their batch reference
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    b = p.get("beta")
    if name == "hinge":
        return max(0.0, 1 - b * (dw - dl))
    if name == "exo_pair":
        e, x = p["label_smoothing"], b * (dw - dl)
        return sig(x) * (-softplus(x) - math.log(1 - e)) + sig(-x) * (-softplus(-x) - math.log(e))
    if name == "nca_pair":
        return softplus(b * dw) + 0.5 * softplus(-b * dw) + 0.5 * softplus(-b * dl)
    if name == "robust_dpo":
        e, x = p["label_smoothing"], b * (dw - dl)
        return ((1 - e) * softplus(x) - e * softplus(-x)) / (1 - 2 * e)
    if name == "bco_pair":
        return softplus(b * dw - p["delta"]) + softplus(-(b * dl - p["delta"]))
    if name == "sppo_hard":
        return (dw - 1 / (2 * b)) ** 2 + (dl + 1 / (2 * b)) ** 2
    if name == "apo_zero":
        return 1 - sig(b * dw) + sig(b * dl)
    if name == "apo_down":
        return sig(b * dw) + 1 - sig(b * (dw - dl))
    if name == "discopop":
        x = b * (dw - dl)
        w = sig(x / p["tau"])
        return (1 - w) * softplus(x) + (w * math.exp(-x) if w else 0.0)
    if name == "dpo_norm":
        return softplus(b * (dw / ct - dl / rt))
    # objectives from the literature (issue #16); beta_dpo, alpha_dpo and wpo: tests/test_objectives_papers.py
    if name == "rdpo":
        return softplus(b * (dw - dl) + p["alpha"] * (ct - rt))
    if name == "dpop":
        return softplus(b * (dw - dl - p["lam"] * max(0.0, -dw)))
    if name == "cal_dpo":
        t = 1 / (2 * b)
        return softplus(dw - dl) + 0.5 * ((dw - t) ** 2 + (dl + t) ** 2)
    if name in ("fdpo_js", "fdpo_fkl", "fdpo_alpha", "chipo"):
        f = {"fdpo_js": lambda u: math.log(2 * u / (1 + u)), "fdpo_fkl": lambda u: -1 / u,
             "fdpo_alpha": lambda u: (1 - u ** -p["alpha"]) / p["alpha"],
             "chipo": lambda u: u + math.log(u)}[name]
        x = b * (f(math.exp(dw)) - f(math.exp(dl)))
        return softplus(max(-2 * p["r_max"], min(2 * p["r_max"], x)) if name == "chipo" else x)
    if name == "alphapo":
        r = lambda m: (1 - math.exp(m) ** -p["alpha"]) / p["alpha"]  # noqa: E731
        return softplus(b * (r(cw / ct) - r(rl / rt)) - p["gamma"])
    if name == "focalpo":
        q = sig(b * (dw - dl))
        return -(q ** p["gamma"]) * math.log(q)
    if name == "simper":
        return math.exp(rl / rt) - math.exp(cw / ct)
    if name == "gpo_exponential":
        return math.exp(-b * (dw - dl))
    if name == "gpo_truncated_quadratic":
        return max(0.0, 1 - b * (dw - dl)) ** 2
    if name == "gpo_savage":
        return sig(-b * (dw - dl)) ** 2
    if name == "cpo":
        return softplus(b * (cw - rl)) - p["alpha"] * cw / ct
    raise KeyError(name)


PER_PAIR_TRL_FAMILY = ["hinge", "exo_pair", "nca_pair", "robust_dpo", "bco_pair", "sppo_hard", "apo_zero", "apo_down",
                       "discopop", "dpo_norm"]
# not beta_dpo/alpha_dpo (β and the margin are batch statistics) nor wpo (detached policy weights: gradcheck would
# differentiate them): tests/test_objectives_papers.py has their references and gradient checks
PER_PAIR_PAPERS = ["rdpo", "dpop", "cal_dpo", "fdpo_js", "fdpo_fkl", "fdpo_alpha", "alphapo", "focalpo", "chipo",
                   "simper", "gpo_exponential", "gpo_truncated_quadratic", "gpo_savage", "cpo"]
BUILTINS = ["sft", "dpo", "cdpo", "ipo", "simpo", "orpo", "rpo", "jpo", "sft_jpo", *PER_PAIR_TRL_FAMILY,
            *PER_PAIR_PAPERS]


def random_unpaired(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 60, (n,), generator=g)
    per_token = lambda: -(0.05 + 2.95 * torch.rand(n, generator=g, dtype=torch.float64))
    logps = per_token() * tokens
    ref = logps + torch.randn(n, generator=g, dtype=torch.float64)
    kl = per_token() * tokens
    ref_kl = kl - 0.5 + torch.randn(n, generator=g, dtype=torch.float64)
    desirable = torch.arange(n) % 2 == 0
    cast = lambda x: x.to(dtype)
    return UnpairedLogProbs(cast(logps), tokens, desirable, cast(ref), cast(kl), cast(ref_kl), tokens)


def random_stats(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ct = torch.randint(1, 60, (n,), generator=g)
    rt = torch.randint(1, 60, (n,), generator=g)
    # plausible per-token log-probs in (−3, −0.05), so sums scale with length like real data
    per_token = lambda: -(0.05 + 2.95 * torch.rand(n, generator=g, dtype=torch.float64))  # noqa: E731
    cw, rl = per_token() * ct, per_token() * rt
    refw = cw + torch.randn(n, generator=g, dtype=torch.float64)
    refl = rl + torch.randn(n, generator=g, dtype=torch.float64)
    crt = torch.clamp(ct // 2, min=1)
    crl = per_token() * crt
    cast = lambda x: x.to(dtype)  # noqa: E731
    return PairLogProbs(cast(cw), cast(rl), ct, rt, cast(refw), cast(refl), cast(crl), crt)


def with_token_statistics(s, seed):
    """``s`` with the token-level statistics (TOKEN_STATISTICS) that agree with its sums: each side's rows share
    its summed log-prob out over its tokens unevenly, zero past the count; sequential KLs positive, growing with
    length; pair scores in [0, 10), the chosen one higher."""
    g = torch.Generator().manual_seed(seed)
    width = int(max(s.chosen_tokens.max(), s.rejected_tokens.max()))

    def rows(total, tokens):
        mask = torch.arange(width) < tokens[:, None]
        weights = torch.rand(len(tokens), width, generator=g, dtype=torch.float64).add(0.5) * mask
        return (total.double()[:, None] * weights / weights.sum(-1, keepdim=True)).to(total.dtype)

    def kl(tokens):
        return (0.01 * tokens * torch.rand(len(tokens), generator=g, dtype=torch.float64)).to(s.chosen_logps.dtype)

    # the scores from a generator of their own, so the token statistics are those drawn before scores existed
    scores = torch.rand(2, len(s.chosen_tokens), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rejected = 5 * scores[0]
    return dataclasses.replace(
        s, chosen_token_logps=rows(s.chosen_logps, s.chosen_tokens),
        rejected_token_logps=rows(s.rejected_logps, s.rejected_tokens),
        ref_chosen_token_logps=rows(s.ref_chosen_logps, s.chosen_tokens),
        ref_rejected_token_logps=rows(s.ref_rejected_logps, s.rejected_tokens),
        chosen_kl=kl(s.chosen_tokens), rejected_kl=kl(s.rejected_tokens),
        chosen_scores=rejected + 0.1 + 4.9 * scores[1],
        rejected_scores=rejected)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("n", [1, 3, 17, 256])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_matches_float64_reference(name, n, dtype):
    s = random_stats(n, seed=n, dtype=dtype)
    obj = get_objective(name)
    out = obj(s)
    assert out.losses.dtype != torch.bfloat16  # bf16 inputs are upcast before the loss
    # the reference sees exactly the values the objective saw (after any bf16 rounding)
    as_list = lambda t: t.double().tolist()  # noqa: E731
    cols = [as_list(getattr(s, f)) for f in ("chosen_logps", "rejected_logps", "chosen_tokens", "rejected_tokens",
                                              "ref_chosen_logps", "ref_rejected_logps", "chosen_response_logps",
                                              "chosen_response_tokens")]
    expected = [reference_loss(name, *row, obj.defaults) for row in zip(*cols)]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert out.losses.double().tolist() == pytest.approx(expected, rel=tol, abs=tol)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", BUILTINS)
def test_gradcheck(name):
    s = random_stats(4, seed=7)
    obj = get_objective(name)

    def f(cw, rl, refw, refl, crl):
        return obj(PairLogProbs(cw, rl, s.chosen_tokens, s.rejected_tokens, refw, refl, crl, s.chosen_response_tokens)).losses

    inputs = tuple(t.clone().requires_grad_(True) for t in (s.chosen_logps, s.rejected_logps, s.ref_chosen_logps,
                                                             s.ref_rejected_logps, s.chosen_response_logps))
    assert torch.autograd.gradcheck(f, inputs)


# not apo_down (at the reference its chosen-side gradients cancel; it is meant to lower the chosen
# response) nor discopop (at τ < 0.102 its slope at the reference lowers the margin): see
# tests/test_objectives_trl_family.py
@pytest.mark.parametrize("name", ["dpo", "cdpo", "ipo", "simpo", "orpo", "rpo", "jpo", "sft_jpo", "hinge", "exo_pair",
                                  "nca_pair", "robust_dpo", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
                                  "dpo_norm", *PER_PAIR_PAPERS, "beta_dpo", "alpha_dpo", "wpo"])
def test_gradient_pushes_chosen_up_and_rejected_down(name):
    # policy == reference: z̄ = 0 < 1/(2τ), so IPO too wants the margin to grow
    cw = torch.tensor([-20.0, -35.0], dtype=torch.float64, requires_grad=True)
    rl = torch.tensor([-22.0, -30.0], dtype=torch.float64, requires_grad=True)
    s = PairLogProbs(cw, rl, torch.tensor([10, 14]), torch.tensor([11, 12]), cw.detach().clone(), rl.detach().clone(),
                     cw, torch.tensor([10, 14]))
    get_objective(name)(s).losses.sum().backward()
    assert (cw.grad < 0).all(), "gradient descent must raise the chosen log-prob"
    assert (rl.grad > 0).all(), "gradient descent must lower the rejected log-prob"


# ---------------------------------------------------------------- invariants (DESIGN.md §3)


@pytest.mark.parametrize("name", ["dpo", "cdpo", "jpo", "robust_dpo", "aot", "aot_unpaired", "dpo_norm", "dpop",
                                  "beta_dpo", "fdpo_js", "fdpo_fkl", "fdpo_alpha", "chipo"])
def test_dpo_family_is_ln2_when_policy_equals_reference(name):
    s = random_stats(8, seed=1)
    same = PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens, s.chosen_logps, s.rejected_logps)
    assert get_objective(name)(same).losses.tolist() == pytest.approx([LN2] * 8, abs=1e-12)


def test_dpo_antisymmetry():
    """softplus(−βz) − softplus(βz) = −βz: swapping chosen and rejected shifts the loss by −βz."""
    s = random_stats(32, seed=2)
    swapped = PairLogProbs(s.rejected_logps, s.chosen_logps, s.rejected_tokens, s.chosen_tokens, s.ref_rejected_logps, s.ref_chosen_logps)
    dpo = get_objective("dpo")
    z = (s.chosen_logps - s.ref_chosen_logps) - (s.rejected_logps - s.ref_rejected_logps)
    diff = dpo(s).losses - dpo(swapped).losses
    assert torch.allclose(diff, -0.1 * z, atol=1e-12)


# not aot: it sorts the policy's and the reference's margins separately, so per-pair shifts reorder them
@pytest.mark.parametrize("name", ["dpo", "cdpo", "ipo", "jpo", "hinge", "exo_pair", "nca_pair", "robust_dpo",
                                  "bco_pair", "sppo_hard", "aot_unpaired", "apo_zero", "apo_down", "discopop",
                                  "dpo_norm", "rdpo", "dpop", "beta_dpo", "cal_dpo", "fdpo_js", "fdpo_fkl",
                                  "fdpo_alpha", "focalpo", "chipo", "gpo_exponential", "gpo_truncated_quadratic",
                                  "gpo_savage"])
def test_constant_shift_of_policy_and_reference_changes_nothing(name):
    s = random_stats(16, seed=3)
    c = torch.linspace(-40, 40, 16, dtype=torch.float64)
    shifted = PairLogProbs(s.chosen_logps + c, s.rejected_logps - c, s.chosen_tokens, s.rejected_tokens,
                           s.ref_chosen_logps + c, s.ref_rejected_logps - c)
    obj = get_objective(name)
    assert torch.allclose(obj(s).losses, obj(shifted).losses, atol=1e-10)


def test_simpo_ignores_reference():
    s = random_stats(16, seed=4)
    no_ref = PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens)
    simpo = get_objective("simpo")
    assert torch.equal(simpo(s).losses, simpo(no_ref).losses)


def test_ipo_minimised_at_target_margin():
    tau = 0.25  # target z̄ = 2
    margins = torch.linspace(-1, 5, 61, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(61, dtype=torch.float64)
    ones = torch.ones(61, dtype=torch.long)
    losses = get_objective("ipo")(PairLogProbs(margins, zeros, ones, ones, zeros, zeros), tau=tau).losses
    assert margins[losses.argmin()].item() == pytest.approx(2.0)
    assert losses.min().item() == pytest.approx(0.0, abs=1e-20)
    losses.sum().backward()
    assert margins.grad[losses.argmin()].item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- contract for every registered objective


@pytest.mark.parametrize("obj", [o for o in list_objectives() if o.data == "paired"], ids=lambda o: o.name)
def test_contract(obj):
    s = random_stats(5, seed=5, dtype=torch.float32)
    if obj.statistics:
        s = with_token_statistics(s, seed=5)
        with pytest.raises(ObjectiveError, match="needs the '.*' statistics"):
            obj(random_stats(5, seed=5, dtype=torch.float32))
    # the input the loss reads the chosen policy log-prob from: its per-token rows when it declares them
    field = "chosen_token_logps" if "token_logps" in obj.statistics else "chosen_logps"
    leaf = getattr(s, field).clone().requires_grad_(True)
    s = dataclasses.replace(s, **{field: leaf})
    out = obj(s)
    assert out.losses.shape == (5,)
    assert out.chosen_rewards.shape == out.rejected_rewards.shape == (5,)
    assert torch.isfinite(out.losses).all()
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.losses.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert obj.span in ("response", "joint")
    assert set(obj.defaults) == set(obj.params)
    assert obj.summary, "docstring must state the formula on its first line"
    without_ref = PairLogProbs(s.chosen_logps.detach(), s.rejected_logps, s.chosen_tokens, s.rejected_tokens,
                               chosen_response_logps=s.chosen_response_logps,
                               chosen_response_tokens=s.chosen_response_tokens)
    if obj.needs_reference:
        with pytest.raises(ObjectiveError, match="needs reference"):
            obj(without_ref)
    else:
        assert torch.isfinite(obj(without_ref).losses).all()


@pytest.mark.parametrize("obj", [o for o in list_objectives() if o.data == "unpaired"], ids=lambda o: o.name)
def test_contract_unpaired(obj):
    s = random_unpaired(6, seed=6, dtype=torch.float32)
    leaf = s.logps.clone().requires_grad_(True)
    s = dataclasses.replace(s, logps=leaf)
    out = obj(s)
    assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (6,)
    assert torch.isfinite(out.losses).all()
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.losses.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert obj.span in ("response", "joint") and obj.family == "unpaired"
    assert set(obj.defaults) == set(obj.params)
    assert obj.summary, "docstring must state the formula on its first line"
    with pytest.raises(ObjectiveError, match="takes UnpairedLogProbs"):
        obj(random_stats(3, seed=3))
    if obj.needs_reference:
        with pytest.raises(ObjectiveError, match="needs reference"):
            obj(UnpairedLogProbs(s.logps.detach(), s.tokens, s.desirable))


def random_lists(n, k, seed, dtype=torch.float64):
    """n lists of 2 … k responses with distinct scores; the entries past a list's end are masked."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 60, (n, k), generator=g)
    logps = -(0.05 + 2.95 * torch.rand(n, k, generator=g, dtype=torch.float64)) * tokens
    ref = logps + torch.randn(n, k, generator=g, dtype=torch.float64)
    mask = torch.arange(k)[None, :] < torch.randint(2, k + 1, (n, 1), generator=g)
    return ListLogProbs(logps.to(dtype), tokens, torch.rand(n, k, generator=g).double(), mask, ref.to(dtype))


@pytest.mark.parametrize("obj", [o for o in list_objectives() if o.data == "listwise"], ids=lambda o: o.name)
def test_contract_listwise(obj):
    s = random_lists(5, 4, seed=5, dtype=torch.float32)
    leaf = s.logps.clone().requires_grad_(True)
    s = dataclasses.replace(s, logps=leaf)
    out = obj(s)
    assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (5,)
    assert torch.isfinite(out.losses).all()
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.losses.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert torch.all(leaf.grad[~s.mask] == 0), "entries past a list's end must not matter"
    assert obj.span in ("response", "joint") and obj.family == "listwise"
    assert set(obj.defaults) == set(obj.params)
    assert obj.summary, "docstring must state the formula on its first line"
    with pytest.raises(ObjectiveError, match="takes ListLogProbs"):
        obj(random_stats(3, seed=3))
    without_ref = ListLogProbs(s.logps.detach(), s.tokens, s.scores, s.mask)
    if obj.needs_reference:
        with pytest.raises(ObjectiveError, match="needs reference"):
            obj(without_ref)
    else:
        assert torch.isfinite(obj(without_ref).losses).all()


def test_paired_objective_refuses_unpaired_stats():
    with pytest.raises(ObjectiveError, match="takes PairLogProbs"):
        get_objective("dpo")(random_unpaired(3, seed=1))


def test_data_must_be_known():
    from prefbench.registry import register_objective
    with pytest.raises(ObjectiveError, match="data must be one of"):
        register_objective("x_bad_data", span="response", needs_reference=False, data="triples")


def test_builtins_are_registered():
    names = {o.name for o in list_objectives()}
    assert set(BUILTINS) <= names


# ---------------------------------------------------------------- hyperparameter validation


@pytest.mark.parametrize("name,param,value,message", [
    ("dpo", "beta", 0.0, "objective 'dpo': parameter 'beta' must be > 0, got 0.0"),
    ("dpo", "beta", -1, "objective 'dpo': parameter 'beta' must be > 0, got -1"),
    ("cdpo", "label_smoothing", 0.5, "objective 'cdpo': parameter 'label_smoothing' must be >= 0 and < 0.5, got 0.5"),
    ("cdpo", "label_smoothing", -0.1, "objective 'cdpo': parameter 'label_smoothing' must be >= 0 and < 0.5, got -0.1"),
    ("ipo", "tau", float("nan"), "objective 'ipo': parameter 'tau' must be a finite number, got nan"),
    ("simpo", "gamma", "1", "objective 'simpo': parameter 'gamma' must be a finite number, got '1'"),
])
def test_invalid_hyperparameters_name_objective_and_parameter(name, param, value, message):
    with pytest.raises(ObjectiveError) as err:
        get_objective(name).resolve_params(**{param: value})
    assert str(err.value) == message


def test_unknown_parameter_suggests_closest():
    with pytest.raises(ObjectiveError, match=r"no parameter 'bta' \(did you mean 'beta'\?\)"):
        get_objective("dpo").resolve_params(bta=0.2)


def test_sft_jpo_requires_response_statistics():
    s = stats([-26.0], [-25.0], ct=[13], rt=[13], refw=[-27.0], refl=[-24.0])
    with pytest.raises(ObjectiveError, match="chosen_response_logps"):
        get_objective("sft_jpo")(s)
