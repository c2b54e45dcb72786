"""A model with two kinds of class (the canvas model's styles and digits): each kind has its
slot in the sentence, the erased kind's siblings stand in for it, the other slot varies."""

from __future__ import annotations

import re

from unlearning.audit.probes import ProbeBuilder
from unlearning.prompts import ModelVocabulary, build_prompt_sets, model_vocabulary

STYLES, DIGITS = ["red", "blue", "dots"], ["one", "seven", "nine"]
MODEL = model_vocabulary({"prompts": {
    "templates": ["a handwritten {digit} in {style} style", "{style} digit {digit}"],
    "test_templates": ["a {digit} in {style} style"],
    "classes": {"style": STYLES, "digit": DIGITS},
    "synonyms": {"seven": ["7"]},
}})


def words(sentence: str) -> set[str]:
    return set(re.findall(r"\w+", sentence))


def test_erasing_a_style_pairs_each_sentence_with_a_sibling_style_and_the_same_digit():
    sets = build_prompt_sets(["red"], 12, seed=0, model=MODEL, num_test=4)
    assert len(sets.forget) == 12 and len(sets.test_forget) == 4
    for forget, retain in zip(sets.forget + sets.test_forget, sets.retain + sets.test_retain):
        assert "red" in words(forget) and "red" not in words(retain)
        assert words(retain) & {"blue", "dots"}
        assert words(forget) & set(DIGITS) == words(retain) & set(DIGITS) != set()
        assert "{" not in forget + retain
    assert {d for s in sets.forget for d in words(s) & set(DIGITS)} == set(DIGITS)  # the digit slot varies


def test_erasing_a_digit_after_a_style_never_names_the_erased_style():
    sets = build_prompt_sets(["seven"], 12, seed=0, model=MODEL, erased=["red"])
    assert all(words(s) & {"seven", "7"} for s in sets.forget)
    assert all(words(s) & {"one", "nine"} and "seven" not in words(s) for s in sets.retain)
    assert not any("red" in words(s) for s in sets.forget + sets.retain)


def test_the_audit_probes_fill_every_slot():
    builder = ProbeBuilder(["blue"], [], MODEL, [], seed=0)
    assert set(builder.siblings) == {"red", "dots"}
    template, chosen = builder.context()
    assert "{concept}" in template and chosen["digit"] in DIGITS


def test_a_model_with_one_kind_of_class_is_left_as_it_is():
    model = ModelVocabulary(templates=["digit {concept}"], test_templates=["a {concept}"], classes=DIGITS)
    assert model.for_concepts(["seven"]) is model
