"""Listwise data and objectives (LiPO-λ, PRO, Plackett–Luce DPO): hand-derived values, float64 references written
here, the authors' PRO loss re-typed, reductions to pairwise losses at K = 2, the readers, packing of lists and
training on a list file end to end."""

import itertools
import json
import math

import pytest
import torch

from prefbench.engine.config import TrainConfig
from prefbench.engine.encoding import encode_lists
from prefbench.engine.packing import pack, pack_lists
from prefbench.engine.statistics import BatchStatistics
from prefbench.engine.trainer import train
from prefbench.formats.listwise import lists_from_pairs, load_lists, parse_list_row, write_lists
from prefbench.formats.records import DataError, ListRecord, PreferenceRecord
from prefbench.registry import ListLogProbs, ObjectiveError, PairLogProbs, get_objective

LIPO, PRO, DPO_PL = get_objective("lipo"), get_objective("pro"), get_objective("dpo_pl")
LISTWISE = ["lipo", "pro", "dpo_pl"]
INV_LOG2_3 = 1 / math.log2(3)   # 0.63092975357146


def lists(logps, ref, scores, tokens=None, mask=None, dtype=torch.float64):
    t = lambda x: torch.tensor(x, dtype=dtype)
    logps = t(logps)
    tokens = torch.tensor(tokens) if tokens is not None else torch.full(logps.shape, 5)
    mask = torch.tensor(mask) if mask is not None else torch.ones(logps.shape, dtype=torch.bool)
    return ListLogProbs(logps, tokens, t(scores), mask, t(ref) if ref is not None else None)


def random_lists(b, k, seed, dtype=torch.float64, ties=False):
    """B lists of 2 … k responses (the rest masked, holding junk that must not matter)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 60, (b, k), generator=g)
    logps = -(0.05 + 2.95 * torch.rand(b, k, generator=g, dtype=torch.float64)) * tokens
    ref = logps + torch.randn(b, k, generator=g, dtype=torch.float64)
    scores = torch.randint(0, 4, (b, k), generator=g).double() if ties else torch.rand(b, k, generator=g).double()
    sizes = torch.randint(2, k + 1, (b,), generator=g)
    mask = torch.arange(k)[None, :] < sizes[:, None]
    junk = ~mask
    logps, ref = logps.masked_fill(junk, 123.0), ref.masked_fill(junk, -77.0)
    return ListLogProbs(logps.to(dtype), tokens, scores, mask, ref.to(dtype))


def rows(stats):
    """Each list's valid entries as python floats: (logps, ref, scores, tokens)."""
    out = []
    for b in range(stats.mask.shape[0]):
        keep = stats.mask[b]
        fields = ("logps", "ref_logps", "scores", "tokens")
        out.append(tuple(getattr(stats, f)[b][keep].double().tolist() for f in fields))
    return out


def log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# ---------------------------------------------------------------- float64 references, written from the papers


def lipo_reference(logps, ref, scores, tokens, beta=0.05):
    s = [beta * (a - r) for a, r in zip(logps, ref)]
    order = sorted(range(len(s)), key=lambda i: -s[i])            # the model's ranking; no ties in random data
    rank = {i: position + 1 for position, i in enumerate(order)}
    total = 0.0
    for i, j in itertools.permutations(range(len(s)), 2):
        if scores[i] > scores[j]:
            weight = abs((2 ** scores[i] - 1) - (2 ** scores[j] - 1)) * \
                abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
            total -= weight * log_sigmoid(s[i] - s[j])
    return total


def pro_authors(r, psi, sum_best, sft_weight=0.05):
    """DAMO-ConvAI PRO/train/utils/process_manager.py, compute_loss (commit 483554eae102996f5ec1f4feab4e78ef29c2a394),
    re-typed for one list already sorted by reward, descending: ``scores`` the length-normalised log-likelihoods,
    ``rewards`` the labels, ``sum_scores[sft_index]`` the best response's summed log-likelihood."""
    n = len(r)
    eps = 1e-10
    total = 0.0
    for time in range(n - 1):
        neg_temperatures = [psi[time] - x for x in psi[time + 1:]]
        pos_temperature = max(neg_temperatures)
        negatives = sum(math.exp(x * t) for x, t in zip(r[time + 1:], neg_temperatures))
        total += math.log(eps + math.exp(r[time] * pos_temperature) + negatives) - r[time] * pos_temperature
    return total + sft_weight * (n - 1) ** 2 * -sum_best


def dpo_pl_reference(logps, ref, scores, beta=0.1):
    """DPO appendix A.3: the product over k of exp(r_τ(k)) / Σ_{j≥k} exp(r_τ(j))."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    r = [beta * (logps[i] - ref[i]) for i in order]
    return -sum(r[k] - math.log(sum(math.exp(x) for x in r[k:])) for k in range(len(r) - 1))


# ---------------------------------------------------------------- LiPO-λ


def test_lipo_hand_derived():
    # Δ = (1, 0, −2), β = 0.05: s = (0.05, 0, −0.1), so the model ranks them 1, 2, 3 (D⁻¹ = 1, 1/log₂3, 1/2).
    # ψ = (2, 0, 1): G = (3, 0, 1). Pairs ψ_i > ψ_j: (1,2) weight 3·(1 − 0.63093) = 1.10721, (1,3) weight
    # 2·(1 − 1/2) = 1, (3,2) weight 1·|1/2 − 0.63093| = 0.13093:
    # 1.10721·(−log σ(0.05)) + 1·(−log σ(0.15)) + 0.13093·(−log σ(−0.1))
    # = 1.10721·0.66846 + 0.62096 + 0.13093·0.74440 = 0.74013 + 0.62096 + 0.09746 = 1.45855
    out = LIPO(lists([[-9.0, -10.0, -12.0]], [[-10.0, -10.0, -10.0]], [[2.0, 0.0, 1.0]]))
    w12, w32 = 3 * (1 - INV_LOG2_3), abs(0.5 - INV_LOG2_3)
    expected = -w12 * log_sigmoid(0.05) - log_sigmoid(0.15) - w32 * log_sigmoid(-0.1)
    assert out.losses.item() == pytest.approx(expected, abs=1e-12)
    assert out.losses.item() == pytest.approx(1.45855, abs=1e-5)
    # the rewards: β·Δ of the best-scored (ψ = 2) and the worst-scored (ψ = 0) response
    assert out.chosen_rewards.tolist() == pytest.approx([0.05])
    assert out.rejected_rewards.tolist() == pytest.approx([0.0])


@pytest.mark.parametrize("seed", range(4))
def test_lipo_is_a_constant_times_dpo_for_two_responses(seed):
    """K = 2, labels 1 and 0: one pair, G gap 1, and ranks {1, 2} whichever way the model orders them, so the
    weight is 1 − 1/log₂3 and the loss that constant times DPO's −log σ(β z)."""
    g = torch.Generator().manual_seed(seed)
    logps = -20 * torch.rand(6, 2, generator=g, dtype=torch.float64)
    ref = -20 * torch.rand(6, 2, generator=g, dtype=torch.float64)
    beta = 0.3
    listwise = LIPO(ListLogProbs(logps, torch.full((6, 2), 4), torch.tensor([[1.0, 0.0]] * 6),
                                 torch.ones(6, 2, dtype=torch.bool), ref), beta=beta).losses
    pairwise = get_objective("dpo")(PairLogProbs(logps[:, 0], logps[:, 1], torch.full((6,), 4), torch.full((6,), 4),
                                                 ref[:, 0], ref[:, 1]), beta=beta).losses
    assert torch.allclose(listwise, (1 - INV_LOG2_3) * pairwise, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_lipo_matches_float64_reference(seed):
    s = random_lists(7, 5, seed)
    expected = [lipo_reference(*row) for row in rows(s)]
    assert LIPO(s).losses.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_lipo_at_the_reference_is_ln2_times_the_weights():
    """Policy = reference: every s is 0, every pair's loss ln 2, and the model's ranking is the list's order
    (a stable sort of equal scores), so the loss is ln 2 times the sum of the weights at ranks 1, 2, 3."""
    out = LIPO(lists([[-5.0, -7.0, -9.0]], [[-5.0, -7.0, -9.0]], [[0.0, 1.0, 2.0]]))
    d = [1.0, INV_LOG2_3, 0.5]
    weights = 1 * abs(d[1] - d[0]) + 3 * abs(d[2] - d[0]) + 2 * abs(d[2] - d[1])
    assert out.losses.item() == pytest.approx(math.log(2) * weights, abs=1e-12)


# ---------------------------------------------------------------- PRO


@pytest.mark.parametrize("seed", range(3))
def test_pro_matches_the_authors_loss(seed):
    s = random_lists(6, 5, seed)
    expected = []
    for logps, _, scores, tokens in rows(s):
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        r = [logps[i] / tokens[i] for i in order]
        expected.append(pro_authors(r, [scores[i] for i in order], logps[order[0]]))
    # the authors add ε = 1e-10 inside the log; prefbench uses log-sum-exp without it
    assert PRO(s).losses.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_pro_hand_derived():
    # r = S/|y| = (−1, −2, −3) for ψ = (0.9, 0.5, 0.1), already in order. Step 1: gaps (0.4, 0.8), own 0.8:
    # log(e^{−0.8} + e^{−0.8} + e^{−2.4}) + 0.8 = log(2e^{−0.8} + e^{−2.4}) + 0.8 = 0.78932;
    # step 2: gap 0.4, own 0.4: log(e^{−0.8} + e^{−1.2}) + 0.8 = 0.51302. SFT: 0.05·(3−1)²·10 = 2.
    out = PRO(lists([[-10.0, -20.0, -30.0]], None, [[0.9, 0.5, 0.1]], tokens=[[10, 10, 10]]))
    step1 = math.log(2 * math.exp(-0.8) + math.exp(-2.4)) + 0.8
    step2 = math.log(math.exp(-0.8) + math.exp(-1.2)) + 0.8
    assert out.losses.item() == pytest.approx(step1 + step2 + 2.0, abs=1e-12)
    assert out.losses.item() == pytest.approx(0.78932 + 0.51302 + 2.0, abs=1e-5)
    assert out.chosen_rewards.tolist() == [-1.0] and out.rejected_rewards.tolist() == [-3.0]


def test_pro_two_responses_without_sft_is_a_logistic_loss_on_the_normalised_margin():
    logps, tokens = [[-12.0, -30.0], [-40.0, -9.0]], [[4, 10], [8, 3]]
    out = PRO(lists(logps, None, [[0.75, 0.25], [0.2, 0.9]], tokens=tokens), sft_weight=0.0)
    # list 1: (ψ₁ − ψ₂)(r₁ − r₂) = 0.5·(−3 + 3) = 0; list 2, best second: 0.7·(−3 + 5) = 1.4
    assert out.losses.tolist() == pytest.approx([-log_sigmoid(0.0), -log_sigmoid(1.4)], abs=1e-12)


def test_pro_equal_scores_give_no_gradient():
    logps = torch.tensor([[-10.0, -20.0, -5.0]], dtype=torch.float64, requires_grad=True)
    s = ListLogProbs(logps, torch.full((1, 3), 5), torch.tensor([[0.5, 0.5, 0.5]]), torch.ones(1, 3, dtype=torch.bool))
    PRO(s, sft_weight=0.0).losses.sum().backward()
    assert torch.all(logps.grad == 0)


def test_pro_ignores_the_reference():
    s = random_lists(4, 4, 9)
    without = ListLogProbs(s.logps, s.tokens, s.scores, s.mask)
    assert torch.equal(PRO(s).losses, PRO(without).losses)


# ---------------------------------------------------------------- Plackett–Luce DPO


@pytest.mark.parametrize("seed", range(3))
def test_dpo_pl_matches_float64_reference(seed):
    s = random_lists(7, 5, seed)
    expected = [dpo_pl_reference(logps, ref, scores) for logps, ref, scores, _ in rows(s)]
    assert DPO_PL(s).losses.tolist() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_dpo_pl_is_dpo_for_two_responses():
    s = random_lists(8, 2, 3)
    best, worst = (s.scores[:, 0] < s.scores[:, 1]).long(), (s.scores[:, 0] >= s.scores[:, 1]).long()
    pick = lambda t, i: t.gather(1, i[:, None])[:, 0]
    pairs = PairLogProbs(pick(s.logps, best), pick(s.logps, worst), pick(s.tokens, best), pick(s.tokens, worst),
                         pick(s.ref_logps, best), pick(s.ref_logps, worst))
    assert torch.allclose(DPO_PL(s).losses, get_objective("dpo")(pairs).losses, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- every listwise objective


@pytest.mark.parametrize("name", LISTWISE)
def test_gradcheck(name):
    s = random_lists(3, 4, 11)
    obj = get_objective(name)

    def f(logps, ref):
        return obj(ListLogProbs(logps, s.tokens, s.scores, s.mask, ref)).losses

    assert torch.autograd.gradcheck(f, (s.logps.clone().requires_grad_(True), s.ref_logps.clone().requires_grad_(True)))


@pytest.mark.parametrize("name", LISTWISE)
def test_order_within_a_list_and_padding_change_nothing(name):
    """A list's loss depends on its responses, not on their order in the list nor on masked entries."""
    s = random_lists(5, 4, 5)
    obj = get_objective(name)
    losses = obj(s).losses
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = ListLogProbs(*(getattr(s, f)[:, perm] for f in ("logps", "tokens", "scores", "mask", "ref_logps")))
    assert torch.allclose(obj(shuffled).losses, losses, rtol=1e-12, atol=1e-12)
    padded = ListLogProbs(*(torch.cat([getattr(s, f), getattr(s, f)[:, :2]], 1) for f in ("logps", "tokens", "scores")),
                          torch.cat([s.mask, torch.zeros(5, 2, dtype=torch.bool)], 1),
                          torch.cat([s.ref_logps, s.ref_logps[:, :2]], 1))
    assert torch.allclose(obj(padded).losses, losses, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["lipo", "dpo_pl"])
def test_adding_a_constant_to_policy_and_reference_changes_nothing(name):
    s = random_lists(4, 4, 2)
    shifted = ListLogProbs(s.logps + 7.5, s.tokens, s.scores, s.mask, s.ref_logps + 7.5)
    assert torch.allclose(get_objective(name)(shifted).losses, get_objective(name)(s).losses, rtol=1e-10)


@pytest.mark.parametrize("name", LISTWISE)
def test_gradient_raises_the_best_and_lowers_the_worst(name):
    logps = torch.tensor([[-10.0, -10.0, -10.0]], dtype=torch.float64, requires_grad=True)
    s = ListLogProbs(logps, torch.full((1, 3), 5), torch.tensor([[0.2, 0.9, 0.5]]), torch.ones(1, 3, dtype=torch.bool),
                     torch.tensor([[-10.0, -10.0, -10.0]], dtype=torch.float64))
    get_objective(name)(s).losses.sum().backward()
    assert logps.grad[0, 1] < 0 < logps.grad[0, 0]    # descent raises the best (ψ = 0.9), lowers the worst


def test_list_statistics_are_checked():
    with pytest.raises(ObjectiveError, match="ListLogProbs.scores has shape"):
        ListLogProbs(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 2), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ObjectiveError, match="mask must be a bool tensor"):
        ListLogProbs(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ObjectiveError, match=r"shape \[lists, responses\]"):
        ListLogProbs(torch.zeros(3), torch.ones(3), torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ObjectiveError, match="needs reference log-probs \\(ref_logps\\)"):
        LIPO(ListLogProbs(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[1.0, 0.0]]),
                          torch.ones(1, 2, dtype=torch.bool)))
    bf16 = random_lists(2, 3, 1, dtype=torch.bfloat16)
    assert LIPO(bf16).losses.dtype == torch.float32


# ---------------------------------------------------------------- readers


def write(tmp_path, rows, name="lists.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reads_prefbench_and_ultrafeedback_rows(tmp_path):
    path = write(tmp_path, [
        {"prompt": "Name a fruit", "completions": ["apple", "rock", "apple", "pear"], "scores": [2, 0, 1, 1.5],
         "finished": [True, False, True, True]},
        {"instruction": "Say hi", "completions": [{"response": "hi", "overall_score": 8.5, "model": "a"},
                                                  {"response": "go away", "overall_score": 2}]},
    ])
    first, second = load_lists(path)
    # a repeated response counts once (its first entry)
    assert first == ListRecord("Name a fruit", ("apple", "rock", "pear"), (2.0, 0.0, 1.5), (True, False, True))
    assert second == ListRecord("Say hi", ("hi", "go away"), (8.5, 2.0), (True, True))
    out = tmp_path / "out.jsonl"
    write_lists([first, second], out)
    assert load_lists(out) == [first, second]


@pytest.mark.parametrize("row,field,message", [
    ({"prompt": "p", "completions": ["a", "b"]}, "scores", "is missing"),
    ({"prompt": "p", "completions": ["a", "b"], "scores": [1]}, "scores", "has 1 entries for 2 completions"),
    ({"prompt": "p", "completions": ["a", "a"], "scores": [1, 0]}, "completions",
     "needs at least 2 distinct responses, got 1"),
    ({"prompt": "p", "completions": ["a", "b"], "scores": [1, True]}, "scores[1]", "expected a finite number"),
    ({"prompt": "p", "completions": "a", "scores": [1]}, "completions", "expected a list"),
    ({"prompt": "p", "completions": ["a", ""], "scores": [1, 0]}, "completions[1]", "is empty"),
    ({"prompt": "p", "completions": ["a", "b"], "scores": [1, 0], "finished": [True, 1]}, "finished[1]",
     "expected true or false"),
    ({"instruction": "p", "completions": [{"response": "a"}, {"response": "b", "overall_score": 1}]},
     "completions[0].overall_score", "is missing"),
    ({"instruction": "p", "completions": ["a", "b"]}, "completions[0]", "expected an object"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, row, field, message):
    good = {"prompt": "q", "completions": ["x", "y"], "scores": [1, 0]}
    path = write(tmp_path, [good, row])
    with pytest.raises(DataError) as err:
        load_lists(path)
    assert str(err.value).startswith(f"{path}: row 2: field '{field}': {message}")


def test_pairs_become_lists_of_two(tmp_path, prefs):
    lists_ = load_lists(prefs)
    # the fixture's six conditional pairs; its joint pairs have two instructions, and a list has one
    assert len(lists_) == 6
    assert lists_[0] == ListRecord("Name fruit 0", ("apple", "mountain ocean green"), (1.0, 0.0), (True, True))
    record = PreferenceRecord("p", "a", "p", "b", "conditional", True, False)
    assert lists_from_pairs([record]) == [ListRecord("p", ("a", "b"), (1.0, 0.0), (True, False))]
    assert parse_list_row({"prompt": [{"role": "user", "content": "hi"}], "completions": ["a", "b"],
                           "scores": [0, 1]}, "x", 1).prompt == [{"role": "user", "content": "hi"}]


# ---------------------------------------------------------------- engine


LIST_RECORDS = [
    ListRecord("Name a fruit", ("apple", "mountain ocean", "red", "banana"), (3.0, 0.0, 1.0, 2.0), (True,) * 4),
    ListRecord("Say a colour", ("red", "ocean blue yellow"), (1.0, 0.0), (True, False)),
    ListRecord("List two fruits", ("- apple\n- banana", "green", "capital"), (2.0, 0.5, 0.0), (True,) * 3),
]


def test_a_list_shares_its_instruction_in_the_packed_row(tiny_model_dir):
    from prefbench.engine.models import load_tokenizer

    encoded = encode_lists(LIST_RECORDS, load_tokenizer(str(tiny_model_dir)), 256)
    assert len(encoded) == 3 and encoded.sequences([2, 0]) == [6, 7, 8, 0, 1, 2, 3]
    batch = encoded.packed([0, 1, 2], joint=True, share_prefixes=True)
    assert batch.n_sequences == 9 and batch.shared_pairs == 3
    first = encoded.group(0)
    prompt = first[0][1].index(1)
    # a list of K responses puts its instruction into the row once: K − 1 copies saved
    assert encoded.row_tokens(0, True) == sum(len(ids) for ids, _ in first) - 3 * prompt
    assert encoded.row_tokens(0, False) == sum(len(ids) for ids, _ in first)
    # the instruction start every sequence shares (the chat template's first tokens) opens the row once
    common = batch.blocks[0].length
    assert batch.blocks[0].prefixes == () and batch.blocks[1].prefixes == ((0, common),)
    assert batch.length == sum(encoded.row_tokens(i, True) for i in range(3)) - 2 * common
    # lists are never cut between forwards
    assert encoded.forward_chunks([0, 1, 2], 1, True) == [[0], [1], [2]]
    # a list of two is laid out exactly as a pair with the same two sequences
    pair = pack([encoded.chosen[4]], [encoded.chosen[5]], joint=True)
    as_list = pack_lists([encoded.group(1)], joint=True)
    assert torch.equal(pair.input_ids, as_list.input_ids) and pair.blocks == as_list.blocks


def test_packed_lists_match_padded_ones(tiny_model_dir):
    from prefbench.engine.models import load_base_model, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    encoded = encode_lists(LIST_RECORDS, tokenizer, 256)
    model = load_base_model(str(tiny_model_dir), "none", "cpu", "float32")
    with torch.no_grad():
        packed = BatchStatistics(model, encoded, tokenizer.pad_token_id, joint=True, packed=True,
                                 share_prefixes=True)([2, 0, 1])
        padded = BatchStatistics(model, encoded, tokenizer.pad_token_id, joint=True, packed=False,
                                 share_prefixes=False)([2, 0, 1])
    assert packed.response_tokens.tolist() == padded.response_tokens.tolist()
    assert torch.allclose(packed.response_logps, padded.response_logps, atol=1e-4)
    assert torch.allclose(packed.joint_logps, padded.joint_logps, atol=1e-4)


def cfg(model_dir, data, out, **kw):
    base = {"model": str(model_dir), "data": str(data), "quantization": "none", "batch_size": 2, "max_steps": 6,
            "lr": 5e-3, "warmup_steps": 1, "save_every": 3, "output_dir": str(out), "objective": "lipo",
            "compute_dtype": "float32"}
    return TrainConfig(**{**base, **kw})


@pytest.fixture()
def list_file(tmp_path):
    path = tmp_path / "lists.jsonl"
    write_lists(LIST_RECORDS + [ListRecord("Tied", ("a", "b"), (1.0, 1.0), (True, True))], path)
    return path


@pytest.mark.parametrize("objective", LISTWISE)
def test_trains_on_a_list_file(tiny_model_dir, list_file, tmp_path, objective):
    out = train(cfg(tiny_model_dir, list_file, tmp_path / objective, objective=objective, max_steps=4))
    rows_ = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows_) == 4 and all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in rows_)
    # the tied list ranks nothing and is left out; tokens count every response of a list
    summary = json.loads((out / "data.json").read_text())
    assert summary["lists"] == 3 and summary["responses"] == 9
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    if objective == "dpo_pl":
        # step 1 is at the reference (up to rounding: the reference pass packs other lists together), where every
        # choice is uniform: a list of K costs Σ_k log(K − k + 1) = log K!, whatever order rounding gives
        from prefbench.engine.trainer import batch_order

        sizes = [len(r.responses) for r in LIST_RECORDS]
        first = batch_order(3, cfg(tiny_model_dir, list_file, tmp_path / "x", max_steps=4))[0]
        expected = sum(math.lgamma(sizes[i] + 1) for i in first) / len(first)
        assert rows_[0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_lists_train_from_pairs_and_refuse_other_data(tiny_model_dir, prefs, tmp_path):
    out = train(cfg(tiny_model_dir, prefs, tmp_path / "pro", objective="pro", max_steps=1))
    assert json.loads((out / "data.json").read_text())["lists"] == 6
    joint_only = tmp_path / "joint.jsonl"
    joint_only.write_text("".join(line + "\n" for line in prefs.read_text().splitlines() if '"joint"' in line))
    with pytest.raises(Exception, match="no list with two different scores"):
        train(cfg(tiny_model_dir, joint_only, tmp_path / "joint", max_steps=1))


# ---------------------------------------------------------------- the run pipeline


def test_on_policy_samples_become_one_list_per_prompt():
    from types import SimpleNamespace

    from prefbench.data.onpolicy import build_lists
    from prefbench.tasks import TaskPrompt

    prompts = [TaskPrompt(str(i), f"prompt {i}") for i in range(4)]
    answers = [[("a", 0.9), ("b", 0.1), ("a", 0.9), ("  ", 1.0), ("c", 0.5, False)],   # repeat, empty, cut off
               [("a", 0.5), ("b", 0.5)],                                              # all tied: ranks nothing
               [("a", 1.0), ("b", 0.0, False)],                                       # one finished answer left
               [("x", 0.2), ("y", 0.3)]]
    lists_ = build_lists(prompts, answers, SimpleNamespace(keep_truncated=False))
    assert lists_ == [ListRecord("prompt 0", ("a", "b"), (0.9, 0.1), (True, True)),
                      ListRecord("prompt 3", ("x", "y"), (0.2, 0.3), (True, True))]
    kept = build_lists(prompts, answers, SimpleNamespace(keep_truncated=True))
    assert kept[0].responses == ("a", "b", "c") and kept[0].finished == (True, True, False)
    assert [r.prompt for r in kept] == ["prompt 0", "prompt 2", "prompt 3"]


TINY_SPEC = {"name": "tiny-ifeval", "task": "ifeval-lite", "description": "test spec",
             "data": {"train_prompts": 4, "samples_per_prompt": 4, "max_new_tokens": 8, "min_gap": 0.0001,
                      "temperature": 1.0, "top_p": 1.0, "keep_truncated": True},
             "eval": {"prompts": 2, "max_new_tokens": 6, "variants": [], "kl_samples": 1},
             "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "max_length": 512},
             "presets": {"smoke": {}}}


def run_config(model_dir, tmp_path, objectives):
    import yaml

    from prefbench.pipeline.config import RunConfig

    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY_SPEC))
    return RunConfig(objectives=objectives, benchmark=str(spec_file), preset="smoke", model=str(model_dir),
                     quantization="none", output_dir=str(tmp_path / "run"))


def test_a_run_trains_a_listwise_objective_on_the_scored_samples(tiny_model_dir, tmp_path, monkeypatch):
    from prefbench.pipeline.run import run

    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    results = run(run_config(tiny_model_dir, tmp_path, ["dpo", "lipo"]))
    samples = [json.loads(line) for line in (out / "data/samples.jsonl").read_text().splitlines()]
    lists_ = load_lists(out / "data/lists.jsonl")
    # each list is one prompt's distinct sampled answers with the judge's scores
    by_text = {(s["response"], s["score"]) for s in samples}
    assert lists_ and all(2 <= len(r.responses) <= 4 and len(set(r.scores)) > 1 for r in lists_)
    assert all((text, score) in by_text for r in lists_ for text, score in zip(r.responses, r.scores))
    assert TrainConfig.from_yaml(out / "lipo/seed0/config.yaml").data == str(out / "data/lists.jsonl")
    training = {s["name"]: s["training"][0] for s in results["systems"]}
    assert training["lipo"]["lists"] == len(lists_)
    assert training["lipo"]["responses"] == sum(len(r.responses) for r in lists_)
    assert training["dpo"]["conditional"] > 0 and "lists" not in training["dpo"]
    assert f"| lipo | {len(lists_):,} lists of " in (out / "report.md").read_text()


def test_the_plan_counts_a_step_of_lists_as_k_over_two_pair_steps(tiny_model_dir, tmp_path):
    from prefbench.pipeline.config import resolve
    from prefbench.pipeline.plan import plan, work

    cfg = run_config(tiny_model_dir, tmp_path, ["dpo", "lipo"])
    spec, params = resolve(cfg)
    # 2 steps of 2 items each, in steps of 8 conditional pairs: dpo 0.5, lipo 0.5 × (4 answers / 2)
    assert work(cfg, spec, params).steps == pytest.approx(0.5 + 0.5 * 2)
    assert "dpo: conditional pairs; lipo: scored lists" in plan(cfg)


LIST_KEYS = ["prompt", "completions", "scores", "finished", "instruction", "response", "overall_score", "role",
             "content", "chosen", "rejected"]


def _json_values():
    from hypothesis import strategies as st

    scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
               | st.sampled_from(["assistant", "user", "a", "b"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.sampled_from(LIST_KEYS), inner, max_size=4), max_leaves=14)


def test_a_list_row_of_any_json_is_a_list_or_a_data_error():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from prefbench.util.errors import UserError

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(raw=st.dictionaries(st.sampled_from(LIST_KEYS), _json_values(), max_size=4) | _json_values())
    def check(raw):
        try:
            record = parse_list_row(raw, "f.jsonl", 1)
        except UserError:
            return
        assert len(set(record.responses)) == len(record.responses) >= 2
        assert len(record.scores) == len(record.finished) == len(record.responses)
        assert all(math.isfinite(s) for s in record.scores)

    check()
