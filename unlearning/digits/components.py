"""The digits model's components: real diffusers/transformers classes at a small size.

Images are 8x8 RGB (grey digits); the VAE has two blocks, so latents are 4x4x4
(vae_scale_factor 2) and the pipeline's default height and width are 4 * 2 = 8. Prompts are
short, so the tokenizer pads to 16 tokens, not 77: cross-attention stays cheap on 2 cores.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

IMAGE_SIZE = 8
TEXT_WIDTH = 64
MAX_TOKENS = 16
LATENT_SIZE = 4


def make_vae(block_out_channels=(32, 64), image_size: int = IMAGE_SIZE, latent_channels: int = 4) -> AutoencoderKL:
    """Each block past the first halves the image: latents are image_size / 2**(blocks - 1) wide."""
    blocks = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=image_size,
    )


def make_unet(latent_size: int = LATENT_SIZE, latent_channels: int = 4) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def make_text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )


def make_scheduler() -> DDIMScheduler:
    """Stable Diffusion 1.x's noise schedule; DDIM sampling (the pipeline's 50 steps)."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
