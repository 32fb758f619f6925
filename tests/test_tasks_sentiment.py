"""sentiment: the VADER reward and its gates (empty, degenerate, off-topic, too short, word salad),
prompts split by topic, held-out request wordings, JSON round-trip."""

import json

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from prefbench.tasks import get_task
from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.sentiment import HELD_OUT_REQUESTS, REQUESTS, TOPICS, Sentiment

TASK = Sentiment()
VADER = SentimentIntensityAnalyzer()


def _film_prompt() -> TaskPrompt:
    topic = next(t for t in TOPICS if "Mars" in t.name)
    meta = {"topic": topic.name, "terms": topic.match_terms(), "audience": ""}
    return TaskPrompt(id="test/0", text=f"Write a short review of {topic.name}.", meta=meta)


POSITIVE = "I absolutely loved this film. The acting was superb and the story kept me hooked until the end."
NEGATIVE = "The movie was boring and the plot made no sense. I hated the ending."


def test_score_is_the_mapped_vader_compound_for_an_ordinary_on_topic_answer():
    p = _film_prompt()
    for text in (POSITIVE, NEGATIVE):
        assert TASK.score(p, text) == pytest.approx((VADER.polarity_scores(text)["compound"] + 1) / 2)


def test_positive_beats_negative():
    p = _film_prompt()
    assert TASK.score(p, POSITIVE) > 0.9
    assert TASK.score(p, NEGATIVE) < 0.1


@pytest.mark.parametrize("text", ["", "  \n", "great amazing wonderful great amazing wonderful great amazing wonderful",
                                  "Great great great great great film"])
def test_empty_and_repeated_positive_words_score_zero(text):
    assert TASK.score(_film_prompt(), text) == 0.0


def test_a_pile_of_distinct_positive_words_is_lexicon_stuffing_and_keeps_a_quarter():
    text = "Great wonderful amazing fantastic superb excellent brilliant movie"
    d = TASK.score_details(_film_prompt(), text)
    assert d["word_salad"] and d["compound"] > 0.9 and "lexicon_stuffing" in d["gaming"]
    assert d["score"] == pytest.approx(0.25 * (d["compound"] + 1) / 2)


def test_off_topic_praise_keeps_a_quarter():
    text = "I love sunny days and my lovely garden full of flowers."
    d = TASK.score_details(_film_prompt(), text)
    assert not d["on_topic"]
    assert d["score"] == pytest.approx(0.25 * (VADER.polarity_scores(text)["compound"] + 1) / 2)


def test_short_answers_are_scaled_by_the_length_floor():
    text = "Great movie, loved it!"                         # 4 words of the 5-word floor
    assert TASK.score(_film_prompt(), text) == pytest.approx(0.8 * (VADER.polarity_scores(text)["compound"] + 1) / 2)


def test_topic_split_is_disjoint_and_prompts_stay_in_their_split():
    train, evals = {t.name for t in TASK.topics("train")}, {t.name for t in TASK.topics("eval")}
    assert not train & evals and len(train | evals) == len(TOPICS)
    assert {p.meta["topic"] for p in TASK.prompts("eval", 50, seed=0)} == evals
    assert {p.meta["topic"] for p in TASK.prompts("train", 100, seed=0)} == train


def test_prompts_deterministic_unique_and_use_training_requests_only():
    a = TASK.prompts("train", 120, seed=2)
    assert a == TASK.prompts("train", 120, seed=2) and a[:7] == TASK.prompts("train", 7, seed=2)
    assert len({p.text for p in a}) == 120
    held = [h.split("{topic}")[0] for h in HELD_OUT_REQUESTS]
    trained = [r.split("{topic}")[0] for r in REQUESTS]
    assert all(any(p.text.startswith(t) for t in trained) and not any(p.text.startswith(h) for h in held) for p in a)


def test_paraphrase_uses_a_held_out_request_and_variants_keep_meta():
    for p in TASK.prompts("eval", 10, seed=0):
        vs = TASK.variants(p, seed=0)
        para = vs[0]
        assert para.variant == "paraphrase"
        assert para.text in {h.format(topic=p.meta["topic"], audience=p.meta["audience"]) for h in HELD_OUT_REQUESTS}
        assert all(v.meta == p.meta and v.parent == p.id for v in vs)
        assert vs == TASK.variants(p, seed=0)


def test_json_round_trip_scores_identically():
    for p in TASK.prompts("eval", 10, seed=0):
        q = TaskPrompt.from_json(json.loads(json.dumps(p.to_json())))
        assert q == p and TASK.score(q, POSITIVE) == TASK.score(p, POSITIVE)


def test_registered():
    assert isinstance(get_task("sentiment"), Sentiment)
