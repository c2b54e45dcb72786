"""Draw latents from any conditioning, with classifier-free guidance, on the pipeline's own sampler.

The audit draws from prompts and from learned embeddings alike (the soft-prompt attack has no
text), so it runs the sampler loop itself on a family's `Conditioning` instead of the pipeline's
call, which wants prompts or a family-specific set of embedding arguments. The starting noise
of sample i is drawn from its own seed, as the pipeline draws it from a list of generators.
"""

from __future__ import annotations

import torch

from ..families import Conditioning, family_of
from ..pipeline import autocast


@torch.no_grad()
def draw(pipe, conditioning: Conditioning, seeds: list[int], steps: int, guidance: float | list[float],
         batch_size: int = 32) -> torch.Tensor:
    """(N, C, h, w) float32 latents on the CPU, one per conditioning row and seed; `guidance`
    is one scale for all rows or one per row (so that differently guided draws share a run)."""
    scales = torch.tensor(guidance if isinstance(guidance, list) else [guidance] * len(seeds)).view(-1, 1, 1, 1)
    unconditional = family_of(pipe).unconditional(pipe)
    parts = []
    for start in range(0, len(seeds), batch_size):
        rows = slice(start, start + batch_size)
        parts.append(_draw_batch(pipe, conditioning[rows], unconditional, seeds[rows], steps, scales[rows]))
    return torch.cat(parts) if parts else torch.empty(0)


def _draw_batch(pipe, conditioning: Conditioning, unconditional: Conditioning, seeds: list[int], steps: int,
                scales: torch.Tensor) -> torch.Tensor:
    unet, device = pipe.unet, pipe.device
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # the pipeline's own stays untouched
    scheduler.set_timesteps(steps, device=device)
    size = unet.config.sample_size
    latents = torch.cat([torch.randn((1, unet.config.in_channels, size, size), generator=torch.Generator("cpu").manual_seed(s))
                         for s in seeds]).to(device) * scheduler.init_noise_sigma  # (B, C, h, w)
    both = Conditioning.concatenate([unconditional.expand(len(seeds)), conditioning]).to(device)
    scales = scales.to(device)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        with autocast(device):
            unguided, guided = unet(model_input, t, **both.unet_inputs()).sample.float().chunk(2)
        latents = scheduler.step(unguided + scales * (guided - unguided), t, latents).prev_sample
    return latents.float().cpu()


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) images in [0, 1] on the CPU, as the pipeline's numpy output."""
    vae = pipe.vae
    images = vae.decode(latents.to(pipe.device) / vae.config.scaling_factor).sample
    return ((images.float().cpu() / 2 + 0.5).clamp(0, 1)).permute(0, 2, 3, 1)
