"""Tiny Stable Diffusion pipelines built from config, for tests, demos and benchmarks.

Every component is the real diffusers or transformers class at a small size, seeded,
with a tokenizer written from local files: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .tokenizer import make_clip_tokenizer

BASIC_WORDS = (
    "a an the of in on at with and painting photo picture drawing portrait style person man "
    "woman dog cat car tree house city forest beach night morning van gogh monet church "
    "garbage truck parachute golf ball nudity naked cartoon sketch"
).split()


def tiny_unet(cross_attention_dim: int = 32, sample_size: int = 8) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )


def tiny_text_encoder(vocab_size: int, hidden_size: int = 32) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config)


def build_tiny_pipeline(out_dir: str | Path, seed: int = 0, words: tuple[str, ...] = BASIC_WORDS) -> Path:
    """Write a tiny, randomly initialised SD-1.x-style pipeline folder and return its path.

    Images are 16x16 pixels, latents 4x8x8; the whole folder is well under 1 MB.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = make_clip_tokenizer(out_dir / "_tokenizer_files", words)
    pipe = StableDiffusionPipeline(
        unet=tiny_unet(),
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    for leftover in (out_dir / "_tokenizer_files").iterdir():
        leftover.unlink()
    (out_dir / "_tokenizer_files").rmdir()
    return out_dir
