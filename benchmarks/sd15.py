"""Stable Diffusion 1.5-sized components with random weights, built from config (no download).

Speed does not depend on the weights' values. `tiny=True` gives the same structure at a
size a CPU runs in seconds, to check a benchmark script before spending GPU time on it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from unlearning.tiny import BASIC_WORDS, tiny_text_encoder, tiny_unet, tiny_vae
from unlearning.tokenizer import make_clip_tokenizer


def unet(tiny: bool) -> UNet2DConditionModel:
    if tiny:
        return tiny_unet()
    return UNet2DConditionModel(  # the SD-1.5 UNet: 859.5 M parameters, 64x64x4 latents
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )


def text_encoder(tiny: bool, vocab_size: int) -> CLIPTextModel:
    if tiny:
        return tiny_text_encoder(vocab_size)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=max(vocab_size, 49408), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    ))


def vae(tiny: bool) -> AutoencoderKL:
    if tiny:
        return tiny_vae()
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def pipeline(tiny: bool, scratch: Path) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = make_clip_tokenizer(scratch / "tokenizer", BASIC_WORDS)
    return StableDiffusionPipeline(
        unet=unet(tiny), vae=vae(tiny), text_encoder=text_encoder(tiny, len(tokenizer)), tokenizer=tokenizer,
        scheduler=scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def latent_size(tiny: bool) -> int:
    return 8 if tiny else 64


def device_facts(device: torch.device) -> dict:
    facts = {"torch": torch.__version__, "device": str(device), "host": platform.node()}
    if device.type == "cuda":
        facts["card"] = torch.cuda.get_device_name(device)
    else:
        facts["card"] = platform.processor() or "cpu"
    return facts


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
