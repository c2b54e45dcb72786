"""Stable Diffusion XL base (`StableDiffusionXLPipeline`): two CLIP text encoders.

The UNet takes the two encoders' penultimate hidden states side by side as
`encoder_hidden_states` (B, 77, D1 + D2), and in `added_cond_kwargs` the second encoder's
pooled projection `text_embeds` (B, P) and six `time_ids` (B, 6): original height and width,
crop top and left, target height and width. Lethe's latents are drawn at the pipeline's
default size, uncropped, so every sample's time ids are (H, W, 0, 0, H, W), as the
pipeline passes them when generating. The refiner (img2img, no first text encoder) is
another pipeline class and is not taken.
"""

from __future__ import annotations

from .base import Conditioning, Family, image_size


class StableDiffusionXL(Family):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    description = "Stable Diffusion XL (base)"
    components = {
        "unet": "UNet2DConditionModel",
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "text_encoder_2": "CLIPTextModelWithProjection",
        "tokenizer": "CLIPTokenizer",
        "tokenizer_2": "CLIPTokenizer",
        "scheduler": None,
    }
    load_options = {"add_watermarker": False}  # the evaluation grids show the model's own pixels
    models = ("unet", "vae", "text_encoder", "text_encoder_2")

    def encode(self, pipe, prompts: list[str]) -> Conditioning:
        states, _, pooled, _ = pipe.encode_prompt(prompts, device=pipe.device, do_classifier_free_guidance=False)
        return self.conditioning(pipe, states, pooled)

    def unconditional(self, pipe) -> Conditioning:
        # Zeros when the folder sets force_zeros_for_empty_prompt (SDXL base does), else "" encoded.
        _, states, _, pooled = pipe.encode_prompt([""], device=pipe.device, do_classifier_free_guidance=True)
        return self.conditioning(pipe, states, pooled)

    @staticmethod
    def conditioning(pipe, states, pooled) -> Conditioning:
        size = image_size(pipe)
        time_ids = pooled.new_tensor([size, size, 0, 0, size, size]).float().repeat(len(pooled), 1)  # (B, 6)
        return Conditioning(states.float(), {"text_embeds": pooled.float(), "time_ids": time_ids})
