"""The stop behind `stop_when_erased`: when a run ends early, and when the check is not trusted.

The check itself (drawing held-out sentences and finding the concept in them) is exercised on a
model that draws its concepts, in tests/test_canvas.py; a tiny random pipeline draws none.
"""

from __future__ import annotations

import pytest

import unlearning
from unlearning.audit.stop import IN_A_ROW, erased_in_a_row
from unlearning.callbacks import Callbacks

from .test_erase import TINY


def checks(*leaks: float, between: int = 2) -> list[dict]:
    """A run's history: `between` steps without a check before each check's record."""
    history = []
    for leak in leaks:
        history += [{"step": len(history) + i} for i in range(between)]
        history.append({"step": len(history), "erasure_check": {"red": leak, "dots": 0.0}})
    return history


def test_the_run_stops_only_after_enough_clean_checks_in_a_row():
    assert IN_A_ROW == 2
    assert erased_in_a_row(checks(0.5, 0.0, 0.0), threshold=0.0)
    assert not erased_in_a_row(checks(0.0, 0.5, 0.0), threshold=0.0)  # a clean check, then not: count again
    assert not erased_in_a_row(checks(0.0), threshold=0.0)
    assert not erased_in_a_row(checks(0.0, 0.1), threshold=0.0)
    assert erased_in_a_row(checks(0.0, 0.1), threshold=0.1)
    assert not erased_in_a_row([{"step": 0}, {"step": 1}], threshold=1.0)


def test_every_concept_must_be_under_the_threshold():
    history = checks(0.0, 0.0)
    history[-1]["erasure_check"]["dots"] = 0.25
    assert not erased_in_a_row(history, threshold=0.0)


def test_a_check_that_cannot_see_the_concept_in_the_originals_images_is_ignored_with_a_warning(
        tiny_base, latent_cache, tmp_path):
    """A random tiny model draws no van Gogh: its forget and retain images look alike to the detector,
    which then finds the concept in at most half of the original's images. Stopping on its word would
    stop an erasure that never happened, so every step runs."""
    events = []
    settings = {**TINY, "stop_when_erased": 1.0, "stop_check_every": 1, "stop_check_images": 4}
    result = unlearning.erase(tiny_base, ["van gogh"], tmp_path / "out", cache_dir=latent_cache, audit="off",
                              hyperparameters=settings, callbacks=Callbacks(on_event=lambda *e: events.append(e)))
    warnings = [message for kind, message, _ in events if kind == "warning"]
    assert any("stop_when_erased is ignored" in m and "van gogh" in m for m in warnings), warnings
    assert len(result.history) == TINY["steps"]
    assert not any("erasure_check" in r for r in result.history)


@pytest.mark.parametrize("method", ["ga", "esd"])
def test_methods_without_a_retain_set_draw_one_for_the_check(tiny_base, latent_cache, tmp_path, method):
    """The detector is fitted on the retain images, which ga and esd never train on."""
    events = []
    settings = {**TINY, "stop_when_erased": 0.0, "stop_check_images": 4}
    unlearning.erase(tiny_base, ["van gogh"], tmp_path / "out", method=method, cache_dir=latent_cache, audit="off",
                     hyperparameters=settings, callbacks=Callbacks(on_event=lambda *e: events.append(e)))
    assert any("original" in data for _, _, data in events)  # the check was fitted, whatever it then found


def test_each_concept_is_detected_on_the_forget_prompts_that_name_it():
    from unlearning.audit.stop import concept_rows
    from unlearning.prompts import ModelVocabulary

    model = ModelVocabulary(synonyms={"seven": ["7"]})
    prompts = ["a 7 in red style", "a three in dots style", "a seven in Dots style", "a heptagon"]
    assert concept_rows(prompts, "seven", model) == [0, 2]
    assert concept_rows(prompts, "dots", model) == [1, 2]  # whole words, any case
    assert concept_rows(prompts, "van gogh", model) == [0, 1, 2, 3]  # named by none (a user's own): all of them
