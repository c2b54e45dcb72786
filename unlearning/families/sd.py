"""Stable Diffusion 1.x and 2.x (`StableDiffusionPipeline`): one CLIP text encoder, whose
last hidden states are the UNet's `encoder_hidden_states`.

SD 2.x differs only in what the folder's configs say (a v-prediction scheduler, 768 px
from the UNet's sample size, an OpenCLIP text encoder saved as `CLIPTextModel`); the
training noise (`unlearning.noise`) and the pipeline read those configs themselves.
"""

from __future__ import annotations

from .base import Conditioning, Family


class StableDiffusion(Family):
    name = "sd"
    pipeline_class = "StableDiffusionPipeline"
    description = "Stable Diffusion 1.x and 2.x"
    components = {
        "unet": "UNet2DConditionModel",
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "tokenizer": "CLIPTokenizer",
        "scheduler": None,  # any diffusers scheduler
    }
    load_options = {"safety_checker": None, "requires_safety_checker": False}
    models = ("unet", "vae", "text_encoder")

    def encode(self, pipe, prompts: list[str]) -> Conditioning:
        states, _ = pipe.encode_prompt(prompts, pipe.device, 1, False)
        return Conditioning(states.float())

    def unconditional(self, pipe) -> Conditioning:
        _, empty = pipe.encode_prompt([""], pipe.device, 1, True)  # the negative branch: ""
        return Conditioning(empty.float())
