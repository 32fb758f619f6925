"""Preference-data readers: every supported format, and errors that name file, row and field."""

import json

import pytest

from prefbench.formats.preferences import load_preferences, parse_row, write_preferences
from prefbench.formats.records import DataError, PreferenceRecord


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_native_format_and_kind(tmp_path):
    rows = [
        {"prompt_chosen": "Q1", "response_chosen": "good", "prompt_rejected": "Q1", "response_rejected": "bad"},
        {"prompt_chosen": "Q1", "response_chosen": "good", "prompt_rejected": "Q2", "response_rejected": "bad", "kind": "joint"},
    ]
    records = load_preferences(write_jsonl(tmp_path / "p.jsonl", rows))
    assert [r.kind for r in records] == ["conditional", "joint"]
    assert records[1] == PreferenceRecord("Q1", "good", "Q2", "bad", "joint")


def test_trl_strings_and_messages():
    s = parse_row({"prompt": "Q", "chosen": "a", "rejected": "b"}, "f", 1)
    assert s == PreferenceRecord("Q", "a", "Q", "b", "conditional")
    user = [{"role": "user", "content": "Q"}]
    explicit = parse_row({"prompt": user, "chosen": [{"role": "assistant", "content": "a"}],
                          "rejected": [{"role": "assistant", "content": "b"}]}, "f", 1)
    assert explicit == PreferenceRecord(user, "a", user, "b", "conditional")
    implicit = parse_row({"chosen": user + [{"role": "assistant", "content": "a"}],
                          "rejected": user + [{"role": "assistant", "content": "b"}]}, "f", 1)
    assert implicit == explicit


def test_dove_release_format():
    rec = parse_row({"i_chosen": "Summarise A", "r_chosen": "short", "i_reject": "Summarise B", "r_reject": "long"}, "f", 1)
    assert rec == PreferenceRecord("Summarise A", "short", "Summarise B", "long", "joint")


def test_json_and_parquet_files(tmp_path):
    rows = [{"prompt": "Q", "chosen": "a", "rejected": "b"}] * 3
    (tmp_path / "p.json").write_text(json.dumps({"data": rows}))
    assert len(load_preferences(tmp_path / "p.json")) == 3
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    assert load_preferences(tmp_path / "p.parquet")[2].response_rejected == "b"


def test_hub_name_path_uses_datasets_on_local_files(tmp_path):
    """A name that is not a local path goes to datasets.load_dataset (here: a local dataset folder)."""
    folder = tmp_path / "my_prefs"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "b"}] * 2)
    assert len(load_preferences(str(folder), split="train")) == 2


@pytest.mark.parametrize("row,message", [
    ({"prompt": "Q", "chosen": "a"}, "row 2: field 'rejected': is missing"),
    ({"prompt": "Q", "chosen": "  ", "rejected": "b"}, "row 2: field 'chosen': is empty"),
    ({"prompt": "Q", "chosen": 3, "rejected": "b"}, "row 2: field 'chosen': expected a string or a list of chat messages, got int"),
    ({"i_chosen": "I", "r_chosen": "a", "i_reject": "J"}, "row 2: field 'r_reject': is missing"),
    ({"chosen": [{"role": "user", "content": "Q"}, {"role": "user", "content": "a"}],
      "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "b"}]},
     "row 2: field 'chosen': last message must have role 'assistant', got 'user'"),
    ({"prompt_chosen": "Q", "response_chosen": "a", "prompt_rejected": "Q", "response_rejected": "b", "kind": "joint"},
     "row 2: field 'kind': says 'joint' but the prompts make it 'conditional'"),
    ({"question": "Q"}, "row 2: unrecognised format"),
    ({"prompt_chosen": "Q", "response_chosen": "a", "prompt_rejected": "Q", "response_rejected": "b",
      "rejected_finished": "no"}, "row 2: field 'rejected_finished': expected true or false, got 'no'"),
])
def test_malformed_rows_name_file_row_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_invalid_json_line_and_missing_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "Q", "chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: invalid JSON"):
        load_preferences(path)
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        load_preferences(tmp_path / "nope.jsonl")


def test_write_then_read_round_trips(tmp_path):
    records = [PreferenceRecord("Q", "a", "R", "b", "joint"), PreferenceRecord("Q", "a", "Q", "b", "conditional")]
    write_preferences(records, tmp_path / "out" / "pairs.jsonl")
    assert load_preferences(tmp_path / "out" / "pairs.jsonl") == records
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pairs.jsonl"]  # no temp file left behind


def test_unfinished_responses_round_trip_and_only_they_carry_the_flag(tmp_path):
    records = [PreferenceRecord("Q", "a complete answer", "Q", "an answer cut at the tok", "conditional",
                                rejected_finished=False), PreferenceRecord("Q", "a", "R", "b", "joint")]
    write_preferences(records, tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows[0]["rejected_finished"] is False and "chosen_finished" not in rows[0]
    assert not any(key.endswith("_finished") for key in rows[1])
    assert load_preferences(tmp_path / "pairs.jsonl") == records


def test_only_a_finished_response_is_encoded_with_the_end_of_turn_token(tiny_model_dir):
    from transformers import AutoTokenizer

    from prefbench.engine.encoding import encode_pairs

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cut = PreferenceRecord("Name a fruit", "apple", "Name a fruit", "a green mountain", "conditional",
                           rejected_finished=False)
    pairs = encode_pairs([cut, PreferenceRecord("Name a fruit", "apple", "Name a fruit", "red", "conditional")],
                         tok, max_length=512)
    (chosen, _), (rejected, rejected_mask) = pairs.chosen[0], pairs.rejected[0]
    assert chosen[-1] == tok.eos_token_id and rejected[-1] != tok.eos_token_id
    assert tok.decode([t for t, m in zip(rejected, rejected_mask) if m]) == "a green mountain"
    assert pairs.rejected[1][0][-1] == tok.eos_token_id
    # cut to max_length, a finished answer loses its end-of-turn token with its tail
    short = encode_pairs([cut], tok, max_length=len(chosen) - 1)
    assert short.chosen[0][0] == chosen[:-1] and short.truncated >= 1
