"""The original model as a zero-shot classifier: which prompt explains an image best.

Li et al. 2023, "Your diffusion model is secretly a zero-shot classifier": a text-conditioned
diffusion model denoises an image best under the prompt that describes it. For an image's
latent z, the judge noises z at fixed timesteps with fixed noise (seeded, the same draws for
every image and every candidate prompt), asks the UNet for its prediction under each
candidate prompt, and takes the squared error against the target (noise, velocity or sample,
by the model's prediction type). A candidate's score is the geometric mean of its errors over
the timesteps, so each timestep counts alike: the arithmetic mean lets the large, barely
informative errors of the least noised timesteps drown the rest (on the digits model it agreed
with a pixel classifier on 93% of an erased version's images at 8 timesteps, the geometric
mean on 99%). The candidate with the lowest score is the judge's label; candidate 0 is the concept's prompt, so "the concept is in the image" means candidate
0 wins. The judge must be the *original* model: an erased one no longer knows the concept.

Winning by a hair is not enough: an image a partial erasure bent away from the concept (a seven
turned into a nine-like stroke) can still be explained by the concept's prompt a little better
than by any other. The margin of candidate 0 (the log ratio of the best other error to its own)
must reach a floor: FLOOR_SHARE of the median margin of the original's own images of the
concept. On the digits model those margins are 0.28-0.41, a short RG erasure's nine-like
"sevens" -0.03-0.04 (the pixel classifier reads none as a seven), ESD's real sevens 0.14-0.45.

The lowest error itself says how well the model explains the image at all: the original's own
images of the concept set the usual level, and an image far above it (noise, an adversarial
pattern) is not a real-looking image of anything the model draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..latents import encode_prompts
from ..noise import TrainingNoise
from ..train import prediction, seeded_generator


FLOOR_SHARE = 0.25


@dataclass
class Verdicts:
    """The judge's errors for N images and K candidates each, and what follows from them."""

    errors: torch.Tensor  # (N, K): geometric mean over the timesteps of the squared denoising error
    floor: float = 0.0  # the margin candidate 0 must exceed to count as the concept

    @property
    def labels(self) -> torch.Tensor:  # (N,) index of the best candidate
        return self.errors.argmin(dim=1)

    @property
    def margin(self) -> torch.Tensor:  # (N,) log(best other error / the concept's error): > 0 where it wins
        return torch.log(self.errors[:, 1:].min(dim=1).values / self.errors[:, 0])

    @property
    def concept(self) -> torch.Tensor:  # (N,) bool: candidate 0 (the concept's prompt) wins by the floor
        return self.margin > self.floor

    def with_floor(self, floor: float) -> Verdicts:
        return Verdicts(self.errors, floor)

    @property
    def best_error(self) -> torch.Tensor:  # (N,) how well the best prompt explains the image
        return self.errors.min(dim=1).values

    def __len__(self) -> int:
        return self.errors.shape[0]

    def __getitem__(self, rows) -> Verdicts:
        return Verdicts(self.errors[rows], self.floor)

    @staticmethod
    def concatenate(parts: list[Verdicts]) -> Verdicts:
        return Verdicts(torch.cat([p.errors for p in parts]), parts[0].floor)


def calibrated_floor(references: Verdicts) -> float:
    """FLOOR_SHARE of the median margin on the original's own images of the concept that it wins on."""
    won = references.margin[references.margin > 0]
    return FLOOR_SHARE * float(won.median()) if len(won) else 0.0


class Judge:
    """Scores latents against candidate prompts with the UNet it is given (the original)."""

    def __init__(self, pipe, noise: TrainingNoise, seed: int, timesteps: int, batch_size: int = 64):
        self.pipe, self.noise, self.batch_size = pipe, noise, batch_size
        total = noise.num_train_timesteps
        # Evenly spread over the schedule, the ends left out (nearly clean, nearly pure noise).
        self.timesteps = torch.tensor([int((j + 0.5) * total / timesteps) for j in range(timesteps)])
        unet = pipe.unet
        shape = (timesteps, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        self.draws = torch.randn(shape, generator=seeded_generator(seed, "judge"))  # (J, C, h, w)

    @torch.no_grad()
    def judge(self, latents: torch.Tensor, candidates: list[list[str]]) -> Verdicts:
        """Errors of N latents (N, C, h, w) under their candidate prompts (N lists of K)."""
        n, k, j = len(candidates), len(candidates[0]) if candidates else 0, len(self.timesteps)
        if n == 0:
            return Verdicts(torch.empty(0, k))
        unique = sorted({p for row in candidates for p in row})
        conditioning = encode_prompts(self.pipe, unique)
        index = {p: i for i, p in enumerate(unique)}
        # One row per (image, candidate, timestep), in that order.
        image = torch.arange(n).repeat_interleave(k * j)
        prompt = torch.tensor([index[p] for row in candidates for p in row]).repeat_interleave(j)
        draw = torch.arange(j).repeat(n * k)
        errors = torch.cat([self._errors(latents, conditioning, image[s], prompt[s], draw[s])
                            for s in _slices(len(image), self.batch_size)])
        return Verdicts(errors.view(n, k, j).log().mean(dim=2).exp())

    def _errors(self, latents, conditioning, image, prompt, draw) -> torch.Tensor:
        device = self.pipe.device
        clean, drawn, t = latents[image].to(device), self.draws[draw].to(device), self.timesteps[draw].to(device)
        noisy = self.noise.schedule.add_noise(clean, drawn, t)
        pred = prediction(self.pipe.unet, noisy, t, conditioning[prompt], device).float()
        target = self.noise.target(clean, drawn, t).float()
        return ((pred - target) ** 2).flatten(1).mean(dim=1).cpu()


def _slices(count: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, count, size)]
