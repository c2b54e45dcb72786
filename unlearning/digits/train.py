"""Train the digits model and write it as a Stable Diffusion-format diffusers folder.

Two stages, both seeded: (1) the VAE learns to reconstruct the generator's digits; (2) the
UNet and the CLIP text encoder learn, jointly, to denoise the VAE's latents given a prompt
drawn from the training phrasings (a tenth of the prompts are emptied, so that
classifier-free guidance works at the pipeline's default scale of 7.5).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline

from .components import MAX_TOKENS, make_scheduler, make_text_encoder, make_unet, make_vae
from .data import CLASSES, load_split, pixels_to_images
from .prompts import SYNONYMS, TEMPLATES, TEST_TEMPLATES, prompt, vocabulary
from ..tokenizer import make_clip_tokenizer


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 0
    vae_steps: int = 600
    vae_learning_rate: float = 2e-3
    vae_kl_weight: float = 1e-5
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    empty_prompt_share: float = 0.1
    numeral_share: float = 0.2


def add_training_options(parser) -> None:
    """An option `--<name>` for each TrainingConfig field (digits and canvas models alike)."""
    for f in fields(TrainingConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None)


def configured(args, defaults: TrainingConfig) -> TrainingConfig:
    """`defaults` with the options given on the command line (`add_training_options`)."""
    return replace(defaults, **{f.name: getattr(args, f.name) for f in fields(TrainingConfig)
                                if getattr(args, f.name) is not None})


def _log(message: str) -> None:
    print(message, flush=True)


def _batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    for _ in range(steps):
        yield torch.from_numpy(rng.integers(0, n, size=batch_size))


def _cosine(step: int, config_steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, config_steps - warmup)))


def train_vae(images: torch.Tensor, config: TrainingConfig, rng: np.random.Generator, vae=None):
    """Fit `vae` (the digits model's by default) to `images`; returns it with the posterior of every image."""
    vae = vae if vae is not None else make_vae()
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.vae_learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine(s, config.vae_steps, 50))
    for step, index in enumerate(_batches(len(images), config.batch_size, config.vae_steps, rng)):
        posterior = vae.encode(images[index]).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(reconstruction, images[index]) + config.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == config.vae_steps - 1:
            _log(f"vae step {step}: loss {loss.item():.4f}")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        posterior = vae.encode(images).latent_dist
    # Unit-variance latents for the UNet, as Stable Diffusion's 0.18215 does for its VAE.
    vae.register_to_config(scaling_factor=float(1.0 / posterior.mean.std()))
    return vae, posterior


def _prompt_table(tokenizer) -> tuple[torch.Tensor, int]:
    """Token ids of every training prompt: [digit][template][word or numeral], then the empty prompt."""
    prompts = [prompt(t, d, numeral) for d in range(len(CLASSES)) for t in TEMPLATES for numeral in (False, True)]
    ids = tokenizer(prompts + [""], padding="max_length", max_length=MAX_TOKENS, truncation=True,
                    return_tensors="pt").input_ids
    return ids, len(prompts)


def _prompt_rows(labels: torch.Tensor, config: TrainingConfig, empty_row: int, rng: np.random.Generator):
    n = len(labels)
    template = torch.from_numpy(rng.integers(0, len(TEMPLATES), size=n))
    numeral = torch.from_numpy((rng.random(n) < config.numeral_share).astype(np.int64))
    rows = (labels * len(TEMPLATES) + template) * 2 + numeral
    empty = torch.from_numpy(rng.random(n) < config.empty_prompt_share)
    return torch.where(empty, torch.full_like(rows, empty_row), rows)


def train_denoiser(posterior, labels: torch.Tensor, tokenizer, scaling: float, config: TrainingConfig,
                   rng: np.random.Generator):
    unet, text_encoder, scheduler = make_unet(), make_text_encoder(len(tokenizer)), make_scheduler()
    token_ids, empty_row = _prompt_table(tokenizer)

    def prompt_rows(index):
        return _prompt_rows(labels[index], config, empty_row, rng)

    return fit_denoiser(unet, text_encoder, scheduler, posterior, scaling, token_ids, prompt_rows, config, rng)


def fit_denoiser(unet, text_encoder, scheduler, posterior, scaling: float, token_ids: torch.Tensor, prompt_rows,
                 config: TrainingConfig, rng: np.random.Generator):
    """Train the UNet and the text encoder jointly to predict the noise added to the VAE's latents,
    each image captioned by the rows of `token_ids` that `prompt_rows(index)` picks for it."""
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine(s, config.steps, config.warmup_steps))
    mean, std = posterior.mean, posterior.std
    for step, index in enumerate(_batches(len(mean), config.batch_size, config.steps, rng)):
        latents = (mean[index] + std[index] * torch.randn_like(mean[index])) * scaling
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),))
        noisy = scheduler.add_noise(latents, noise, timesteps)
        context = text_encoder(token_ids[prompt_rows(index)])[0]
        loss = F.mse_loss(unet(noisy, timesteps, context).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == config.steps - 1:
            _log(f"denoiser step {step}: loss {loss.item():.4f}")
    return unet.eval(), text_encoder.eval(), scheduler


# The unlearning library's defaults for this model (lethe.json "hyperparameters"), for every
# method alike: the library's default learning rate (1e-5, Stable Diffusion's fine-tuning
# rate) barely moves a model trained at 1e-3 (RG, seven, 100 steps: UA 0.03); 1e-4 is a tenth
# of this model's own training rate. The batch size only makes generating the training
# latents faster (the sampler is cheap per image here); it changes no result.
MODEL_DEFAULTS = {"learning_rate": 1e-4, "generation_batch_size": 200}


def lethe_config(hyperparameters: dict | None = MODEL_DEFAULTS) -> dict:
    """The model's own prompt vocabulary and method defaults, for the unlearning library."""
    config = {
        "prompts": {
            "templates": list(TEMPLATES),
            "test_templates": list(TEST_TEMPLATES),
            "classes": list(CLASSES),
            "synonyms": SYNONYMS,
        }
    }
    if hyperparameters:
        config["hyperparameters"] = hyperparameters
    return config


def train(out: str | Path, config: TrainingConfig = TrainingConfig(), command: str = "") -> Path:
    """Train the model and write the pipeline folder to `out` (replaced if it exists)."""
    started = time.monotonic()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    split = load_split()
    images = torch.from_numpy(pixels_to_images(split.generator.pixels))
    labels = torch.from_numpy(split.generator.labels)
    vae, posterior = train_vae(images, config, rng)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    tokenizer = make_clip_tokenizer(out / "_tokenizer_files", vocabulary(), max_length=MAX_TOKENS)
    unet, text_encoder, scheduler = train_denoiser(posterior, labels, tokenizer, vae.config.scaling_factor, config, rng)
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}
    command = command or "python -m unlearning.digits train --out models/digits"
    source = ("From scikit-learn's bundled `load_digits` (generator part of the fixed split in "
              "`unlearning/digits/data.py`), on CPU, seeded.")
    return write_folder(out, parts, lethe_config(), training_note(config, command, source), started)


def write_folder(out: Path, parts: dict, lethe: dict, note: str, started: float) -> Path:
    """The pipeline of `parts` (unet, vae, text_encoder, tokenizer, scheduler) saved to `out`, less its
    tokenizer's build files, with its lethe.json and TRAINING.md (`note`, then the training time)."""
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    shutil.rmtree(out / "_tokenizer_files")
    minutes = (time.monotonic() - started) / 60
    (out / "lethe.json").write_text(json.dumps(lethe, indent=2) + "\n")
    (out / "TRAINING.md").write_text(f"{note}\n\nTraining took {minutes:.1f} minutes on the machine that made it "
                                     f"(torch threads: {torch.get_num_threads()}).\n")
    _log(f"wrote {out} in {minutes:.1f} min")
    return out


def training_note(config, command: str, source: str) -> str:
    """TRAINING.md's head: the command, where the data came from, every setting."""
    settings = "\n".join(f"- {k}: {v}" for k, v in asdict(config).items())
    return f"# How this folder was made\n\n```sh\n{command}\n```\n\n{source}\n\n{settings}"
