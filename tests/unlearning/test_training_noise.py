"""The training noise is the forward process of the folder's own schedule, whatever sampler the
folder ships, and after that sampler has generated (its `set_timesteps` run)."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from safetensors.torch import load_file

import unlearning
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline

SAMPLERS = [DDIMScheduler, PNDMScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler,
            DPMSolverMultistepScheduler, UniPCMultistepScheduler]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pipe(tiny_base):
    return load_pipeline(tiny_base, CPU)


def alphas_bar(config) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s), in float64, from the config's scaled-linear betas."""
    assert config["beta_schedule"] == "scaled_linear" and config.get("trained_betas") is None
    start, end, steps = config["beta_start"], config["beta_end"], config["num_train_timesteps"]
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0)


def with_sampler(pipe, sampler, prediction_type: str):
    """The pipeline with another sampler, after that sampler has drawn a sample."""
    pipe.scheduler = sampler.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    pipe("a painting", num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="latent")
    assert pipe.scheduler.num_inference_steps == 4
    return pipe


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.__name__)
def test_z_t_and_the_target_follow_the_forward_process(pipe, sampler, prediction_type):
    pipe = with_sampler(pipe, sampler, prediction_type)
    noise = TrainingNoise(pipe.scheduler.config)
    z_0 = torch.randn(16, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    z_t, eps, t, clean = noise.noised(z_0, torch.Generator().manual_seed(2), CPU)
    abar = alphas_bar(pipe.scheduler.config)[t].view(-1, 1, 1, 1)
    assert len(set(t.tolist())) > 8  # timesteps spread over the schedule
    expected = abar.sqrt() * z_0 + (1 - abar).sqrt() * eps
    torch.testing.assert_close(z_t.double(), expected, rtol=1e-5, atol=1e-5)
    target = noise.target(clean, eps, t)
    if prediction_type == "epsilon":
        assert torch.equal(target, eps)
    else:
        torch.testing.assert_close(target.double(), abar.sqrt() * eps - (1 - abar).sqrt() * z_0, rtol=1e-5, atol=1e-5)


def test_a_sample_predicting_model_regresses_on_z_0(pipe):
    noise = TrainingNoise({**pipe.scheduler.config, "prediction_type": "sample"})
    z_0 = torch.randn(4, 4, 8, 8)
    z_t, eps, t, clean = noise.noised(z_0, torch.Generator().manual_seed(0), CPU)
    assert torch.equal(noise.target(clean, eps, t), z_0)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"prediction_type": "flow_prediction"}, "base.scheduler.prediction_type"),
        ({"beta_schedule": "exotic"}, "base.scheduler.beta_schedule"),
    ],
)
def test_a_schedule_it_cannot_train_is_refused_naming_the_field(pipe, change, field):
    with pytest.raises(unlearning.InvalidInput) as error:
        TrainingNoise({**pipe.scheduler.config, **change})
    assert error.value.field == field
    assert repr(next(iter(change.values()))) in error.value.message


@pytest.fixture(scope="module")
def euler_base(pipe, tmp_path_factory):
    """The tiny pipeline saved as a folder that ships the Euler sampler."""
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, prediction_type="epsilon")
    folder = tmp_path_factory.mktemp("euler") / "sd"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_a_folder_shipping_euler_is_erased_end_to_end(euler_base, tmp_path):
    settings = {"steps": 3, "num_prompts": 4, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
                "eval_prompts": 2, "learning_rate": 1e-3, "forget_loss_ceiling": None}
    result = unlearning.erase(euler_base, ["van gogh"], tmp_path / "out", hyperparameters=settings,
                              cache_dir=tmp_path / "cache")
    assert len(result.history) == 3
    assert all(torch.isfinite(torch.tensor(value)) for value in result.metrics.values())
    assert load_file(result.out / "delta.safetensors")
    assert '"EulerDiscreteScheduler"' in (result.out / "scheduler" / "scheduler_config.json").read_text()
