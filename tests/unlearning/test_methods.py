import subprocess
import sys

import pytest

from unlearning import InvalidInput
from unlearning.methods import METHOD_IDS, validate


def test_the_registry_imports_no_torch():
    code = "import sys, unlearning, unlearning.methods as m; m.validate('rg', {}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_methods_are_registered_with_the_paper_defaults():
    assert METHOD_IDS == ("esd", "ga", "graddiff", "rg")
    rg = validate("rg")
    assert (rg["learning_rate"], rg["retain_weight"], rg["forget_loss_ceiling"]) == (1e-5, 1.6, 1.1)
    assert (rg["batch_size"], rg["steps"], rg["num_prompts"], rg["trainable"]) == (8, 100, 800, "unet")
    esd = validate("esd")
    assert (esd["trainable"], esd["steps"], esd["negative_guidance"]) == ("cross_attention", 200, 1.0)


@pytest.mark.parametrize(
    "method, values, field",
    [
        ("rg", {"steps": 0}, "hyperparameters.steps"),
        ("rg", {"steps": 1.5}, "hyperparameters.steps"),
        ("rg", {"learning_rate": float("nan")}, "hyperparameters.learning_rate"),
        ("rg", {"batch_size": True}, "hyperparameters.batch_size"),
        ("rg", {"retain_weight": 0}, "hyperparameters.retain_weight"),
        ("rg", {"trainable": "vae"}, "hyperparameters.trainable"),
        ("rg", {"negative_guidance": 1.0}, "hyperparameters.negative_guidance"),
        ("ga", {"retain_weight": 1.0}, "hyperparameters.retain_weight"),
        ("nope", {}, "method"),
    ],
)
def test_bad_settings_name_their_field(method, values, field):
    with pytest.raises(InvalidInput) as error:
        validate(method, values)
    assert error.value.field == field


def test_a_ceiling_may_be_switched_off():
    assert validate("rg", {"forget_loss_ceiling": None})["forget_loss_ceiling"] is None
