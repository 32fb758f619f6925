"""``prefbench run --sweep`` on a tiny random model: each objective's grid trained and judged on validation prompts
only, the chosen point trains every seed (its seed-0 run copied, not redone), frontier and matched-KL comparison
in results and report; and the sweep section of a spec."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from prefbench.benchmark import BenchmarkError, SweepSettings, load_benchmark
from prefbench.engine.config import ConfigError
from prefbench.pipeline.config import RunConfig
from prefbench.pipeline.run import run
from prefbench.tasks.base import TaskPrompt

from .test_run import SPEC

SWEEP = {"validation_prompts": 3, "lr": [1.0e-3, 3.0e-3], "grid": {"dpo": {"beta": [0.1, 0.5]}}}


@pytest.fixture()
def sweep_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "sweep": SWEEP}))
    return path


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_swept_run_selects_on_validation_prompts_and_trains_the_chosen_points(tiny_model_dir, sweep_spec, tmp_path,
                                                                                monkeypatch):
    import prefbench.engine.trainer as train_mod
    import prefbench.pipeline.sweep as sweep_mod

    judged = []       # the prompts every judge call of the sweep saw
    judge_against = sweep_mod.judge_against
    monkeypatch.setattr(sweep_mod, "judge_against",
                        lambda run_dir, systems, prompts, *a: judged.extend(prompts) or judge_against(
                            run_dir, systems, prompts, *a))
    trained = []      # every training that actually ran (not skipped, not copied)
    fit = train_mod.fit

    def counted_fit(cfg, encoded):
        if not train_mod.is_trained(Path(cfg.output_dir)):
            trained.append(cfg.output_dir)
        return fit(cfg, encoded)

    monkeypatch.setattr(train_mod, "fit", counted_fit)
    out = tmp_path / "run"
    results = run(RunConfig(objectives=["dpo", "jpo"], benchmark=str(sweep_spec), preset="smoke", seeds=[0, 1],
                            model=str(tiny_model_dir), quantization="none", output_dir=str(out), sweep=True))

    # selection saw validation prompts only: none is an eval prompt, by id or text
    evals = read(out / "data/eval.jsonl")
    assert judged and {p.id for p in judged} == {r["id"] for r in read(out / "sweep/validation.jsonl")}
    assert not {p.id for p in judged} & {r["id"] for r in evals}
    assert not {p.text for p in judged} & {r["text"] for r in evals}
    assert all(p.id.startswith("ifeval-lite/validation/") for p in judged)

    sweep = json.loads((out / "sweep/results.json").read_text())
    assert [p["name"] for p in sweep["objectives"]["dpo"]["points"]] == [
        "beta0.1-lr0.001", "beta0.1-lr0.003", "beta0.5-lr0.001", "beta0.5-lr0.003"]
    assert [p["name"] for p in sweep["objectives"]["jpo"]["points"]] == ["lr0.001", "lr0.003"]
    assert sweep["reference"]["win_rate"]["estimate"] == 0.5          # the reference against itself: all ties
    for objective, entry in sweep["objectives"].items():
        points = entry["points"]
        best = max(p["win_rate"]["estimate"] for p in points)
        chosen = [p for p in points if p["chosen"]]
        assert len(chosen) == 1 and chosen[0]["name"] == entry["chosen"] and chosen[0]["win_rate"]["estimate"] == best
        assert entry["frontier"]["kl"][0] == 0.0 and entry["frontier"]["score"][0] == 0.5
        assert all(np.diff(entry["frontier"]["score"]) > 0)
    matched = sweep["matched_kl"]
    assert matched["kl"] == pytest.approx(min(max(p["kl"]["estimate"] for p in e["points"])
                                              for e in sweep["objectives"].values()))
    assert [(d["a"], d["b"]) for d in matched["differences"]] == [("dpo", "jpo")]

    # every seed trains at the chosen point; seed 0 is the sweep's own training, copied
    for objective, entry in sweep["objectives"].items():
        chosen = next(p for p in entry["points"] if p["chosen"])
        for seed in (0, 1):
            saved = yaml.safe_load((out / objective / f"seed{seed}" / "config.yaml").read_text())
            assert saved["lr"] == chosen["lr"] and saved["objective_params"] == chosen["params"]
        assert str(out / objective / "seed0") not in trained and str(out / objective / "seed1") in trained
    assert len(trained) == 4 + 2 + 2
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["sweep"] is True and config["objective_params"]["dpo"] == \
        next(p for p in sweep["objectives"]["dpo"]["points"] if p["chosen"])["params"]

    assert results["sweep"] == sweep
    training = {s["name"]: s["training"] for s in results["systems"]}
    assert [bool(t.get("copied_from")) for t in training["dpo"]] == [True, False]   # seed 0 is the sweep's run
    for system in results["systems"]:
        chosen = next(p for p in sweep["objectives"][system["name"]]["points"] if p["chosen"])
        assert system["params"] == chosen["params"] and [t["lr"] for t in system["training"]] == [chosen["lr"]] * 2
    report = (out / "report.md").read_text()
    assert "## Sweep" in report and "matched KL" in report and (out / "plots/frontier.png").exists()
    assert "Each objective was tuned on 3 validation prompts apart from the eval prompts: dpo at beta " in report
    assert "(of 4 points; KL " in report and "(of 2 points; KL " in report

    # a re-run trains nothing again; another set of objectives, or a --param the grid sweeps, is refused
    run(RunConfig(objectives=["dpo", "jpo"], benchmark=str(sweep_spec), preset="smoke", seeds=[0, 1],
                  model=str(tiny_model_dir), quantization="none", output_dir=str(out), sweep=True))
    assert len(trained) == 8
    with pytest.raises(ConfigError, match="holds a sweep of dpo, jpo; run --sweep there with exactly those"):
        run(RunConfig(objectives=["dpo", "jpo", "ipo"], benchmark=str(sweep_spec), preset="smoke", seeds=[0, 1],
                      model=str(tiny_model_dir), quantization="none", output_dir=str(out), sweep=True))
    with pytest.raises(ConfigError, match=r"--param dpo.beta: --sweep chooses dpo's beta from the grid \[0.1, 0.5\]"):
        run(RunConfig(objectives=["dpo", "jpo"], benchmark=str(sweep_spec), preset="smoke", seeds=[0, 1],
                      model=str(tiny_model_dir), quantization="none", output_dir=str(out), sweep=True,
                      params={"dpo": {"beta": 0.2}}))

    # a results.json whose sweep lost its choice is refused by the report, naming the field
    from prefbench.reporting.load import ReportError
    from prefbench.reporting.report import render_report

    for point in results["sweep"]["objectives"]["jpo"]["points"]:
        point["chosen"] = False
    (out / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=r"sweep.objectives.jpo.points: expected exactly one chosen point"):
        render_report(out)


def test_a_sweep_refuses_validation_prompts_that_are_eval_prompts(monkeypatch):
    from prefbench.pipeline.sweep import validation_prompts

    spec = load_benchmark("ifeval-lite", "smoke")
    task = spec.make_task()
    evals = task.prompts("eval", 4, 0)
    assert len(validation_prompts(spec, evals)) == spec.sweep.validation_prompts
    # a validation prompt that repeats a training prompt is left out, the next one taking its place
    drawn = task.prompts("validation", spec.sweep.validation_prompts + 1, spec.sweep.seed)
    kept = validation_prompts(spec, evals, {drawn[1].text})
    assert [p.id for p in kept] == [drawn[0].id] + [p.id for p in drawn[2:]]
    leaky = TaskPrompt("some/other/id", evals[2].text, evals[2].meta)   # same text under another id
    monkeypatch.setattr(type(task), "prompts", lambda self, split, n, seed: [leaky] + drawn[:3])
    with pytest.raises(ConfigError, match="1 of the 4 validation prompts are also eval prompts"):
        validation_prompts(spec, evals)


def test_sweep_points_are_the_grid_times_the_learning_rates():
    spec = load_benchmark("ifeval-lite", "quick", {"sweep": {"lr": [1.0e-4, 3.0e-4],
                                                             "grid": {"sft_jpo": {"beta": [0.05, 0.2], "alpha": [1.0]}}}})
    points = spec.sweep.points("sft_jpo", {"beta": 0.1, "alpha": 0.5}, 2e-4)
    assert [(p.params, p.lr, p.name) for p in points] == [
        ({"beta": 0.05, "alpha": 1.0}, 1e-4, "beta0.05-alpha1-lr0.0001"),
        ({"beta": 0.05, "alpha": 1.0}, 3e-4, "beta0.05-alpha1-lr0.0003"),
        ({"beta": 0.2, "alpha": 1.0}, 1e-4, "beta0.2-alpha1-lr0.0001"),
        ({"beta": 0.2, "alpha": 1.0}, 3e-4, "beta0.2-alpha1-lr0.0003")]
    # an objective the grid does not name keeps its parameters; no lr list keeps the spec's rate
    assert [(p.params, p.lr, p.name) for p in SweepSettings().points("ipo", {"tau": 0.1}, 2e-4)] == \
        [({"tau": 0.1}, 2e-4, "lr0.0002")]


@pytest.mark.parametrize("sweep, message", [
    ({"grid": {"dpoo": {"beta": [0.1]}}}, "did you mean 'dpo'"),
    ({"grid": {"dpo": {"bta": [0.1]}}}, "unknown key 'bta'.*did you mean 'beta'"),
    ({"grid": {"dpo": {"beta": [0.1, -1.0]}}}, "parameter 'beta' must be > 0"),
    ({"grid": {"dpo": {"beta": []}}}, "expected a non-empty list of numbers"),
    ({"lr": ["1e-4"]}, "a number in quotes is text; remove the quotes"),
    ({"lr": [1.0e-4, 1.0e-4]}, "values repeat"),
    ({"lr": [1.0e-4, 1.0000001e-4]}, r"values repeat \(to 6 significant digits\)"),   # one folder name for both
    ({"lr": [0.0]}, "must be > 0"),
    ({"validation_prompts": 1}, "validation_prompts must be >= 2"),
    ({"validatoin_prompts": 8}, "did you mean 'validation_prompts'"),
])
def test_a_bad_sweep_section_names_its_key(sweep, message):
    with pytest.raises(BenchmarkError, match=message):
        load_benchmark("ifeval-lite", "quick", {"sweep": sweep})
