import pytest

from unlearning import InvalidInput
from unlearning.prompts import ModelVocabulary, build_prompt_sets
from unlearning.vocabulary import ATTRIBUTES

DIGITS = ModelVocabulary(
    templates=["a handwritten digit {concept}", "the number [{concept}]"],
    test_templates=["a drawing of the digit {concept}"],
    classes="zero one two three four five six seven eight nine".split(),
)


def test_same_seed_same_prompts_and_another_seed_others():
    a = build_prompt_sets(["van gogh"], 50, seed=3)
    b = build_prompt_sets(["van gogh"], 50, seed=3)
    c = build_prompt_sets(["van gogh"], 50, seed=4)
    assert (a.forget, a.retain, a.test_forget) == (b.forget, b.retain, b.test_forget)
    assert a.forget != c.forget


def test_forget_prompts_carry_the_concept_and_their_pairs_do_not():
    sets = build_prompt_sets(["van gogh"], 100, seed=0)
    assert len(sets.forget) == len(sets.retain) == 100
    assert all("van gogh" in f for f in sets.forget)
    assert not any("van gogh" in r for r in sets.retain)
    assert len(set(sets.forget)) > 80  # diverse: contexts vary


def test_retain_is_the_same_sentence_without_the_concept():
    sets = build_prompt_sets(["a red balloon"], 30, seed=1)
    for forget, retain in zip(sets.forget, sets.retain):
        shared = set(retain.split()) - {"an", "a"}
        assert shared <= set(forget.replace(",", " ,").split()) | set(forget.split())


def test_preserved_concepts_take_the_place_of_the_concept_in_some_pairs():
    sets = build_prompt_sets(["van gogh"], 40, seed=0, preserve=["claude monet"])
    assert sum("claude monet" in r for r in sets.retain) == 20


def test_held_out_prompts_use_words_never_seen_in_training():
    sets = build_prompt_sets(["van gogh"], 200, seed=0, num_test=30)
    held_out_only = {w for _, test_words in ATTRIBUTES.values() for w in test_words}
    training_text = " | ".join(sets.forget + sets.retain)
    assert not any(f" {w} " in f" {training_text} " for w in held_out_only if len(w.split()) > 1)
    assert any(any(w in t for w in held_out_only) for t in sets.test_forget)


def test_class_removal_retains_the_sibling_classes_balanced():
    sets = build_prompt_sets(["seven"], 90, seed=0, model=DIGITS)
    assert all("seven" in f for f in sets.forget)
    counts = {c: sum(r.endswith(" " + c) for r in sets.retain) for c in DIGITS.classes if c != "seven"}
    assert set(counts.values()) == {10}
    assert all(t.startswith("a drawing of the digit") for t in sets.test_forget)


def test_user_prompts_extend_or_replace():
    user = {"forget": ["starry night by van gogh"], "retain": ["a starry night"], "synonyms": ["vincent"]}
    sets = build_prompt_sets(["van gogh"], 10, prompts=user)
    assert sets.forget[0] == "starry night by van gogh" and sets.retain[0] == "a starry night"
    assert len(sets.forget) == 10 and any("vincent" in f for f in sets.forget)
    only = build_prompt_sets(["van gogh"], 10, prompts={**user, "replace": True})
    assert (only.forget, only.retain) == (["starry night by van gogh"], ["a starry night"])


@pytest.mark.parametrize(
    "concepts, prompts, field",
    [
        ([], None, "concepts"),
        (["  "], None, "concepts[0]"),
        (["ok", "!!!"], None, "concepts[1]"),
        (["x" * 201], None, "concepts[0]"),
        (["a{b}"], None, "concepts[0]"),
        (["c"] * 17, None, "concepts"),
        (["ok"], {"retain": ["r"]}, "prompts.forget"),
        (["ok"], {"forget": [""]}, "prompts.forget[0]"),
        (["ok"], {"other": []}, "prompts.other"),
    ],
)
def test_bad_input_names_the_field(concepts, prompts, field):
    with pytest.raises(InvalidInput) as error:
        build_prompt_sets(concepts, 4, prompts=prompts)
    assert error.value.field == field
