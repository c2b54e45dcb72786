"""What a pipeline family gives the rest of the library, and the conditioning it produces.

A family knows one diffusers pipeline class: which components its folder holds, how to load
it, and how a prompt becomes what the UNet is conditioned on. Everything else (prompt sets,
latents, the loop, the methods, evaluation, output) works through `Family` and
`Conditioning` and never asks which family it has.

No torch at import (the torch-free folder check asks families which folders they take):
tensors are handled through their own methods, and diffusers is imported when loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on for a batch of prompts: batch-first tensors named as
    `UNet2DConditionModel` takes them. `encoder_hidden_states` (B, L, D) always; `added`
    holds what the UNet takes in `added_cond_kwargs` (SDXL: `text_embeds` (B, P) and
    `time_ids` (B, 6)), empty for a family that has none."""

    encoder_hidden_states: Any  # (B, L, D)
    added: dict[str, Any] = field(default_factory=dict)  # name -> (B, ...)

    def __len__(self) -> int:
        return self.encoder_hidden_states.shape[0]

    def map(self, fn) -> Conditioning:
        """The same conditioning with `fn` applied to every tensor."""
        return Conditioning(fn(self.encoder_hidden_states), {k: fn(v) for k, v in self.added.items()})

    def __getitem__(self, index) -> Conditioning:
        """Rows `index` (an int tensor, a slice) of every tensor."""
        return self.map(lambda tensor: tensor[index])

    def to(self, device) -> Conditioning:
        return self.map(lambda tensor: tensor.to(device))

    def expand(self, count: int) -> Conditioning:
        """A batch of one repeated `count` times (views, no copies)."""
        return self.map(lambda tensor: tensor.expand(count, *tensor.shape[1:]))

    @staticmethod
    def concatenate(parts: list[Conditioning]) -> Conditioning:
        """The rows of all parts, in order."""
        import torch

        added = {name: torch.cat([p.added[name] for p in parts]) for name in parts[0].added}
        return Conditioning(torch.cat([p.encoder_hidden_states for p in parts]), added)

    def unet_inputs(self) -> dict[str, Any]:
        """Keyword arguments of `UNet2DConditionModel.forward` after (sample, timestep)."""
        inputs = {"encoder_hidden_states": self.encoder_hidden_states}
        if self.added:
            inputs["added_cond_kwargs"] = dict(self.added)
        return inputs


def image_size(pipe) -> int:
    """Height and width in pixels the pipeline draws by default: the UNet's sample size
    (64 for SD 1.x, 96 for SD 2.x at 768 px, 128 for SDXL) times the VAE's scale factor."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


class Family:
    """One diffusers pipeline class and how Lethe uses it. Subclasses set the class attributes
    and give `encode` and `unconditional`."""

    name: ClassVar[str]  # short id: "sd", "sdxl"
    pipeline_class: ClassVar[str]  # the diffusers class, as model_index.json's _class_name names it
    description: ClassVar[str]  # which models these are, for messages
    components: ClassVar[dict[str, str | None]]  # folder -> required class-name prefix (None: any class)
    load_options: ClassVar[dict[str, Any]] = {}  # extra from_pretrained arguments
    models: ClassVar[tuple[str, ...]]  # components holding torch modules (frozen after loading)

    def load(self, path: Path, variant: str | None, allow_pickle: bool):
        """The pipeline in fp32 (variant files are upcast), safetensors only unless `allow_pickle`."""
        import diffusers
        import torch

        pipeline = getattr(diffusers, self.pipeline_class)
        return pipeline.from_pretrained(path, dtype=torch.float32, variant=variant,
                                        use_safetensors=None if allow_pickle else True, **self.load_options)

    def modules(self, pipe) -> list:
        return [getattr(pipe, name) for name in self.models]

    def encode(self, pipe, prompts: list[str]) -> Conditioning:
        """The prompts' conditioning, fp32, as the pipeline itself computes it."""
        raise NotImplementedError

    def unconditional(self, pipe) -> Conditioning:
        """A batch of one: what the pipeline's classifier-free guidance conditions its
        unguided prediction on (ESD's e*(x_t)), fp32."""
        raise NotImplementedError
