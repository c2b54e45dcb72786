"""The digits model's prompt vocabulary: training phrasings, held-out phrasings, numerals.

`TEMPLATES` are the sentence shapes the model is trained on (and the library builds forget
and retain prompts from); `TEST_TEMPLATES` are never seen in training, for evaluation.
"""

from __future__ import annotations

from .data import CLASSES

TEMPLATES = (
    "a handwritten digit {concept}",
    "the number {concept}",
    "a drawing of the digit {concept}",
    "digit {concept}",
    "a handwritten {concept}",
    "the digit {concept} written by hand",
    "a scanned handwritten number {concept}",
    "a sketch of the number {concept}",
)
TEST_TEMPLATES = (
    "a picture of a handwritten digit {concept}",
    "number {concept} drawn by hand",
    "a {concept}",
)
NUMERALS = {name: str(digit) for digit, name in enumerate(CLASSES)}
SYNONYMS = {name: [numeral] for name, numeral in NUMERALS.items()}


def vocabulary() -> list[str]:
    """Every word of every phrasing, so that each is one token of the tokenizer."""
    words = set(CLASSES)
    for template in TEMPLATES + TEST_TEMPLATES:
        words.update(template.replace("{concept}", "").split())
    return sorted(words)


def prompt(template: str, digit: int, numeral: bool = False) -> str:
    word = NUMERALS[CLASSES[digit]] if numeral else CLASSES[digit]
    return template.format(concept=word)
