"""Attribute vocabularies for diversified prompts, with no external model.

Each list is split in two: the first part builds training prompts, the rest (never seen
in training) builds held-out test prompts, so evaluation measures generalisation.
Templates mark the concept's fragment with brackets: the forget sentence keeps it, the
paired retain sentence drops it (or puts a preserved concept in its place).
"""

from __future__ import annotations

ATTRIBUTES: dict[str, tuple[list[str], list[str]]] = {
    # name: (training words, held-out words)
    "emotion": (
        ["joyful", "calm", "serious", "curious", "proud", "tired", "playful"],
        ["anxious", "dreamy", "stern"],
    ),
    "subject": (
        ["a woman", "a man", "a child", "an old man", "a dog", "a horse", "a cyclist", "a musician"],
        ["a cat", "a farmer", "a dancer"],
    ),
    "activity": (
        ["walking", "reading a book", "dancing", "sitting on a bench", "running", "cooking",
         "playing the guitar", "looking at the sky"],
        ["swimming", "painting a wall", "sleeping"],
    ),
    "place": (
        ["in a forest", "on a beach", "in a city street", "in a kitchen", "on a mountain",
         "in a garden", "in a library", "by a river"],
        ["in a desert", "on a boat", "in a train station"],
    ),
    "time": (
        ["in the morning", "at sunset", "at night", "at noon", "in winter", "in autumn", "after the rain"],
        ["at dawn", "in spring", "during a storm"],
    ),
    "medium": (
        ["a photo", "a painting", "a drawing", "a watercolor", "a digital illustration", "a sketch"],
        ["an oil painting", "a charcoal drawing", "a poster"],
    ),
}

TEMPLATES = [
    "{medium} of {subject} {activity} {place} {time}[, in the style of {concept}]",
    "{medium} of [{concept} and ]{subject} {place} {time}",
    "a {emotion} [{concept} ]person {activity} {place} {time}",
    "[{concept}, ]{subject} {activity} {place}, {medium}",
    "{medium} of a landscape {place} {time}[ with {concept}]",
]
TEST_TEMPLATES = [
    "{medium} of {subject} {place}[ by {concept}]",
    "[{concept}: ]{subject} {activity} {time}",
    "a {emotion} [{concept} ]figure {place}",
]


def vocabulary(split: int) -> dict[str, list[str]]:
    """The training (split 0) or held-out (split 1) words of every attribute."""
    return {name: lists[split] for name, lists in ATTRIBUTES.items()}
