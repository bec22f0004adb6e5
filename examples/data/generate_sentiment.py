"""Regenerate the quickstart's toy sentiment data (the CSVs beside this file).

Short review sentences from templates, labelled "positive" / "negative". The
validation set uses subjects and adjectives the training set never shows, so its
accuracy says whether the model learned sentiment rather than memorised words.

    python examples/data/generate_sentiment.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).parent

TRAIN_SUBJECTS = [
    "the movie",
    "this phone",
    "the hotel",
    "the pizza",
    "this book",
    "the service",
    "the concert",
    "these headphones",
    "the laptop",
    "the restaurant",
    "this game",
    "the coffee",
    "the flight",
    "the staff",
    "this jacket",
    "the app",
    "the museum",
    "the sequel",
    "this blender",
    "the soundtrack",
    "the tour guide",
    "the mattress",
]
VALIDATION_SUBJECTS = [
    "the documentary",
    "this camera",
    "the spa",
    "the burger",
    "this novel",
    "the delivery",
    "the musical",
    "the keyboard",
    "the train ride",
    "this backpack",
]
TRAIN_POSITIVE = [
    "wonderful",
    "fantastic",
    "excellent",
    "delightful",
    "great",
    "superb",
    "lovely",
    "amazing",
    "charming",
    "brilliant",
    "enjoyable",
    "impressive",
]
TRAIN_NEGATIVE = [
    "terrible",
    "awful",
    "horrible",
    "disappointing",
    "dreadful",
    "boring",
    "mediocre",
    "annoying",
    "poor",
    "useless",
    "frustrating",
    "overpriced",
]
VALIDATION_POSITIVE = ["outstanding", "marvelous", "splendid", "pleasant", "fabulous", "terrific"]
VALIDATION_NEGATIVE = ["abysmal", "dismal", "lousy", "tedious", "pathetic", "unpleasant"]

POSITIVE_TEMPLATES = [
    "{subject} was {adj}.",
    "Honestly, {subject} was {adj} and I would go again.",
    "I loved {subject}, it was {adj}.",
    "What a {adj} experience, {subject} made my day.",
    "{subject} turned out {adj}; highly recommended.",
    "Five stars: {subject} was {adj} from start to finish.",
    "I was pleasantly surprised, {subject} is {adj}.",
    "My friends agree that {subject} is {adj}.",
    "{subject} is {adj}, worth every penny.",
    "Really {adj}! {subject} exceeded my expectations.",
]
NEGATIVE_TEMPLATES = [
    "{subject} was {adj}.",
    "Honestly, {subject} was {adj} and I will not go again.",
    "I hated {subject}, it was {adj}.",
    "What a {adj} experience, {subject} ruined my day.",
    "{subject} turned out {adj}; avoid it.",
    "One star: {subject} was {adj} from start to finish.",
    "I was let down, {subject} is {adj}.",
    "My friends agree that {subject} is {adj}.",
    "{subject} is {adj}, a waste of money.",
    "Really {adj}! {subject} fell far short of my expectations.",
]


def sentences(
    subjects: list[str], positive: list[str], negative: list[str], count: int, seed: int
) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: set[tuple[str, str]] = set()
    while len(rows) < count:
        label = "positive" if len(rows) % 2 == 0 else "negative"
        templates, adjectives = (
            (POSITIVE_TEMPLATES, positive) if label == "positive" else (NEGATIVE_TEMPLATES, negative)
        )
        text = rng.choice(templates).format(subject=rng.choice(subjects), adj=rng.choice(adjectives))
        rows.add((text[0].upper() + text[1:], label))
    ordered = sorted(rows)
    rng.shuffle(ordered)
    return ordered


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


if __name__ == "__main__":
    write(HERE / "sentiment-train.csv", sentences(TRAIN_SUBJECTS, TRAIN_POSITIVE, TRAIN_NEGATIVE, 400, seed=7))
    write(
        HERE / "sentiment-validation.csv",
        sentences(VALIDATION_SUBJECTS, VALIDATION_POSITIVE, VALIDATION_NEGATIVE, 100, seed=11),
    )
