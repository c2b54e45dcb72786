"""Before/after evaluation on held-out prompts: denoising losses and sample grids.

The forget loss on held-out forget prompts should rise (the model no longer predicts the
concept's images) while the retain loss on their paired retain prompts stays put. The losses
use the training noise (`unlearning.noise`); the pipeline's sampler draws the grids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from .families import Conditioning
from .noise import TrainingNoise
from .pipeline import autocast
from .train import denoising_loss, seeded_generator

LOSS_DRAWS = 4  # noise draws per held-out latent; fixed, so before and after see the same noise


@torch.no_grad()
def held_out_loss(unet, noise: TrainingNoise, latents, conditioning: Conditioning, seed: int, device) -> float:
    if latents.shape[0] == 0:
        return float("nan")
    generator = seeded_generator(seed, "evaluation")
    losses = [denoising_loss(unet, noise, latents, conditioning, generator, device).item() for _ in range(LOSS_DRAWS)]
    return sum(losses) / len(losses)


@torch.no_grad()
def sample_grid(pipe, prompts: list[str], seed: int, steps: int, guidance_scale: float) -> Image.Image | None:
    if not prompts:
        return None
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(len(prompts))]
    with autocast(pipe.device):
        images = pipe(prompts, generator=generators, num_inference_steps=steps, guidance_scale=guidance_scale).images
    width, height = images[0].size
    grid = Image.new("RGB", (width * len(images), height))
    for i, image in enumerate(images):
        grid.paste(image, (i * width, 0))
    return grid


class Evaluation:
    """Collects the 'before' and 'after' figures and writes them to a folder."""

    STEPS = 4  # per measure: each part's loss, then its grid

    def __init__(self, pipe, noise: TrainingNoise, test_data: dict, seed: int, steps: int, guidance_scale: float,
                 num_samples: int = 4):
        self.pipe, self.noise, self.test, self.seed = pipe, noise, test_data, seed
        self.steps, self.guidance_scale, self.num_samples = steps, guidance_scale, num_samples
        self.metrics: dict[str, float] = {}
        self.grids: dict[str, Image.Image] = {}

    def measure(self, when: str, on_step: Callable[[], None] = lambda: None) -> None:
        """The figures `when` ("before", "after"); `on_step` after each of the STEPS."""
        pipe = self.pipe
        for part in ("forget", "retain"):
            latents, conditioning, prompts = self.test[part]
            self.metrics[f"{part}_loss_{when}"] = held_out_loss(pipe.unet, self.noise, latents, conditioning, self.seed, pipe.device)
            on_step()
            grid = sample_grid(pipe, prompts[: self.num_samples], self.seed, self.steps, self.guidance_scale)
            if grid is not None:
                self.grids[f"{part}_{when}.png"] = grid
            on_step()

    def write(self, folder: Path, extra: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, grid in self.grids.items():
            grid.save(folder / name)
        prompts = {part: self.test[part][2] for part in ("forget", "retain")}
        (folder / "metrics.json").write_text(json.dumps({**self.metrics, **extra, "prompts": prompts}, indent=2) + "\n")
        return folder
