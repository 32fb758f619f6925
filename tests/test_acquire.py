"""Preference acquisition (the JPO protocol) with fake deterministic pairwise judges, and the judge
prompt templates it renders."""

import json
from itertools import combinations

import pytest

import prefbench.data.acquire as acquire_module
from prefbench.cli import main
from prefbench.data.acquire import acquire, run_acquire, sample_pairs
from prefbench.formats.preferences import load_preferences
from prefbench.formats.records import PreferenceRecord, SFTExample
from prefbench.judges import DEFAULT_TEMPLATE, JudgeError, JudgmentCache, Verdict, make_judge, parse_verdict
from prefbench.judges.templates import JUDGE_PROMPTS, get_judge_prompts, prompt_text
from prefbench.judges.verdicts import check_template, render_prompt

GENERAL = JUDGE_PROMPTS["general"]
EXAMPLES = [SFTExample("Q1", "a"), SFTExample("Q2", "bbb"), SFTExample("Q3", "cc"), SFTExample("Q1", "dddd"),
            SFTExample("Q1", "a")]  # the repeat counts once


class FakeJudge:
    """Prefers the longer response (read from a joint slot after its response heading); records calls."""

    concurrent = False

    def __init__(self, template, mode="longer"):
        self.template = template
        self.mode = mode
        self.name = f"fake:{mode}"
        self.calls = []

    def identity(self):
        return {"kind": "fake", "mode": self.mode}

    def judge(self, instruction, response_a, response_b):
        self.calls.append((instruction, response_a, response_b))
        if self.mode == "always-A":
            return Verdict("A", "[[A]]")
        a, b = (len(r.split("[Response]\n")[-1]) for r in (response_a, response_b))
        return Verdict("A" if a > b else "B" if b > a else "tie", f"{a} vs {b}")


def pairs_of(records):
    return {(r.prompt_chosen, r.response_chosen, r.prompt_rejected, r.response_rejected) for r in records}


def test_joint_acquisition_with_a_longer_response_judge():
    judge = FakeJudge(GENERAL.joint)
    records, summary = acquire(EXAMPLES, judge, "joint", pairs=100)
    # 4 distinct examples: 6 pairs, minus ("Q1","a")-("Q1","dddd") which shares its instruction.
    assert pairs_of(records) == {("Q2", "bbb", "Q1", "a"), ("Q3", "cc", "Q1", "a"), ("Q1", "dddd", "Q2", "bbb"),
                                 ("Q1", "dddd", "Q3", "cc"), ("Q2", "bbb", "Q3", "cc")}
    assert {r.kind for r in records} == {"joint"}
    counts = (summary.requested, summary.available, summary.judged, summary.ties_dropped, summary.kept)
    assert counts == (100, 5, 5, 0, 5)
    assert "only 5 eligible pairs" in summary.describe()
    # both orders of every pair, each slot holding its own instruction and response
    assert len(judge.calls) == 10
    shown = {(a, b) for _, a, b in judge.calls}
    assert all((b, a) in shown for a, b in shown)
    assert {instruction for instruction, _, _ in judge.calls} == {GENERAL.task}
    assert GENERAL.joint_slot("Q2", "bbb") == "[Instruction]\nQ2\n\n[Response]\nbbb"
    assert any(GENERAL.joint_slot("Q2", "bbb") in (a, b) for _, a, b in judge.calls)


def test_conditional_acquisition_pairs_responses_of_one_instruction():
    judge = FakeJudge(GENERAL.conditional)
    records, summary = acquire(EXAMPLES, judge, "conditional", pairs=10)
    assert records == [PreferenceRecord("Q1", "dddd", "Q1", "a", "conditional")]
    assert sorted(judge.calls) == [("Q1", "a", "dddd"), ("Q1", "dddd", "a")]
    assert (summary.available, summary.judged, summary.kept) == (1, 1, 1)


def test_position_biased_judge_gives_only_ties_and_the_summary_says_so():
    judge = FakeJudge(GENERAL.joint, mode="always-A")
    records, summary = acquire(EXAMPLES, judge, "joint", pairs=5)
    assert records == []
    assert (summary.judged, summary.ties_dropped, summary.kept) == (5, 5, 0)
    assert summary.diagnostics.position_consistency == 0.0 and summary.diagnostics.first_slot_win_rate == 1.0
    assert "nothing kept: every pair was a tie" in summary.describe()


def test_second_run_reads_every_verdict_from_the_cache(tmp_path):
    cache = JudgmentCache(tmp_path / "judgments.jsonl")
    first_records, first = acquire(EXAMPLES, FakeJudge(GENERAL.joint), "joint", pairs=3, seed=7, cache=cache)
    again = FakeJudge(GENERAL.joint)
    records, second = acquire(EXAMPLES, again, "joint", pairs=3, seed=7, cache=JudgmentCache(cache.path))
    assert (first.diagnostics.calls, first.diagnostics.cached) == (6, 0)
    assert (second.diagnostics.calls, second.diagnostics.cached) == (0, 6)
    assert again.calls == [] and records == first_records


def test_the_judge_must_render_the_kinds_template():
    with pytest.raises(ValueError, match="different template"):
        acquire(EXAMPLES, FakeJudge(DEFAULT_TEMPLATE), "joint", pairs=1)


@pytest.mark.parametrize("n", [5, 30, 45, 60])
def test_sampled_joint_pairs_are_distinct_cross_instruction_and_seeded(n):
    examples = [SFTExample(f"Q{i % 10}", f"r{i}") for i in range(10)]  # 10 instructions, 45 pairs
    pairs, available = sample_pairs(examples, "joint", n, seed=3)
    assert available == 45 and len(pairs) == min(n, 45)
    assert len({frozenset(p) for p in pairs}) == len(pairs)
    assert all(examples[a].prompt != examples[b].prompt for a, b in pairs)
    assert sample_pairs(examples, "joint", n, seed=3)[0] == pairs


def test_joint_pairs_exclude_same_instruction_in_rejection_sampling():
    # 20 examples over 4 instructions: 190 pairs, 40 within an instruction, 150 joint; 10 wanted.
    examples = [SFTExample(f"Q{i % 4}", f"r{i}") for i in range(20)]
    pairs, available = sample_pairs(examples, "joint", 10, seed=0)
    assert available == 150 and len(pairs) == 10
    assert all(examples[a].prompt != examples[b].prompt for a, b in pairs)


def test_templates_render_and_ask_for_a_parseable_verdict():
    for prompts in JUDGE_PROMPTS.values():
        for kind in ("conditional", "joint"):
            template = check_template(prompts.template(kind))
            text = render_prompt(template, "INSTR", "SLOT-A", "SLOT-B")
            assert text.index("SLOT-A") < text.index("SLOT-B") and "INSTR" in text
            assert '"[[A]]"' in text and '"[[B]]"' in text and '"[[tie]]"' in text
    assert parse_verdict("The summary in Pair B is more accurate.\n[[B]]") == "B"
    joint = get_judge_prompts("summarization")
    text = render_prompt(joint.joint, joint.task, joint.joint_slot("POST ONE", "S1"),
                         joint.joint_slot("POST TWO", "S2"))
    assert "[Post]\nPOST ONE\n\n[Summary]\nS1" in text and "[Post]\nPOST TWO\n\n[Summary]\nS2" in text
    with pytest.raises(JudgeError, match="did you mean 'dialogue'"):
        get_judge_prompts("dialog")


def test_chat_prompts_are_shown_to_the_judge_as_a_transcript():
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "?"}]
    assert prompt_text(chat) == "User: hi\n\nAssistant: hello\n\nUser: ?"
    assert prompt_text("plain") == "plain"


@pytest.mark.parametrize("mode, status, kept", [("longer", 0, 5), ("always-A", 1, 0)])
def test_cli_entry_point_writes_records_and_summary(tmp_path, monkeypatch, capsys, mode, status, kept):
    built = {}

    def fake_make_judge(spec, template=None):
        built["spec"] = spec
        return FakeJudge(template, mode)

    monkeypatch.setattr(acquire_module, "make_judge", fake_make_judge)
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"instruction": e.prompt, "response": e.response}) + "\n" for e in EXAMPLES))
    out = tmp_path / "out.jsonl"
    assert main(["acquire", "--input", str(sft), "--judge", "openai:m@http://x", "--kind", "joint", "--pairs", "5",
                 "--output", str(out), "--prompts", "general"]) == status
    assert built["spec"] == "openai:m@http://x"
    summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert (summary["judged"], summary["ties_dropped"], summary["kept"]) == (5, 5 - kept, kept)
    assert out.read_text().count("\n") == kept
    if kept:
        assert {r.response_chosen for r in load_preferences(out)} == {"bbb", "cc", "dddd"}
    assert (tmp_path / "out.judgments.jsonl").read_text().count("\n") == 10
    assert f"{kept} kept" in capsys.readouterr().out


def test_run_acquire_refuses_a_pointwise_judge(tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"instruction": "Q", "response": "a"}) + "\n")
    with pytest.raises(JudgeError, match="pointwise judge"):
        run_acquire(sft, "reward-model:x", "joint", 1, tmp_path / "o.jsonl")


def test_all_pairs_enumeration_matches_combinations():
    examples = [SFTExample(p, r) for p, r in [("A", "1"), ("B", "2"), ("C", "3"), ("A", "4")]]
    pairs, _ = sample_pairs(examples, "joint", 100)
    expected = {frozenset((a, b)) for a, b in combinations(range(4), 2) if examples[a].prompt != examples[b].prompt}
    assert {frozenset(p) for p in pairs} == expected


def test_make_judge_passes_a_template_to_pairwise_judges_only():
    assert make_judge("openai:m@http://localhost:1/v1", template=GENERAL.joint).template == GENERAL.joint
    assert make_judge("openai:m@http://localhost:1/v1").template == DEFAULT_TEMPLATE
    with pytest.raises(JudgeError, match="pointwise judge"):
        make_judge("gold", template=GENERAL.joint)
