"""The soft-prompt attack: can the erased concept still be called up by some input?

After "Circumventing concept erasure methods for text-to-image generative models" (Pham et
al., ICLR 2024): with the version frozen, learn a prompt embedding that makes the version
denoise the original model's own images of the concept, then draw with it. If an erasure only
cut the words' way to the concept, a few learned vectors find another way and the concept
comes back; if the version cannot draw it any more, they find nothing.

The learned part is `tokens` vectors of the text encoder's output (the UNet's
`encoder_hidden_states`), right after the start token of a neutral prompt (the concept's
prompt with the concept removed); everything else the UNet is conditioned on stays as the
neutral prompt gives it. This works the same way for every pipeline family.
"""

from __future__ import annotations

import torch

from ..families import Conditioning
from ..noise import TrainingNoise
from ..train import denoising_loss, seeded_generator


def soft_prompt(unet, noise: TrainingNoise, neutral: Conditioning, targets: torch.Tensor, *, steps: int,
                tokens: int, learning_rate: float, batch_size: int, seed: int) -> tuple[Conditioning, list[float]]:
    """The learned conditioning (one row) and the loss of each step, on the UNet as it is (the audit's
    frozen version, or the robust mode's current weights: `unlearning.methods.adversarial`)."""
    device = unet.device
    states = neutral.encoder_hidden_states.to(device)  # (1, L, D)
    tokens = min(tokens, states.shape[1] - 1)
    learned = states[:, 1:1 + tokens].clone().requires_grad_(True)  # (1, tokens, D)
    optimizer = torch.optim.Adam([learned], lr=learning_rate)
    losses = []
    for step in range(steps):
        generator = seeded_generator(seed, "attack", step)
        rows = torch.randperm(len(targets), generator=generator)[:batch_size]
        conditioning = _with(neutral, states, learned, tokens).expand(len(rows))
        loss = denoising_loss(unet, noise, targets[rows], conditioning, generator, device)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return _with(neutral, states, learned.detach(), tokens), losses


def _with(neutral: Conditioning, states: torch.Tensor, learned: torch.Tensor, tokens: int) -> Conditioning:
    """The neutral conditioning with the learned vectors in place of positions 1 .. tokens."""
    spliced = torch.cat([states[:, :1], learned, states[:, 1 + tokens:]], dim=1)
    return Conditioning(spliced, {k: v.to(states.device) for k, v in neutral.added.items()})
