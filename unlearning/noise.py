"""The training noise: z_t and the regression target from the folder's own noise schedule,
whatever sampler the folder ships.

Training needs the forward process q(z_t | z_0) = N(sqrt(abar_t) z_0, (1 - abar_t) I) at any of
the T training timesteps. A sampler is the wrong object for that: once `set_timesteps` has run,
DPM-Solver, Euler, LMS, PNDM and UniPC index their schedules their own way (or lack
`get_velocity`). So, as diffusers' training scripts do, a `DDPMScheduler` is built from the
folder's scheduler config (same betas, same T, same prediction type); the sampler stays for
generation.

Targets by the config's `prediction_type`: "epsilon" the noise, "v_prediction" the velocity
v = sqrt(abar_t) eps - sqrt(1 - abar_t) z_0, "sample" the clean latent z_0. Any other type is
refused with InvalidInput naming `base.scheduler.prediction_type`.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from .errors import InvalidInput

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class TrainingNoise:
    """Draws (z_t, noise, t, z_0) and gives the model's regression target for them."""

    def __init__(self, scheduler_config):
        self.prediction_type = scheduler_config.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise InvalidInput("base.scheduler.prediction_type",
                               f"must be one of {', '.join(PREDICTION_TYPES)} to train, got {self.prediction_type!r}")
        try:
            self.schedule = DDPMScheduler.from_config(scheduler_config)
        except NotImplementedError:  # diffusers' word for a beta schedule it does not know
            raise InvalidInput("base.scheduler.beta_schedule",
                               f"has no training schedule in diffusers: {scheduler_config.get('beta_schedule')!r}") from None
        self.num_train_timesteps = self.schedule.config.num_train_timesteps

    def noised(self, latents: torch.Tensor, generator: torch.Generator, device: torch.device):
        """(z_t, noise, t, z_0) with t ~ U{0..T-1} per sample and noise ~ N(0, I), drawn on the CPU."""
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, self.num_train_timesteps, (latents.shape[0],), generator=generator).to(device)
        latents = latents.to(device)
        return self.schedule.add_noise(latents, noise, t), noise, t, latents

    def target(self, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the UNet should predict at z_t, by the model's prediction type."""
        if self.prediction_type == "v_prediction":
            return self.schedule.get_velocity(clean, noise, t)
        if self.prediction_type == "sample":
            return clean
        return noise
