"""Key/value whitening: the cross-attention key and value projections trained in coordinates in
which the job's text-encoder states are white.

A key or value projection W reads every token state s of the prompt, and a step of any gradient
method changes it by a sum of outer products delta s^T. Text states share one large direction (on
the canvas model the ten digit words' final states have a cosine of 0.97 with one another, though
centred they are as far apart as ten points can be), so a change made for one word's keys moves
every word's. Written as W = V R with R = (M + damping)^(-1/2), M the second moment of the states
the job keeps (its retain sentences' and the empty prompt's, not the concept's; normalised to a
mean eigenvalue of 1), a step on V changes W by delta (R R s)^T, which moves a kept state s' by
delta s^T (M + damping)^(-1) s': little for the states M is made of, most where the concept's
states leave them (the kept keys' covariance that closed-form edits such as MEMIT invert). The
function W computes is the same; only the coordinates the optimizer moves in change, so every
method and its dot products (the restricted gradient's included) work in them unchanged.

Applied with torch's parametrizations for the run, removed by `unwhiten` (the trained W kept).
"""

from __future__ import annotations

import re

import torch
from torch.nn.utils import parametrize

from .families.base import Conditioning

# the modules that read the prompt's states: attn2's key and value projections (LoRA: their A matrices)
READS_TEXT = re.compile(r"\.attn2\.to_[kv](\.lora_A\.[^.]+)?$")
CHUNK_ROWS = 64  # conditioning rows per product when summing the second moment


def second_moment(parts: list[Conditioning]) -> torch.Tensor:
    """(D, D): the mean of s s^T over every token state of every row, in fp32."""
    dim = parts[0].encoder_hidden_states.shape[-1]
    total = torch.zeros(dim, dim, dtype=torch.float32, device=parts[0].encoder_hidden_states.device)
    count = 0
    for part in parts:
        states = part.encoder_hidden_states
        for start in range(0, states.shape[0], CHUNK_ROWS):
            chunk = states[start:start + CHUNK_ROWS].float().reshape(-1, dim)
            total += chunk.T @ chunk
            count += chunk.shape[0]
    return total / count


def whitening_pair(moment: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, R^-1) with R = (M / mean eigenvalue + damping I)^(-1/2), both symmetric."""
    scaled = moment.double() / (moment.trace().double() / moment.shape[0])
    values, vectors = torch.linalg.eigh(scaled)
    values = values.clamp(min=0) + damping
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    inverse_root = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    return inverse_root.float(), root.float()


class Whitened(torch.nn.Module):
    """weight = V R: the parametrization's forward; `right_inverse` gives V = W R^-1 from a weight."""

    def __init__(self, whiten: torch.Tensor, unwhiten: torch.Tensor):
        super().__init__()
        self.whiten, self.unwhiten = whiten, unwhiten  # plain attributes: kept out of any state_dict

    def forward(self, trained: torch.Tensor) -> torch.Tensor:
        return trained @ self.whiten

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight @ self.unwhiten


def whiten(unet: torch.nn.Module, trainable: set[str], parts: list[Conditioning], damping: float) -> list[torch.nn.Module]:
    """Parametrize the trainable key and value projections (by parameter name in `trainable`)
    whose input is as wide as the text states; return the modules changed (none: [])."""
    dim = parts[0].encoder_hidden_states.shape[-1]
    modules = [m for name, m in unet.named_modules()
               if READS_TEXT.search(name) and isinstance(m, torch.nn.Linear)
               and f"{name}.weight" in trainable and m.in_features == dim]
    if not modules:
        return []
    forward, inverse = (t.to(modules[0].weight.device) for t in whitening_pair(second_moment(parts), damping))
    for module in modules:
        parametrize.register_parametrization(module, "weight", Whitened(forward, inverse))
    return modules


def unwhiten(modules: list[torch.nn.Module]) -> None:
    """Back to plain weights, each W = V R as trained."""
    for module in modules:
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
