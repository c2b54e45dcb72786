"""The canvas model's components: the digits model's classes at 16x16 RGB.

The VAE has three blocks, so a 16x16 image becomes a 4x4 latent (vae_scale_factor 4) and
the pipeline's default height and width are 4 * 4 = 16; the UNet and text encoder are the
digits model's, with 8 latent channels for the colours and textures.
"""

from __future__ import annotations

from ..digits import components as digits
from .styles import SIZE

LATENT_SIZE = 4
LATENT_CHANNELS = 8
MAX_TOKENS = digits.MAX_TOKENS


def make_vae():
    return digits.make_vae((16, 32, 64), image_size=SIZE, latent_channels=LATENT_CHANNELS)


def make_unet():
    return digits.make_unet(LATENT_SIZE, LATENT_CHANNELS)


make_text_encoder, make_scheduler = digits.make_text_encoder, digits.make_scheduler
