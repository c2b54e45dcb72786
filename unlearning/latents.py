"""Training data: the original model's own latents for every prompt, and their conditioning.

The sampler's final latents are kept as they are (already in the VAE's scaled latent space),
never decoded to images and re-encoded.

The batch is the unit of generation and of the cache. The UNet's arithmetic on one sample is
not bitwise the same in a batch of 32 as in a batch of 16 (other GEMM blocking on a CPU, other
kernels on a GPU), so a latent is reproducible only together with the batch it was made in.
The job's ordered prompt stream is therefore always cut the same way, into consecutive chunks
of `batch_size`, whatever the cache holds; each chunk is one cache file keyed by the model
fingerprint, the sampler settings, what computed it (device, torch and diffusers versions)
and the chunk's ordered (prompt, seed) list. A chunk that is missing or unreadable is
generated whole: a result never mixes latents from batches of different jobs, so the same
job gives the same bytes on a cold cache and on any warm one.

Shared: every chunk of a job whose stream is cut the same way: the same job again (another
learning rate, step count or method with the same prompt sets), a retried or resumed job.
Not shared: a job with another `generation_batch_size`, or whose stream is shifted (more or
fewer prompts, a method that skips the retain set): its chunks are other batches and are
generated anew, even where a single prompt and seed coincide.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import diffusers
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .families import Conditioning, family_of
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


def tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


class LatentCache:
    """One safetensors file per batch of latents, written atomically; None disables caching.

    A file that cannot be read back whole and intact (truncated, corrupt, another count of
    latents) is a miss, so its batch is generated again and the file replaced.
    """

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str, count: int) -> torch.Tensor | None:
        if self.root is None:
            return None
        try:
            with safe_open(self._path(key), framework="pt") as f:
                checksum, latents = (f.metadata() or {}).get("sha256"), f.get_tensor("latents")
        except (OSError, SafetensorError, KeyError, ValueError):
            return None
        if len(latents) != count or checksum != tensor_sha256(latents):
            return None
        return latents

    def put(self, key: str, latents: torch.Tensor) -> None:
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        latents = latents.contiguous()
        save_file({"latents": latents}, tmp, metadata={"sha256": tensor_sha256(latents)})
        os.replace(tmp, path)


def computed_by(device: torch.device) -> dict:
    """What else decides the bytes: the device (its model, for a GPU) and the libraries."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"device": name, "torch": torch.__version__, "diffusers": diffusers.__version__}


def batch_key(fingerprint: str, batch: list[tuple[str, int]], settings: dict, computer: dict) -> str:
    text = json.dumps([fingerprint, settings, computer, batch], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def chunks(count: int, size: int) -> list[range]:
    """The fixed batches of a stream of `count` samples: [0, size), [size, 2 size), ..."""
    if size < 1:
        raise ValueError(f"the generation batch size must be at least 1, got {size}")
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


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
    """(N, C, h, w) float32 latents on the CPU, one per prompt, each fixed batch of the
    stream whole from the cache or whole from the sampler. `on_progress(done, N)`: first with
    the latents the cache held, then after each sampler step (a batch's share of it) and each batch once cached."""
    batches = [[(prompts[i], seeds[i]) for i in chunk] for chunk in chunks(len(prompts), batch_size)]
    computer = computed_by(pipe.device)
    keys = [batch_key(fingerprint, batch, settings, computer) for batch in batches]
    found = [cache.get(key, len(batch)) for key, batch in zip(keys, batches)]
    done = sum(len(batch) for batch, latents in zip(batches, found) if latents is not None)
    on_progress(done, len(prompts))
    for n, (key, batch) in enumerate(zip(keys, batches)):
        if found[n] is None:
            def step(i: int, steps: int, start: int = done, size: int = len(batch)) -> None:
                if i < steps:  # the sampler's steps but its last: the batch is reported once it is cached
                    on_progress(start + size * i // steps, len(prompts))

            found[n] = _sample(pipe, [p for p, _ in batch], [s for _, s in batch], settings, step)
            cache.put(key, found[n])
            done += len(batch)
            on_progress(done, len(prompts))
    return torch.cat(found)


@torch.no_grad()
def _sample(pipe, prompts: list[str], seeds: list[int], settings: dict,
            on_step: Callable[[int, int], None] = lambda done, steps: None) -> torch.Tensor:
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def step_ended(pipe, index, timestep, tensors):
        on_step(index + 1, settings["steps"])
        return tensors

    with autocast(pipe.device):
        out = pipe(
            prompt=prompts,
            generator=generators,
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            height=settings["height"],
            width=settings["width"],
            output_type="latent",
            callback_on_step_end=step_ended,
        )
    return out.images.float().cpu()


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str], batch_size: int = 64) -> Conditioning:
    """The UNet's conditioning for the prompts, row for row, each distinct prompt encoded once
    (by the pipeline's family: text states, and SDXL's pooled embeddings and time ids)."""
    family = family_of(pipe)
    unique = sorted(set(prompts))
    parts = [family.encode(pipe, unique[start:start + batch_size]) for start in range(0, len(unique), batch_size)]
    encoded = Conditioning.concatenate(parts)
    row = {prompt: i for i, prompt in enumerate(unique)}
    return encoded[torch.tensor([row[p] for p in prompts], dtype=torch.long)]


@torch.no_grad()
def encode_unconditional(pipe) -> Conditioning:
    """One row: what the pipeline's classifier-free guidance conditions its unguided branch on."""
    return family_of(pipe).unconditional(pipe)
