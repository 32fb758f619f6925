"""``prefbench run`` end to end on a tiny random model: every stage's artifacts, resume, refusal to mix."""

import os
import json

import pytest
import yaml

from prefbench.engine.config import ConfigError
from prefbench.pipeline.config import RunConfig
from prefbench.pipeline.run import run

SPEC = {
    "name": "tiny-ifeval", "task": "ifeval-lite", "description": "test spec",
    "data": {"train_prompts": 6, "samples_per_prompt": 3, "max_new_tokens": 10, "min_gap": 0.0001,
             "temperature": 1.0, "top_p": 1.0, "keep_truncated": True},   # a random model rarely ends an answer
    "eval": {"prompts": 3, "max_new_tokens": 8, "variants": ["typo", "distractor"], "kl_samples": 1},
    "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "max_length": 512},
    "objective_params": {"dpo": {"beta": 0.1}, "jpo": {"beta": 0.1}},
    "presets": {"smoke": {}},
}


@pytest.fixture()
def spec_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def config(model_dir, spec_file, out, **kw):
    return RunConfig(**{"objectives": ["dpo", "jpo"], "benchmark": str(spec_file), "preset": "smoke",
                        "model": str(model_dir), "quantization": "none", "output_dir": str(out), **kw})


def test_run_writes_every_stage_and_a_rerun_redoes_nothing(tiny_model_dir, spec_file, tmp_path, monkeypatch):
    import prefbench.engine.trainer as train_mod

    out = tmp_path / "run"
    trained_kinds = []   # the kinds of the pairs each training run encodes, in training order (dpo, then jpo)
    encode = train_mod.encode_pairs
    monkeypatch.setattr(train_mod, "encode_pairs",
                        lambda records, *a: trained_kinds.append({r.kind for r in records}) or encode(records, *a))
    results = run(config(tiny_model_dir, spec_file, out))
    monkeypatch.undo()
    for rel in ("config.yaml", "data/train.jsonl", "data/eval.jsonl", "data/samples.jsonl", "dpo/seed0/adapter",
                "jpo/seed0/metrics.jsonl", "generations/reference.jsonl", "generations/dpo/seed0.jsonl",
                "kl/jpo/seed0.jsonl", "judgments.jsonl", "results.json", "leaderboard.csv", "report.md",
                "report.html", "plots/win_rate.png"):
        assert (out / rel).exists(), rel
    judgments = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 3 * 3 * 3  # systems x prompts x (original + 2 variants)
    assert sorted(s["name"] for s in results["systems"]) == ["dpo", "jpo"]
    for s in results["systems"]:
        assert s["wins"] + s["ties"] + s["losses"] == 3
        assert s["kl"]["estimate"] >= 0
    assert [(c["a"], c["b"]) for c in results["comparisons"]] == [("dpo", "jpo")]
    assert results["comparisons"][0]["p_holm"] == pytest.approx(results["comparisons"][0]["p"])  # one comparison
    assert set(results["timings"]) >= {"data", "train", "generate", "judge", "total"}

    # the default arm: dpo (response span) never sees a joint pair, jpo (joint span) trains on both kinds
    data = [json.loads(line) for line in (out / "data/train.jsonl").read_text().splitlines()]
    counts = {k: sum(r["kind"] == k for r in data) for k in ("conditional", "joint")}
    assert counts["joint"] > 0 and trained_kinds == [{"conditional"}, {"conditional", "joint"}]
    assert results["arm"] == "matched"
    training = {s["name"]: s["training"][0] for s in results["systems"]}
    assert (training["dpo"]["pair_kinds"], training["dpo"]["conditional"], training["dpo"]["joint"]) == \
        ("conditional", counts["conditional"], 0)
    assert (training["jpo"]["pair_kinds"], training["jpo"]["joint"]) == ("all", counts["joint"])
    metrics = [json.loads(line) for line in (out / "dpo/seed0/metrics.jsonl").read_text().splitlines()]
    assert training["dpo"]["steps"] == 2 and training["dpo"]["tokens_seen"] == sum(m["tokens"] for m in metrics)
    assert all(0 <= s["truncated"] <= 1 for s in results["systems"] + [results["reference"]])
    report = (out / "report.md").read_text()
    assert "Data arm **matched**" in report and "| dpo | conditional | " in report

    # a second run finds every artifact complete: no training, no generation, the same numbers
    import prefbench.evaluation.generate as gen_stage

    def forbidden(*a, **k):
        raise AssertionError("a completed stage was redone")

    monkeypatch.setattr(train_mod, "load_base_model", forbidden)
    monkeypatch.setattr(gen_stage, "generate", forbidden)
    again = run(config(tiny_model_dir, spec_file, out))
    assert again["systems"] == results["systems"] and again["comparisons"] == results["comparisons"]


def test_a_run_directory_of_another_configuration_is_refused(tiny_model_dir, spec_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump({"benchmark": {"name": "other"}, "preset": "smoke"}))
    with pytest.raises(ConfigError, match="different configuration.*benchmark"):
        run(config(tiny_model_dir, spec_file, out))


def test_bad_names_fail_before_any_work(tiny_model_dir, spec_file, tmp_path):
    from prefbench.registry import ObjectiveError

    with pytest.raises(ObjectiveError, match="did you mean 'jpo'"):
        config(tiny_model_dir, spec_file, tmp_path / "r", objectives=["dpo", "jpoo"])
    with pytest.raises(ObjectiveError, match="beta"):
        run(config(tiny_model_dir, spec_file, tmp_path / "r", params={"dpo": {"beta": -1}}))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("arm, dpo_kinds, jpo_kinds", [("same", "all", "all"), ("conditional", "conditional",
                                                                                    "conditional"),
                                                        ("joint-only", "conditional", "joint")])
def test_each_arm_gives_each_span_its_pair_kinds(tiny_model_dir, spec_file, tmp_path, arm, dpo_kinds, jpo_kinds):
    from prefbench.pipeline.config import resolve, train_config

    cfg = config(tiny_model_dir, spec_file, tmp_path / "run", overrides={"data": {"arm": arm}})
    spec, params = resolve(cfg)
    kinds = [train_config(cfg, spec, params, o, 0, tmp_path).pair_kinds for o in ("dpo", "jpo")]
    assert kinds == [dpo_kinds, jpo_kinds]


def test_an_unknown_arm_is_refused_with_a_suggestion(tiny_model_dir, spec_file, tmp_path):
    from prefbench.benchmark import BenchmarkError

    with pytest.raises(BenchmarkError, match="data.arm: unknown value 'matchd'.*'matched'"):
        run(config(tiny_model_dir, spec_file, tmp_path / "run", overrides={"data": {"arm": "matchd"}}))


def test_a_run_directory_in_use_is_refused_at_once(tiny_model_dir, spec_file, tmp_path, capsys):
    from prefbench.cli import main
    from prefbench.pipeline.run import reevaluate
    from prefbench.util.runs import RunInUseError, run_lock

    out = tmp_path / "run"
    with run_lock(out):              # another `prefbench run` holds the folder
        with pytest.raises(RunInUseError, match=rf"{out} is in use by process \d+ on .*; wait for it"):
            run(config(tiny_model_dir, spec_file, out))
        assert sorted(p.name for p in out.iterdir()) == [".prefbench.lock"]     # nothing written
        assert main(["run", "--benchmark", str(spec_file), "--preset", "smoke", "--objectives", "dpo", "--model",
                     str(tiny_model_dir), "--quantization", "none", "--output-dir", str(out)]) == 2
        assert "is in use by process" in capsys.readouterr().err
        (out / "config.yaml").write_text("{}")
        with pytest.raises(RunInUseError):
            reevaluate(out)
    with run_lock(out):              # released when its holder is done: the folder is free again
        pass


def test_the_lock_names_another_process_holding_it_and_frees_when_it_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    from prefbench.util.runs import RunInUseError, run_lock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom prefbench.util.runs import run_lock\n"
                               f"with run_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=rf"is in use by process {holder.pid} on \S+ \(since \d{{4}}-\d\d-\d\d "
                                                r"\d\d:\d\d:\d\d"):
            with run_lock(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(out):              # a killed holder leaves no stale lock: the system released it
        assert f"process {os.getpid()} " in (out / ".prefbench.lock").read_text()


def test_run_trains_an_unpaired_objective_on_its_arm_split_into_examples(tiny_model_dir, spec_file, tmp_path):
    """``--objectives dpo,kto``: KTO (response span) takes the conditional arm, each pair split into a desirable and
    an undesirable example, and is generated, judged and reported like any other system."""
    out = tmp_path / "run"
    results = run(config(tiny_model_dir, spec_file, out, objectives=["dpo", "kto"]))
    assert sorted(s["name"] for s in results["systems"]) == ["dpo", "kto"]
    dpo, kto = (json.loads((out / name / "seed0" / "data.json").read_text()) for name in ("dpo", "kto"))
    assert kto["pair_kinds"] == dpo["pair_kinds"] == "conditional"
    assert kto["examples"] == 2 * dpo["pairs"] and kto["desirable"] == kto["undesirable"] == dpo["pairs"]
    assert (out / "report.md").exists()
