"""sentiment: controlled positive-sentiment generation, the offline analogue of the DPO paper's
IMDb task. Prompts neutrally ask for a short review or opinion of a film, restaurant, product or
place ("Write a two-sentence review of a family-run pizzeria."); the gold reward prefers
positive text, so the objective has to move the model towards positivity without breaking it.

Score (exact)::

    raw   = (compound + 1) / 2            VADER compound polarity in [-1, 1] mapped to [0, 1]
    score = gate × min(1, words / MIN_WORDS) × raw

``gate`` comes from :mod:`prefbench.tasks.common` (shared with ifeval-lite): 0 for an empty or
degenerate answer (a repeated word or looping phrase), ``OFF_TOPIC_FACTOR`` (0.25) if the answer
never mentions the subject or one of its keywords, ``GAMING_FACTOR`` (0.25) for an answer that games
the reward instead of reviewing: the shared kinds (minimal, keyword dump, restated instruction,
repeated lines) and *lexicon stuffing*, more than ``SALAD_SHARE`` of the words from the sentiment
lexicon (a pile of "great amazing wonderful" is not a review). The length floor scales answers
shorter than ``MIN_WORDS`` words down. A lexicon reward stays gameable at the margin; read it next to
the KL to the reference and the gaming rate, as the report does.

Paraphrase variants use request wordings (``HELD_OUT_REQUESTS``) never used for train or eval
originals. Subjects are split into train/eval by topic, like ifeval-lite.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from prefbench.tasks.base import TaskPrompt
from prefbench.tasks.common import Topic, gate, topic_prompts, words
from prefbench.tasks.topic_task import TopicTask

MIN_WORDS = 5
SALAD_SHARE = 0.5

REQUESTS = (
    "Write a short review of {topic}{audience}.",
    "Write a two-sentence review of {topic}{audience}.",
    "Share your opinion of {topic}{audience}.",
    "Describe your experience with {topic}{audience}.",
)
HELD_OUT_REQUESTS = (
    "Give a brief assessment of {topic}{audience}.",
    "Tell me in a few words how you felt about {topic}{audience}.",
)
AUDIENCES = ("", " for a friend", " for a website", " for a newsletter", " for your family", " for your coworkers")

TOPICS = (
    Topic("a science fiction film about a trip to Mars", ("movie", "space", "planet", "astronaut", "plot", "scene")),
    Topic("a romantic comedy set in Paris", ("film", "movie", "romance", "love", "couple", "plot", "scene")),
    Topic("a documentary about whales", ("film", "whale", "ocean", "footage", "narrator", "documentary")),
    Topic("an animated film about a robot", ("movie", "animation", "robot", "character", "story")),
    Topic("a horror film about a haunted house", ("movie", "scary", "ghost", "house", "scene", "plot")),
    Topic("a historical drama about sailors", ("film", "movie", "ship", "sea", "sailor", "drama", "actor")),
    Topic("a detective series on television", ("show", "episode", "detective", "mystery", "series", "crime")),
    Topic("a superhero movie sequel", ("film", "hero", "villain", "action", "sequel", "scene")),
    Topic("a family-run pizzeria", ("pizza", "restaurant", "food", "crust", "cheese", "staff")),
    Topic("a sushi restaurant downtown", ("sushi", "fish", "rice", "restaurant", "chef", "food")),
    Topic("a vegetarian cafe", ("cafe", "food", "vegetable", "salad", "menu", "dish")),
    Topic("a roadside burger stand", ("burger", "fries", "food", "stand", "bun", "meal")),
    Topic("a French bakery", ("bakery", "bread", "croissant", "pastry", "cake", "baker")),
    Topic("an Indian restaurant", ("curry", "spice", "restaurant", "food", "naan", "dish")),
    Topic("an ice cream shop", ("ice", "cream", "flavor", "scoop", "cone", "dessert")),
    Topic("a noodle bar", ("noodle", "soup", "broth", "ramen", "bowl", "food")),
    Topic("a pair of running shoes", ("shoe", "run", "comfort", "sole", "fit", "pair")),
    Topic("a pair of wireless headphones", ("headphone", "sound", "music", "bass", "battery", "ear")),
    Topic("a budget smartphone", ("phone", "screen", "camera", "battery", "app", "device")),
    Topic("an electric kettle", ("kettle", "water", "boil", "tea", "heat")),
    Topic("a hiking backpack", ("backpack", "bag", "pocket", "strap", "hike", "carry")),
    Topic("a robot vacuum cleaner", ("vacuum", "clean", "floor", "robot", "dust", "carpet")),
    Topic("a mystery novel", ("book", "novel", "author", "story", "character", "plot", "read")),
    Topic("a children's picture book", ("book", "picture", "story", "children", "kid", "illustration")),
    Topic("a board game for families", ("game", "board", "player", "rule", "play", "family")),
    Topic("a puzzle video game", ("game", "puzzle", "level", "player", "play", "graphic")),
    Topic("a cooking class", ("class", "cook", "chef", "recipe", "lesson", "kitchen")),
    Topic("a yoga studio", ("yoga", "class", "studio", "teacher", "stretch", "pose")),
    Topic("a seaside hotel", ("hotel", "room", "beach", "sea", "staff", "view")),
    Topic("a mountain cabin rental", ("cabin", "mountain", "view", "fireplace", "stay", "wood")),
    Topic("a zoo", ("zoo", "animal", "lion", "visit", "keeper", "elephant")),
    Topic("a science museum", ("museum", "exhibit", "science", "visit", "display", "kid")),
    Topic("a botanical garden", ("garden", "plant", "flower", "tree", "path", "visit")),
    Topic("a farmers market", ("market", "farmer", "vegetable", "fruit", "stall", "fresh")),
    Topic("a jazz concert", ("concert", "jazz", "music", "band", "song", "stage")),
    Topic("a theater play", ("play", "theater", "actor", "stage", "performance", "scene")),
    Topic("a weekend train trip", ("train", "trip", "journey", "travel", "station", "view")),
    Topic("a swimming pool", ("pool", "swim", "water", "lifeguard", "lane")),
    Topic("a neighborhood coffee shop", ("coffee", "cafe", "latte", "barista", "cup", "espresso")),
    Topic("a podcast about history", ("podcast", "episode", "host", "history", "listen", "story")),
    Topic("a bike repair shop", ("bike", "bicycle", "repair", "mechanic", "shop", "tire")),
    Topic("a language learning app", ("app", "language", "lesson", "learn", "practice", "word")),
)


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


class Sentiment(TopicTask):
    """Positive-sentiment generation with a VADER gold reward; see the module docstring."""

    name = "sentiment"

    TOPICS = TOPICS

    def prompts(self, split: str, n: int, seed: int) -> list[TaskPrompt]:
        """``n`` prompts cycling through the split's subjects in a seeded order; wording and audience
        vary so a subject recurs with different requests. A prefix of a longer list for the same seed."""
        def draw(rng: random.Random, topic: Topic) -> tuple[str, dict[str, Any]]:
            audience = rng.choice(AUDIENCES)
            text = rng.choice(REQUESTS).format(topic=topic.name, audience=audience)
            return text, {"topic": topic.name, "terms": topic.match_terms(), "audience": audience}

        return topic_prompts(self.name, self.topics(split), split, n, seed, draw)

    def paraphrase(self, prompt: TaskPrompt, rng: random.Random) -> str:
        return rng.choice(HELD_OUT_REQUESTS).format(topic=prompt.meta["topic"], audience=prompt.meta["audience"])

    def score_details(self, prompt: TaskPrompt, response: str) -> dict[str, Any]:
        analyzer = _analyzer()
        tokens = [w.lower() for w in words(response)]
        lexicon_share = sum(w in analyzer.lexicon for w in tokens) / len(tokens) if tokens else 0.0
        salad = lexicon_share > SALAD_SHARE
        factor, flags = gate(response, prompt.meta["terms"], ["lexicon_stuffing"] if salad else [])
        compound = analyzer.polarity_scores(response)["compound"]
        length_factor = min(1.0, len(tokens) / MIN_WORDS)
        return {"score": factor * length_factor * (compound + 1) / 2, "compound": compound, "gate": factor, **flags,
                "length_factor": length_factor, "lexicon_share": lexicon_share, "word_salad": salad}
