"""The JPO paper's benchmarks (tldr, hh-helpful) on local files with the release's schema: tasks,
spec checks, the data stage for dataset sources, and evaluation against gold responses."""

import json
from pathlib import Path

import pytest

from prefbench.benchmark import BenchmarkError, load_benchmark, parse_set
from prefbench.benchmark.parse import parse_spec
from prefbench.data.stage import build_dataset_data, build_run_data, describe
from prefbench.evaluation.judging import evaluate
from prefbench.evaluation.systems import generations_path, systems_for
from prefbench.formats.records import DataError
from prefbench.formats.release import TLDR_RELEASE_INSTRUCTION
from prefbench.reporting.leaderboard import leaderboard_csv
from prefbench.tasks import TaskError, get_task, has_scorer, is_data_backed
from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.paper import TLDR_PARAPHRASES
from prefbench.util.files import write_jsonl

PAPER = Path(__file__).parent / "fixtures" / "paper"
RELEASE = str(PAPER / "release")


def test_tldr_eval_prompts_are_the_first_test_posts_with_their_gold_summaries():
    rows = [json.loads(line) for line in (PAPER / "release/data/tldr/test.json").read_text().splitlines()]
    prompts = get_task("tldr", RELEASE).prompts("eval", 2, seed=5)
    assert [p.id for p in prompts] == ["tldr-test-0000", "tldr-test-0001"]
    assert [p.text for p in prompts] == [TLDR_RELEASE_INSTRUCTION.format(post=r["instruction"]) for r in rows[:2]]
    assert [p.meta["gold"] for p in prompts] == [r["gold_response"] for r in rows[:2]]
    assert prompts == get_task("tldr", RELEASE).prompts("eval", 2, seed=0)  # the paper's eval set is fixed
    assert len(get_task("tldr", RELEASE).prompts("eval", 500, 0)) == len(rows)


def test_paper_tasks_have_no_scorer_and_no_onpolicy_prompts():
    task = get_task("hh-helpful", RELEASE)
    assert not has_scorer(task) and has_scorer(get_task("ifeval-lite"))
    assert is_data_backed("tldr") and not is_data_backed("sentiment")
    with pytest.raises(TaskError, match="trains on the release's preference files"):
        task.prompts("train", 4, 0)
    with pytest.raises(TaskError, match="embedded and reads no data"):
        get_task("ifeval-lite", RELEASE)


def test_tldr_variants_keep_the_post_and_reword_only_the_instruction():
    task = get_task("tldr", RELEASE)
    p = task.prompts("eval", 1, 0)[0]
    post = p.text.split("\nPost: ", 1)[1]
    variants = {v.variant: v for v in task.variants(p, seed=0)}
    assert set(variants) == {"paraphrase", "typo", "case", "distractor"}
    para = variants["paraphrase"].text
    assert para in [t.format(post=post) for t in TLDR_PARAPHRASES] and para != p.text
    for v in variants.values():
        assert v.parent == p.id and v.id == f"{p.id}~{v.variant}" and v.meta == p.meta
    assert variants["case"].text.lower() == p.text.lower() != variants["case"].text
    assert variants["distractor"].text.startswith(p.text)
    assert task.variants(p, seed=0) == task.variants(p, seed=0)


def test_hh_variants_perturb_only_the_last_user_turn_of_a_conversation():
    task = get_task("hh-helpful", RELEASE)
    chat = [{"role": "user", "content": "Hi there, I need some cooking help."},
            {"role": "assistant", "content": "Sure, what are you making?"},
            {"role": "user", "content": "How long should I boil an egg for breakfast?"}]
    p = TaskPrompt("hh-test-0000", chat, {"gold": "About nine minutes."})
    variants = task.variants(p, seed=1)
    assert [v.variant for v in variants] == ["typo", "case", "distractor"]  # no instruction line to paraphrase
    for v in variants:
        assert v.text[:2] == chat[:2] and v.text[2]["role"] == "user"
        assert v.text[2]["content"] != chat[2]["content"]
    assert chat[2]["content"] == "How long should I boil an egg for breakfast?"  # the original is untouched


# -- specs -----------------------------------------------------------------------------------------

def spec_doc(**sections):
    doc = {"name": "t", "task": "tldr", "data": {"source": "release"}, "eval": {"baseline": "gold", "variants": []}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return doc


@pytest.mark.parametrize("sections, message", [
    ({"data": {"source": "onpolicy"}}, "has no scorer to rank on-policy samples; use release or summarize_from_feedback"),
    ({"task": "ifeval-lite", "eval": {"baseline": "reference"}}, "the JPO release has no data for task 'ifeval-lite'"),
    ({"data": {"source": "hh-rlhf", "kinds": "conditional"}}, "hh-rlhf holds hh-helpful data, not tldr"),
    ({"data": {"source": "summarize_from_feedback"}}, "holds conditional comparisons only"),
    ({"data": {"source": "releas"}}, "did you mean 'release'"),
    ({"data": {"kinds": "joints"}}, "did you mean 'joint'"),
    ({"data": {"max_pairs": -1}}, "max_pairs must be >= 0"),
    ({"eval": {"baseline": "golden"}}, "did you mean 'gold'"),
    ({"eval": {"judge_prompts": "summary"}}, "did you mean 'summarization'"),
    ({"task": "hh-helpful", "eval": {"variants": ["paraphrase"]}}, "task 'hh-helpful' has no 'paraphrase' variant"),
    ({"sft": {"max_steps": 0}}, "max_steps must be >= 1"),
    ({"sft": {"objective": "dpo"}}, "'objective' cannot be set here"),
    ({"model": 7}, "model: expected a hub id or a path"),
])
def test_spec_checks_the_data_source_baseline_and_variants_against_the_task(sections, message):
    with pytest.raises(BenchmarkError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec_doc(**sections), "t.yaml")


def test_gold_baseline_and_sft_need_a_data_backed_task():
    doc = {"name": "t", "task": "ifeval-lite", "eval": {"baseline": "gold"}}
    with pytest.raises(BenchmarkError, match="task 'ifeval-lite' has no gold responses"):
        parse_spec(doc, "t.yaml")
    with pytest.raises(BenchmarkError, match="task 'ifeval-lite' has no SFT data"):
        parse_spec({"name": "t", "task": "ifeval-lite", "sft": {"max_steps": 2}}, "t.yaml")


def test_set_overrides_apply_over_the_preset_and_are_checked():
    assert parse_set(["data.location=/x", "train.max_steps=5", "eval.variants=[typo]"]) == \
        {"data": {"location": "/x"}, "train": {"max_steps": 5}, "eval": {"variants": ["typo"]}}
    spec = load_benchmark("tldr", "smoke", parse_set(["data.location=" + RELEASE, "train.max_steps=3"]))
    assert spec.data.location == RELEASE and spec.release_location == RELEASE and spec.train["max_steps"] == 3
    assert spec.model == "embedded:smollm2-135m-instruct" and spec.sft["max_steps"] == 2
    with pytest.raises(BenchmarkError, match="section.key=value"):
        parse_set(["max_steps"])
    with pytest.raises(BenchmarkError, match=r"with --set data.locaton=/x: data: unknown key 'locaton' "
                                             r"\(did you mean 'location'\?\)"):
        load_benchmark("tldr", "smoke", parse_set(["data.locaton=/x"]))


def test_shipped_paper_presets_carry_the_papers_training_settings():
    paper = load_benchmark("tldr", "paper")
    assert paper.model == "mistralai/Mistral-7B-v0.1" and paper.data.kinds == "both" and paper.data.max_pairs == 0
    t = paper.train
    assert (t["lora_r"], t["lora_alpha"], t["lora_dropout"], t["lr"], t["warmup_steps"], t["max_steps"]) == \
        (8, 16, 0.05, 5e-5, 100, 1000)
    assert (t["batch_size"], t["grad_accum"]) == (32, 4)  # 8 pairs x 4 accumulation steps
    assert paper.eval.prompts == 500 and paper.eval.baseline == "gold" and not paper.eval.do_sample
    assert paper.objective_params["dpo"] == {"beta": 0.1} == paper.objective_params["jpo"]
    assert load_benchmark("hh-helpful", "paper").eval.judge_prompts == "dialogue"
    assert load_benchmark("tldr", "small") == load_benchmark("tldr", "quick").__class__(
        **{**load_benchmark("tldr", "quick").__dict__, "preset": "small"})


# -- the data stage for dataset sources ----------------------------------------------------------------

def test_release_source_writes_conditional_and_joint_pairs_without_ties(tmp_path):
    spec = load_benchmark("tldr", "smoke", parse_set([f"data.location={RELEASE}"]))
    summary = build_dataset_data(spec, 0, tmp_path)
    # fixture: 3 conditional rows (one a tie), 2 joint rows (one with feedback 2, a tie)
    assert (summary["conditional_pairs"], summary["joint_pairs"], summary["available_pairs"]) == (2, 1, 3)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["conditional", "conditional", "joint"]
    assert all(r["prompt_chosen"].startswith("You are given a social media post") for r in rows)
    assert describe(summary) == (f"2 conditional + 1 joint pairs from release ({RELEASE}; 3 available, ties dropped)")
    assert build_run_data(spec, "unused", "4bit", 0, tmp_path) == summary  # a complete build is reused


@pytest.mark.parametrize("kinds, expected", [("conditional", (2, 0)), ("joint", (0, 1))])
def test_one_kind_of_pairs_is_a_setting(tmp_path, kinds, expected):
    spec = load_benchmark("tldr", "smoke", parse_set([f"data.location={RELEASE}", f"data.kinds={kinds}"]))
    s = build_dataset_data(spec, 0, tmp_path)
    assert (s["conditional_pairs"], s["joint_pairs"]) == expected


def test_max_pairs_keeps_a_seeded_sample(tmp_path):
    overrides = parse_set([f"data.location={RELEASE}", "data.max_pairs=2"])
    spec = load_benchmark("tldr", "smoke", overrides)
    picks = [(tmp_path / f"s{seed}", build_dataset_data(spec, seed, tmp_path / f"s{seed}")) for seed in (0, 0, 1, 2, 3)]
    texts = [(d / "train.jsonl").read_text() for d, _ in picks]
    assert all(s["conditional_pairs"] + s["joint_pairs"] == 2 for _, s in picks)
    assert texts[0] == texts[1] and len(set(texts)) > 1


def test_human_comparison_sources(tmp_path):
    tldr = load_benchmark("tldr", "smoke", parse_set(["data.source=summarize_from_feedback", "data.kinds=conditional",
                                                      f"data.location={PAPER / 'summarize_from_feedback' / 'comparisons.jsonl'}"]))
    s = build_dataset_data(tldr, 0, tmp_path / "tldr")
    assert s["conditional_pairs"] > 0 and s["joint_pairs"] == 0
    hh = load_benchmark("hh-helpful", "smoke", parse_set(["data.source=hh-rlhf", "data.kinds=conditional",
                                                          f"data.location={PAPER / 'hh-rlhf'}"]))
    s = build_dataset_data(hh, 0, tmp_path / "hh")
    assert s["conditional_pairs"] > 0
    first = json.loads((tmp_path / "hh" / "train.jsonl").read_text().splitlines()[0])
    assert isinstance(first["prompt_chosen"], list) and first["prompt_chosen"][0]["role"] == "user"


def test_a_missing_local_copy_names_the_file(tmp_path):
    spec = load_benchmark("tldr", "smoke", parse_set([f"data.location={tmp_path}"]))
    with pytest.raises(DataError, match="train_conditional_pref.jsonl: file not found"):
        build_dataset_data(spec, 0, tmp_path / "out")


# -- evaluation against gold responses --------------------------------------------------------------

PROMPTS = [TaskPrompt(f"p{i}", f"post {i}", {"gold": g}) for i, g in enumerate(["a b", "a b c d", "x y z", "a"])]
PROMPTS += [TaskPrompt(f"p{i}~typo", f"psot {i}", dict(p.meta), "typo", f"p{i}") for i, p in enumerate(PROMPTS)]
ANSWERS = {"reference": ["a b", "a b", "a b", "a b"] * 2,
           "dpo/seed0": ["a b c", "a b c", "a b", "a"] * 2,
           "jpo/seed0": ["a b c"] * 8}


class LongerWins:
    """Pairwise: the longer response wins, equal lengths tie; order-independent, so never inconsistent."""
    name = "longer"
    template = "t"
    concurrent = False

    def identity(self):
        return {"name": self.name}

    def judge(self, instruction, response_a, response_b):
        from prefbench.judges import Verdict

        a, b = len(response_a.split()), len(response_b.split())
        return Verdict("A" if a > b else "B" if b > a else "tie", "")


def test_gold_baseline_judges_every_system_and_the_reference_against_the_gold(tmp_path):
    for system in systems_for(["dpo", "jpo"], [0]):
        write_jsonl(generations_path(tmp_path, system), [
            {"system": system.name, "id": p.id, "parent": p.parent or p.id, "variant": p.variant, "prompt": p.text,
             "response": r, "words": len(r.split())} for p, r in zip(PROMPTS, ANSWERS[system.name])])
    meta = {"benchmark": "tldr", "preset": "t", "model": "m", "params": {},
            "judge": {"name": "longer", "kind": "pairwise", "diagnostics": None}}
    results = evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), PROMPTS, LongerWins(), meta, baseline="gold")
    assert results["baseline"] == "gold"
    by = {s["name"]: s for s in results["systems"]}
    # dpo (3,3,2,1 words) vs gold (2,4,3,1 words): win, loss, loss, identical "a" = tie
    assert (by["dpo"]["wins"], by["dpo"]["ties"], by["dpo"]["losses"]) == (1, 1, 2)
    assert by["dpo"]["win_rate"]["estimate"] == pytest.approx(1.5 / 4)
    ref = results["reference"]   # "a b" (2 words): identical tie, loss, loss, win
    assert (ref["wins"], ref["ties"], ref["losses"]) == (1, 1, 2) and ref["vs_gold"] is None
    # variants are judged against their original's gold: jpo "a b c" wins on p0 and p3 either way
    assert by["jpo"]["robustness"]["per_variant"] == {"original": 0.625, "typo": 0.625}
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 8 and {r["baseline"] for r in rows} == {"gold"}
    assert [r["baseline_words"] for r in rows[:4]] == [2, 4, 3, 1]
    (c,) = results["comparisons"]
    assert c["diff"]["estimate"] == pytest.approx(0.375 - 0.625)
    csv = leaderboard_csv(results).splitlines()
    assert csv[-1].startswith("reference,0.375,") and ",1,1,2," in csv[-1]

    from prefbench.reporting.leaderboard import leaderboard_text
    from prefbench.reporting.report import render_report

    assert "win rate vs gold (95% CI)" in leaderboard_text(results).splitlines()[0]
    assert leaderboard_text(results).splitlines()[3].split()[:2] == ["reference", "37.5%"]
    md = render_report(tmp_path)[0].read_text()
    assert "win rate vs gold (CI)" in md and "## Win rate vs gold" in md and "the gold responses" in md
    assert "| reference model | base model | — | 37.5% [" in md


def test_prefbench_eval_rejudges_a_gold_baseline_run_with_a_local_judge(tmp_path, tiny_model_dir, capsys):
    import yaml

    from prefbench.cli import main

    spec = load_benchmark("tldr", "smoke", parse_set([f"data.location={RELEASE}"]))
    config = {"benchmark": {k: v for k, v in spec.to_dict().items() if k != "source"}, "preset": "smoke",
              "model": "m", "quantization": "4bit", "judge": "gold", "objectives": ["dpo"], "seeds": [0],
              "objective_params": {"dpo": {"beta": 0.1}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    prompts = get_task("tldr", RELEASE).prompts("eval", 2, 0)
    write_jsonl(tmp_path / "data" / "eval.jsonl", [p.to_json() for p in prompts])
    for system in systems_for(["dpo"], [0]):
        write_jsonl(generations_path(tmp_path, system), [
            {"system": system.name, "id": p.id, "parent": p.id, "variant": "original", "prompt": p.text,
             "response": f"{system.name} summary {i}", "words": 3} for i, p in enumerate(prompts)])
    assert main(["eval", str(tmp_path)]) == 2   # the run's own judge, gold, cannot judge tldr
    assert "has no built-in scorer" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--judge", f"local:{tiny_model_dir}"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["baseline"] == "gold" and results["judge"]["name"] == f"local:{tiny_model_dir}"
    assert results["reference"]["wins"] + results["reference"]["ties"] + results["reference"]["losses"] == 2
    assert "win rate vs gold" in capsys.readouterr().out
    # nothing derived from the old results is left stale: report, plots and leaderboard are the new judge's
    assert f"local:{tiny_model_dir}" in (tmp_path / "report.md").read_text()
    assert f"local:{tiny_model_dir}" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "plots" / "win_rate.png").exists()
    reference_row = next(r for r in (tmp_path / "leaderboard.csv").read_text().splitlines() if r.startswith("reference"))
    rate = results["reference"]["win_rate"]
    assert reference_row.split(",")[1:7] == ["0.5", f"{rate['low']:.4f}", f"{rate['high']:.4f}", "0", "2", "0"]
