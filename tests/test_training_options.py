"""`python -m unlearning.digits train` and `... canvas train` take one option per training
setting; what is not given keeps that model's own defaults."""

from __future__ import annotations

import argparse

import pytest

from unlearning.canvas.train import DEFAULTS as CANVAS
from unlearning.digits.train import TrainingConfig, add_training_options, configured


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    return parser.parse_args(argv)


def test_given_options_replace_the_models_defaults_and_the_rest_stay():
    config = configured(parsed("--steps", "5", "--learning-rate", "0.5", "--numeral-share", "0"), CANVAS)
    assert (config.steps, config.learning_rate, config.numeral_share) == (5, 0.5, 0.0)
    assert config.vae_steps == CANVAS.vae_steps != TrainingConfig().vae_steps  # the canvas model's own
    assert configured(parsed(), TrainingConfig()) == TrainingConfig()


def test_a_value_of_the_wrong_type_is_refused_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        parsed("--steps", "many")
    assert "--steps" in capsys.readouterr().err
