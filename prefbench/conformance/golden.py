"""Write ``prefbench/conformance/golden.json``: the golden cases, computed by prefbench's own objectives in float64.

    python -m prefbench.conformance.golden           # rewrite the shipped file
    python -m prefbench.conformance.golden --check   # exit 1 when the shipped file differs from what this builds

``tests/test_conformance.py`` checks that the shipped file equals what this builds, so the cases cannot drift from
the objectives. Per built-in objective: the hand-derived cases the tests assert (inputs and hand values below, the
derivations in the tests named), seeded random batches (defaults and other parameter values, one pair and 64),
the same batch as float32 and bf16 inputs, edge cases (policy = reference, ~4096-token responses of about −5000
nats, ±500-nat log-ratios), reductions to another objective at a parameter value, and invariants that hold for the
objective (checked here on prefbench before they are written).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from prefbench.conformance.cases import (
    COUNTS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    GOLDEN_PATH,
    POLICY,
    REFERENCE,
    RESPONSE,
    TOKENS,
    TOLERANCES,
    keywords_for,
)
from prefbench.registry import Objective, ObjectiveError, PairLogProbs, get_objective, list_objectives

LN2, LN3 = math.log(2.0), math.log(3.0)
PROVENANCE = ("objectives_commit", "torch_version")   # recorded, but not part of what must stay equal


def pairs(cw, rl, ct=None, rt=None, refw=None, refl=None, crl=None, crt=None, dtype="float64") -> dict:
    """An input from plain lists, named like the tests' ``stats()`` (token counts default to 1)."""
    n = len(cw)
    values = {"dtype": dtype, "policy_chosen_logps": cw, "policy_rejected_logps": rl,
              "chosen_tokens": ct or [1] * n, "rejected_tokens": rt or [1] * n}
    if refw is not None:
        values.update(reference_chosen_logps=refw, reference_rejected_logps=refl)
    if crl is not None:
        values.update(chosen_response_logps=crl, chosen_response_tokens=crt)
    return values


_T = "tests/test_objectives.py::test_"
_F = "tests/test_objectives_trl_family.py::test_"
_P = "tests/test_objectives_papers.py::test_"
_Z2 = dict(refw=[-7.0], refl=[-4.0])   # with cw = [-6], rl = [-5]: Δ_w = 1, Δ_l = −1, z = 2
# (objective, case label, input, parameters, hand-derived losses, where the derivation is written out)
HAND_DERIVED = [
    ("dpo", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [0.5981388693], _T + "dpo_hand_derived"),
    ("cdpo", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [0.6181388693], _T + "cdpo_hand_derived"),
    ("cdpo", "z=2,eps=0", pairs([-6.0], [-5.0], **_Z2), {"label_smoothing": 0.0}, [0.5981388693],
     _T + "cdpo_hand_derived"),
    ("ipo", "token-averaged", pairs([-8.0, -16.0], [-18.0, -18.0], [4, 4], [3, 3], [-20.0, -20.0], [-12.0, -12.0]),
     {}, [0.0, 4.0], _T + "ipo_hand_derived"),
    ("simpo", "means", pairs([-4.0], [-6.0], [4], [2]), {}, [0.0485873516], _T + "simpo_hand_derived"),
    ("orpo", "odds", pairs([2 * math.log(0.5)], [2 * math.log(0.2)], [2], [2]), {}, [0.7154615357],
     _T + "orpo_hand_derived"),
    ("rpo", "z=2", pairs([-6.0], [-5.0], [3], [3], **_Z2), {}, [2.5981388693], _T + "rpo_hand_derived"),
    ("sft", "nll", pairs([-6.0], [-1.0], [3], [5]), {}, [2.0], _T + "sft_hand_derived"),
    ("jpo", "joint", pairs([-26.0], [-25.0], [13], [13], [-27.0], [-24.0]), {}, [0.5981388693],
     _T + "jpo_and_sft_jpo_hand_derived"),
    ("sft_jpo", "joint+response-nll", pairs([-26.0], [-25.0], [13], [13], [-27.0], [-24.0], [-3.0], [2]), {},
     [2.0981388693], _T + "jpo_and_sft_jpo_hand_derived"),
    ("hinge", "inside-and-past-the-margin", pairs([-6.0, -3.0], [-5.0, -9.0], refw=[-7.0, -10.0], refl=[-4.0, -4.0]),
     {}, [0.8, 0.0], _F + "hinge_hand_derived"),
    ("exo_pair", "z=ln3", pairs([LN3], [0.0], refw=[0.0], refl=[0.0]), {"beta": 1.0, "label_smoothing": 0.1},
     [0.0923315154], _F + "exo_pair_hand_derived"),
    ("exo_pair", "at-reference", pairs([-5.0], [-3.0], refw=[-5.0], refl=[-3.0]), {}, [2.7612307091],
     _F + "exo_pair_hand_derived"),
    ("nca_pair", "ln3", pairs([LN3], [-LN3], refw=[0.0], refl=[0.0]), {"beta": 1.0}, [1.1246702893],
     _F + "nca_pair_hand_derived"),
    ("robust_dpo", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [0.5731388694], _F + "robust_dpo_hand_derived"),
    ("bco_pair", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [1.2887933201], _F + "bco_pair_hand_derived"),
    ("bco_pair", "z=2,delta=0.1", pairs([-6.0], [-5.0], **_Z2), {"delta": 0.1}, [1.2912860499],
     _F + "bco_pair_hand_derived"),
    ("sppo_hard", "targets", pairs([-7.0], [-5.0], [9], [2], [-10.0], [-4.0]), {}, [20.0],
     _F + "sppo_hard_hand_derived"),
    ("aot", "sorted", pairs([-4.0, -2.0], [-5.0, -5.0], refw=[-3.0, -5.0], refl=[-5.0, -5.0]), {},
     [0.6443966601, 0.6443966601], _F + "aot_hand_derived"),
    ("aot_unpaired", "sorted", pairs([-3.0, -6.0], [-4.0, -3.0], refw=[-5.0, -5.0], refl=[-4.0, -4.0]), {},
     [0.7443966601, 0.6443966601], _F + "aot_unpaired_hand_derived"),
    ("apo_zero", "ln3", pairs([LN3], [-LN3], refw=[0.0], refl=[0.0]), {"beta": 1.0}, [0.5], _F + "apo_hand_derived"),
    ("apo_down", "ln3", pairs([LN3], [-LN3], refw=[0.0], refl=[0.0]), {"beta": 1.0}, [0.85], _F + "apo_hand_derived"),
    ("discopop", "at-reference", pairs([-5.0], [-3.0], refw=[-5.0], refl=[-3.0]), {}, [0.8465735903],
     _F + "discopop_hand_derived"),
    ("discopop", "z=ln3", pairs([LN3], [0.0], refw=[0.0], refl=[0.0]), {"beta": 1.0, "tau": 1.0}, [0.3219205181],
     _F + "discopop_hand_derived"),
    ("dpo_norm", "token-averaged", pairs([-8.0], [-9.0], [4], [6], [-10.0], [-6.0]), {}, [0.0067153485],
     _F + "dpo_norm_hand_derived"),
    ("rdpo", "length-gap", pairs([-6.0, -6.0], [-5.0, -5.0], [30, 10], [10, 30], [-7.0, -7.0], [-4.0, -4.0]), {},
     [0.5130152524, LN2], _P + "rdpo_hand_derived"),
    ("dpop", "penalty", pairs([-6.0, -7.5], [-5.0, -5.0], refw=[-7.0, -7.0], refl=[-4.0, -4.0]), {},
     [0.4374879505, 7.3506423860], _P + "dpop_hand_derived"),
    ("dpop", "lam=1", pairs([-7.5], [-5.0], refw=[-7.0], refl=[-4.0]), {"lam": 1.0}, [LN2], _P + "dpop_hand_derived"),
    ("beta_dpo", "batch-beta", pairs([-6.0, -5.0], [-5.0, -5.0], refw=[-7.0, -5.0], refl=[-4.0, -5.0]), {},
     [0.5458929372, LN2], _P + "beta_dpo_hand_derived"),
    ("cal_dpo", "beta=0.5", pairs([-6.0], [-5.0], **_Z2), {"beta": 0.5}, [0.1269280110], _P + "cal_dpo_hand_derived"),
    ("cal_dpo", "default", pairs([-6.0], [-5.0], **_Z2), {}, [249001.1269280110], _P + "cal_dpo_hand_derived"),
    ("fdpo_js", "u=e^2", pairs([-3.0], [-5.0], refw=[-5.0], refl=[-5.0]), {}, [0.6652369237], _P + "fdpo_hand_derived"),
    ("fdpo_fkl", "u=2,1/2", pairs([LN2 - 5], [-LN2 - 5], refw=[-5.0], refl=[-5.0]), {}, [0.6209570478],
     _P + "fdpo_hand_derived"),
    ("fdpo_alpha", "u=4", pairs([math.log(4) - 5], [-5.0], refw=[-5.0], refl=[-5.0]), {}, [0.6443966601],
     _P + "fdpo_hand_derived"),
    ("wpo", "weights", pairs([-6.0], [-5.0], [3], [5], **_Z2), {"beta": 0.1}, [0.0297795808], _P + "wpo_hand_derived"),
    ("alphapo", "alpha=1", pairs([2 * math.log(0.5)], [4 * math.log(0.25)], [2], [4]), {"alpha": 1.0}, [0.0485873516],
     _P + "alphapo_hand_derived"),
    ("focalpo", "gamma=1", pairs([-6.0], [-5.0], **_Z2), {"gamma": 1.0}, [0.3288770855], _P + "focalpo_hand_derived"),
    ("focalpo", "default", pairs([-6.0], [-5.0], **_Z2), {}, [0.5805152125], _P + "focalpo_hand_derived"),
    ("chipo", "u=2", pairs([LN2 - 5], [-5.0], refw=[-5.0], refl=[-5.0]), {}, [0.6120689836], _P + "chipo_hand_derived"),
    ("chipo", "clipped", pairs([LN2 - 5], [-5.0], refw=[-5.0], refl=[-5.0]), {"r_max": 0.05}, [0.6443966601],
     _P + "chipo_hand_derived"),
    ("simper", "inverse-perplexity", pairs([2 * math.log(0.5)], [4 * math.log(0.25)], [2], [4]), {}, [-0.25],
     _P + "simper_hand_derived"),
    ("gpo_exponential", "z=2,0", pairs([-6.0, -5.0], [-5.0, -5.0], refw=[-7.0, -5.0], refl=[-4.0, -5.0]), {},
     [0.8187307531, 1.0], _P + "gpo_hand_derived"),
    ("gpo_truncated_quadratic", "z=2,0", pairs([-6.0, -5.0], [-5.0, -5.0], refw=[-7.0, -5.0], refl=[-4.0, -5.0]), {},
     [0.64, 1.0], _P + "gpo_hand_derived"),
    ("gpo_savage", "z=2,0", pairs([-6.0, -5.0], [-5.0, -5.0], refw=[-7.0, -5.0], refl=[-4.0, -5.0]), {},
     [0.2026494300, 0.25], _P + "gpo_hand_derived"),
    ("alpha_dpo", "two-pairs", pairs([-1.0, -1.0], [-2.0, -2.0], refw=[-1.0, -1.0], refl=[-1.0, -2.0]), {},
     [0.4212755347, 0.2297780649], _P + "alpha_dpo_hand_derived"),
    ("alpha_dpo", "one-pair", pairs([-1.0], [-2.0], refw=[-1.0], refl=[-1.0]), {}, [0.3132616875],
     _P + "alpha_dpo_hand_derived"),
    ("cpo", "default", pairs([-4.0], [-6.0], [2], [3]), {}, [2.5981388693], _P + "cpo_hand_derived"),
    ("cpo", "alpha=0", pairs([-4.0], [-6.0], [2], [3]), {"alpha": 0.0}, [0.5981388693], _P + "cpo_hand_derived"),
    ("iterative_dpo", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [0.5981388693],
     _P + "iterative_dpo_and_accelerated_po_hand_derived"),
    ("accelerated_po", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [0.5981388693],
     _P + "iterative_dpo_and_accelerated_po_hand_derived"),
    ("tr_dpo", "z=2", pairs([-6.0], [-5.0], **_Z2), {}, [0.5981388693],
     _P + "iterative_dpo_and_accelerated_po_hand_derived"),
]
HAND_TOLERANCE = {"cal_dpo": 1e-6}   # the tests' absolute tolerance on the 10-digit hand values; 1e-9 otherwise

# objective: (parameters that reduce it, the objective it then equals, that objective's parameters, input)
REDUCTIONS = {
    "cdpo": ({"label_smoothing": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "robust_dpo": ({"label_smoothing": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "rdpo": ({"alpha": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "dpop": ({"lam": 0.0}, "dpo", {"beta": 0.3}, "random_8"),
    "beta_dpo": ({"alpha": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "focalpo": ({"gamma": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "rpo": ({"alpha": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "sft_jpo": ({"alpha": 0.0}, "dpo", {"beta": 0.1}, "random_8"),
    "jpo": ({}, "dpo", {"beta": 0.1}, "random_8"),
    "tr_dpo": ({}, "dpo", {"beta": 0.1}, "random_8"),     # τ and α act in the engine: the loss is DPO's
    # rounds and the extrapolated reference act in the run and the engine: each round's loss is DPO's
    "iterative_dpo": ({}, "dpo", {"beta": 0.1}, "random_8"),
    "accelerated_po": ({}, "dpo", {"beta": 0.1}, "random_8"),
    "dpo_norm": ({}, "dpo", {"beta": 5.0}, "random_8_one_token"),
    "alphapo": ({"alpha": 0.0}, "simpo", {"beta": 2.0, "gamma": 1.0}, "random_8"),
    "alpha_dpo": ({"alpha": 0.0}, "simpo", {"beta": 2.5, "gamma": 1.5}, "random_8"),
}
# Objectives whose exp of a summed log-ratio prefbench caps at e^50 (finite in float32): at ±500 nats the exact
# loss is astronomically large, so only its finiteness is checked there.
CAPPED_EXPONENT = ("fdpo_alpha", "fdpo_fkl", "gpo_exponential")
SHIFT = [-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0]   # per pair, added to chosen and taken from rejected
PERMUTATION = [3, 7, 0, 5, 1, 6, 2, 4]
PREFIX = 3


def random_pairs(n: int, seed: int) -> dict:
    """Seeded pairs with plausible summed log-probs (per-token log-probs in (−3, −0.05) over 1–60 tokens, so sums
    scale with length) and references within ±2 nats; Python's ``random`` and 4 decimals keep the file short and the
    values the same on every platform."""
    rng = random.Random(seed)
    ct = [rng.randint(1, 60) for _ in range(n)]
    rt = [rng.randint(1, 60) for _ in range(n)]
    cw = [round(-rng.uniform(0.05, 3.0) * c, 4) for c in ct]
    rl = [round(-rng.uniform(0.05, 3.0) * r, 4) for r in rt]
    refw = [round(w + rng.uniform(-2.0, 2.0), 4) for w in cw]
    refl = [round(lv + rng.uniform(-2.0, 2.0), 4) for lv in rl]
    crt = [max(c // 2, 1) for c in ct]
    crl = [round(-rng.uniform(0.05, 3.0) * c, 4) for c in crt]
    return pairs(cw, rl, ct, rt, refw, refl, crl, crt)


def as_dtype(values: dict, dtype: str) -> dict:
    """The same pairs with their log-probs rounded to ``dtype`` (written as the float64 values they then are)."""
    out = {"dtype": dtype}
    for key, value in values.items():
        if key != "dtype":
            out[key] = value if key in COUNTS else torch.tensor(value, dtype=DTYPES[dtype]).double().tolist()
    return out


def shared_inputs() -> dict[str, dict]:
    base = random_pairs(8, seed=1)
    policy_as_reference = dict(base, reference_chosen_logps=base["policy_chosen_logps"],
                               reference_rejected_logps=base["policy_rejected_logps"])
    permuted = {k: v if k == "dtype" else [v[i] for i in PERMUTATION] for k, v in base.items()}
    first = {k: v if k == "dtype" else v[:PREFIX] for k, v in base.items()}
    extreme = pairs([-10.0, -600.0, -10.0, -600.0], [-600.0, -10.0, -10.0, -600.0], [400] * 4, [400] * 4,
                    [-510.0, -100.0, -510.0, -100.0], [-100.0, -510.0, -510.0, -100.0],
                    [-5.0, -300.0, -5.0, -300.0], [200] * 4, dtype="float32")
    # ~4096-token responses (about −1.2 nats a token), log-ratios of ±3 to ±13 nats
    long = pairs([-5000.0, -4521.375, -2650.5, -4900.25], [-4987.5, -4890.0, -3010.75, -2480.125],
                 [4096, 3700, 2200, 4096], [4096, 4000, 2500, 2048], [-5003.25, -4510.0, -2661.625, -4895.5],
                 [-4980.0, -4902.5, -3001.0, -2490.25], [-2500.0, -2260.5, -1325.25, -2450.0], [2048, 1850, 1100, 2048])
    return {
        "random_8": base,
        "random_8_float32": as_dtype(base, "float32"),
        "random_8_bfloat16": as_dtype(base, "bfloat16"),
        "random_8_one_token": dict(base, chosen_tokens=[1] * 8, rejected_tokens=[1] * 8),
        "random_8_shifted": shifted(base, SHIFT),
        "random_8_permuted": permuted,
        "random_8_first_3": first,
        "one_pair": random_pairs(1, seed=2),
        "random_64": random_pairs(64, seed=3),
        "policy_equals_reference": policy_as_reference,
        "long_sequences": long,
        "extreme_margins": extreme,
    }


def reads_response(objective: Objective) -> bool:
    """Whether the objective needs the chosen response's own statistics (sft_jpo's NLL term)."""
    values = pairs([-6.0], [-5.0], [3], [3], [-7.0], [-4.0])
    try:
        objective(_stats(values, objective, False))
    except ObjectiveError as exc:
        return "chosen_response" in str(exc)
    return False


def _stats(values: dict, objective: Objective, response: bool) -> PairLogProbs:
    """The float64 statistics of an input, with only what the objective's implementation would be given."""
    def f64(key):
        return torch.tensor(values[key], dtype=torch.float64)

    refs = [f64(k) for k in REFERENCE] if objective.needs_reference else [None, None]
    extra = [f64(RESPONSE[0]), torch.tensor(values[RESPONSE[1]])] if response else [None, None]
    return PairLogProbs(f64(POLICY[0]), f64(POLICY[1]), torch.tensor(values[TOKENS[0]]),
                        torch.tensor(values[TOKENS[1]]), *refs, *extra)


def other_params(objective: Objective) -> dict[str, float]:
    """Every parameter moved off its default (×2.5, else ÷2; 0 → 0.2, else −0.2), within its valid range."""
    out = {}
    for name, param in objective.params.items():
        candidates = (param.default * 2.5, param.default / 2) if param.default else (0.2, -0.2)
        for value in candidates:
            try:
                out[name] = param.check(objective.name, name, round(value, 6))
                break
            except ObjectiveError:
                continue
    return out


def shifted(values: dict, c: list[float]) -> dict:
    """The pairs with c added to the chosen log-probs and taken from the rejected ones, policy and reference alike."""
    out = dict(values)
    for key, sign in ((POLICY[0], 1), (REFERENCE[0], 1), (POLICY[1], -1), (REFERENCE[1], -1)):
        out[key] = [v + sign * ci for v, ci in zip(values[key], c)]
    return out


def shift_invariant(objective: Objective, values: dict, response: bool) -> bool:
    """Whether shifts of ±200 nats (three seeds) leave prefbench's losses unchanged: the invariant is written only
    for objectives where it holds in general, not by chance on the one shift the file records (AOT's sort keeps
    some shifts' ranks)."""
    if not objective.needs_reference:
        return False
    base = objective(_stats(values, objective, response)).losses.tolist()
    for seed in range(3):
        rng = random.Random(seed)
        c = [rng.uniform(-200.0, 200.0) for _ in values[POLICY[0]]]
        if not _close(objective(_stats(shifted(values, c), objective, response)).losses.tolist(), base, 1e-9):
            return False
    return True


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b))


def objective_cases(objective: Objective, inputs: dict[str, dict]) -> dict:
    """The cases and invariants of one objective, each checked on prefbench itself first."""
    response = reads_response(objective)
    defaults = objective.defaults

    def losses(input_name: str, params: dict) -> list[float]:
        out = objective(_stats(inputs[input_name], objective, response), **params).losses.tolist()
        assert all(math.isfinite(x) for x in out), (objective.name, input_name, out)
        return out

    def value_case(name, kind, input_name, params, **extra):
        params = objective.resolve_params(**params)
        return {"name": name, "kind": kind, "inputs": input_name, "params": params, "check": "value",
                "expected": losses(input_name, params), **extra}

    cases = []
    for obj_name, label, _, params, hand, derivation in HAND_DERIVED:
        if obj_name == objective.name:
            case = value_case(f"hand:{label}", "hand-derived", f"hand:{obj_name}:{label}", params,
                              hand_values=hand, derivation=derivation)
            assert _close(case["expected"], hand, HAND_TOLERANCE.get(obj_name, 1e-9)), (obj_name, label, case)
            cases.append(case)
    others = [("_other_params", other_params(objective))] if objective.params else []
    cases += [value_case("random", "random", "random_8", {}),
              *(value_case("random" + suffix, "random", "random_8", params) for suffix, params in others),
              value_case("batch_of_one", "edge", "one_pair", {}),
              value_case("batch_of_many", "edge", "random_64", {}),
              value_case("float32_inputs", "dtype", "random_8_float32", {}),
              value_case("bf16_inputs", "dtype", "random_8_bfloat16", {})]
    if objective.needs_reference:
        cases.append(value_case("policy_equals_reference", "edge", "policy_equals_reference", {}))
    cases.append(value_case("long_sequences", "edge", "long_sequences", {}))
    for suffix, params in [("", {}), *others]:
        extreme = value_case("extreme_margins" + suffix, "edge", "extreme_margins", params)
        if objective.name in CAPPED_EXPONENT:
            extreme.update(check="finite", note="prefbench caps the exponent of a summed log-ratio at 50, so its loss "
                                                "here is not the exact formula's (astronomically large); only "
                                                "finiteness is checked")
        cases.append(extreme)
    if objective.name in REDUCTIONS:
        params, target, target_params, input_name = REDUCTIONS[objective.name]
        expected = get_objective(target)(_stats(inputs[input_name], objective, response),
                                         **target_params).losses.tolist()
        label = ",".join(f"{k}={v:g}" for k, v in params.items())
        case = value_case(f"reduces_to_{target}" + (f"[{label}]" if label else ""), "reduction", input_name, params,
                          note=f"equals {target} with {', '.join(f'{k}={v:g}' for k, v in target_params.items())}")
        assert _close(case["expected"], expected, 1e-12), (objective.name, case, expected)
        case["expected"] = expected
        cases.append(case)

    base = losses("random_8", defaults)

    def invariant(name, input_name, index, note):
        got = losses(input_name, defaults)
        if objective.batch_level:
            holds = _close([sum(got) / len(got)], [sum(base[i] for i in index) / len(index)], 1e-10)
        else:
            holds = _close(got, [base[i] for i in index], 1e-10)
        if holds:
            cases.append({"name": f"invariant:{name}", "kind": "invariant", "inputs": input_name, "params": defaults,
                          "check": "invariant", "base": "random_8", "index": index, "note": note})
        return holds

    if shift_invariant(objective, inputs["random_8"], response):
        assert invariant("shift", "random_8_shifted", list(range(8)),
                         "adding c to the policy's and the reference's chosen log-probs and taking it from both "
                         "rejected ones changes nothing (the loss sees the policy only through its log-ratios)")
    assert invariant("permutation", "random_8_permuted", PERMUTATION,
                     "reordering the pairs reorders the losses" if not objective.batch_level else
                     "reordering the pairs leaves the batch mean unchanged"), objective.name
    if not objective.batch_level:
        assert invariant("batch_independence", "random_8_first_3", list(range(PREFIX)),
                         "a pair's loss does not depend on the other pairs in its batch"), objective.name
    return {"batch_level": objective.batch_level, "keywords": [*keywords_for(objective, response), *objective.params],
            "defaults": defaults, "cases": cases}


def objectives_commit() -> str:
    """The last commit that changed the objectives or the registry (+ a mark when they have uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    paths = ["objectives", "prefbench/registry"]
    try:
        sha = subprocess.run(["git", "log", "-1", "--format=%H", "--", *paths], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return (sha or "unknown") + (" + uncommitted changes" if dirty else "")


def prefbench_version() -> str:
    try:
        return version("prefbench")
    except PackageNotFoundError:   # run from a source tree that was never installed
        return "unknown"


def build_golden() -> dict:
    inputs = shared_inputs()
    for obj_name, label, values, *_ in HAND_DERIVED:
        inputs[f"hand:{obj_name}:{label}"] = values
    # the cases are pairs of per-sequence statistics: an objective that also reads token-level ones (TDPO's
    # sequential KL, SamPO's and LD-DPO's per-token log-probs) has no case here; its own tests cover it
    objectives = {o.name: objective_cases(o, inputs) for o in list_objectives()
                  if o.source == "built-in" and o.data == "paired" and not o.statistics}
    assert {f"{o}" for o, *_ in HAND_DERIVED} == set(objectives), "every built-in objective has a hand-derived case"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generated_by": "python -m prefbench.conformance.golden",
        "prefbench_version": prefbench_version(),
        "objectives_commit": objectives_commit(),
        "torch_version": torch.__version__,
        "tolerances": TOLERANCES,
        "contract": "each case calls the implementation with its input's tensors named as in the objective's "
                    "'keywords' (log-probs summed over the response, as the input's dtype; token counts int64) and "
                    "the case's params by name; it returns per-pair losses [B]. expected: prefbench's float64 losses. "
                    "Batch-level objectives are compared on the batch mean. An invariant compares the implementation's "
                    "losses on its input with its own losses on 'base' at 'index'.",
        "inputs": inputs,
        "objectives": objectives,
    }


def dumps(value, indent: int = 0) -> str:
    """JSON with one line per list of numbers (floats as their exact shortest repr)."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def comparable(golden: dict) -> dict:
    """The file without its provenance (which commit and torch wrote it): what must equal a fresh build."""
    return {k: v for k, v in golden.items() if k not in PROVENANCE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefbench.conformance.golden", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    parser.add_argument("--output", default=str(GOLDEN_PATH))
    args = parser.parse_args(argv)
    golden = build_golden()
    if args.check:
        shipped = json.loads(Path(args.output).read_text(encoding="utf-8"))
        same = comparable(shipped) == comparable(golden)
        print(f"{args.output}: {'up to date' if same else 'differs from what the objectives give now; regenerate it'}")
        return 0 if same else 1
    text = dumps(golden) + "\n"
    Path(args.output).write_text(text, encoding="utf-8")
    n_cases = sum(len(o["cases"]) for o in golden["objectives"].values())
    print(f"wrote {args.output}: {len(golden['objectives'])} objectives, {n_cases} cases, {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
