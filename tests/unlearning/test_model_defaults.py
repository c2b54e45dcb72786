"""A model's own defaults (lethe.json): shared ones, one set per kind of class laid over them
when every concept of the job is of that kind, one per kind over those when the job erases
several such classes, and one set per method over all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unlearning.errors import InvalidInput
from unlearning.job import prepare_job

CANVAS = Path(__file__).resolve().parents[2] / "models" / "canvas"
SETTINGS = {
    "prompts": {"templates": ["a {digit} in {style} style"], "test_templates": ["{style} {digit}"],
                "classes": {"style": ["red", "dots"], "digit": ["one", "seven"]}},
    "hyperparameters": {"steps": 40, "learning_rate": 1e-4},
    "hyperparameters_by_kind": {"digit": {"steps": 70, "forget_target": "anchor"}},
}


@pytest.fixture
def base(tiny_base, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_base, folder)
    return folder


def config_for(base, tmp_path, concepts, method="rg", hyperparameters=None, settings=SETTINGS):
    (base / "lethe.json").write_text(json.dumps(settings))
    job = prepare_job(base, concepts, tmp_path / "out", method, [], None, hyperparameters, 0)
    return job.config


@pytest.mark.parametrize("concepts, steps, target", [
    (["seven"], 70, "anchor"),
    (["one", "seven"], 70, "anchor"),
    (["dots"], 40, "ascent"),  # a style: only the shared defaults
    (["seven", "dots"], 40, "ascent"),  # two kinds in one job: no one kind's
    (["van gogh"], 40, "ascent"),  # of no kind
])
def test_the_kind_of_every_concept_chooses_its_defaults(base, tmp_path, concepts, steps, target):
    config = config_for(base, tmp_path, concepts)
    assert (config.steps, config.forget_target, config.learning_rate) == (steps, target, 1e-4)


def test_the_callers_values_win_and_a_method_takes_only_what_it_knows(base, tmp_path):
    assert config_for(base, tmp_path, ["seven"], hyperparameters={"steps": 5}).steps == 5
    esd = config_for(base, tmp_path, ["seven"], method="esd")
    assert esd.steps == 70 and not hasattr(esd, "forget_target")


def test_a_methods_own_defaults_lie_over_the_kinds_and_under_the_callers(base, tmp_path):
    settings = {**SETTINGS, "hyperparameters_by_method": {"esd": {"steps": 90, "negative_guidance": 2.0}}}
    esd = config_for(base, tmp_path, ["seven"], method="esd", settings=settings)
    assert (esd.steps, esd.negative_guidance, esd.learning_rate) == (90, 2.0, 1e-4)
    assert config_for(base, tmp_path, ["seven"], settings=settings).steps == 70  # rg: the kind's
    assert config_for(base, tmp_path, ["seven"], "esd", {"steps": 5}, settings).steps == 5


@pytest.mark.parametrize("concepts, steps, rate", [
    (["dots", "red"], 55, 3e-4),  # several styles: the style's set for several
    (["dots"], 40, 1e-4),  # one style: only the shared defaults
    (["dots", "dots"], 40, 1e-4),  # one style named twice is one
    (["one", "seven"], 70, 1e-4),  # several digits: no set for them, the digit's
    (["seven", "dots"], 40, 1e-4),  # two kinds: no one kind's
])
def test_several_concepts_of_one_kind_take_that_kinds_set_for_several(base, tmp_path, concepts, steps, rate):
    settings = {**SETTINGS, "hyperparameters_for_several": {"style": {"steps": 55, "learning_rate": 3e-4}}}
    config = config_for(base, tmp_path, concepts, settings=settings)
    assert (config.steps, config.learning_rate) == (steps, rate)
    with_esd = {**settings, "hyperparameters_by_method": {"esd": {"steps": 90}}}
    assert config_for(base, tmp_path, ["dots", "red"], "esd", settings=with_esd).steps == 90


@pytest.mark.parametrize("table, value, where", [
    ("hyperparameters_by_method", [{"steps": 90}], "lethe.json hyperparameters_by_method must be an object"),
    ("hyperparameters_by_method", {"rg": "fast"}, "lethe.json hyperparameters_by_method.rg must be an object"),
    ("hyperparameters_by_kind", [{"steps": 70}], "lethe.json hyperparameters_by_kind must be an object"),
    ("hyperparameters_by_kind", {"digit": [70]}, "lethe.json hyperparameters_by_kind.digit must be an object"),
    ("hyperparameters_for_several", "fast", "lethe.json hyperparameters_for_several must be an object"),
    ("hyperparameters_for_several", {"digit": 3}, "lethe.json hyperparameters_for_several.digit must be an object"),
])
def test_a_malformed_table_of_defaults_is_refused_naming_the_base(base, tmp_path, table, value, where):
    with pytest.raises(InvalidInput) as error:
        config_for(base, tmp_path, ["one", "seven"], settings={**SETTINGS, table: value})
    assert error.value.field == "base" and where in str(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings, where", [
    ([SETTINGS], "must hold a JSON object, got list"),
    ({**SETTINGS, "prompts": {"classes": {"digit": 5}}}, "prompts.classes must be a list of strings"),
    ({**SETTINGS, "prompts": {"classes": "seven"}}, "prompts.classes must be a list of strings"),
    ({**SETTINGS, "prompts": ["a {concept}"]}, "prompts must be an object"),
])
def test_a_malformed_lethe_json_is_refused_naming_the_base(base, tmp_path, settings, where):
    with pytest.raises(InvalidInput) as error:
        config_for(base, tmp_path, ["seven"], settings=settings)
    assert error.value.field == "base" and where in str(error.value)


def test_the_canvas_model_erases_a_digit_and_several_styles_with_the_anchor_and_one_style_with_the_ascent(tmp_path):
    digit = prepare_job(CANVAS, ["seven"], tmp_path / "out", "rg", [], None, None, 0).config
    style = prepare_job(CANVAS, ["dots"], tmp_path / "out", "rg", [], None, None, 0).config
    assert (digit.forget_target, digit.anchor_guidance, digit.stop_when_erased) == ("anchor", 0.5, None)
    assert (style.forget_target, style.stop_when_erased) == ("ascent", 0.0)
    assert (digit.key_value_whitening, style.key_value_whitening) == (0.0001, None)
    assert (digit.retain_target, style.retain_target) == ("guided", "noise")
    assert digit.trainable == style.trainable == "cross_attention"
    styles = prepare_job(CANVAS, ["dots", "red", "stripes"], tmp_path / "out", "rg", [], None, None, 0).config
    assert (styles.forget_target, styles.anchor_guidance, styles.key_value_whitening) == ("anchor", 0.0, 0.001)
    assert (styles.learning_rate, styles.stop_when_erased, styles.steps) == (3e-4, 0.0, 400)


def test_the_canvas_model_erases_a_digit_with_esd_unwhitened(tmp_path):
    esd = prepare_job(CANVAS, ["seven"], tmp_path / "out", "esd", [], None, None, 0).config
    assert (esd.key_value_whitening, esd.steps, esd.trainable) == (None, 400, "cross_attention")
