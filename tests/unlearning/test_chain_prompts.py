"""A chain of erasures: what the base has erased never comes back in a retain prompt."""

from pathlib import Path

from unlearning.prompts import build_prompt_sets, model_vocabulary, read_model_settings

DIGITS = model_vocabulary(read_model_settings(Path(__file__).parents[2] / "models" / "digits"))


def test_the_second_link_of_a_chain_retains_no_erased_class():
    first = build_prompt_sets(["seven"], 90, seed=0, model=DIGITS)
    second = build_prompt_sets(["three"], 90, seed=0, model=DIGITS, erased=["Seven"])
    assert any("seven" in r for r in build_prompt_sets(["three"], 90, seed=0, model=DIGITS).retain)  # without erased: it does
    for sets in (first, second):
        assert len(sets.forget) == len(sets.retain) == 90
    assert not any("seven" in r.lower() or " 7" in r for r in second.retain + second.test_retain)
    assert all({"three", "3"} & set(f.split()) for f in second.forget)
    siblings = {word for r in second.retain for word in r.split() if word in DIGITS.classes}
    assert siblings == set(DIGITS.classes) - {"three", "seven"}


def test_user_retain_prompts_and_preserved_concepts_naming_an_erased_one_are_dropped():
    user = {"forget": ["van gogh's starry night"], "retain": ["Claude Monet's water lilies", "a night sky"]}
    sets = build_prompt_sets(["van gogh"], 40, seed=1, preserve=["claude monet", "rembrandt"], prompts=user,
                             erased=["claude monet"])
    assert sets.retain[0] == "a night sky"
    assert not any("monet" in r.lower() for r in sets.retain) and any("rembrandt" in r for r in sets.retain)


def test_whole_words_only():
    sets = build_prompt_sets(["cat"], 20, seed=0, preserve=["dogma"], erased=["dog"])
    assert any("dogma" in r for r in sets.retain)


def test_without_erased_concepts_the_sets_are_unchanged():
    assert build_prompt_sets(["seven"], 50, seed=2, model=DIGITS) == build_prompt_sets(["seven"], 50, seed=2, model=DIGITS, erased=[])
