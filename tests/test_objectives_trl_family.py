"""TRL 1.16 DPOTrainer's other loss types as objectives (issue #16): hand-derived values, the
identities that follow from their formulas, and the batch-coupled AOT losses against a float64
reference. Per-pair float64 references, gradcheck, sign of the gradient, ln 2 at the reference and
shift invariance for these objectives are in tests/test_objectives.py's parametrized lists; parity
with TRL's own code is in tests/test_against_trl.py."""

import itertools
import math

import pytest
import torch

from prefbench import PairLogProbs, get_objective
from tests.test_objectives import LN2, random_stats, softplus, stats

LN3 = math.log(3.0)
TRL_FAMILY = ["hinge", "exo_pair", "nca_pair", "robust_dpo", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
              "apo_zero", "apo_down", "discopop", "dpo_norm"]


def margin_pairs(margins, dtype=torch.float64, requires_grad=False):
    """Pairs with Δ_w = z, Δ_l = 0 (reference log-probs 0, one token each)."""
    z = torch.tensor(margins, dtype=dtype, requires_grad=requires_grad)
    zeros = torch.zeros(len(margins), dtype=dtype)
    ones = torch.ones(len(margins), dtype=torch.long)
    return z, PairLogProbs(z, zeros, ones, ones, zeros, zeros)


# ---------------------------------------------------------------- registration


def test_trl_names_find_the_objectives():
    """TRL's loss_type strings all resolve, so a TRL user's config names the same loss here."""
    for trl_name, ours in [("hinge", "hinge"), ("exo_pair", "exo_pair"), ("nca_pair", "nca_pair"),
                           ("robust", "robust_dpo"), ("bco_pair", "bco_pair"), ("sppo_hard", "sppo_hard"),
                           ("aot", "aot"), ("aot_unpaired", "aot_unpaired"), ("apo_zero", "apo_zero"),
                           ("apo_down", "apo_down"), ("discopop", "discopop"), ("sigmoid_norm", "dpo_norm"),
                           ("sigmoid", "dpo")]:
        assert get_objective(trl_name).name == ours
    assert get_objective("lrml") is get_objective("discopop")


ANCHORED = ("nca_pair", "bco_pair", "apo_zero", "apo_down", "sppo_hard")


@pytest.mark.parametrize("name", TRL_FAMILY)
def test_declared_metadata(name):
    obj = get_objective(name)
    assert obj.needs_reference and obj.span == "response" and not obj.adds_nll
    assert "arXiv" in obj.paper
    assert obj.family == {"robust_dpo": "robust", "hinge": "loss-shape", "exo_pair": "divergence", "aot": "distributional",
                          "aot_unpaired": "distributional"}.get(name, "anchored" if name in ANCHORED else "dpo")


# ---------------------------------------------------------------- hand-derived values


def test_hinge_hand_derived():
    """β = 0.1. Pair 1: Δ_w = 1, Δ_l = −1, z = 2 → max(0, 1 − 0.2) = 0.8.
    Pair 2: Δ_w = 7, Δ_l = −5, z = 12 ≥ 1/β = 10 → 0, and no gradient at all."""
    cw = torch.tensor([-6.0, -3.0], dtype=torch.float64, requires_grad=True)
    s = PairLogProbs(cw, torch.tensor([-5.0, -9.0], dtype=torch.float64), torch.tensor([1, 1]), torch.tensor([1, 1]),
                     torch.tensor([-7.0, -10.0], dtype=torch.float64), torch.tensor([-4.0, -4.0], dtype=torch.float64))
    out = get_objective("hinge")(s)
    assert out.losses.tolist() == pytest.approx([0.8, 0.0], abs=1e-12)
    out.losses.sum().backward()
    assert cw.grad.tolist() == pytest.approx([-0.1, 0.0], abs=1e-15)


def test_exo_pair_hand_derived():
    """β = 1, z = Δ_w = ln 3 → σ(z) = ¾, σ(−z) = ¼; ε = 0.1:
    ¾·ln(0.75/0.9) + ¼·ln(0.25/0.1) = 0.75·(−0.1823215568) + 0.25·0.9162907319 = 0.0923315154.
    At z = 0 with the default ε = 1e-3 (β irrelevant): −ln 2 − ½ ln(0.001·0.999)
    = −0.6931471806 + ½·6.9087557789 = 2.7612307091."""
    exo = get_objective("exo_pair")
    at_ln3 = exo(stats([LN3], [0.0], refw=[0.0], refl=[0.0]), beta=1.0, label_smoothing=0.1)
    assert at_ln3.losses.item() == pytest.approx(0.0923315154, abs=1e-9)
    at_reference = exo(stats([-5.0], [-3.0], refw=[-5.0], refl=[-3.0]))
    assert at_reference.losses.item() == pytest.approx(2.7612307091, abs=1e-9)


def test_nca_pair_hand_derived():
    """β = 1, Δ_w = ln 3, Δ_l = −ln 3: σ(ln 3) = ¾, σ(−ln 3) = ¼.
    −ln ¾ − ½ ln ¼ − ½ ln ¾ = 1.5·ln(4/3) + ln 2 = 1.5·0.2876820725 + 0.6931471806 = 1.1246702893."""
    out = get_objective("nca_pair")(stats([LN3], [-LN3], refw=[0.0], refl=[0.0]), beta=1.0)
    assert out.losses.item() == pytest.approx(1.1246702893, abs=1e-9)
    assert out.chosen_rewards.item() == pytest.approx(LN3)


def test_robust_dpo_hand_derived():
    """z = 2, β = 0.1, ε = 0.1: [0.9·log(1+e^{−0.2}) − 0.1·log(1+e^{0.2})]/0.8
    = [0.9·0.5981388693 − 0.1·0.7981388693]/0.8 = 0.4585110955/0.8 = 0.5731388694
    (= DPO − εβz/(1−2ε) = 0.5981388693 − 0.025)."""
    out = get_objective("robust_dpo")(stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0]))
    assert out.losses.item() == pytest.approx(0.5731388694, abs=1e-9)
    assert out.chosen_rewards.item() == pytest.approx(0.1)


def test_bco_pair_hand_derived():
    """β = 0.1, Δ_w = 1, Δ_l = −1: δ = 0 → 2·log(1 + e^{−0.1}) = 2·0.6443966601 = 1.2887933201;
    δ = 0.1 → −log σ(0) − log σ(0.2) = 0.6931471806 + 0.5981388693 = 1.2912860499."""
    s = stats([-6.0], [-5.0], refw=[-7.0], refl=[-4.0])
    assert get_objective("bco_pair")(s).losses.item() == pytest.approx(1.2887933201, abs=1e-9)
    assert get_objective("bco_pair")(s, delta=0.1).losses.item() == pytest.approx(1.2912860499, abs=1e-9)


def test_sppo_hard_hand_derived():
    """β = 0.1 → targets ±1/(2β) = ±5. Δ_w = 3, Δ_l = −1: (3 − 5)² + (−1 + 5)² = 4 + 16 = 20.
    Token counts are irrelevant (summed log-ratios, as in TRL)."""
    out = get_objective("sppo_hard")(stats([-7.0], [-5.0], ct=[9], rt=[2], refw=[-10.0], refl=[-4.0]))
    assert out.losses.item() == pytest.approx(20.0, abs=1e-12)


def test_aot_hand_derived():
    """β = 0.1. Policy margins S_θ(w) − S_θ(l) = [1, 3], reference margins [2, 0]. Sorted: [1, 3] and
    [0, 2] → d = [1, 1] → both log(1 + e^{−0.1}) = 0.6443966601 (sum 1.2887933201). Pair by pair
    (DPO) the margins would be z = [−1, 3] → 0.7443966601 + 0.5543552445 = 1.2987519046."""
    s = stats([-4.0, -2.0], [-5.0, -5.0], refw=[-3.0, -5.0], refl=[-5.0, -5.0])
    out = get_objective("aot")(s)
    assert out.losses.tolist() == pytest.approx([0.6443966601, 0.6443966601], abs=1e-9)
    assert get_objective("dpo")(s).losses.sum().item() == pytest.approx(1.2987519046, abs=1e-9)
    assert out.chosen_rewards.tolist() == pytest.approx([-0.1, 0.3])   # per pair, not sorted


def test_aot_unpaired_hand_derived():
    """β = 0.1. Δ_w = [2, −1], Δ_l = [0, 1]. Sorted: [−1, 2] and [0, 1] → d = [−1, 1] →
    [log(1 + e^{0.1}), log(1 + e^{−0.1})] = [0.7443966601, 0.6443966601]. Pair by pair: z = [2, −2]
    → [0.5981388693, 0.7981388693]."""
    s = stats([-3.0, -6.0], [-4.0, -3.0], refw=[-5.0, -5.0], refl=[-4.0, -4.0])
    assert get_objective("aot_unpaired")(s).losses.tolist() == pytest.approx([0.7443966601, 0.6443966601], abs=1e-9)
    assert get_objective("dpo")(s).losses.tolist() == pytest.approx([0.5981388693, 0.7981388693], abs=1e-9)


def test_apo_hand_derived():
    """β = 1, Δ_w = ln 3, Δ_l = −ln 3: σ(ln 3) = ¾, σ(−ln 3) = ¼, σ(2 ln 3) = 9/10.
    APO-zero: (1 − ¾) + ¼ = 0.5. APO-down: ¾ + (1 − 9/10) = 0.85."""
    s = stats([LN3], [-LN3], refw=[0.0], refl=[0.0])
    assert get_objective("apo_zero")(s, beta=1.0).losses.item() == pytest.approx(0.5, abs=1e-12)
    assert get_objective("apo_down")(s, beta=1.0).losses.item() == pytest.approx(0.85, abs=1e-12)


def test_discopop_hand_derived():
    """z = 0: σ(0) = ½ → ½·ln 2 + ½·1 = 0.8465735903 (any β, τ).
    β = 1, τ = 1, z = ln 3: σ(z/τ) = ¾, −log σ(ln 3) = ln(4/3) = 0.2876820725, e^{−ln 3} = ⅓:
    ¼·0.2876820725 + ¾·⅓ = 0.0719205181 + 0.25 = 0.3219205181."""
    discopop = get_objective("discopop")
    at_reference = discopop(stats([-5.0], [-3.0], refw=[-5.0], refl=[-3.0]))
    assert at_reference.losses.item() == pytest.approx(0.8465735903, abs=1e-9)
    at_ln3 = discopop(stats([LN3], [0.0], refw=[0.0], refl=[0.0]), beta=1.0, tau=1.0)
    assert at_ln3.losses.item() == pytest.approx(0.3219205181, abs=1e-9)


def test_dpo_norm_hand_derived():
    """β = 5. Δ_w = 2 over 4 tokens → 0.5, Δ_l = −3 over 6 tokens → −0.5, z̄ = 1:
    log(1 + e^{−5}) = log(1.0067379470) = 0.0067153485; rewards β·Δ/|y| = ±2.5.
    Summed (plain DPO at β = 5) it would be log(1 + e^{−25}) ≈ 1.4e-11."""
    out = get_objective("dpo_norm")(stats([-8.0], [-9.0], ct=[4], rt=[6], refw=[-10.0], refl=[-6.0]))
    assert out.losses.item() == pytest.approx(0.0067153485, abs=1e-9)
    assert out.chosen_rewards.item() == pytest.approx(2.5)
    assert out.rejected_rewards.item() == pytest.approx(-2.5)


# ---------------------------------------------------------------- identities and reductions


def test_robust_dpo_reduces_to_dpo_and_is_unbiased():
    """ε = 0 is DPO; rDPO(z) = DPO(z) − εβz/(1−2ε); and (1−ε)·rDPO(z) + ε·rDPO(−z) = DPO(z), the paper's
    unbiasedness under labels flipped with probability ε; also rDPO(z) − rDPO(−z) = −βz/(1−2ε)."""
    s = random_stats(32, seed=11)
    swapped = PairLogProbs(s.rejected_logps, s.chosen_logps, s.rejected_tokens, s.chosen_tokens,
                           s.ref_rejected_logps, s.ref_chosen_logps)
    z = (s.chosen_logps - s.ref_chosen_logps) - (s.rejected_logps - s.ref_rejected_logps)
    rdpo, dpo = get_objective("robust_dpo"), get_objective("dpo")
    assert torch.allclose(rdpo(s, label_smoothing=0.0).losses, dpo(s).losses, rtol=0, atol=1e-15)
    for eps, beta in [(0.1, 0.1), (0.3, 0.5)]:
        direct = rdpo(s, beta=beta, label_smoothing=eps).losses
        flipped = rdpo(swapped, beta=beta, label_smoothing=eps).losses
        clean = dpo(s, beta=beta).losses
        assert torch.allclose(direct, clean - eps * beta * z / (1 - 2 * eps), atol=1e-12)
        assert torch.allclose((1 - eps) * direct + eps * flipped, clean, atol=1e-12)
        assert torch.allclose(direct - flipped, -beta * z / (1 - 2 * eps), atol=1e-12)


def test_robust_dpo_always_raises_the_margin_where_cdpo_stops():
    """cDPO's loss has a minimum at βz = log((1−ε)/ε); rDPO's slope is negative everywhere."""
    z, s = margin_pairs([0.0, 10.0, 21.97, 40.0, 200.0], requires_grad=True)
    get_objective("robust_dpo")(s).losses.sum().backward()
    assert (z.grad < 0).all()
    z2, s2 = margin_pairs([10 * math.log(9)], requires_grad=True)   # β = 0.1, ε = 0.1: optimum of cDPO
    get_objective("cdpo")(s2).losses.sum().backward()
    assert z2.grad.item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_aot_on_one_pair_is_cdpo(name, eps):
    """With one pair per call the sort is the identity: AOT is cDPO (ε), and DPO at ε = 0 — the setting
    in which TRL's per-pair reference numbers were taken."""
    s = random_stats(24, seed=12)
    cdpo = get_objective("cdpo")(s, beta=0.3, label_smoothing=eps).losses
    for i in range(24):
        one = PairLogProbs(*(t[i:i + 1] for t in (s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens,
                                                  s.ref_chosen_logps, s.ref_rejected_logps)))
        assert get_objective(name)(one, beta=0.3, label_smoothing=eps).losses.item() == pytest.approx(
            cdpo[i].item(), abs=1e-14)


def test_aot_equals_dpo_when_policy_and_reference_rank_the_pairs_alike():
    """If the policy margins are ordered like the reference margins, matching by rank pairs each pair
    with itself: AOT is DPO up to the order of the elements."""
    s = random_stats(16, seed=13)
    ref_margin = s.ref_chosen_logps - s.ref_rejected_logps
    # policy margin = reference margin + an increasing function of it keeps the ranks
    policy_rejected = s.chosen_logps - (ref_margin + 0.1 * ref_margin + 0.5)
    same_ranks = PairLogProbs(s.chosen_logps, policy_rejected, s.chosen_tokens, s.rejected_tokens,
                              s.ref_chosen_logps, s.ref_rejected_logps)
    aot = get_objective("aot")(same_ranks).losses
    dpo = get_objective("dpo")(same_ranks).losses
    assert sorted(aot.tolist()) == pytest.approx(sorted(dpo.tolist()), abs=1e-14)
    assert not torch.allclose(get_objective("aot")(s).losses.sum(), get_objective("dpo")(s).losses.sum())


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
def test_aot_sum_ignores_the_order_of_the_pairs(name):
    s = random_stats(12, seed=14)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = PairLogProbs(*(t[perm] for t in (s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens,
                                                s.ref_chosen_logps, s.ref_rejected_logps)))
    obj = get_objective(name)
    assert torch.equal(obj(s).losses, obj(shuffled).losses)          # sorted: elementwise the same
    assert torch.equal(obj(s).chosen_rewards[perm], obj(shuffled).chosen_rewards)   # rewards stay per pair


def aot_reference(name, s, beta, eps):
    """float64 AOT written from the paper with Python's sorted() and the math module."""
    cw, rl, refw, refl = (t.double().tolist() for t in (s.chosen_logps, s.rejected_logps, s.ref_chosen_logps,
                                                          s.ref_rejected_logps))
    if name == "aot":
        a, b = sorted(w - l for w, l in zip(cw, rl)), sorted(w - l for w, l in zip(refw, refl))
    else:
        a, b = sorted(w - r for w, r in zip(cw, refw)), sorted(w - r for w, r in zip(rl, refl))
    return [(1 - eps) * softplus(beta * (x - y)) + eps * softplus(-beta * (x - y)) for x, y in zip(a, b)]


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
@pytest.mark.parametrize("n", [1, 3, 17, 256])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_aot_matches_float64_reference(name, n, dtype):
    s = random_stats(n, seed=n + 100, dtype=dtype)
    for beta, eps in [(0.1, 0.0), (0.5, 0.2)]:
        out = get_objective(name)(s, beta=beta, label_smoothing=eps)
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        assert out.losses.double().tolist() == pytest.approx(aot_reference(name, s, beta, eps), rel=tol, abs=tol)


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
def test_aot_gradcheck(name):
    s = random_stats(6, seed=15)

    def f(cw, rl, refw, refl):
        return get_objective(name)(PairLogProbs(cw, rl, s.chosen_tokens, s.rejected_tokens, refw, refl),
                                   label_smoothing=0.1).losses

    inputs = tuple(t.clone().requires_grad_(True) for t in (s.chosen_logps, s.rejected_logps, s.ref_chosen_logps,
                                                             s.ref_rejected_logps))
    assert torch.autograd.gradcheck(f, inputs)


def test_dpo_norm_with_one_token_per_response_is_dpo():
    s = random_stats(32, seed=16)
    ones = torch.ones(32, dtype=torch.long)
    unit = PairLogProbs(s.chosen_logps, s.rejected_logps, ones, ones, s.ref_chosen_logps, s.ref_rejected_logps)
    for beta in (0.1, 5.0):
        assert torch.allclose(get_objective("dpo_norm")(unit, beta=beta).losses,
                              get_objective("dpo")(unit, beta=beta).losses, rtol=0, atol=1e-15)
    # and with real lengths it is DPO on token-mean log-ratios of policy *and* reference
    per_token = PairLogProbs(s.chosen_logps / s.chosen_tokens, s.rejected_logps / s.rejected_tokens, ones, ones,
                             s.ref_chosen_logps / s.chosen_tokens, s.ref_rejected_logps / s.rejected_tokens)
    assert torch.allclose(get_objective("dpo_norm")(s).losses, get_objective("dpo")(per_token, beta=5.0).losses,
                          atol=1e-14)


def test_exo_pair_and_cdpo_share_their_minimiser():
    """cDPO is the cross-entropy H(p, q) = KL(p‖q) + H(p) to the smoothed target p = [1−ε, ε]; EXO is the
    reverse KL(q‖p). Both vanish (cDPO after subtracting H(p)) exactly where q = p, i.e. βz = log((1−ε)/ε),
    and are positive elsewhere."""
    eps, beta = 0.2, 0.5
    z_star = math.log((1 - eps) / eps) / beta
    _, s = margin_pairs([z_star - 3, z_star, z_star + 3])
    entropy = -(1 - eps) * math.log(1 - eps) - eps * math.log(eps)
    exo = get_objective("exo_pair")(s, beta=beta, label_smoothing=eps).losses
    cdpo = get_objective("cdpo")(s, beta=beta, label_smoothing=eps).losses - entropy
    assert exo[1].item() == pytest.approx(0.0, abs=1e-15) and cdpo[1].item() == pytest.approx(0.0, abs=1e-15)
    assert (exo[[0, 2]] > 0).all() and (cdpo[[0, 2]] > 0).all()


def test_exo_pair_is_minimised_at_its_target():
    eps, beta = 0.01, 0.1
    z, s = margin_pairs(torch.linspace(0, 80, 8001).tolist(), requires_grad=True)
    losses = get_objective("exo_pair")(s, beta=beta, label_smoothing=eps).losses
    assert z[losses.argmin()].item() == pytest.approx(math.log(99) / beta, abs=0.01)
    losses.sum().backward()
    assert (z.grad[z.detach() < 45.9] < 0).all() and (z.grad[z.detach() > 46.0] > 0).all()


def test_sppo_hard_is_minimised_at_plus_minus_half_over_beta():
    beta = 0.25  # targets ±2
    cw = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    rl = torch.tensor([-2.0], dtype=torch.float64, requires_grad=True)
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.long)
    out = get_objective("sppo_hard")(PairLogProbs(cw, rl, one, one, zero, zero), beta=beta)
    assert out.losses.item() == 0.0
    out.losses.sum().backward()
    assert cw.grad.item() == 0.0 and rl.grad.item() == 0.0
    assert get_objective("sppo_hard")(PairLogProbs(zero, zero, one, one, zero, zero),
                                      beta=beta).losses.item() == pytest.approx(1 / (2 * beta ** 2))


def test_nca_pair_stops_raising_the_chosen_at_beta_delta_log2():
    """d/dΔ_w [−log σ(βΔ_w) − ½ log σ(−βΔ_w)] = β[−σ(−βΔ_w) + ½σ(βΔ_w)] = 0 ⇔ e^{−βΔ_w} = ½ ⇔ βΔ_w = ln 2;
    the rejected log-ratio is always pushed down (slope ½βσ(βΔ_l) > 0)."""
    beta = 0.1
    cw = torch.tensor([0.0, LN2 / beta, 20.0], dtype=torch.float64, requires_grad=True)
    rl = torch.tensor([5.0, 0.0, -20.0], dtype=torch.float64, requires_grad=True)
    zeros, ones = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.long)
    get_objective("nca_pair")(PairLogProbs(cw, rl, ones, ones, zeros, zeros), beta=beta).losses.sum().backward()
    assert cw.grad[0] < 0 and cw.grad[1].item() == pytest.approx(0.0, abs=1e-15) and cw.grad[2] > 0
    assert (rl.grad > 0).all()


def test_bco_pair_delta_shifts_the_threshold():
    """bco_pair(β, δ) at log-ratios Δ equals bco_pair(β, 0) at Δ − δ/β (the threshold moves, nothing else)."""
    s = random_stats(16, seed=17)
    beta, delta = 0.2, 0.3
    shifted = PairLogProbs(s.chosen_logps - delta / beta, s.rejected_logps - delta / beta, s.chosen_tokens,
                           s.rejected_tokens, s.ref_chosen_logps, s.ref_rejected_logps)
    bco = get_objective("bco_pair")
    assert torch.allclose(bco(s, beta=beta, delta=delta).losses, bco(shifted, beta=beta).losses, atol=1e-12)


def test_apo_zero_and_apo_down_move_the_chosen_response_opposite_ways():
    """APO-zero always raises the chosen log-prob. APO-down's two chosen terms cancel exactly at the
    reference, and once the rejected log-ratio is below 0 it lowers the chosen one too. Both always
    lower the rejected one."""
    cw = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    rl = torch.tensor([0.0, -10.0, -10.0], dtype=torch.float64, requires_grad=True)
    zeros, ones = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.long)
    grads = {}
    for name in ("apo_zero", "apo_down"):
        cw.grad = rl.grad = None
        get_objective(name)(PairLogProbs(cw, rl, ones, ones, zeros, zeros)).losses.sum().backward()
        grads[name] = (cw.grad.clone(), rl.grad.clone())
    assert (grads["apo_zero"][0] < 0).all() and (grads["apo_zero"][1] > 0).all()
    assert grads["apo_down"][0][0].item() == 0.0     # ¼β − ¼β at the reference
    assert (grads["apo_down"][0][1:] > 0).all() and (grads["apo_down"][1] > 0).all()


def test_apo_losses_are_bounded_and_one_at_the_reference():
    s = random_stats(64, seed=18)
    same = PairLogProbs(s.chosen_logps, s.rejected_logps, s.chosen_tokens, s.rejected_tokens, s.chosen_logps,
                        s.rejected_logps)
    extreme = PairLogProbs(s.chosen_logps * 50, s.rejected_logps * 50, s.chosen_tokens, s.rejected_tokens,
                           s.ref_chosen_logps, s.ref_rejected_logps)
    for name in ("apo_zero", "apo_down"):
        obj = get_objective(name)
        assert obj(same).losses.tolist() == pytest.approx([1.0] * 64, abs=1e-15)
        for beta in (0.1, 10.0):
            losses = obj(extreme, beta=beta).losses
            assert ((losses >= 0) & (losses <= 2)).all()


def test_discopop_slope_at_the_reference_lowers_the_margin():
    """d/dz at z = 0 is β[(1 − ln 2)/(4τ) − ¾]; β = τ = 0.05: 0.05·(0.3068528194/0.2 − 0.75)
    = 0.05·0.7842640972 = 0.0392132049 > 0 (descent lowers the margin). τ = 1: 0.05·(0.0767132049 − 0.75)
    = −0.0336643398 < 0."""
    for tau, slope in [(0.05, 0.0392132049), (1.0, -0.0336643398)]:
        z, s = margin_pairs([0.0], requires_grad=True)
        get_objective("discopop")(s, tau=tau).losses.sum().backward()
        assert z.grad.item() == pytest.approx(slope, abs=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discopop_is_finite_at_extreme_margins(dtype):
    """TRL's σ(βz/τ)·exp(−βz) is 0·inf = NaN for a hugely negative margin; ours is the logistic term alone."""
    z, s = margin_pairs([-1e5, -2000.0, -100.0, 0.0, 100.0, 1e5], dtype=dtype, requires_grad=True)
    out = get_objective("discopop")(s, beta=1.0)
    assert torch.isfinite(out.losses).all()
    assert out.losses[0].item() == pytest.approx(1e5, rel=1e-6)
    assert out.losses[-1].item() == pytest.approx(0.0, abs=1e-30)
    out.losses.sum().backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", TRL_FAMILY)
def test_parameters_outside_their_range_are_refused(name):
    obj = get_objective(name)
    bad = {"beta": 0.0, "label_smoothing": 0.5, "tau": 0.0, "delta": float("inf")}
    for param in obj.params:
        with pytest.raises(ValueError, match=f"parameter '{param}'"):
            obj.resolve_params(**{param: bad[param]})
    if name == "exo_pair":
        with pytest.raises(ValueError, match="must be > 0"):
            obj.resolve_params(label_smoothing=0.0)


def test_every_new_objective_has_a_distinct_loss():
    """No two of them (nor DPO) are the same function at their defaults on generic data."""
    s = random_stats(8, seed=19)
    losses = {n: get_objective(n)(s).losses for n in [*TRL_FAMILY, "dpo", "cdpo", "ipo"]}
    for a, b in itertools.combinations(losses, 2):
        assert not torch.allclose(losses[a], losses[b], atol=1e-6), (a, b)
