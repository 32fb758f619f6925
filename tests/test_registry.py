"""Registry: lookup, aliases, did-you-mean errors, entry-point plugins, the CLI listing."""

import sys
import textwrap

import pytest
import torch

import prefbench.registry.objective as registry
from prefbench import ObjectiveError, PairLogProbs, get_objective, list_objectives
from prefbench.cli import main
from prefbench.registry import parse_objective_list


def test_aliases_resolve_to_the_same_objective():
    assert get_objective("dove") is get_objective("jpo")
    assert get_objective(" DPO ") is get_objective("dpo")


@pytest.mark.parametrize("typo,suggestion", [("dpoo", "dpo"), ("simp", "simpo"), ("sftjpo", "sft_jpo")])
def test_unknown_name_suggests_closest(typo, suggestion):
    with pytest.raises(ObjectiveError, match=f"unknown objective '{typo}' \\(did you mean '{suggestion}'\\?\\)"):
        get_objective(typo)


def test_objective_list_parsing_checks_every_name():
    assert [o.name for o in parse_objective_list("dpo, jpo,")] == ["dpo", "jpo"]
    with pytest.raises(ObjectiveError, match="did you mean 'ipo'"):
        parse_objective_list("dpo,ipoo")


def test_entry_point_plugin_registers_like_a_builtin(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin.py").write_text(textwrap.dedent('''
        import torch.nn.functional as F
        from prefbench import ObjectiveOutput, Param, register_objective

        @register_objective("toy_hinge", span="response", needs_reference=False,
                            params={"margin": Param(1.0, gt=0)})
        def toy_hinge(stats, *, margin):
            """Hinge: max(0, margin − (S(y_w) − S(y_l)))."""
            gap = stats.chosen_logps - stats.rejected_logps
            return ObjectiveOutput(F.relu(margin - gap), stats.chosen_logps, stats.rejected_logps)
    '''))
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[prefbench.objectives]\ntoy_hinge = toy_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delitem(sys.modules, "toy_plugin", raising=False)

    obj = get_objective("toy_hinge")
    assert obj.source == "toy_plugin"
    assert "toy_hinge" in {o.name for o in list_objectives()}
    s = PairLogProbs(torch.tensor([-1.0, -5.0]), torch.tensor([-1.5, -2.0]), torch.tensor([1, 1]), torch.tensor([1, 1]))
    assert obj(s).losses.tolist() == pytest.approx([0.5, 4.0])
    with pytest.raises(ObjectiveError, match="'margin' must be > 0"):
        obj(s, margin=0)


def test_duplicate_registration_is_refused():
    with pytest.raises(ObjectiveError, match="'dpo' is already registered"):
        registry.register_objective("dpo", span="response", needs_reference=True)(lambda stats: None)


def test_every_objective_declares_a_known_family_and_an_unknown_one_is_refused():
    assert {o.name: o.family for o in list_objectives() if o.name in ("dpo", "cdpo", "ipo", "simpo", "jpo", "sft")} == \
        {"dpo": "dpo", "cdpo": "robust", "ipo": "loss-shape", "simpo": "reference-free", "jpo": "joint",
         "sft": "supervised"}
    assert all(o.family in registry.FAMILIES and o.family != "other" for o in list_objectives()
               if o.source == "built-in")
    with pytest.raises(ObjectiveError, match="family must be one of .*did you mean 'robust'"):
        registry.register_objective("noisy", family="robst", span="response", needs_reference=True)


def test_cli_lists_objectives_with_metadata(capsys):
    assert main(["objectives"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["jpo"][1:6] == ["joint", "paired", "joint", "yes", "no"]
    assert rows["simpo"][1:5] == ["reference-free", "paired", "response", "no"]
    assert rows["kto"][1:5] == ["unpaired", "unpaired", "response", "yes"]
    assert "beta=2," in rows["simpo"] and "gamma=1" in rows["simpo"]


def test_cli_unknown_objective_is_a_clean_error(capsys):
    assert main(["demo", "--objectives", "dpo,jop"]) == 2
    assert "did you mean 'jpo'" in capsys.readouterr().err


def test_the_objective_reference_in_docs_is_generated_from_the_registry():
    from pathlib import Path

    from prefbench.registry.reference import objectives_markdown

    committed = (Path(__file__).parents[1] / "docs" / "objectives.md").read_text(encoding="utf-8")
    assert committed == objectives_markdown(), "regenerate it: prefbench objectives --markdown > docs/objectives.md"
