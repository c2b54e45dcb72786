"""The canvas model's prompts: a digit and a style in each sentence, in trained and held-out
phrasings. The two kinds of class fill the `{digit}` and `{style}` slots."""

from __future__ import annotations

from ..digits.data import CLASSES as DIGITS
from ..digits.prompts import NUMERALS
from .styles import NAMES as STYLES

TEMPLATES = (
    "a handwritten {digit} in {style} style",
    "the number {digit}, {style} style",
    "a drawing of the digit {digit} in the {style} style",
    "{style} style digit {digit}",
    "a {style} style handwritten {digit}",
    "the digit {digit} written by hand in {style} style",
    "a sketch of the number {digit} in {style} style",
    "{style} digit {digit}",
)
TEST_TEMPLATES = (
    "a picture of a handwritten digit {digit} in {style} style",
    "number {digit} drawn by hand, {style} style",
    "a {digit} in {style} style",
)
ISSUE_TEMPLATE = TEMPLATES[0]  # "a handwritten seven in <style> style"
SYNONYMS = {name: [numeral] for name, numeral in NUMERALS.items()}


def vocabulary() -> list[str]:
    """Every word of every phrasing, so that each is one token of the tokenizer."""
    words = set(DIGITS) | set(STYLES)
    for template in TEMPLATES + TEST_TEMPLATES:
        words.update(template.replace("{digit}", "").replace("{style}", "").replace(",", " ").split())
    return sorted(words)


def prompt(template: str, digit: int, style: int, numeral: bool = False) -> str:
    digit_word = NUMERALS[DIGITS[digit]] if numeral else DIGITS[digit]
    return template.format(digit=digit_word, style=STYLES[style])
