"""Training data: the original model's own latents for every prompt, and text embeddings.

The sampler's final latents are kept as they are (already in the VAE's scaled latent space),
never decoded to images and re-encoded. Each latent is cached on disk under a key of its
content (model fingerprint, prompt, sample seed, sampler settings), so a second job on the
same base reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .pipeline import autocast


def sample_seed(seed: int, prompt: str, occurrence: int) -> int:
    """The seed of one generated sample: repeated prompts get distinct images."""
    digest = hashlib.sha256(f"{seed}\0{prompt}\0{occurrence}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_seeds(seed: int, prompts: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    seeds = []
    for prompt in prompts:
        seeds.append(sample_seed(seed, prompt, seen.get(prompt, 0)))
        seen[prompt] = seen.get(prompt, 0) + 1
    return seeds


class LatentCache:
    """One safetensors file per latent, written atomically; None disables caching."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        if self.root is None or not self._path(key).is_file():
            return None
        return load_file(self._path(key))["latent"]

    def put(self, key: str, latent: torch.Tensor) -> None:
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({"latent": latent.contiguous()}, tmp)
        os.replace(tmp, path)


def latent_key(fingerprint: str, prompt: str, seed: int, settings: dict) -> str:
    text = json.dumps([fingerprint, prompt, seed, settings], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def generate_latents(
    pipe,
    prompts: list[str],
    seeds: list[int],
    settings: dict,
    cache: LatentCache,
    fingerprint: str,
    batch_size: int,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> torch.Tensor:
    """(N, C, h, w) float32 latents on the CPU, one per prompt, from cache or the sampler."""
    keys = [latent_key(fingerprint, p, s, settings) for p, s in zip(prompts, seeds)]
    latents: list[torch.Tensor | None] = [cache.get(k) for k in keys]
    todo = [i for i, latent in enumerate(latents) if latent is None]
    done = len(prompts) - len(todo)
    on_progress(done, len(prompts))
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        for i, latent in zip(batch, _sample(pipe, [prompts[i] for i in batch], [seeds[i] for i in batch], settings)):
            latents[i] = latent
            cache.put(keys[i], latent)
        done += len(batch)
        on_progress(done, len(prompts))
    return torch.stack(latents)


@torch.no_grad()
def _sample(pipe, prompts: list[str], seeds: list[int], settings: dict) -> torch.Tensor:
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    with autocast(pipe.device):
        out = pipe(
            prompt=prompts,
            generator=generators,
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            height=settings["height"],
            width=settings["width"],
            output_type="latent",
        )
    return out.images.float().cpu()


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N, L, D) text-encoder states for the prompts, each distinct prompt encoded once."""
    unique = sorted(set(prompts))
    states = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        embeds, _ = pipe.encode_prompt(chunk, pipe.device, 1, False)
        states.update(zip(chunk, embeds.float()))
    return torch.stack([states[p] for p in prompts])
