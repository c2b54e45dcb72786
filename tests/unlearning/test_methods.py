import subprocess
import sys
from dataclasses import dataclass

import pytest

from unlearning import InvalidInput
from unlearning.methods import CONFIGS, METHOD_IDS, make_config, validate
from unlearning.methods.base import Method
from unlearning.methods.gradient import CombinedGradient
from unlearning.methods.registry import register
from unlearning.methods.rg import RGConfig


def test_the_registry_imports_no_torch():
    code = ("import sys, unlearning, unlearning.methods as m; m.validate('rg', {}); "
            "print(sorted((i, c.implementation.__name__) for i, c in m.CONFIGS.items()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("[('esd', 'ErasedStableDiffusion'), ('ga', 'ForgetGradient'), "
                           "('graddiff', 'GradientDifference'), ('rg', 'RestrictedGradient')] False")


def test_every_method_names_its_implementation():
    assert all(issubclass(CONFIGS[i].implementation, Method) for i in METHOD_IDS)
    with pytest.raises(TypeError, match="names no implementation"):
        register(type("Unfinished", (RGConfig,), {"method": "unfinished", "implementation": None}))
    assert "unfinished" not in CONFIGS


class RetainOnly(CombinedGradient):
    """d = g_r: a method the trainer has never heard of."""

    def coefficients(self, ff, rr, fr):
        return 0.0, 1.0


@dataclass(frozen=True)
class RetainOnlyConfig(RGConfig):
    method = "retain_only"
    implementation = RetainOnly


@pytest.fixture
def retain_only():
    register(RetainOnlyConfig)
    yield make_config("retain_only", {"batch_size": 2, "forget_loss_ceiling": None})
    del CONFIGS["retain_only"]


def test_a_new_method_runs_on_the_trainer_unchanged(retain_only):
    import torch
    from diffusers import DDIMScheduler

    from unlearning.noise import TrainingNoise
    from unlearning.tiny import tiny_unet
    from unlearning.families import Conditioning
    from unlearning.train import TrainingData, Unlearner, batch_indices, denoising_loss, seeded_generator

    cpu = torch.device("cpu")
    latents, text = torch.randn(2, 4, 8, 8), Conditioning(torch.randn(2, 6, 32))
    data = TrainingData(latents, text, latents.flip(0), text, text[:1])
    unlearner = Unlearner(tiny_unet(), TrainingNoise(DDIMScheduler().config), retain_only, data, 0, cpu)
    params = [p for _, p in unlearner.named]
    batch, generator = batch_indices(0, 0, 2, 2), seeded_generator(0, "step", 0)
    unlearner.noise.noised(latents[batch], generator, cpu)  # the forget pass's draws
    retain_loss = denoising_loss(unlearner.unet, unlearner.noise, data.retain_latents[batch], text[batch], generator, cpu)
    g_r = torch.cat([g.flatten() for g in torch.autograd.grad(retain_loss, params)])
    record = unlearner.update_direction()
    assert torch.equal(unlearner.grads.buffer, g_r) and record["retain_loss"] == retain_loss.item()


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
        ("graddiff", {"forget_loss_ceiling": -1.0}, "hyperparameters.forget_loss_ceiling"),
        ("rg", {"trainable": "vae"}, "hyperparameters.trainable"),
        ("rg", {"negative_guidance": 1.0}, "hyperparameters.negative_guidance"),
        ("ga", {"retain_weight": 1.0}, "hyperparameters.retain_weight"),
        ("rg", {"stop_when_erased": 1.5}, "hyperparameters.stop_when_erased"),
        ("esd", {"stop_check_every": 0}, "hyperparameters.stop_check_every"),
        ("graddiff", {"stop_check_images": 2000}, "hyperparameters.stop_check_images"),
        ("nope", {}, "method"),
    ],
)
def test_bad_settings_name_their_field(method, values, field):
    with pytest.raises(InvalidInput) as error:
        validate(method, values)
    assert error.value.field == field


def test_a_ceiling_may_be_switched_off():
    assert validate("rg", {"forget_loss_ceiling": None})["forget_loss_ceiling"] is None
