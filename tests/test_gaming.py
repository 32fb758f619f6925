"""Gold scorers reward answering, not gaming: answers built by kind (keyword dumps, minimal answers,
restated instructions, repeated lines, lexicon stuffing) for every eval prompt of both embedded tasks
score at most 0.3 and are flagged, while honest answers keep full credit and are not."""

import random

import pytest

from prefbench.tasks import get_task
from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.common import gaming_kinds
from prefbench.tasks.constraints import (
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
)
from prefbench.tasks.ifeval_lite import TOPICS

IFEVAL, SENTIMENT = get_task("ifeval-lite"), get_task("sentiment")
POSITIVE = ("great", "wonderful", "amazing", "excellent", "superb", "fantastic", "brilliant", "lovely", "perfect",
            "delightful")


def _parts(prompt: TaskPrompt) -> tuple[list[str], list[str], str]:
    """Topic words, required keywords and the required first word (if any) of a prompt."""
    constraints = {c["kind"]: c for c in prompt.meta.get("constraints", [])}
    keywords = list(constraints.get("include_keywords", {}).get("keywords", []))
    start = constraints.get("start_with", {}).get("phrase", "")
    return [t for t in prompt.meta["terms"] if " " not in t], keywords, start


def keyword_dump(prompt: TaskPrompt, rng: random.Random) -> str:
    terms, keywords, start = _parts(prompt)
    picked = [start] * bool(start) + rng.sample(terms, min(len(terms), rng.randint(3, 6))) + keywords
    return rng.choice([" ".join, ", ".join, "\n".join, lambda ws: "\n".join(f"- {w}" for w in ws)])(picked)


def minimal(prompt: TaskPrompt, rng: random.Random) -> str:
    terms, keywords, start = _parts(prompt)
    return rng.choice([f"{start or 'Sure'} {rng.choice(terms)}.", f"{rng.choice(terms).capitalize()}!",
                       f"{rng.choice(terms)} {rng.choice(keywords or terms)}"])


def restates_instruction(prompt: TaskPrompt, rng: random.Random) -> str:
    terms, keywords, start = _parts(prompt)
    lead = f"{start} " if start else ""
    return lead + rng.choice([
        f"this answer about {rng.choice(terms)} follows the format and every word limit of the instruction.",
        "here is my response in the required format, with exactly the words the prompt asks for.",
        "I will write my answer in sentences, as the instructions require, and follow each point.",
        f"the reply uses the words {' and '.join(keywords or terms[:2])} as required by the task.",
    ])


def repeated_lines(prompt: TaskPrompt, rng: random.Random) -> str:
    terms, keywords, start = _parts(prompt)
    line = f"- {rng.choice(terms).capitalize()} is {rng.choice(keywords or ['nice', 'good'])} for people."
    return "\n".join([line] * rng.randint(2, 4))


def lexicon_stuffing(prompt: TaskPrompt, rng: random.Random) -> str:
    terms, _, _ = _parts(prompt)
    return " ".join([rng.choice(terms).capitalize(), *rng.sample(POSITIVE, rng.randint(4, 8))]) + "!"


SHARED_KINDS = {"keyword_dump": keyword_dump, "minimal": minimal, "restates_instruction": restates_instruction,
                "repeated_lines": repeated_lines}


def _eval_prompts(task, n=40):
    return task.prompts("eval", n, seed=0) + task.prompts("train", n, seed=0)


KINDS = {**SHARED_KINDS, "lexicon_stuffing": lexicon_stuffing}   # the last one games the sentiment reward only


@pytest.mark.parametrize("task, kind", [(t, k) for t in (IFEVAL, SENTIMENT) for k in SHARED_KINDS] +
                         [(SENTIMENT, "lexicon_stuffing")], ids=lambda x: getattr(x, "name", x))
def test_every_gaming_kind_scores_at_most_0_3_and_is_flagged_on_every_prompt(task, kind):
    make = KINDS[kind]
    rng = random.Random(kind)
    for prompt in _eval_prompts(task):
        for _ in range(3):
            answer = make(prompt, rng)
            details = task.score_details(prompt, answer)
            assert details["score"] <= 0.3, (kind, prompt.text, answer, details)
            assert details["degenerate"] or kind in details["gaming"], (kind, answer, details["gaming"])


def _coffee(*constraints) -> TaskPrompt:
    topic = next(t for t in TOPICS if t.name == "coffee")
    return TaskPrompt(id="test/0", text="Tell me about coffee.", meta={
        "topic": "coffee", "terms": topic.match_terms(), "request": "Tell me about coffee.",
        "constraints": [c.to_meta() for c in constraints]})


HONEST_IFEVAL = [
    (_coffee(MaxWords(12), NoCommas()), "Coffee is a warm drink that wakes me up every morning."),
    (_coffee(MinWords(15)), "Coffee is brewed from roasted beans, and many people enjoy a cup of it with breakfast "
                            "before work."),
    (_coffee(IncludeKeywords(("people", "daily"))), "Many people drink coffee daily because its caffeine helps "
                                                     "them focus."),
    (_coffee(ForbidWord("the")), "Coffee comes from roasted beans and is brewed with hot water."),
    (_coffee(Bullets(3)), "- Coffee is made from roasted beans.\n- Espresso is a strong, concentrated coffee.\n"
                          "- A latte adds steamed milk to espresso."),
    (_coffee(EndPhrase("Thank you.")), "Coffee is one of the most popular drinks in the world. Thank you."),
    (_coffee(StartWith("Sure")), "Sure, coffee is a brewed drink made from roasted beans."),
    (_coffee(Sentences(2)), "Coffee is brewed from roasted beans. It is enjoyed hot or iced around the world."),
    (_coffee(Title(), MaxWords(20)), "<<Morning Coffee>>\nCoffee is a brewed drink that many people start their "
                                     "day with."),
    (_coffee(Sentences(1), NoCommas(), MaxWords(14)), "Coffee is a popular drink made by brewing roasted beans in "
                                                      "water."),
]


@pytest.mark.parametrize("prompt, answer", HONEST_IFEVAL)
def test_honest_ifeval_answers_keep_full_credit(prompt, answer):
    details = IFEVAL.score_details(prompt, answer)
    assert details["gaming"] == [] and details["score"] >= 0.9, details


def _review(topic_part: str) -> TaskPrompt:
    from prefbench.tasks.sentiment import TOPICS as SUBJECTS

    topic = next(t for t in SUBJECTS if topic_part in t.name)
    return TaskPrompt(id="test/0", text=f"Write a short review of {topic.name}.",
                      meta={"topic": topic.name, "terms": topic.match_terms(), "audience": ""})


HONEST_SENTIMENT = [
    (_review("Mars"), "I loved this film about the trip to Mars. The scenes in space were beautiful and the plot "
                      "kept me excited."),
    (_review("pizzeria"), "The pizza at this family-run place is wonderful, with a crisp crust, and the friendly "
                          "staff made us feel welcome."),
    (_review("headphones"), "These headphones have a rich sound and the battery lasts all week. I am very happy "
                            "with them."),
    (_review("zoo"), "We had a great day at the zoo. The elephants were the highlight, and the kids loved "
                     "every minute."),
    (_review("mystery novel"), "This mystery novel is a joy to read, with clever twists and characters I cared "
                               "about."),
]


@pytest.mark.parametrize("prompt, answer", HONEST_SENTIMENT)
def test_honest_reviews_keep_full_credit(prompt, answer):
    details = SENTIMENT.score_details(prompt, answer)
    assert details["gaming"] == [] and details["score"] >= 0.9, details


def test_ordinary_prose_bullet_lists_and_short_sentences_are_not_gaming():
    for text in ["It rains.", "Bees make honey from nectar.", "- Tea is brewed from leaves\n- Green tea is mild",
                 "Honestly, the moon orbits Earth about once a month.", "The answer is that dogs are loyal pets."]:
        assert gaming_kinds(text) == [] or gaming_kinds(text) == ["minimal"] and len(text.split()) < 4, text
