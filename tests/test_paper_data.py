"""The JPO paper's loaders on small local files in the release/hub schemas (tests/fixtures/paper)."""

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from prefbench.formats.hub import locate
from prefbench.formats.human import load_hh_rlhf, load_tldr_comparisons, parse_transcript
from prefbench.formats.records import DataError, PreferenceRecord, SFTExample
from prefbench.formats.release import (
    RELEASE_FILES,
    TLDR_RELEASE_INSTRUCTION,
    load_eval_examples,
    load_release_preferences,
    load_release_sft,
    read_release_preferences,
    release_file,
    release_names,
)
from prefbench.formats.sft import read_sft

FIXTURES = Path(__file__).parent / "fixtures" / "paper"
RELEASE = FIXTURES / "release"
COMPARISONS = FIXTURES / "summarize_from_feedback" / "comparisons.jsonl"
HH = FIXTURES / "hh-rlhf"

P1 = "My roommate keeps eating my food from the fridge. I have asked twice and it still happens. Should I buy a lock?"
P2 = "I got a job offer in another city but my partner wants to stay here. We have been together five years."
P3 = "Our dog barks every time the doorbell rings, even at night. Training treats have not helped."


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def raises_at(path, row, field):
    """A DataError whose message starts with the file, the row and the field."""
    return pytest.raises(DataError, match="^" + re.escape(f"{path}: row {row}: field '{field}': "))


def tldr(post):
    return TLDR_RELEASE_INSTRUCTION.format(post=post)


# --- the release ---------------------------------------------------------------------------------

def test_every_release_file_in_the_table_exists_for_tldr_fixture():
    for (task, split, kind), name in RELEASE_FILES.items():
        if task == "tldr":
            assert locate(RELEASE, *release_names(name)).is_file(), name


# The DOVE repository's own names (github.com/Hritikbansal/dove, data/): JSON Lines under .json for TL;DR's
# preference and test files, .jsonl for the rest.
AUTHORS_LAYOUT = ["data/tldr/train_sft.jsonl", "data/tldr/val_sft.jsonl", "data/tldr/test.json",
                  "data/tldr/train_conditional_pref.json", "data/tldr/train_joint_pref.json",
                  "data/tldr/val_conditional_pref.json", "data/tldr/val_joint_pref.json",
                  "data/anthropic_helpful/train_sft.jsonl", "data/anthropic_helpful/test.jsonl",
                  "data/anthropic_helpful/train_conditional_pref.jsonl", "data/anthropic_helpful/train_joint_pref.jsonl"]


def test_a_copy_with_the_authors_exact_file_names_loads(tmp_path):
    for name in AUTHORS_LAYOUT:
        stem = name.rsplit(".", 1)[0]
        (source,) = [f for f in (RELEASE / f"{stem}.jsonl", RELEASE / f"{stem}.json") if f.is_file()]
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tmp_path / name)
    for kind in ("conditional", "joint"):
        for split in ("train", "val"):
            assert load_release_preferences("tldr", kind, split, tmp_path) == \
                load_release_preferences("tldr", kind, split, RELEASE)
    assert load_release_preferences("hh-helpful", "both", "train", tmp_path) == \
        load_release_preferences("hh-helpful", "both", "train", RELEASE)
    assert load_eval_examples("tldr", tmp_path) == load_eval_examples("tldr", RELEASE)
    assert load_release_sft("tldr", "val", tmp_path) == load_release_sft("tldr", "val", RELEASE)


def test_a_missing_release_file_names_both_names_tried(tmp_path):
    with pytest.raises(DataError, match=re.escape("tried data/tldr/train_joint_pref.jsonl or "
                                                  "data/tldr/train_joint_pref.json")):
        load_release_preferences("tldr", "joint", source=tmp_path)


def test_release_preferences_by_kind_with_ties_dropped():
    cond = load_release_preferences("tldr", "conditional", source=RELEASE)
    joint = load_release_preferences("tldr", "joint", source=RELEASE)
    both = load_release_preferences("tldr", "both", source=RELEASE)
    # 3 conditional rows, one marked tie=true; 2 joint rows, one with feedback=2 (DOVE's "equal").
    assert (len(cond), len(joint), len(both)) == (2, 1, 3)
    assert {r.kind for r in cond} == {"conditional"} and {r.kind for r in joint} == {"joint"}
    assert both == cond + joint
    assert cond[0] == PreferenceRecord(tldr(P1), "Roommate keeps eating my food; should I lock the fridge?",
                                       tldr(P1), "Fridge.", "conditional")
    assert joint[0] == PreferenceRecord(tldr(P1), "Roommate eats my food; lock the fridge?", tldr(P2), "Job.", "joint")


def test_release_tldr_instruction_is_the_papers_format():
    assert tldr("POST") == "You are given a social media post, summarize it accordingly.\nPost: POST"


def test_hh_release_keeps_plain_instructions():
    both = load_release_preferences("hh-helpful", "both", source=RELEASE)
    assert [r.kind for r in both] == ["conditional", "joint", "joint"]
    assert both[1] == PreferenceRecord("What is a good first telescope?", "A small Dobsonian.",
                                       "How long should I boil an egg?", "I don't know.", "joint")


def test_release_selection_errors_name_the_alternatives():
    with pytest.raises(ValueError, match="did you mean 'both'"):
        load_release_preferences("tldr", "bot", source=RELEASE)
    with pytest.raises(ValueError, match="did you mean 'hh-helpful'"):
        release_file("hh-helpfull", "train", "sft")
    with pytest.raises(ValueError, match="no joint file for split 'val'.*train/joint"):
        load_release_preferences("hh-helpful", "joint", split="val", source=RELEASE)
    assert len(load_release_preferences("tldr", "conditional", split="val", source=RELEASE)) == 1


def test_missing_local_file_and_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="train_joint_pref.jsonl.*file not found"):
        load_release_preferences("tldr", "joint", source=tmp_path)
    with pytest.raises(DataError, match="found no such folder"):
        load_release_preferences("tldr", source=str(tmp_path / "absent"))


@pytest.mark.parametrize("row, field, problem", [
    ({"i_chosen": "I", "r_chosen": "a", "i_reject": "I"}, "r_reject", "is missing"),
    ({"i_chosen": "I", "r_chosen": " ", "i_reject": "I", "r_reject": "b"}, "r_chosen", "is empty"),
    ({"i_chosen": "I", "r_chosen": "a", "i_reject": "I", "r_reject": "b", "tie": "yes"}, "tie", "true or false"),
    ({"i_chosen": "I", "r_chosen": "a", "i_reject": "J", "r_reject": "b"}, "i_reject",
     "conditional file holds a joint"),
])
def test_release_row_errors_name_file_row_and_field(tmp_path, row, field, problem):
    good = {"i_chosen": "I", "r_chosen": "a", "i_reject": "I", "r_reject": "b"}
    path = write_jsonl(tmp_path / "p.jsonl", [good, row])
    with raises_at(path, 2, field) as err:
        read_release_preferences(path, "conditional")
    assert problem in str(err.value)


def test_release_sft_and_eval_examples():
    assert load_release_sft("hh-helpful", source=RELEASE)[1] == SFTExample(
        "What is a good first telescope?", "A small Dobsonian is easy to use and shows a lot for its price.")
    assert load_release_sft("tldr", "val", source=RELEASE) == [
        SFTExample(tldr(P3), "Dog barks at the doorbell day and night; treats failed. Ideas?")]
    # test.json is JSON Lines with "gold_response"; the first n items, in file order.
    first_two = load_eval_examples("tldr", RELEASE, n=2)
    assert first_two == [SFTExample(tldr(P2), "Partner won't move for my new job offer."),
                         SFTExample(tldr(P3), "Dog barks at the doorbell, treats don't help.")]
    assert len(load_eval_examples("tldr", RELEASE, n=None)) == 3
    assert load_eval_examples("hh-helpful", RELEASE, n=500)[0] == SFTExample(
        "How long should I boil an egg?", "About 9 to 12 minutes for a hard-boiled egg.")


def test_sft_accepts_the_documented_field_pairs_and_chat_prompts(tmp_path):
    user = [{"role": "user", "content": "Q4"}]
    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"instruction": "Q1", "response": "a"}, {"prompt": "Q2", "completion": "b"},
        {"prompt": "Q3", "response": "c"}, {"prompt": user, "completion": "d"}])
    assert read_sft(path) == [SFTExample("Q1", "a"), SFTExample("Q2", "b"), SFTExample("Q3", "c"),
                              SFTExample(user, "d")]


@pytest.mark.parametrize("row, field", [
    ({"instruction": "Q"}, "response"),
    ({"prompt": "Q"}, "completion"),
    ({"question": "Q", "answer": "a"}, "instruction"),
    ({"instruction": "", "response": "a"}, "instruction"),
])
def test_sft_row_errors(tmp_path, row, field):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "Q", "response": "a"}, row])
    with raises_at(path, 2, field):
        read_sft(path)


def test_rows_from_a_json_list_file(tmp_path):
    path = tmp_path / "sft.json"
    path.write_text(json.dumps([{"instruction": "Q", "response": "a"}, {"instruction": "R", "response": "b"}]))
    assert read_sft(path) == [SFTExample("Q", "a"), SFTExample("R", "b")]


# --- summarize_from_feedback ---------------------------------------------------------------------

def test_tldr_comparisons_prompt_choice_and_news_rows_skipped():
    records = load_tldr_comparisons(COMPARISONS)
    assert len(records) == 2  # the CNN/DM row (post null, article set) is not TL;DR
    assert records[0] == PreferenceRecord(
        "SUBREDDIT: r/cats\nTITLE: New cat hides all day\nPOST: I adopted a cat last week and she hides under the "
        "bed all day. She eats at night. Is this normal?\nTL;DR:",
        "New cat hides under the bed all day, eats at night. Normal?",
        records[0].prompt_chosen, "I have a cat.", "conditional")
    # choice=1 makes the second summary the chosen one
    assert (records[1].response_chosen, records[1].response_rejected) == (
        "Dog barks at every doorbell, even at night; treats failed.", "Dog.")
    assert records[1].prompt_chosen.startswith("SUBREDDIT: r/dogs\nTITLE: Doorbell barking\nPOST: Our dog")


def _comparison(**changes):
    row = {"info": {"post": "P", "title": "T", "subreddit": "s"},
           "summaries": [{"text": " a"}, {"text": " b"}], "choice": 0}
    row.update(changes)
    return row


@pytest.mark.parametrize("row, field", [
    (_comparison(choice=2), "choice"),
    (_comparison(choice="0"), "choice"),
    (_comparison(choice=True), "choice"),
    (_comparison(summaries=[{"text": " a"}]), "summaries"),
    (_comparison(summaries=[{"text": " a"}, {"text": "  "}]), "summaries[1].text"),
    (_comparison(summaries=[{"text": " a"}, {"policy": "x"}]), "summaries[1].text"),
    (_comparison(info={"post": "P", "subreddit": "s"}), "info.title"),
    ({"info": {"post": "P", "title": "T", "subreddit": "s"}, "summaries": []}, "choice"),
])
def test_comparison_errors(tmp_path, row, field):
    path = write_jsonl(tmp_path / "c.jsonl", [_comparison(), row])
    with raises_at(path, 2, field):
        load_tldr_comparisons(path)


# --- hh-rlhf -------------------------------------------------------------------------------------

def test_hh_rlhf_transcripts_become_chat_messages():
    records = load_hh_rlhf(HH, "helpful-base", "train")  # a local copy of the repo, uncompressed
    assert records[0] == PreferenceRecord(
        [{"role": "user", "content": "How long should I boil an egg?"}], "About 9 to 12 minutes for hard-boiled.",
        [{"role": "user", "content": "How long should I boil an egg?"}], "Eggs are laid by hens.", "conditional")
    assert records[1].prompt_chosen == [
        {"role": "user", "content": "What is a good first telescope?"},
        {"role": "assistant", "content": "What is your budget?"},
        {"role": "user", "content": "About 300 dollars."}]
    assert records[1].response_chosen == "A 6-inch Dobsonian fits that budget well."


def test_hh_rlhf_gzipped_hub_layout(tmp_path):
    target = tmp_path / "hh" / "helpful-base" / "test.jsonl.gz"
    target.parent.mkdir(parents=True)
    with gzip.open(target, "wt", encoding="utf-8") as f:
        f.write((HH / "helpful-base" / "train.jsonl").read_text())
    assert load_hh_rlhf(tmp_path / "hh", split="test") == load_hh_rlhf(HH / "helpful-base" / "train.jsonl")


@pytest.mark.parametrize("text, problem", [
    ("Human: hi\n\nAssistant: hello", "text before the first"),
    ("\n\nHuman: hi\n\nHuman: again\n\nAssistant: hello", "turn 2 is user, expected assistant"),
    ("\n\nAssistant: hello", "turn 1 is assistant, expected user"),
    ("\n\nHuman: hi\n\nAssistant:", "turn 2 (assistant) is empty"),
    ("\n\nHuman: hi", "must end with an Assistant turn"),
    ("just text", "text before the first"),
])
def test_bad_transcripts(text, problem):
    with raises_at("f.jsonl", 3, "chosen") as err:
        parse_transcript(text, "f.jsonl", 3, "chosen")
    assert problem in str(err.value)


def test_hh_row_errors_name_file_row_and_field(tmp_path):
    good = json.loads((HH / "helpful-base" / "train.jsonl").read_text().splitlines()[0])
    diverging = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}
    bad_turns = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant: "}
    for row, field in ((diverging, "rejected"), (bad_turns, "rejected"), ({"chosen": good["chosen"]}, "rejected")):
        path = write_jsonl(tmp_path / "hh.jsonl", [good, row])
        with raises_at(path, 2, field):
            load_hh_rlhf(path)
        assert len(load_hh_rlhf(path, skip_malformed=True)) == 1


def test_local_copy_must_keep_the_layout(tmp_path):
    shutil.copytree(RELEASE / "data" / "tldr", tmp_path / "tldr")  # the data/ level is missing
    with pytest.raises(DataError, match="keep the hub layout"):
        load_release_sft("tldr", source=tmp_path)
