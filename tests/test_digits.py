"""The digits model (models/digits): a real generator that draws what it is asked for, and
one real, short erasure that makes it stop drawing one digit while it keeps another."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from unlearning.digits.classifier import held_out_accuracy, share_recognised
from unlearning.digits.data import CLASSES, images_to_pixels, load_split, pixels_to_images
from unlearning.digits.kid import kid
from unlearning.digits.prompts import TEMPLATES, TEST_TEMPLATES
from unlearning.digits.sampling import draw_digits

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits"


@pytest.fixture(scope="module")
def pipe():
    """Loaded with the stock pipeline, nothing added: the folder alone must be enough."""
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_split_parts_are_disjoint_and_the_same_on_every_call():
    first, second = load_split(), load_split()
    parts = [first.generator, first.judge_train, first.judge_test]
    rows = [{row.tobytes() for row in part.pixels} for part in parts]
    assert sum(len(r) for r in rows) > 0.9 * 1797  # (load_digits holds a few duplicate images)
    assert not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert np.array_equal(first.generator.labels, second.generator.labels)
    assert np.array_equal(first.judge_test.pixels, second.judge_test.pixels)


def test_pixels_survive_the_round_trip_through_pipeline_images():
    pixels = load_split().judge_test.pixels[:5]
    images = (pixels_to_images(pixels).transpose(0, 2, 3, 1) + 1.0) / 2.0  # as the pipeline returns them
    assert np.allclose(images_to_pixels(images), pixels)


def test_judge_recognises_real_digits_it_never_saw():
    assert held_out_accuracy() >= 0.95


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(0)
    same = kid(rng.random((200, 64)), rng.random((200, 64)))
    apart = kid(rng.random((200, 64)), rng.random((200, 64)) + 0.5)
    assert abs(same) < 0.01 < apart


def test_folder_holds_its_prompt_vocabulary_and_defaults_give_8x8_images(pipe):
    settings = json.loads((MODEL / "lethe.json").read_text())
    assert settings["prompts"]["classes"] == list(CLASSES)
    assert set(settings["prompts"]["templates"]) == set(TEMPLATES)
    assert not set(settings["prompts"]["test_templates"]) & set(TEMPLATES)
    assert set(settings["prompts"]["test_templates"]) == set(TEST_TEMPLATES)
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 8
    for word in CLASSES:
        assert len(pipe.tokenizer(word).input_ids) == 3  # start, the word, end


def test_model_draws_the_digit_asked_for(pipe):
    images = draw_digits(pipe, (1, 4, 7), per_digit=8, seed=0)
    assert images[1].shape == (8, 8, 8, 3)
    for digit, batch in images.items():
        assert share_recognised(batch, digit) >= 0.75, CLASSES[digit]
    # and not another: sevens asked for are not taken for fours
    assert share_recognised(images[7], 4) <= 0.25


@pytest.mark.slow
def test_short_rg_erasure_of_seven_stops_sevens_and_keeps_ones(pipe, tmp_path):
    import unlearning

    quick = {"steps": 30, "num_prompts": 48, "generation_steps": 10, "eval_prompts": 0}
    result = unlearning.erase(MODEL, ["seven"], tmp_path / "out", method="rg", hyperparameters=quick, seed=0,
                              audit="off")  # its audit: tests/test_digits_audit.py
    assert result.manifest["config"]["learning_rate"] == 1e-4  # the model's own default, from lethe.json
    erased = StableDiffusionPipeline.from_pretrained(str(result.out))
    erased.set_progress_bar_config(disable=True)
    before = draw_digits(pipe, (7, 1), per_digit=8, seed=1)
    after = draw_digits(erased, (7, 1), per_digit=8, seed=1)
    assert share_recognised(before[7], 7) >= 0.75
    assert share_recognised(after[7], 7) <= 0.5
    assert share_recognised(after[1], 1) >= 0.75
    assert not torch.equal(erased.unet.conv_in.weight, pipe.unet.conv_in.weight)
