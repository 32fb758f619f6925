"""ifeval-lite: every constraint checker, the gated scorer (including gaming attempts), prompt
generation (topic split, held-out phrasings, JSON round-trip), robustness variants, the registry."""

import json
import random
import re

import pytest

import prefbench.tasks.ifeval_lite as ifeval
from prefbench.tasks import TaskError, get_task, is_data_backed, list_tasks
from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.common import is_degenerate, on_topic, stem, words
from prefbench.tasks.constraints import (
    CONSTRAINTS,
    Bullets,
    EndPhrase,
    ForbidWord,
    IncludeKeywords,
    MaxWords,
    MinWords,
    NoCommas,
    Sentences,
    StartWith,
    Title,
    WrapQuotes,
    compatible,
    constraint_from_meta,
    feasible,
)
from prefbench.tasks.ifeval_lite import (
    FAMILY_WEIGHTS,
    HELD_OUT_PHRASINGS,
    PHRASINGS,
    TOPICS,
    IfevalLite,
    sample_constraints,
)
from prefbench.tasks.perturb import DISTRACTORS, add_typos, recase

TASK = IfevalLite()


# -- words, stems, gate -------------------------------------------------------------------------

def test_hyphenated_and_apostrophe_words_count_once():
    assert words("A well-known, family-friendly spot. Don't stop!") == ["A", "well-known", "family-friendly", "spot", "Don't", "stop"]
    assert words("- item one\n- item two") == ["item", "one", "item", "two"]   # bullet marks are not words


@pytest.mark.parametrize("a,b", [("waves", "wave"), ("brewing", "brew"), ("berries", "berry"), ("roasted", "roast"),
                                 ("boxes", "box"), ("Bicycles", "bicycle"), ("dog's", "dog")])
def test_stem_maps_inflections_together(a, b):
    assert stem(a) == stem(b)


def test_degenerate_detection():
    assert is_degenerate("")
    assert is_degenerate("Coffee coffee COFFEE")                                  # one distinct word
    assert is_degenerate("coffee is coffee and coffee but coffee so coffee")      # 5 of 9 tokens > 40%
    assert is_degenerate("I love coffee. I love coffee. I love coffee.")           # 3-gram three times
    assert not is_degenerate("I love coffee. I love coffee.")                     # twice is not a loop
    assert not is_degenerate("the cat and the dog")                               # too short for the share rule
    assert not is_degenerate("- It is a drink\n- It is a habit\n- It is a ritual")  # function-word 3-gram


def test_on_topic_matches_stems_and_phrases_case_insensitively():
    assert on_topic("I like ESPRESSO shots.", ["coffee", "espresso"])
    assert on_topic("Waves crash all day.", ["wave"])
    assert on_topic("We ate ice creams.", ["ice cream"])
    assert not on_topic("Icy roads and creamy soup.", ["ice cream"])
    assert not on_topic("Coffeehouse culture.", ["coffee"])      # whole words only


# -- constraint checkers ------------------------------------------------------------------------

def test_max_words():
    c = MaxWords(5)
    assert c.check("A well-known, family-friendly spot.")        # 4 words
    assert c.check("one two three four five")
    assert not c.check("one two three four five six seven")
    assert c.partial("one two three four five six seven") == pytest.approx(0.5 * (1 - 2 / 5))
    assert c.partial(" ".join(["w"] * 10)) == 0.0                 # twice the limit


def test_min_words():
    c = MinWords(10)
    assert c.check(" ".join(f"w{i}" for i in range(10)))
    assert not c.check("only five words right here")
    assert c.partial("only five words right here") == pytest.approx(0.25)


def test_include_keywords():
    c = IncludeKeywords(("people", "enjoy"))
    assert c.check("Many PEOPLE are enjoying it.")                # case and -ing forgiven
    assert not c.check("Many people like it.")
    assert c.partial("Many people like it.") == pytest.approx(0.25)
    assert c.partial("Nothing relevant.") == 0.0


def test_forbid_word():
    c = ForbidWord("the")
    assert c.check("Then there was theory.")                       # only the exact word counts
    assert not c.check("The cat sat.")
    assert c.partial("The cat sat.") == 0.5
    assert c.partial("The cat sat on the mat.") == 0.0


def test_bullets_count_dash_and_star_lines_across_blank_lines():
    c = Bullets(3)
    assert c.check("Here you go:\n- first\n\n- second\n\n* third\n")
    assert c.check("  - indented\n  - also\n  - fine")
    assert not c.check("- one\n- two")
    assert Bullets.count("**Bold** start\n-no space\n*also no space\n- real") == 1
    assert c.partial("- one\n- two") == pytest.approx(0.5 * (1 - 1 / 3))
    assert c.partial("no list at all") == 0.0


@pytest.mark.parametrize("response,ok", [
    ("Coffee is great. Have a nice day.", True),
    ("Coffee is great. Have a nice day!", True),                 # trailing punctuation may differ
    ("coffee is great. HAVE A NICE DAY", True),
    ('"Coffee is great. Have a nice day."', True),                # closing quote after the phrase
    ("Coffee is great. Have a nice day.\n\n", True),
    ("Coffee is great. Have a nice day. Bye!", False),
    ("Behave a nice day.", False),                                 # must start on a word boundary
])
def test_end_phrase(response, ok):
    assert EndPhrase("Have a nice day.").check(response) is ok


def test_end_phrase_partial_when_followed_by_more_text():
    c = EndPhrase("Have a nice day.")
    assert c.partial("Have a nice day. Bye!") == 0.5
    assert c.partial("Goodbye.") == 0.0


@pytest.mark.parametrize("response,ok", [
    ("Sure, coffee is great.", True), ('"Sure! Coffee."', True), ("**Sure** thing.", True), ("  sure.", True),
    ("Surely not.", False), ("I am sure.", False),
])
def test_start_with(response, ok):
    assert StartWith("Sure").check(response) is ok


def test_no_commas():
    c = NoCommas()
    assert c.check("No commas here.")
    assert not c.check("One, two.")
    assert c.partial("One, two.") == pytest.approx(0.5 * (1 - 1 / 3))
    assert c.partial("a, b, c, d") == 0.0


@pytest.mark.parametrize("response,n", [
    ("One. Two!", 2), ("It costs 3.50 dollars.", 1), ("First line\nSecond line", 2),
    ("One... Two? Three.", 3), ('He said "hi." Then left.', 2), ("", 0),
])
def test_sentence_count(response, n):
    assert Sentences.count(response) == n


def test_sentences_partial():
    assert Sentences(2).check("One. Two.")
    assert Sentences(2).partial("One. Two. Three.") == pytest.approx(0.25)


def test_wrap_quotes_and_title():
    assert WrapQuotes().check('  "Coffee is nice."  ')
    assert WrapQuotes().check("“Curly quotes count.”")
    assert not WrapQuotes().check('"Opened but never closed.')
    assert not WrapQuotes().check('"')
    assert Title().check("<<Morning Coffee>>\nCoffee wakes me up.")
    assert not Title().check("<< >> nothing inside")
    assert not Title().check("<Coffee> single brackets")


@pytest.mark.parametrize("kind", sorted(CONSTRAINTS))
def test_constraint_meta_round_trips_through_json(kind):
    c = _example(kind)
    again = constraint_from_meta(json.loads(json.dumps(c.to_meta())))
    assert again == c and again.to_meta()["kind"] == kind


def _example(kind):
    examples = {"max_words": MaxWords(12), "min_words": MinWords(15), "include_keywords": IncludeKeywords(("a", "b")),
                "forbid_word": ForbidWord("the"), "bullets": Bullets(3), "end_phrase": EndPhrase("That is all."),
                "start_with": StartWith("Well"), "no_commas": NoCommas(), "sentences": Sentences(2),
                "wrap_quotes": WrapQuotes(), "title": Title()}
    return examples[kind]


def test_contradictory_constraints_are_never_combined():
    assert not compatible(MaxWords(10), MinWords(20))
    assert not compatible(Bullets(3), Sentences(2))
    assert not compatible(ForbidWord("is"), EndPhrase("That is all."))
    assert not compatible(Sentences(1), EndPhrase("Thank you."))
    assert compatible(MaxWords(10), NoCommas())
    # word limits must leave room: 3 sentences need 12 words, "Have a nice day." 4, a title 1,
    # two keywords 2, plus 4 of content (so 4 + 1 + 2 + 4 = 11 > 10)
    assert not feasible([MaxWords(8), Sentences(3)])
    assert feasible([MaxWords(16), Sentences(3)])
    assert feasible([MaxWords(8), EndPhrase("Have a nice day.")])
    assert not feasible([MaxWords(10), EndPhrase("Have a nice day."), Title(), IncludeKeywords(("a", "b"))])
    rng = random.Random(0)
    for _ in range(500):
        cs = sample_constraints(rng)
        assert 1 <= len(cs) <= 3
        assert len({c.kind for c in cs}) == len(cs)
        assert feasible(cs)


def test_family_tables_agree_and_a_zero_weight_drops_a_family(monkeypatch):
    assert set(FAMILY_WEIGHTS) == set(PHRASINGS) == set(CONSTRAINTS)
    assert all(len(p) > HELD_OUT_PHRASINGS for p in PHRASINGS.values())
    monkeypatch.setitem(ifeval.FAMILY_WEIGHTS, "max_words", 0.0)
    rng = random.Random(1)
    assert not any(c.kind == "max_words" for _ in range(300) for c in sample_constraints(rng))


def test_bad_constraint_metadata_is_named():
    with pytest.raises(ValueError, match="unknown constraint kind 'max_word'"):
        constraint_from_meta({"kind": "max_word", "n": 3})
    with pytest.raises(ValueError, match="constraint 'bullets' needs n"):
        constraint_from_meta({"kind": "bullets"})


# -- scorer ---------------------------------------------------------------------------------------

def _prompt(*constraints) -> TaskPrompt:
    topic = next(t for t in TOPICS if t.name == "coffee")
    meta = {"topic": "coffee", "terms": topic.match_terms(), "request": "Tell me about coffee.",
            "constraints": [c.to_meta() for c in constraints]}
    return TaskPrompt(id="test/0", text="Tell me about coffee.", meta=meta)


def test_good_answer_scores_one():
    p = _prompt(MaxWords(12), NoCommas())
    details = TASK.score_details(p, "Coffee is a warm drink that wakes me up every morning.")
    assert details["score"] == 1.0
    assert details["on_topic"] and not details["degenerate"]
    assert [r["passed"] for r in details["constraints"]] == [True, True]


@pytest.mark.parametrize("response", ["", "   \n ", "coffee coffee coffee coffee coffee coffee coffee coffee",
                                      "Coffee beans. Coffee beans. Coffee beans."])
def test_empty_and_degenerate_answers_score_zero(response):
    assert TASK.score(_prompt(MaxWords(12), NoCommas()), response) == 0.0


def test_off_topic_filler_that_meets_every_constraint_scores_at_most_a_quarter():
    p = _prompt(MaxWords(12), NoCommas())
    details = TASK.score_details(p, "The weather is mild today and the streets are quiet.")
    assert all(r["passed"] for r in details["constraints"]) and not details["on_topic"]
    assert details["score"] == 0.25


def test_near_miss_earns_partial_credit():
    p = _prompt(MaxWords(12), NoCommas())
    response = "Coffee is a warm drink that wakes me up every single morning before work."   # 14 words
    assert len(words(response)) == 14
    assert TASK.score(p, response) == pytest.approx((0.5 * (1 - 2 / 12) + 1.0) / 2)


def test_partial_credit_is_capped_at_half():
    p = _prompt(MinWords(8))
    # MinWords.partial would be 0.5 * 6/8; any failure stays <= 0.5 of a constraint.
    assert TASK.score(p, "Coffee tastes good in the morning.") == pytest.approx(0.375)
    assert TASK.score(_prompt(EndPhrase("Thank you.")), "Coffee. Thank you. More coffee talk.") == 0.5


# -- prompts --------------------------------------------------------------------------------------

def test_topic_split_is_disjoint_deterministic_and_complete():
    train, evals = TASK.topics("train"), TASK.topics("eval")
    assert not {t.name for t in train} & {t.name for t in evals}
    assert len(train) + len(evals) == len(TOPICS) and len(TOPICS) >= 40
    assert len(evals) == round(len(TOPICS) / 3)
    assert [t.name for t in IfevalLite().topics("eval")] == [t.name for t in evals]
    with pytest.raises(ValueError, match="split must be one of"):
        TASK.topics("test")


def test_prompts_use_only_their_split_topics():
    for split in ("train", "eval"):
        names = {t.name for t in TASK.topics(split)}
        assert {p.meta["topic"] for p in TASK.prompts(split, 60, seed=0)} <= names


def test_prompts_are_deterministic_prefix_stable_and_unique():
    a = TASK.prompts("train", 80, seed=3)
    assert a == TASK.prompts("train", 80, seed=3)
    assert a[:10] == TASK.prompts("train", 10, seed=3)
    assert a != TASK.prompts("train", 80, seed=4)
    assert [p.id for p in a[:2]] == ["ifeval-lite/train/0000", "ifeval-lite/train/0001"]
    assert len({p.text for p in a}) == 80                       # more prompts than topics, no repeats
    assert len({p.meta["topic"] for p in a}) == len(TASK.topics("train"))


def test_prompt_text_is_request_plus_training_phrasings():
    for p in TASK.prompts("train", 60, seed=0) + TASK.prompts("eval", 30, seed=0):
        rest = p.text
        assert rest.startswith(p.meta["request"])
        rest = rest[len(p.meta["request"]):]
        for d in p.meta["constraints"]:
            c = constraint_from_meta(d)
            train_texts = [f(c) for f in PHRASINGS[c.kind][:-HELD_OUT_PHRASINGS]]
            held_out = [f(c) for f in PHRASINGS[c.kind][-HELD_OUT_PHRASINGS:]]
            assert not any(h in p.text for h in held_out)
            match = next(t for t in train_texts if t in rest)
            rest = rest.replace(match, "", 1)
        assert rest.strip() == ""


def test_json_round_trip_scores_identically():
    responses = ["Coffee is nice.", "- coffee beans\n- hot water\n- a mug", '"<<Coffee>> Sure, coffee. That is all."', ""]
    for p in TASK.prompts("eval", 20, seed=1):
        q = TaskPrompt.from_json(json.loads(json.dumps(p.to_json())))
        assert q == p
        assert [TASK.score(q, r) for r in responses] == [TASK.score(p, r) for r in responses]


# -- variants -------------------------------------------------------------------------------------

def test_variants_ids_meta_and_determinism():
    p = TASK.prompts("eval", 1, seed=0)[0]
    vs = TASK.variants(p, seed=0)
    assert [v.variant for v in vs] == ["paraphrase", "typo", "case", "distractor"]
    assert [v.id for v in vs] == [f"{p.id}~{k}" for k in ("paraphrase", "typo", "case", "distractor")]
    assert all(v.parent == p.id and v.meta == p.meta and v.text != p.text for v in vs)
    assert vs == TASK.variants(p, seed=0)
    with pytest.raises(ValueError, match="perturb the original"):
        TASK.variants(vs[0], seed=0)


def test_paraphrase_uses_held_out_phrasings_only():
    for p in TASK.prompts("eval", 30, seed=0):
        para = TASK.variants(p, seed=0)[0]
        assert para.text.startswith(p.meta["request"])
        for d in p.meta["constraints"]:
            c = constraint_from_meta(d)
            assert any(f(c) in para.text for f in PHRASINGS[c.kind][-HELD_OUT_PHRASINGS:])
            assert not any(f(c) in para.text for f in PHRASINGS[c.kind][:-HELD_OUT_PHRASINGS])


def _protected(text):
    return re.findall(r'"[^"]*"|<<[^<>]*>>|\S*\d\S*', text)


def test_typos_spare_quotes_and_numbers_and_hit_a_tenth_of_words():
    text = ('Write a short description of the mountains during winter. Use no more than 15 words. '
            'End your answer with the exact phrase "Have a nice day." Include a title such as <<my title>>. '
            'Remember everything carefully.')
    typo = add_typos(text, random.Random(0))
    assert _protected(typo) == _protected(text)
    before, after = text.split(" "), typo.split(" ")
    assert len(before) == len(after)                 # a typo never splits or merges words
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(changed) == round(0.1 * len(words(text)))
    assert all(a[0] == b[0] for a, b in changed)     # the first letter stays
    assert add_typos(text, random.Random(0)) == typo


def test_recase_changes_only_case_outside_protected_spans():
    text = 'Describe tea. Finish with the words "That is all." Use 2 sentences.'
    for seed in range(6):
        out = recase(text, random.Random(seed))
        assert out.lower() == text.lower() and _protected(out) == _protected(text)


def test_distractor_is_appended():
    p = TASK.prompts("eval", 1, seed=0)[0]
    d = TASK.variants(p, seed=5)[3]
    assert d.text.startswith(p.text) and d.text[len(p.text):].strip() in DISTRACTORS


@pytest.mark.parametrize("name", [t for t in list_tasks() if not is_data_backed(t)])
def test_every_embedded_task_gives_variants_for_every_kind_with_its_own_judge(name):
    task = get_task(name)
    p = task.prompts("eval", 3, seed=0)[2]
    vs = task.variants(p, seed=1)
    assert {v.variant for v in vs} == {"paraphrase", "typo", "case", "distractor"}
    assert all(task.score(v, "") == 0.0 for v in vs)


# -- registry -------------------------------------------------------------------------------------

def test_registry_lookup_and_suggestions():
    assert list_tasks() == ["hh-helpful", "ifeval-lite", "sentiment", "tldr"]
    assert get_task("IFEVAL_LITE").name == "ifeval-lite"
    with pytest.raises(TaskError, match=r"unknown task 'ifeval-lit' \(did you mean 'ifeval-lite'\?\)"):
        get_task("ifeval-lit")
    with pytest.raises(TaskError, match="did you mean 'sentiment'"):
        get_task("sentimnt")
