"""The judge and stats stages on hand-made generations: outcomes, counts, comparisons, pairwise judges."""

import json

import pytest

from prefbench.evaluation.judging import evaluate
from prefbench.evaluation.systems import generations_path, systems_for
from prefbench.reporting.leaderboard import leaderboard_csv
from prefbench.tasks.base import TaskPrompt
from prefbench.util.files import write_jsonl

PROMPTS = [TaskPrompt(f"p{i}", f"instruction {i}") for i in range(4)] + \
          [TaskPrompt(f"p{i}~typo", f"instructoin {i}", variant="typo", parent=f"p{i}") for i in range(4)]
META = {"benchmark": "hand", "preset": "test", "model": "m", "params": {"dpo": {"beta": 0.1}, "jpo": {"beta": 0.1}},
        "judge": {"name": "len", "kind": "pointwise", "diagnostics": None}}


class LengthJudge:
    """Pointwise: the score is the number of words (a stand-in gold judge)."""
    name = "len"

    def score_many(self, items):
        return [float(len(r.split())) for _, r in items]


def write(run_dir, answers: dict[str, list[str]]):
    """answers[system] = 8 responses in PROMPTS order."""
    for system in systems_for(["dpo", "jpo"], [0]):
        rows = [{"system": system.name, "id": p.id, "parent": p.parent or p.id, "variant": p.variant, "prompt": p.text,
                 "response": r, "words": len(r.split())} for p, r in zip(PROMPTS, answers[system.name])]
        write_jsonl(generations_path(run_dir, system), rows)


ANSWERS = {
    "reference": ["a b", "a b", "a b", "a b", "a b", "a b", "a b", "a b"],
    # originals: win, win, tie (identical text), loss; typo variants: win, loss, tie, loss
    "dpo/seed0": ["a b c", "a b c", "a b", "a", "a b c", "a", "c d", "a"],
    # originals: win x4; variants: win x4
    "jpo/seed0": ["a b c"] * 8,
}


def test_outcomes_counts_and_win_rates_by_hand(tmp_path):
    write(tmp_path, ANSWERS)
    results = evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), PROMPTS, LengthJudge(), META)
    by = {s["name"]: s for s in results["systems"]}
    assert (by["dpo"]["wins"], by["dpo"]["ties"], by["dpo"]["losses"]) == (2, 1, 1)
    assert by["dpo"]["win_rate"]["estimate"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    # 4 wins of 4: Clopper-Pearson's [0.025^(1/4), 1] = [0.398, 1], which includes 50%
    assert by["jpo"]["win_rate"] == {"estimate": 1.0, "low": pytest.approx(0.025 ** 0.25), "high": 1.0,
                                     "method": "Clopper-Pearson"}
    assert by["dpo"]["mean_score"]["estimate"] == pytest.approx((3 + 3 + 2 + 1) / 4)
    assert by["dpo"]["mean_length"] == pytest.approx(2.25)
    assert results["reference"]["mean_score"]["estimate"] == 2.0
    # robustness of dpo: original scores 3,3,2,1; typo scores 3,1,2,1 -> drop = mean(0,2,0,0) = 0.5
    rob = by["dpo"]["robustness"]
    assert rob["drop"]["estimate"] == pytest.approx(0.5)
    assert rob["per_variant"] == {"original": 2.25, "typo": 1.75}
    # flips: p1 win -> loss; p0 win -> win, p2 tie (never flips), p3 loss -> loss: 1 of 4 cells
    assert rob["flip_rate"]["estimate"] == pytest.approx(0.25)
    (c,) = results["comparisons"]
    assert (c["a"], c["b"]) == ("dpo", "jpo") and c["diff"]["estimate"] == pytest.approx(0.625 - 1.0)
    assert c["p_holm"] == pytest.approx(c["p"]) and c["significant"] == (c["p_holm"] < 0.05)
    # per-prompt differences dpo − jpo on the originals: 0, 0, −0.5, −1 (one comparison: alpha 0.05)
    d = [0.0, 0.0, -0.5, -1.0]
    sd = (sum((x + 0.375) ** 2 for x in d) / 3) ** 0.5
    assert c["mde"] == pytest.approx((1.959964 + 0.841621) * sd / 2, rel=1e-5)
    # head to head by score, dpo (3, 3, 2, 1) against jpo (3, 3, 3, 3): tie, tie, loss, loss
    (h,) = results["head_to_head"]
    assert (h["a"], h["b"], h["wins"], h["ties"], h["losses"]) == ("dpo", "jpo", 0, 2, 2)
    assert h["win_rate"]["estimate"] == pytest.approx(0.25) and h["win_rate"]["low"] <= 0.25 <= h["win_rate"]["high"]
    assert h["mde"] == pytest.approx((1.959964 + 0.841621) * (1 / 12) ** 0.5 / 2, rel=1e-5)   # sd of 0, 0, -.5, -.5
    assert h["p_holm"] == pytest.approx(h["p"])
    assert [s["name"] for s in results["systems"]] == ["jpo", "dpo"]  # sorted by win rate
    judgments = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 3 * 8
    same = [j for j in judgments if j["system"] == "dpo/seed0" and j["id"] == "p2"]
    assert same[0]["outcome"] == 0.5
    assert json.loads((tmp_path / "results.json").read_text())["systems"] == results["systems"]
    csv = leaderboard_csv(results).splitlines()
    assert csv[0].startswith("system,win_rate") and csv[1].startswith("jpo,1.0,0.3976,1.0,4,0,0")


class FirstSlotJudge:
    """Pairwise: always says the first response is better (pure position bias)."""
    name = "first-slot"
    template = "t"
    concurrent = False

    def identity(self):
        return {"name": self.name}

    def judge(self, instruction, response_a, response_b):
        from prefbench.judges import Verdict

        return Verdict("A", "[[A]]")


def test_a_position_biased_pairwise_judge_gives_all_ties(tmp_path):
    judge = FirstSlotJudge()
    write(tmp_path, ANSWERS)
    meta = {**META, "judge": {"name": judge.name, "kind": "pairwise", "diagnostics": None}}
    results = evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), PROMPTS, judge, meta)
    # 4 ties: at most 1 - 0.025^(1/4) of prompts could be other than ties, each moving the win rate by 0.5 at most
    pi = 1 - 0.025 ** 0.25
    for s in results["systems"]:
        assert s["win_rate"]["estimate"] == 0.5 and s["losses"] == 0 and s["wins"] == 0
        assert (s["win_rate"]["low"], s["win_rate"]["high"]) == pytest.approx((0.5 - pi / 2, 0.5 + pi / 2))
        assert s["mean_score"] is None
    diag = results["judge"]["diagnostics"]
    assert diag["position_consistency"] == 0.0 and diag["first_slot_win_rate"] == 1.0
    (c,) = results["comparisons"]     # identical outcomes: a difference of one outcome from another spans ±1
    assert (c["diff"]["low"], c["diff"]["high"]) == pytest.approx((-pi, pi)) and c["p"] == 1.0
    assert c["mde"] is None and c["mde_note"] == "no spread in the differences"


def test_win_rate_against_gold_responses_when_the_prompts_carry_them(tmp_path):
    gold = ["a b", "a b c d", "x y z", "a"]
    prompts = [TaskPrompt(p.id, p.text, {"gold": g}) for p, g in zip(PROMPTS[:4], gold)] + PROMPTS[4:]
    write(tmp_path, ANSWERS)
    results = evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), prompts, LengthJudge(), META)
    by = {s["name"]: s for s in results["systems"]}
    # dpo originals "a b c", "a b c", "a b", "a" (3,3,2,1 words) vs gold (2,4,3,1): win, loss, loss, identical tie
    assert (by["dpo"]["vs_gold"]["wins"], by["dpo"]["vs_gold"]["ties"], by["dpo"]["vs_gold"]["losses"]) == (1, 1, 2)
    assert by["dpo"]["vs_gold"]["win_rate"]["estimate"] == pytest.approx(1.5 / 4)
    # jpo: 3 words everywhere vs (2,4,3,1): win, loss, tie on equal scores (different text), win
    assert by["jpo"]["vs_gold"]["win_rate"]["estimate"] == pytest.approx(2.5 / 4)
    # the reference "a b" (2 words): tie with "a b" (identical), loss, loss, win
    assert results["reference"]["vs_gold"]["win_rate"]["estimate"] == pytest.approx(1.5 / 4)
    # the comparison against the reference is unchanged by the extra baseline
    assert by["dpo"]["win_rate"]["estimate"] == pytest.approx(0.625)
    without = evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), PROMPTS, LengthJudge(), META)
    assert all(s["vs_gold"] is None for s in without["systems"])


def test_the_report_shows_the_gold_column_only_when_there_is_gold(tmp_path):
    from prefbench.reporting.report import render_report

    gold = ["a b", "a b c d", "x y z", "a"]
    prompts = [TaskPrompt(p.id, p.text, {"gold": g}) for p, g in zip(PROMPTS[:4], gold)] + PROMPTS[4:]
    write(tmp_path, ANSWERS)
    evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), prompts, LengthJudge(), META)
    md = render_report(tmp_path)[0].read_text()
    assert "win rate vs gold (CI)" in md and "37.5% [" in md and "(1/1/2)" in md
    evaluate(tmp_path, systems_for(["dpo", "jpo"], [0]), PROMPTS, LengthJudge(), META)
    assert "vs gold" not in render_report(tmp_path)[0].read_text()
