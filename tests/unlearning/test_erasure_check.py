"""The stop behind `stop_when_erased`: when a run ends early, and when the check is not trusted.

The check itself (drawing held-out sentences and finding the concept in them) is exercised on a
model that draws its concepts, in tests/test_canvas.py; a tiny random pipeline draws none.
"""

from __future__ import annotations

import pytest
import torch

import unlearning
from unlearning.audit.stop import IN_A_ROW, ErasureCheck, erased_concepts
from unlearning.callbacks import Callbacks

from .test_erase import TINY


def checks(*leaks: float, between: int = 2) -> list[dict]:
    """A run's history: `between` steps without a check before each check's record."""
    history = []
    for leak in leaks:
        history += [{"step": len(history) + i} for i in range(between)]
        history.append({"step": len(history), "erasure_check": {"red": leak, "dots": 0.0}})
    return history


def test_a_concept_is_erased_after_enough_clean_checks_in_a_row():
    assert IN_A_ROW == 2
    assert erased_concepts(checks(0.5, 0.0, 0.0), threshold=0.0) == {"red", "dots"}
    assert erased_concepts(checks(0.0, 0.5, 0.0), threshold=0.0) == {"dots"}  # red: clean, then not: count again
    assert erased_concepts(checks(0.0), threshold=0.0) == set()  # one check is not enough
    assert erased_concepts(checks(0.0, 0.1), threshold=0.0) == {"dots"}
    assert erased_concepts(checks(0.0, 0.1), threshold=0.1) == {"red", "dots"}
    assert erased_concepts([{"step": 0}, {"step": 1}], threshold=1.0) == set()


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


class ScriptedCheck:
    """The erasure check as the loop sees it, its shares given in advance (the drawing and the
    detector are the canvas test's): rows 0-1 name red, rows 2-3 dots."""

    every, threshold = 1, 0.0
    rows_left = ErasureCheck.rows_left

    def __init__(self, shares: list[dict]):
        self.shares = iter(shares)
        self.rows = {"red": torch.tensor([0, 1]), "dots": torch.tensor([2, 3])}

    def due(self, step: int) -> bool:
        return True

    def leaks(self) -> dict:
        return next(self.shares)


def test_an_erased_concept_leaves_the_batches_and_the_run_ends_with_the_last():
    from .test_loop import trainer

    unlearner = trainer("rg", 1.0, steps=10)  # 4 forget rows, batches of 2
    drawn = []
    direction = unlearner.method.direction
    unlearner.method.direction = lambda batch, generator: drawn.append(batch.tolist()) or direction(batch, generator)
    red_first = [{"red": 0.0, "dots": 1.0}] * 2 + [{"red": 0.0, "dots": 0.5}] * 2 + [{"red": 0.0, "dots": 0.0}] * 2
    history = unlearner.run(Callbacks(), None, "key", ScriptedCheck(red_first))
    assert len(history) == 6  # dots found erased twice by step 6: no concept left
    assert all(set(rows) <= {2, 3} for rows in drawn[2:])  # after red's second clean check, only dots' rows
    assert any(set(rows) & {0, 1} for rows in drawn[:2])


def test_a_run_too_short_to_draw_a_concepts_images_runs_every_step_with_a_warning(tiny_base, latent_cache, tmp_path):
    """One step of one pair draws the training images of one of two concepts: the other's detector
    has nothing to be fitted on."""
    events = []
    settings = {**TINY, "steps": 1, "batch_size": 1, "stop_when_erased": 0.0, "stop_check_every": 1}
    result = unlearning.erase(tiny_base, ["van gogh", "monet"], tmp_path / "out", cache_dir=latent_cache, audit="off",
                              hyperparameters=settings, callbacks=Callbacks(on_event=lambda *e: events.append(e)))
    warnings = [message for kind, message, _ in events if kind == "warning"]
    assert any("reach no training image of" in m for m in warnings), warnings
    assert len(result.history) == 1


def test_a_concept_found_again_comes_back_to_the_batches():
    check = ScriptedCheck([])
    red_gone = checks(0.0, 0.0)
    assert check.rows_left(red_gone[:-1] + [{"erasure_check": {"red": 0.0, "dots": 0.5}}]).tolist() == [2, 3]
    assert check.rows_left(checks(0.0, 0.0, 0.25)).tolist() == [0, 1]  # red found again: back; dots gone
