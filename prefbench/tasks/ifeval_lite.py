"""ifeval-lite: verifiable instruction following, IFEval-style, sized for a 135M model.

A prompt is an everyday request about a topic ("Tell me about coffee.") plus 1-3 compatible
format constraints ("Answer in at most 12 words. Do not use any commas."), each checked by code.

Score (exact)::

    value_c = 1                          if constraint c is satisfied
            = min(PARTIAL_CAP, partial_c) otherwise   (graded near-misses, PARTIAL_CAP = 0.5)
    score   = gate × mean_c value_c

with ``gate`` from :mod:`prefbench.tasks.common`: 0 for an empty or degenerate answer,
``OFF_TOPIC_FACTOR`` (0.25) if it never mentions the topic or one of its keywords, else 1. So a
fully compliant on-topic answer scores 1.0, off-topic filler that meets every format rule at most
0.25, and a near miss (13 words where 12 were allowed) still beats a far miss. Partial credit per
family is given in each checker's ``partial`` docstring.

Everything the judge needs travels in the prompt's ``meta`` (``topic``, ``terms`` for the on-topic
check, ``request`` and ``constraints`` as ``{"kind": ..., params...}``), so a prompt read back
from JSON scores the same.

Phrasings: each constraint family has several wordings; the last ``HELD_OUT_PHRASINGS`` of each
are never used in train or eval originals, only in the ``paraphrase`` robustness variant, so that
variant measures generalisation to instructions never seen in training.

Difficulty lives in one place, ``DIFFICULTY`` and ``FAMILY_WEIGHTS``: the aim is that the base
model meets each family some of the time (roughly 15-60%), so preference pairs form and an
objective has room to improve. All-lowercase/all-uppercase are left out: the base model met
"all lowercase" in ~1.4% of samples, too rarely to form pairs.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.common import Topic, gate, topic_prompts
from prefbench.tasks.constraints import (
    PARTIAL_CAP,
    Bullets,
    Constraint,
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
    constraint_from_meta,
    feasible,
)
from prefbench.tasks.topic_task import TopicTask

HELD_OUT_PHRASINGS = 1

# -- difficulty: the one place to tune --------------------------------------------------------
DIFFICULTY: dict[str, Any] = {
    "max_words": (8, 20),                     # inclusive range for "at most N words"
    "min_words": (12, 25),                    # reachable within ~48 new tokens
    "keywords_per_prompt": (1, 2),
    "keyword_pool": ("simple", "people", "history", "daily", "important", "enjoy", "world",
                     "future", "favorite", "common", "special", "useful"),
    "forbidden_pool": ("and", "the", "is", "very", "it", "you"),
    "bullets": (2, 4),
    "sentences": (1, 3),
    "end_phrases": ("Have a nice day.", "That is all.", "Thank you.", "Hope this helps."),
    "start_words": ("Yes", "Sure", "Well", "Today", "Honestly"),
    "constraints_per_prompt": {1: 0.3, 2: 0.4, 3: 0.3},   # how many constraints, with probabilities
}
FAMILY_WEIGHTS: dict[str, float] = {        # relative draw frequency; 0 drops a family
    "max_words": 2.0, "min_words": 1.0, "include_keywords": 1.0, "forbid_word": 1.0, "bullets": 1.0,
    # measured on the embedded 4-bit model (T=0.7): end_phrase met 4%, wrap_quotes 0%, title 14% -> rarer
    "end_phrase": 0.5, "start_with": 1.0, "no_commas": 1.0, "sentences": 1.0, "wrap_quotes": 0.0,
    "title": 0.5,
}
# -------------------------------------------------------------------------------------------


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _quoted_list(items: tuple[str, ...]) -> str:
    q = [f'"{w}"' for w in items]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


def _the_words(c: IncludeKeywords) -> str:
    return ("the word " if len(c.keywords) == 1 else "the words ") + _quoted_list(c.keywords)


Phrasing = Callable[[Any], str]

# Wordings per family; the last HELD_OUT_PHRASINGS of each appear only in paraphrase variants.
PHRASINGS: dict[str, tuple[Phrasing, ...]] = {
    "max_words": (
        lambda c: f"Answer in at most {c.n} words.",
        lambda c: f"Use no more than {c.n} words.",
        lambda c: f"Your answer must be {c.n} words or fewer.",
        lambda c: f"Keep it under {c.n + 1} words.",
    ),
    "min_words": (
        lambda c: f"Write at least {c.n} words.",
        lambda c: f"Use {c.n} words or more.",
        lambda c: f"Your answer should be no shorter than {c.n} words.",
        lambda c: f"Make it longer than {c.n - 1} words.",
    ),
    "include_keywords": (
        lambda c: f"Include {_the_words(c)}.",
        lambda c: f"Make sure to use {_the_words(c)}.",
        lambda c: f"Mention {_the_words(c)}.",
        lambda c: f"Your answer must contain {_the_words(c)}.",
    ),
    "forbid_word": (
        lambda c: f'Do not use the word "{c.word}".',
        lambda c: f'Avoid the word "{c.word}".',
        lambda c: f'Never write the word "{c.word}".',
        lambda c: f'The word "{c.word}" must not appear in your answer.',
    ),
    "bullets": (
        lambda c: f"Format your answer as exactly {_plural(c.n, 'bullet point', 'bullet points')}.",
        lambda c: f'Give exactly {_plural(c.n, "bullet point", "bullet points")}, each starting with "- ".',
        lambda c: f"Write a list of exactly {_plural(c.n, 'bullet point', 'bullet points')}.",
        lambda c: f"Reply using {_plural(c.n, 'bullet point', 'bullet points')}, no more and no fewer.",
    ),
    "end_phrase": (
        lambda c: f'End your answer with the exact phrase "{c.phrase}"',
        lambda c: f'Finish with the words "{c.phrase}"',
        lambda c: f'Your last words must be "{c.phrase}"',
        lambda c: f'Close your reply with "{c.phrase}"',
    ),
    "start_with": (
        lambda c: f'Begin your answer with the word "{c.phrase}".',
        lambda c: f'Start your answer with "{c.phrase}".',
        lambda c: f'The first word of your answer must be "{c.phrase}".',
        lambda c: f'Open your reply with the word "{c.phrase}".',
    ),
    "no_commas": (
        lambda c: "Do not use any commas.",
        lambda c: "Avoid commas in your answer.",
        lambda c: "Write without using commas.",
        lambda c: "Your reply must not contain a single comma.",
    ),
    "sentences": (
        lambda c: f"Answer in exactly {_plural(c.n, 'sentence', 'sentences')}.",
        lambda c: f"Write exactly {_plural(c.n, 'sentence', 'sentences')}.",
        lambda c: f"Use {_plural(c.n, 'sentence', 'sentences')}, no more and no less.",
        lambda c: f"Your answer must consist of exactly {_plural(c.n, 'sentence', 'sentences')}.",
    ),
    "wrap_quotes": (
        lambda c: "Wrap your entire answer in double quotation marks.",
        lambda c: "Put your whole answer inside double quotes.",
        lambda c: "Enclose your answer in double quotes.",
        lambda c: "Your full reply should begin and end with a double quote character.",
    ),
    "title": (
        lambda c: "Include a title wrapped in double angular brackets, such as <<my title>>.",
        lambda c: "Give your answer a title in double angle brackets, like <<title>>.",
        lambda c: "Add a title written inside << and >>.",
        lambda c: "Your answer needs a title surrounded by double angle brackets, e.g. <<A Title>>.",
    ),
}


def _phrase(c: Constraint, rng: random.Random, held_out: bool) -> str:
    options = PHRASINGS[c.kind]
    pool = options[-HELD_OUT_PHRASINGS:] if held_out else options[:-HELD_OUT_PHRASINGS]
    return rng.choice(pool)(c)


def _sample_params(kind: str, rng: random.Random) -> Constraint:
    d = DIFFICULTY
    makers: dict[str, Callable[[], Constraint]] = {
        "max_words": lambda: MaxWords(rng.randint(*d["max_words"])),
        "min_words": lambda: MinWords(rng.randint(*d["min_words"])),
        "include_keywords": lambda: IncludeKeywords(
            tuple(rng.sample(d["keyword_pool"], rng.randint(*d["keywords_per_prompt"])))),
        "forbid_word": lambda: ForbidWord(rng.choice(d["forbidden_pool"])),
        "bullets": lambda: Bullets(rng.randint(*d["bullets"])),
        "end_phrase": lambda: EndPhrase(rng.choice(d["end_phrases"])),
        "start_with": lambda: StartWith(rng.choice(d["start_words"])),
        "no_commas": NoCommas,
        "sentences": lambda: Sentences(rng.randint(*d["sentences"])),
        "wrap_quotes": WrapQuotes,
        "title": Title,
    }
    return makers[kind]()


def sample_constraints(rng: random.Random) -> list[Constraint]:
    """1-3 jointly feasible constraints of different families, drawn by ``FAMILY_WEIGHTS``."""
    sizes = DIFFICULTY["constraints_per_prompt"]
    want = rng.choices(list(sizes), weights=list(sizes.values()))[0]
    families = {kind: w for kind, w in FAMILY_WEIGHTS.items() if w > 0}
    chosen: list[Constraint] = []
    while len(chosen) < want and families:
        kind = rng.choices(list(families), weights=list(families.values()))[0]
        del families[kind]
        for _ in range(5):   # a clash on parameters (a forbidden word, a word limit) may vanish with others
            candidate = _sample_params(kind, rng)
            if feasible([*chosen, candidate]):
                chosen.append(candidate)
                break
    return chosen


REQUESTS = (
    "Write a short description of {topic}.",
    "Tell me about {topic}.",
    "Write a little about {topic}.",
    "Describe {topic}.",
)

TOPICS = (
    Topic("the ocean", ("sea", "wave", "water", "beach", "tide", "marine", "fish", "coral", "salt")),
    Topic("coffee", ("caffeine", "espresso", "brew", "bean", "cup", "latte", "roast", "mug", "cafe")),
    Topic("bicycles", ("bicycle", "bike", "cycling", "cyclist", "pedal", "wheel", "ride")),
    Topic("the moon", ("lunar", "crater", "orbit", "night", "tide", "astronaut", "sky")),
    Topic("dogs", ("dog", "puppy", "pet", "bark", "breed", "leash", "canine", "paw")),
    Topic("cats", ("cat", "kitten", "pet", "purr", "feline", "whisker", "paw")),
    Topic("rain", ("rainy", "storm", "cloud", "umbrella", "drop", "shower", "wet", "weather")),
    Topic("bread", ("dough", "flour", "bake", "baker", "loaf", "yeast", "toast", "oven")),
    Topic("gardening", ("garden", "plant", "soil", "seed", "flower", "grow", "water", "vegetable")),
    Topic("the library", ("book", "read", "librarian", "shelf", "borrow", "quiet", "novel")),
    Topic("trains", ("train", "railway", "rail", "station", "track", "passenger", "locomotive")),
    Topic("chess", ("board", "piece", "king", "queen", "pawn", "move", "checkmate", "game")),
    Topic("mountains", ("mountain", "peak", "summit", "climb", "hike", "snow", "valley", "altitude")),
    Topic("the piano", ("piano", "keys", "music", "play", "pianist", "melody", "instrument")),
    Topic("honey", ("bee", "hive", "sweet", "nectar", "beekeeper", "flower", "jar")),
    Topic("winter", ("snow", "cold", "ice", "frost", "season", "december", "coat")),
    Topic("the sun", ("sunlight", "star", "solar", "light", "heat", "warm", "sky", "shine")),
    Topic("soccer", ("football", "ball", "goal", "team", "player", "match", "field", "kick")),
    Topic("tea", ("cup", "leaf", "leaves", "brew", "green", "kettle", "drink", "herbal")),
    Topic("volcanoes", ("volcano", "lava", "eruption", "erupt", "magma", "ash", "crater")),
    Topic("birds", ("bird", "feather", "wing", "fly", "nest", "egg", "song", "beak")),
    Topic("the internet", ("online", "web", "website", "network", "computer", "email", "digital")),
    Topic("bees", ("bee", "hive", "honey", "pollen", "flower", "sting", "insect", "queen")),
    Topic("cooking pasta", ("pasta", "noodle", "boil", "sauce", "spaghetti", "cook", "italian")),
    Topic("forests", ("forest", "tree", "wood", "leaf", "leaves", "wildlife", "nature")),
    Topic("the desert", ("sand", "dune", "dry", "hot", "cactus", "camel", "heat")),
    Topic("swimming", ("swim", "pool", "water", "stroke", "swimmer", "dive", "lap")),
    Topic("photography", ("photo", "camera", "picture", "lens", "photographer", "image", "shot")),
    Topic("apples", ("apple", "fruit", "tree", "orchard", "juice", "pie", "red")),
    Topic("the city at night", ("city", "night", "light", "street", "building", "dark", "urban")),
    Topic("snow", ("snowflake", "winter", "cold", "white", "ice", "snowman", "ski")),
    Topic("friendship", ("friend", "trust", "together", "loyal", "support", "share", "companion")),
    Topic("chocolate", ("cocoa", "sweet", "candy", "dessert", "cacao", "bar", "milk")),
    Topic("rivers", ("river", "water", "stream", "flow", "bank", "current", "fish")),
    Topic("the guitar", ("guitar", "string", "music", "play", "chord", "guitarist", "song")),
    Topic("birthdays", ("birthday", "cake", "party", "candle", "gift", "celebrate", "age")),
    Topic("airplanes", ("airplane", "plane", "flight", "fly", "pilot", "airport", "wing")),
    Topic("the kitchen", ("cook", "stove", "oven", "food", "meal", "fridge", "recipe")),
    Topic("butterflies", ("butterfly", "wing", "caterpillar", "flower", "insect", "color")),
    Topic("museums", ("museum", "art", "exhibit", "history", "painting", "gallery", "visitor")),
    Topic("running", ("run", "runner", "jog", "race", "marathon", "exercise", "shoe")),
    Topic("clocks", ("clock", "time", "hour", "minute", "hand", "watch", "tick")),
    Topic("islands", ("island", "sea", "ocean", "beach", "coast", "tropical", "boat")),
    Topic("pizza", ("cheese", "slice", "dough", "tomato", "oven", "crust", "topping")),
    Topic("the wind", ("wind", "breeze", "air", "blow", "storm", "gust", "weather")),
    Topic("camping", ("camp", "tent", "campfire", "fire", "outdoor", "hike", "nature")),
    Topic("strawberries", ("strawberry", "berry", "fruit", "red", "sweet", "jam", "field")),
    Topic("lighthouses", ("lighthouse", "light", "coast", "ship", "sea", "beacon", "keeper")),
)


class IfevalLite(TopicTask):
    """The default benchmark task; see the module docstring for the score."""

    name = "ifeval-lite"

    TOPICS = TOPICS

    def prompts(self, split: str, n: int, seed: int) -> list[TaskPrompt]:
        """``n`` prompts cycling through the split's topics in a seeded order, each with its own
        request wording and constraint set; a prefix of a longer list for the same seed."""
        def draw(rng: random.Random, topic: Topic) -> tuple[str, dict[str, Any]]:
            request = rng.choice(REQUESTS).format(topic=topic.name)
            constraints = sample_constraints(rng)
            text = " ".join([request, *(_phrase(c, rng, held_out=False) for c in constraints)])
            return text, {"topic": topic.name, "terms": topic.match_terms(), "request": request,
                          "constraints": [c.to_meta() for c in constraints]}

        return topic_prompts(self.name, self.topics(split), split, n, seed, draw)

    def paraphrase(self, prompt: TaskPrompt, rng: random.Random) -> str:
        """The same request with every constraint in a held-out wording."""
        constraints = [constraint_from_meta(d) for d in prompt.meta["constraints"]]
        return " ".join([prompt.meta["request"], *(_phrase(c, rng, held_out=True) for c in constraints)])

    def score_details(self, prompt: TaskPrompt, response: str) -> dict[str, Any]:
        factor, flags = gate(response, prompt.meta["terms"])
        results = []
        for d in prompt.meta["constraints"]:
            c = constraint_from_meta(d)
            passed = c.check(response)
            value = 1.0 if passed else min(PARTIAL_CAP, c.partial(response))
            results.append({"kind": c.kind, "passed": passed, "value": value})
        mean = sum(r["value"] for r in results) / len(results) if results else 1.0
        return {"score": factor * mean, "gate": factor, **flags, "constraints": results}
