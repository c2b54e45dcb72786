"""SD 2.x: a v-prediction schedule and a sample size other than SD 1.x's, through one whole
erasure (training target, latents, evaluation, output)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import unlearning
from unlearning.evaluate import LOSS_DRAWS, held_out_loss
from unlearning.latents import encode_prompts
from unlearning.noise import TrainingNoise
from unlearning.pipeline import load_pipeline
from unlearning.train import seeded_generator

CPU = torch.device("cpu")
TINY = {"steps": 4, "num_prompts": 8, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
        "eval_prompts": 2, "learning_rate": 1e-3, "forget_loss_ceiling": None}


@pytest.fixture(scope="module")
def erased(sd2_base, tmp_path_factory):
    cache = tmp_path_factory.mktemp("sd2-cache")
    return unlearning.erase(sd2_base, ["van gogh"], tmp_path_factory.mktemp("sd2") / "out", hyperparameters=TINY,
                            cache_dir=cache), cache


def test_the_folder_is_sd2_shaped(sd2_base):
    scheduler = json.loads((sd2_base / "scheduler" / "scheduler_config.json").read_text())
    unet = json.loads((sd2_base / "unet" / "config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    assert unet["upcast_attention"] and unet["use_linear_projection"] and unet["sample_size"] == 12


def test_an_erasure_raises_the_held_out_forget_loss_and_stock_diffusers_loads_it(erased):
    result, _ = erased
    assert result.metrics["forget_loss_after"] > result.metrics["forget_loss_before"]
    assert load_file(result.out / "delta.safetensors")
    pipe = StableDiffusionPipeline.from_pretrained(result.out)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.unet.config.upcast_attention
    image = pipe("a painting", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (24, 24)


def test_the_unets_sample_size_decides_latents_and_images(erased):
    result, cache = erased
    files = list((cache / "latent-batches").rglob("*.safetensors"))
    assert files
    for path in files:
        with safe_open(path, framework="pt") as f:
            assert f.get_slice("latents").get_shape()[1:] == [4, 12, 12]  # 12 = the UNet's sample_size
    grid = Image.open(result.out / "evaluation" / "forget_before.png")
    assert grid.size == (2 * 24, 24)  # two held-out prompts at 12 * vae_scale_factor pixels


def test_the_held_out_loss_regresses_on_the_velocity(sd2_base):
    pipe = load_pipeline(sd2_base, CPU)
    noise = TrainingNoise(pipe.scheduler.config)
    latents = torch.randn(3, 4, 12, 12, generator=torch.Generator().manual_seed(0))
    conditioning = encode_prompts(pipe, ["a dog", "a cat", "a tree"])
    schedule = DDPMScheduler.from_config(pipe.scheduler.config)
    generator, by_hand = seeded_generator(0, "evaluation"), {"v": [], "eps": []}
    with torch.no_grad():
        for _ in range(LOSS_DRAWS):
            eps = torch.randn(latents.shape, generator=generator)
            t = torch.randint(0, 1000, (3,), generator=generator)
            pred = pipe.unet(schedule.add_noise(latents, eps, t), t, **conditioning.unet_inputs()).sample
            by_hand["v"].append(F.mse_loss(pred, schedule.get_velocity(latents, eps, t)).item())
            by_hand["eps"].append(F.mse_loss(pred, eps).item())
    loss = held_out_loss(pipe.unet, noise, latents, conditioning, 0, CPU)
    assert loss == pytest.approx(sum(by_hand["v"]) / LOSS_DRAWS, rel=1e-6)
    assert loss != pytest.approx(sum(by_hand["eps"]) / LOSS_DRAWS, rel=1e-3)
