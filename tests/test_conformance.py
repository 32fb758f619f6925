"""`prefbench conformance` (issue #16 item 6): the golden cases and their file, the adapters, the report and exit
codes, TRL 1.16's DPOTrainer loss types against the cases (pass, or the documented known differences), broken
implementations that must fail by name, bad invocations that must stop with one line, and the pytest fixture."""

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import prefbench
from prefbench import PairLogProbs, get_objective, list_objectives
from prefbench.cli import main
from prefbench.conformance import (
    ConformanceError,
    KnownDifference,
    Unsupported,
    assert_conforms,
    check_conformance,
    load_golden,
)
from prefbench.conformance.cases import FORMAT_VERSION, GOLDEN_PATH, TOLERANCES
from prefbench.conformance.golden import build_golden, comparable

pytest_plugins = ["pytester"]
GOLDEN = load_golden()
# the golden cases hold per-sequence statistics only: no objective that reads token-level ones
BUILTINS = sorted(o.name for o in list_objectives() if o.source == "built-in" and o.data == "paired"
                  and not o.statistics)
GUIDE = Path(__file__).parents[1] / "docs" / "guide.md"


def prefbench_impl(name):
    """prefbench's own objective behind the keywords contract (the adapter a library would write for its loss)."""
    obj = get_objective(name)

    def fn(policy_chosen_logps, policy_rejected_logps, chosen_tokens, rejected_tokens, reference_chosen_logps=None,
           reference_rejected_logps=None, chosen_response_logps=None, chosen_response_tokens=None, **params):
        return obj(PairLogProbs(policy_chosen_logps, policy_rejected_logps, chosen_tokens, rejected_tokens,
                                reference_chosen_logps, reference_rejected_logps, chosen_response_logps,
                                chosen_response_tokens), **params).losses
    return fn


# ---------------------------------------------------------------- broken implementations


def dpo_wrong_sign(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                   chosen_tokens, rejected_tokens, beta):
    z = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(-beta * z)


def ipo_summed(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
               chosen_tokens, rejected_tokens, tau):
    z = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return (z - 1 / (2 * tau)) ** 2   # the log-ratios summed over tokens, not averaged


def dpo_naive(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
              chosen_tokens, rejected_tokens, beta):
    """log(1 + e^{−βz}), exact until e^{−βz} overflows (float32 at βz < −88); bf16 upcast to float32."""
    up = (lambda t: t.float()) if policy_chosen_logps.dtype == torch.bfloat16 else (lambda t: t)
    z = ((up(policy_chosen_logps) - up(reference_chosen_logps))
         - (up(policy_rejected_logps) - up(reference_rejected_logps)))
    return torch.log(1 + torch.exp(-beta * z))


def dpo_reduced(**kwargs):
    return dpo_naive(**kwargs).mean()


def dpo_as_list(**kwargs):
    return dpo_naive(**kwargs).tolist()


def dpo_without_reference(policy_chosen_logps, policy_rejected_logps, chosen_tokens, rejected_tokens, beta):
    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))


def dpo_loss_positional(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    """The classic dpo_loss shape: β fixed at 0.1 inside, (losses, chosen_rewards, rejected_rewards) out."""
    chosen, rejected = policy_chosen_logps - reference_chosen_logps, policy_rejected_logps - reference_rejected_logps
    return -F.logsigmoid(0.1 * (chosen - rejected)), 0.1 * chosen, 0.1 * rejected


def bco_without_delta(delta, **kwargs):
    if delta:
        raise Unsupported("no reward shift")
    return prefbench_impl("bco_pair")(delta=0.0, **kwargs)


EXAMPLES = Path(__file__).resolve()


@pytest.fixture
def in_examples(monkeypatch):
    """`--impl test_conformance:...` imports this file from the current folder, as a user's module would be."""
    monkeypatch.chdir(EXAMPLES.parent)
    monkeypatch.delitem(sys.modules, "test_conformance", raising=False)


def cli(capsys, *args):
    rc = main(["conformance", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- the golden file


def test_golden_file_is_what_the_script_builds():
    """Regenerated now, the file is the same (but for which commit and torch wrote it): it cannot drift from the
    objectives. If this fails after a change to an objective: python -m prefbench.conformance.golden"""
    shipped = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))
    assert comparable(shipped) == comparable(build_golden())


def test_golden_file_states_its_format_version_and_cases():
    assert GOLDEN["format_version"] == FORMAT_VERSION == 1
    assert GOLDEN["prefbench_version"] == prefbench.__version__
    assert GOLDEN["objectives_commit"] and GOLDEN["tolerances"] == TOLERANCES
    assert sorted(GOLDEN["objectives"]) == BUILTINS and len(BUILTINS) == 41
    assert {n for n, o in GOLDEN["objectives"].items() if o["batch_level"]} == {"aot", "aot_unpaired", "beta_dpo",
                                                                              "alpha_dpo"}
    for name, entry in GOLDEN["objectives"].items():
        cases = {c["name"]: c for c in entry["cases"]}
        assert any(c["kind"] == "hand-derived" for c in cases.values()), name
        for required in ("random", "batch_of_one", "batch_of_many", "float32_inputs", "bf16_inputs", "long_sequences",
                         "extreme_margins", "invariant:permutation"):
            assert required in cases, (name, required)
        assert len(GOLDEN["inputs"][cases["batch_of_one"]["inputs"]]["chosen_tokens"]) == 1
        assert len(GOLDEN["inputs"][cases["batch_of_many"]["inputs"]]["chosen_tokens"]) == 64
        if entry["defaults"]:   # every parameter moved off its default
            other = cases["random_other_params"]["params"]
            assert all(other[k] != v for k, v in entry["defaults"].items()), name
            assert cases["extreme_margins_other_params"]["params"] == other
        assert ("invariant:batch_independence" in cases) != entry["batch_level"], name
    edge = GOLDEN["inputs"]
    long = edge["long_sequences"]
    assert max(long["chosen_tokens"]) == 4096 and min(long["policy_chosen_logps"]) == -5000
    extreme = edge["extreme_margins"]
    assert extreme["dtype"] == "float32" and {w - r for w, r in zip(extreme["policy_chosen_logps"],
                                                                    extreme["reference_chosen_logps"])} == {500, -500}


def test_hand_derived_cases_are_the_tests_values():
    hand = [(n, c) for n, o in GOLDEN["objectives"].items() for c in o["cases"] if c["kind"] == "hand-derived"]
    assert len(hand) >= 48
    for name, case in hand:
        tol = 1e-6 if name == "cal_dpo" else 1e-9
        assert case["expected"] == pytest.approx(case["hand_values"], abs=tol), (name, case["name"])
        assert case["derivation"].startswith("tests/test_objectives")


def test_invariants_are_written_only_where_they_hold():
    with_shift = {n for n, o in GOLDEN["objectives"].items() if any(c["name"] == "invariant:shift" for c in o["cases"])}
    # aot's sort, rpo's and cpo's NLL, wpo's weights and alpha_dpo's SimPO term see the policy beyond its log-ratios
    assert {"dpo", "ipo", "aot_unpaired", "beta_dpo", "sft_jpo"} <= with_shift
    assert not with_shift & {"aot", "rpo", "wpo", "alpha_dpo", "simpo", "orpo", "sft", "cpo"}


# ---------------------------------------------------------------- prefbench against its own cases


@pytest.mark.parametrize("name", BUILTINS)
def test_prefbench_conforms_to_its_own_cases(name):
    report = assert_conforms(name, prefbench_impl(name))
    assert report.count("pass") == len(report.results)


def test_report_table_and_exit_code(capsys, in_examples):
    rc, out, err = cli(capsys, "--objective", "dpo", "--impl", "test_conformance:dpo_naive", "--params", "beta=0.1")
    assert rc == 1 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("prefbench conformance: objective 'dpo' — golden cases format 1")
    assert lines[3].split() == ["case", "at", "expected", "got", "abs", "err", "rel", "err", "tolerance", "verdict"]
    row = next(line for line in lines if line.startswith("extreme_margins "))
    assert row.split()[-1] == "FAIL" and " inf " in row and "rtol 1e-05 atol 1e-05" in row
    assert next(line for line in lines if line.startswith("random ")).split()[-1] == "pass"
    assert lines[-1] == "12 checks: 11 passed, 0 known differences, 0 skipped, 1 failed — FAILED: extreme_margins"


# ---------------------------------------------------------------- broken implementations fail, by case name


@pytest.mark.parametrize("objective,impl,failing", [
    ("dpo", "dpo_wrong_sign", {"hand:z=2", "random", "batch_of_many", "long_sequences", "extreme_margins"}),
    ("ipo", "ipo_summed", {"hand:token-averaged", "random", "batch_of_one", "long_sequences"}),
])
def test_a_wrong_loss_fails_with_exit_1_naming_its_cases(capsys, in_examples, objective, impl, failing):
    rc, out, err = cli(capsys, "--objective", objective, "--impl", f"test_conformance:{impl}")
    assert rc == 1 and err == ""
    failed = set(out.splitlines()[-1].split("FAILED: ")[1].split(", "))
    assert failing <= failed
    assert "invariant:permutation" not in failed   # still a per-pair function: only its values are wrong


def test_a_loss_that_overflows_at_500_nats_fails_there_only():
    report = check_conformance("dpo", dpo_naive)
    assert report.failed == ["extreme_margins", "extreme_margins_other_params"]
    worst = {r.name: r for r in report.results}["extreme_margins"]
    assert worst.got == math.inf and worst.expected == pytest.approx(100.0, rel=1e-6)   # β z = −100


def test_a_declared_known_difference_is_reported_as_such_not_as_a_pass():
    known = {"extreme_margins*": KnownDifference("overflows in float32 below βz = −88", nonfinite=True)}
    report = assert_conforms("dpo", dpo_naive, known_differences=known)
    assert [r.name for r in report.results if r.verdict == "known difference"] == ["extreme_margins",
                                                                                    "extreme_margins_other_params"]
    assert "overflows in float32" in report.table()
    # a known difference explains only what it says: a wrong value that is finite still fails
    with pytest.raises(AssertionError, match="FAILED: hand:z=2"):
        assert_conforms("dpo", dpo_wrong_sign, known_differences={"*": KnownDifference("x", nonfinite=True)})


def test_an_unsupported_case_is_skipped_and_said_so():
    report = assert_conforms("bco_pair", bco_without_delta)
    assert {r.name for r in report.results if r.verdict == "skipped"} == {"hand:z=2,delta=0.1", "random_other_params",
                                                                         "extreme_margins_other_params"}
    assert "skipped: no reward shift" in report.table()


def test_an_implementation_that_raises_is_a_failing_case():
    def boom(**kwargs):
        raise RuntimeError("CUDA out of memory\non two lines")

    report = check_conformance("dpo", boom)
    assert report.exit_code == 1 and {r.verdict for r in report.results} == {"ERROR"}
    assert "raised RuntimeError: CUDA out of memory on two lines" in report.table()


def test_positional_adapter_runs_the_cases_at_its_fixed_parameters(capsys, in_examples):
    rc, out, _ = cli(capsys, "--objective", "dpo", "--impl", "test_conformance:dpo_loss_positional", "--adapter",
                     "positional")
    assert rc == 0 and "random_other_params" not in out and "12 checks: 12 passed" in out.splitlines()[-1]
    rc, out, _ = cli(capsys, "--objective", "dpo", "--impl", "test_conformance:dpo_loss_positional", "--adapter",
                     "positional", "--params", "beta=0.25")
    assert rc == 1 and "random_other_params" in out   # β = 0.1 inside, checked at 0.25


def test_params_keep_only_the_cases_at_those_values():
    report = assert_conforms("cdpo", prefbench_impl("cdpo"), label_smoothing=0.0)
    assert [r.name for r in report.results] == ["hand:z=2,eps=0", "reduces_to_dpo[label_smoothing=0]"]


# ---------------------------------------------------------------- bad invocations: exit 2, one line


@pytest.mark.parametrize("args,message", [
    (["--objective", "dpoo", "--impl", "test_conformance:dpo_naive"], "unknown objective 'dpoo' (did you mean 'dpo'?)"),
    (["--objective", "dpo", "--impl", "no_such_module:loss"],
     "cannot import 'no_such_module': ModuleNotFoundError: No module named 'no_such_module'"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_nave"], "has no 'dpo_nave' (did you mean 'dpo_naive'?)"),
    (["--objective", "dpo", "--impl", "test_conformance"], "give MODULE:FUNCTION"),
    (["--objective", "dpo", "--impl", "test_conformance:GUIDE"], "'GUIDE' is a PosixPath, not a function"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_without_reference"],
     "has the wrong signature for the keywords adapter: got an unexpected keyword argument 'reference_chosen_logps'"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_naive", "--adapter", "positional"],
     "has the wrong signature for the positional adapter"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_reduced"],
     ("returned losses of shape () for case 'hand:z=2' of 1 pair; expected (1,), one unreduced loss per pair "
      "(a reduced loss? return the losses before .mean())")),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_as_list"], "returned a list for case"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_naive", "--params", "beta"], "--params takes NAME=NUMBER"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_naive", "--params", "bta=0.1"],
     "objective 'dpo' has no parameter 'bta' (did you mean 'beta'?)"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_naive", "--params", "beta=0.3"],
     "no golden case of 'dpo' is at beta=0.3; the cases have beta in 0.1, 0.25"),
    (["--objective", "dpo", "--impl", "test_conformance:dpo_naive", "--adapter", "named"], "invalid choice: 'named'"),
    (["--impl", "test_conformance:dpo_naive"], "give --objective NAME"),
    (["--objective", "dpo", "--impl", "trl:sigmod"],
     "TRL 1.16's DPOTrainer has no loss type 'sigmod' (did you mean 'sigmoid'?)"),
])
def test_bad_invocations_exit_2_with_one_line(capsys, in_examples, args, message):
    rc, out, err = cli(capsys, *args)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("prefbench: error: "), err
    assert message in err, err


def test_without_trl_the_trl_adapter_says_so_in_one_line(capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "trl" or m.startswith("trl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "trl", None)   # import trl -> ImportError
    rc, out, err = cli(capsys, "--impl", "trl:sigmoid")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("prefbench: error: the trl adapter needs TRL, which is not installed here")
    assert "pip install trl==1.16.0" in err


def test_objectives_without_golden_cases_are_refused():
    plugin = get_objective("dpo").__class__(**{**get_objective("dpo").__dict__, "name": "plugin_dpo",
                                                 "source": "my_pkg.losses"})
    from prefbench.registry import objective as registry

    registry._REGISTRY["plugin_dpo"] = plugin
    try:
        with pytest.raises(ConformanceError, match="no golden cases for 'plugin_dpo' \\(my_pkg.losses\\)"):
            check_conformance("plugin_dpo", dpo_naive)
    finally:
        del registry._REGISTRY["plugin_dpo"]


# ---------------------------------------------------------------- TRL 1.16's DPOTrainer


def float64_value_cases(objective):
    return {c["name"] for c in GOLDEN["objectives"][objective]["cases"]
            if c["check"] == "value" and GOLDEN["inputs"][c["inputs"]]["dtype"] == "float64"}


# (our objective, TRL loss type) -> (cases reported as known differences, cases skipped)
TRL = {
    ("dpo", "sigmoid"): (set(), set()),
    ("ipo", "ipo"): (set(), set()),
    ("hinge", "hinge"): (set(), set()),
    ("exo_pair", "exo_pair"): (float64_value_cases("exo_pair"), set()),   # TRL's float32 ε
    ("nca_pair", "nca_pair"): (set(), set()),
    ("robust_dpo", "robust"): (set(), set()),
    ("bco_pair", "bco_pair"): (set(), {"hand:z=2,delta=0.1", "random_other_params", "extreme_margins_other_params"}),
    ("sppo_hard", "sppo_hard"): (set(), set()),
    ("aot", "aot"): (set(), set()),
    ("aot_unpaired", "aot_unpaired"): (set(), set()),
    ("apo_zero", "apo_zero"): (set(), set()),
    ("apo_down", "apo_down"): (set(), set()),
    ("discopop", "discopop"): ({"extreme_margins_other_params"}, set()),  # σ(βz/τ)·exp(−βz) = 0·inf
    ("dpo_norm", "sigmoid_norm"): (set(), set()),
    ("sft", "sft"): (set(), set()),
    ("cdpo", "aot"): ({"bf16_inputs"}, set()),   # one pair per call: the sort is the identity; bf16 margins
}


@pytest.mark.parametrize("objective,loss_type", sorted(TRL), ids=lambda x: x)
def test_trl_loss_types_conform_or_report_their_known_differences(objective, loss_type):
    pytest.importorskip("trl.trainer.dpo_trainer")
    report = assert_conforms(objective, f"trl:{loss_type}")
    known, skipped = TRL[(objective, loss_type)]
    assert {r.name for r in report.results if r.verdict == "known difference"} == known
    assert {r.name for r in report.results if r.verdict == "skipped"} == skipped
    assert report.count("pass") == len(report.results) - len(known) - len(skipped)
    if objective == "discopop":
        assert math.isnan({r.name: r for r in report.results}["extreme_margins_other_params"].got)


def test_trls_sigmoid_is_not_cdpo(capsys):
    """TRL 1.16's sigmoid loss ignores label_smoothing: the cDPO cases fail, except where ε = 0."""
    pytest.importorskip("trl.trainer.dpo_trainer")
    rc, out, _ = cli(capsys, "--objective", "cdpo", "--impl", "trl:sigmoid")
    assert rc == 1
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[4:] if line and line[0] != " "}
    assert rows["hand:z=2"] == rows["random"] == "FAIL"
    assert rows["hand:z=2,eps=0"] == rows["reduces_to_dpo[label_smoothing=0]"] == "pass"


def test_the_shared_trl_harness_still_gives_the_recorded_trl_numbers():
    """tests/fixtures/make_trl_reference.py computes its DPOTrainer cases with this same harness."""
    pytest.importorskip("trl.trainer.dpo_trainer")
    from prefbench.conformance.trl_adapter import trl_dpo_loss

    fixture = json.loads((Path(__file__).parent / "fixtures" / "trl_reference.json").read_text())
    x = fixture["inputs"]
    for case, loss_type in [("dpo", "sigmoid"), ("ipo", "ipo"), ("discopop", "discopop"), ("aot", "aot")]:
        params = fixture["cases"][case]["params"]
        for i, expected in enumerate(fixture["cases"][case]["losses"]):
            pair = [torch.tensor([x[key][i]], dtype=torch.long if key.endswith("tokens") else torch.float64)
                    for key in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps",
                                "ref_rejected_logps", "chosen_tokens", "rejected_tokens")]
            loss, trainer = trl_dpo_loss(loss_type, *pair,
                                         beta=params["beta"], label_smoothing=params.get("label_smoothing", 0.0),
                                         discopop_tau=params.get("discopop_tau", 0.05))
            assert loss.item() == expected
            assert trainer._metrics["eval"]["rewards/chosen"][0] == fixture["cases"][case]["chosen_rewards"][i]


# ---------------------------------------------------------------- the pytest fixture, as the guide shows it


def guide_files():
    """The guide's example files: each ```python block that starts with '# <name>.py'."""
    blocks = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.DOTALL)
    return dict(blocks)


def test_the_guides_example_runs(pytester, capsys, monkeypatch):
    files = guide_files()
    assert set(files) == {"my_losses.py", "conftest.py", "test_my_losses.py"}
    for name, text in files.items():
        pytester.path.joinpath(name).write_text(text)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
    monkeypatch.chdir(pytester.path)
    monkeypatch.delitem(sys.modules, "my_losses", raising=False)
    capsys.readouterr()
    rc, out, err = cli(capsys, "--objective", "dpo", "--impl", "my_losses:adapter")
    assert rc == 0 and err == ""
    assert out.splitlines()[-1] == "14 checks: 14 passed, 0 known differences, 0 skipped, 0 failed"


def test_the_fixture_fails_a_test_with_the_table(pytester):
    pytester.makeconftest('pytest_plugins = ["prefbench.conformance.pytest_plugin"]')
    pytester.makepyfile(test_wrong='''
import torch.nn.functional as F

def wrong_sign(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
               chosen_tokens, rejected_tokens, beta):
    return -F.logsigmoid(-beta * ((policy_chosen_logps - reference_chosen_logps)
                                  - (policy_rejected_logps - reference_rejected_logps)))

def test_dpo(loss_conformance):
    loss_conformance("dpo", wrong_sign)
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*does not conform to prefbench's 'dpo'*", "*hand:z=2*FAIL*"])
