"""Tiny pipelines of every family Lethe trains, built from config, for tests, demos and benchmarks.

SD 1.x (`build_tiny_pipeline`), SD 2.x (`build_tiny_sd2_pipeline`: v-prediction, linear
attention projections, upcast attention, a larger sample size) and SDXL
(`build_tiny_sdxl_pipeline`: two text encoders of different widths, pooled embeddings and
time ids). Every component is the real diffusers or transformers class at a small size,
seeded, with a tokenizer written from local files: nothing is downloaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from .tokenizer import make_clip_tokenizer

BASIC_WORDS = (
    "a an the of in on at with and painting photo picture drawing portrait style person man "
    "woman dog cat car tree house city forest beach night morning van gogh monet church "
    "garbage truck parachute golf ball nudity naked cartoon sketch"
).split()
SDXL_TIME_EMBED_DIM = 8  # per time id; SDXL has six


def tiny_unet(cross_attention_dim: int = 32, sample_size: int = 8, **options) -> UNet2DConditionModel:
    """An SD-1.x-shaped UNet; `options` override its config (SD 2.x, SDXL)."""
    config = dict(
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
    return UNet2DConditionModel(**{**config, **options})


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


def text_config(vocab_size: int, hidden_size: int = 32, **options) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        **options,
    )


def tiny_text_encoder(vocab_size: int, hidden_size: int = 32) -> CLIPTextModel:
    return CLIPTextModel(text_config(vocab_size, hidden_size))


def sd_scheduler(**options) -> DDIMScheduler:
    """DDIM as SD 1.x and 2.x ship it; 2.x (768 px) adds prediction_type='v_prediction'."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, **options)


def save_tiny(pipe, out_dir: Path) -> Path:
    pipe.save_pretrained(out_dir, safe_serialization=True)
    shutil.rmtree(out_dir / "_tokenizer_files")
    return out_dir


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
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return save_tiny(pipe, out_dir)


def build_tiny_sd2_pipeline(out_dir: str | Path, seed: int = 0, words: tuple[str, ...] = BASIC_WORDS,
                            sample_size: int = 12) -> Path:
    """An SD-2.x-style folder (as stable-diffusion-2-1 at 768 px): a v-prediction scheduler,
    a UNet with linear attention projections, upcast attention, per-block head dims and a
    sample size other than SD 1.x's. Images are 2 * `sample_size` pixels square."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = make_clip_tokenizer(out_dir / "_tokenizer_files", words)
    unet = tiny_unet(sample_size=sample_size, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(text_config(len(tokenizer), hidden_act="gelu")),  # OpenCLIP's activation
        tokenizer=tokenizer,
        scheduler=sd_scheduler(prediction_type="v_prediction"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return save_tiny(pipe, out_dir)


def tiny_sdxl_unet(text_widths: tuple[int, int], pooled_width: int, sample_size: int = 8) -> UNet2DConditionModel:
    """SDXL's conditioning: cross-attention over both encoders' states side by side, and an added
    embedding of the pooled text (`pooled_width`) with six time ids of SDXL_TIME_EMBED_DIM each."""
    return tiny_unet(
        cross_attention_dim=sum(text_widths),
        sample_size=sample_size,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=pooled_width + 6 * SDXL_TIME_EMBED_DIM,
    )


def build_tiny_sdxl_pipeline(out_dir: str | Path, seed: int = 0, words: tuple[str, ...] = BASIC_WORDS) -> Path:
    """Write a tiny SDXL-base-style folder (StableDiffusionXLPipeline) and return its path.

    Two text encoders of different widths (32 and 48; the second with a 24-wide pooled
    projection), one local tokenizer for both, the Euler sampler SDXL ships. Images are
    16x16 pixels, latents 4x8x8.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = make_clip_tokenizer(out_dir / "_tokenizer_files", words)
    first = CLIPTextModel(text_config(len(tokenizer), 32))
    second = CLIPTextModelWithProjection(text_config(len(tokenizer), 48, projection_dim=24))
    pipe = StableDiffusionXLPipeline(
        unet=tiny_sdxl_unet((32, 48), pooled_width=24),
        vae=tiny_vae(),
        text_encoder=first,
        text_encoder_2=second,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    return save_tiny(pipe, out_dir)
