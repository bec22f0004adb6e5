"""Small labelled data sets built from the tiny models' vocabulary (seeded, repeatable)."""

from __future__ import annotations

import random

CAT_WORDS = ("cat", "kitten", "meows", "purrs", "whiskers", "feline")
DOG_WORDS = ("dog", "puppy", "barks", "woof", "fetch", "canine")
FILLER = tuple(
    ["the", "a", "is", "on", "in", "my", "very", "happy", "big", "small", "sofa", "mat", "house", "bed", "today"]
)
COLORS = tuple(["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown"])


def animal_sentence(rng: random.Random, animal: str, low: int = 4, high: int = 12) -> str:
    """A sentence of filler words with two to four words of `animal` ('cat' or 'dog')."""
    words = CAT_WORDS if animal == "cat" else DOG_WORDS
    sentence = [rng.choice(FILLER) for _ in range(rng.randint(low, high))]
    for _ in range(rng.randint(2, 4)):
        sentence.insert(rng.randrange(len(sentence) + 1), rng.choice(words))
    return " ".join(sentence)


def animals(rows: int = 160, seed: int = 0, low: int = 4, high: int = 12) -> list[tuple[str, str]]:
    """(sentence, 'cat' | 'dog') pairs, alternating classes."""
    rng = random.Random(seed)
    return [(animal_sentence(rng, animal, low, high), animal) for animal in ("cat", "dog") * (rows // 2)]


def color_questions(rows: int = 160, seed: int = 0) -> list[dict[str, str]]:
    """QA rows: the answer is the color after 'the color is', at a random place in the context."""
    rng = random.Random(seed)
    data = []
    for _ in range(rows):
        color = rng.choice(COLORS)
        before = " ".join(rng.choices(FILLER, k=rng.randint(1, 8)))
        after = " ".join(rng.choices(FILLER, k=rng.randint(1, 8)))
        data.append(
            {"question": "what is the color ?", "context": f"{before} the color is {color} . {after}", "answers": color}
        )
    return data
