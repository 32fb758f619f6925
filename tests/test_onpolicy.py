"""On-policy pairing rules (hand-worked) and the build's cache."""

import json
from types import SimpleNamespace

import pytest

from prefbench.data.onpolicy import build_pairs, conditional_pairs, joint_pairs
from prefbench.tasks.base import TaskPrompt

P = [TaskPrompt(f"t/{i}", f"instruction {i}") for i in range(3)]


def test_conditional_pairs_best_against_worst_while_the_gap_holds():
    answers = [("a", 1.0), ("b", 0.9), ("c", 0.5), ("d", 0.1), ("a", 1.0)]  # duplicate "a" counts once
    pairs = conditional_pairs(P[0], answers, min_gap=0.25, max_pairs=5)
    assert [(p.response_chosen, p.response_rejected) for p in pairs] == [("a", "d"), ("b", "c")]
    assert all(p.kind == "conditional" and p.prompt_chosen == p.prompt_rejected == "instruction 0" for p in pairs)
    # the second pair's gap (0.9 - 0.5) fails a 0.5 minimum; max_pairs caps the count
    assert len(conditional_pairs(P[0], answers, min_gap=0.5, max_pairs=5)) == 1
    assert len(conditional_pairs(P[0], answers, min_gap=0.25, max_pairs=1)) == 1
    assert conditional_pairs(P[0], [("x", 0.5), ("y", 0.5)], 0.25, 2) == []
    assert conditional_pairs(P[0], [("x", 1.0), ("  ", 0.0)], 0.25, 2) == []  # blank answers never pair


def test_joint_pairs_cross_instructions_with_the_gap_and_are_seeded():
    answers = [[("good0", 1.0), ("bad0", 0.0)], [("good1", 0.9)], [("bad2", 0.1)]]
    a = joint_pairs(P, answers, min_gap=0.5, per_prompt=2, seed=3)
    assert a == joint_pairs(P, answers, min_gap=0.5, per_prompt=2, seed=3)
    assert a and all(p.kind == "joint" and p.prompt_chosen != p.prompt_rejected for p in a)
    score = {t: s for ans in answers for t, s in ans}
    assert all(score[p.response_chosen] - score[p.response_rejected] >= 0.5 for p in a)
    # prompt 2's only answer scores 0.1: it can never be the chosen side of a 0.5 gap
    assert not any(p.prompt_chosen == "instruction 2" for p in a)
    # prompt 0 with 2 partners: good0 beats bad2 (0.9 gap) and bad0 cannot win; good0 vs good1 is 0.1 apart
    from_0 = [p for p in a if p.prompt_chosen == "instruction 0"]
    assert [(p.response_chosen, p.response_rejected) for p in from_0] == [("good0", "bad2")]


def test_build_pairs_puts_conditional_first():
    data = SimpleNamespace(min_gap=0.5, max_pairs_per_prompt=1, joint_pairs_per_prompt=1, keep_truncated=False)
    answers = [[("good0", 1.0), ("bad0", 0.0)], [("good1", 0.9)], [("bad2", 0.1)]]
    pairs = build_pairs(P, answers, data, seed=0)
    assert [p.kind for p in pairs][0] == "conditional" and pairs[0].response_chosen == "good0"
    assert {p.kind for p in pairs[1:]} == {"joint"}


def test_cut_off_samples_are_left_out_of_pairs_unless_kept_and_then_marked_unfinished():
    # prompt 0's best answer and prompt 1's worst were cut at max_new_tokens
    answers = [[("good0", 1.0, False), ("mid0", 0.6), ("bad0", 0.0)], [("good1", 0.9), ("bad1", 0.1, False)]]
    dropped = build_pairs(P[:2], answers, SimpleNamespace(min_gap=0.5, max_pairs_per_prompt=1,
                                                          joint_pairs_per_prompt=1, keep_truncated=False), seed=0)
    texts = {t for p in dropped for t in (p.response_chosen, p.response_rejected)}
    assert dropped and not texts & {"good0", "bad1"}
    assert all(p.chosen_finished and p.rejected_finished for p in dropped)
    kept = build_pairs(P[:2], answers, SimpleNamespace(min_gap=0.5, max_pairs_per_prompt=1, joint_pairs_per_prompt=1,
                                                       keep_truncated=True), seed=0)
    first = kept[0]   # prompt 0: good0 (cut off) against bad0
    assert (first.response_chosen, first.chosen_finished, first.rejected_finished) == ("good0", False, True)
    flags = {t: f for p in kept for t, f in ((p.response_chosen, p.chosen_finished),
                                              (p.response_rejected, p.rejected_finished))}
    assert all(flags[t] is (t not in ("good0", "bad1")) for t in flags)


def test_build_data_writes_files_and_reuses_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    from prefbench.benchmark import load_benchmark
    from prefbench.data import onpolicy
    from prefbench.formats.preferences import load_preferences

    spec = load_benchmark("ifeval-lite", "smoke")
    spec = type(spec)(**{**spec.__dict__, "data": type(spec.data)(**{**spec.data.__dict__, "train_prompts": 6,
                                                                       "samples_per_prompt": 3, "max_new_tokens": 12,
                                                                       "min_gap": 0.0001,
                                                                       # a random model rarely ends an answer
                                                                       "keep_truncated": True})})
    summary = onpolicy.build_data(spec, str(tiny_model_dir), "none", 0, tmp_path / "a")
    for name in onpolicy.DATA_FILES:
        assert (tmp_path / "a" / name).exists()
    assert summary["samples"] == 18 and summary["train_prompts"] == 6
    samples = [json.loads(line) for line in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert summary["truncated_samples"] == sum(not s["finished"] for s in samples)
    assert all(s["tokens"] == 12 for s in samples if not s["finished"]) and all(1 <= s["tokens"] <= 12 for s in samples)
    records = load_preferences(tmp_path / "a" / "train.jsonl")
    assert len(records) == summary["conditional_pairs"] + summary["joint_pairs"]
    finished = {s["response"].strip(): s["finished"] for s in samples}
    assert all(r.chosen_finished == finished[r.response_chosen] and r.rejected_finished == finished[r.response_rejected]
               for r in records)
    # each pair carries the judge's scores of its two answers (ODPO's offset reads them in a run)
    score = {s["response"].strip(): s["score"] for s in samples}
    assert all((r.score_chosen, r.score_rejected) == (score[r.response_chosen], score[r.response_rejected])
               for r in records)

    def no_sampling(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(onpolicy, "generate", no_sampling)
    again = onpolicy.build_data(spec, str(tiny_model_dir), "none", 0, tmp_path / "b")
    assert again == summary
    assert (tmp_path / "b" / "train.jsonl").read_text() == (tmp_path / "a" / "train.jsonl").read_text()
    with pytest.raises(AssertionError, match="cache"):  # another seed is another cache entry
        onpolicy.build_data(spec, str(tiny_model_dir), "none", 1, tmp_path / "c")
    (entry,) = (tmp_path / "cache" / "onpolicy").iterdir()
    key = json.loads((entry / "key.json").read_text())
    assert (key["seed"], key["task"], key["quantization"]) == (0, "ifeval-lite", "none")
    (entry / "key.json").write_text(json.dumps({**key, "seed": 1}))   # an entry recording another key is not reused
    with pytest.raises(AssertionError, match="cache"):
        onpolicy.build_data(spec, str(tiny_model_dir), "none", 0, tmp_path / "d")
