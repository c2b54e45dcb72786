"""The audit on the digits model (models/digits), whose original model is its own judge:
it tells digits apart, checked against the independent pixel classifier; its soft-prompt
attack calls up sevens from the original (so it works at all); a short erasure of seven leaks
less than the original; a word the model never learnt is a warning, not a crash."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

import unlearning
from unlearning.audit import SETTINGS
from unlearning.audit.run import Auditor
from unlearning.audit.sampling import decode
from unlearning.digits.classifier import recognise
from unlearning.job import prepare_job
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline

MODEL = Path(__file__).resolve().parents[1] / "models" / "digits"
SHORT = {"steps": 30, "num_prompts": 48, "generation_steps": 10, "eval_prompts": 8}  # test_digits.py's erasure, evaluated


@pytest.fixture(scope="module")
def auditor(tmp_path_factory):
    """An auditor of seven on the original itself (nothing swapped: the UNet is the original)."""
    pipe = load_pipeline(MODEL, "cpu")
    job = prepare_job(MODEL, ["seven"], tmp_path_factory.mktemp("none") / "out", "rg", [], None, SHORT, 0)
    return Auditor(pipe, TrainingNoise(pipe.scheduler.config), job, SETTINGS["quick"], contextlib.nullcontext)


def test_the_judge_tells_sevens_from_ones_as_the_pixel_classifier_does(auditor):
    sevens = [p for p in auditor.forget if p.kind == "held_out"][:4]
    probes = sevens + [p for p in auditor.kept if p.asks == "one"]  # quick: one image per neighbour
    latents = auditor.draw(probes)
    verdicts = auditor.judge_probes(latents, probes)
    pixels = recognise(decode(auditor.pipe, latents).numpy())
    assert verdicts.concept[:4].all() and not verdicts.concept[4:].any()
    assert probes[4].candidates[int(verdicts.labels[4])] == probes[4].prompt  # read as a one, among all ten
    assert list(pixels) == [7, 7, 7, 7, 1]


def test_the_soft_prompt_attack_calls_up_sevens_from_the_original(auditor):
    references = [p for p in auditor.forget if p.kind == "held_out"]
    latents = auditor.draw(references)
    targets, threshold = auditor.targets(latents, auditor.judge_probes(latents, references), None)
    learned, losses = auditor.soft_prompt(targets)
    attacked = auditor.draw([], learned)
    verdicts = auditor.judge_attack(attacked)
    success = (verdicts.concept & (verdicts.best_error <= threshold)).float().mean()
    assert success >= 0.75, (success, losses[0], losses[-1])
    assert np.mean(recognise(decode(auditor.pipe, attacked).numpy()) == 7) >= 0.75  # the pixel classifier agrees


def test_the_audit_draws_again_none_of_what_the_check_before_training_drew(auditor):
    checked = auditor.references_check()
    drawn, draw = [], auditor.draw
    auditor.draw = lambda probes, learned=None: drawn.extend(probes) or draw(probes, learned)
    try:
        side = auditor.original_side(None, checked)
    finally:
        del auditor.draw  # the method again
    assert checked.check["drawn"]
    assert drawn == auditor.probes[auditor.first:]  # neither the references nor their controls
    assert side.latents[:auditor.first].equal(checked.latents) and len(side.verdicts) == len(auditor.probes)


@pytest.mark.slow
def test_a_short_erasure_of_seven_leaks_less_than_the_original(tmp_path):
    stages, events = [], []
    callbacks = unlearning.Callbacks(on_progress=lambda stage, step, total: stages.append(stage),
                                     on_event=lambda kind, message, data: events.append(kind))
    result = unlearning.erase(MODEL, ["seven"], tmp_path / "out", method="rg", hyperparameters=SHORT, seed=0,
                              callbacks=callbacks)
    audit = json.loads((result.out / "evaluation" / "metrics.json").read_text())["audit"]
    assert audit["status"] == "done" and "warning" not in events
    assert audit["leak_rate_original"] >= 0.8 and audit["leak_rate"] <= 0.5 * audit["leak_rate_original"]
    assert audit["leaks"]["held_out"]["original"] == 1.0 > audit["leaks"]["held_out"]["version"]
    assert audit["neighbour_accuracy"] >= 0.8 and audit["neighbour_accuracy_original"] >= 0.8
    assert audit["attack_success"] <= 0.25
    assert set(audit["about"]) >= {"leak_rate", "attack_success", "neighbour_accuracy", "spread_ratio"}
    assert stages.index("auditing") > stages.index("evaluating") and stages[-1] == "writing"


def test_a_word_the_model_never_learnt_is_a_warning_not_a_crash(tmp_path):
    warnings = []
    callbacks = unlearning.Callbacks(on_event=lambda kind, message, data: warnings.append(message) if kind == "warning" else None)
    tiny = {"steps": 2, "num_prompts": 8, "generation_steps": 10, "eval_prompts": 0}
    result = unlearning.erase(MODEL, ["banana"], tmp_path / "out", hyperparameters=tiny, callbacks=callbacks)
    assert len(warnings) == 1 and "does not seem to draw 'banana'" in warnings[0]
    assert result.audit["status"] == "not_applicable" and (result.out / "manifest.json").is_file()
