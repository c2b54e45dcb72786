"""The unlearning loop: Adam on a chosen set of UNet parameters, one method's update per step.

Gradients live in one flat buffer whose views are the parameters' `.grad`, so the
restricted-gradient rule works on whole vectors without concatenating copies: the step
keeps exactly one extra full-size vector (g_f) while the retain gradient is computed.
The rule's dot products and its combination are three passes over memory in all.

Randomness (batch order, timesteps, noise) is a pure function of (seed, step), so a run
resumed from a saved state draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .callbacks import Callbacks
from .errors import InvalidInput, Stopped
from .methods import esd, ga, graddiff, rg
from .pipeline import autocast

COMBINATIONS = {"rg": rg.coefficients, "graddiff": graddiff.coefficients, "ga": ga.coefficients}


@dataclass
class TrainingData:
    forget_latents: torch.Tensor  # (N, C, h, w), scaled latent space
    forget_embeds: torch.Tensor  # (N, L, D)
    retain_latents: torch.Tensor  # (N, C, h, w); retain[i] is forget[i]'s pair
    retain_embeds: torch.Tensor  # (N, L, D)
    uncond_embeds: torch.Tensor  # (1, L, D), the empty prompt (ESD)


def trainable_parameters(unet: torch.nn.Module, which: str) -> list[tuple[str, torch.nn.Parameter]]:
    """'unet': every parameter; 'cross_attention': the text-conditioned attention layers (attn2)."""
    named = list(unet.named_parameters())
    if which == "cross_attention":
        named = [(n, p) for n, p in named if ".attn2." in n]
    return named


def noised(scheduler, latents: torch.Tensor, generator: torch.Generator, device: torch.device):
    """(z_t, noise, t, z_0) with t ~ U{0..T-1} per sample and noise ~ N(0, I), drawn on the CPU."""
    noise = torch.randn(latents.shape, generator=generator).to(device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator).to(device)
    latents = latents.to(device)
    return scheduler.add_noise(latents, noise, t), noise, t, latents


def denoising_loss(unet, scheduler, latents, embeds, generator, device) -> torch.Tensor:
    """mean((e_theta(z_t, t, c) - e)^2) (or the velocity, for v-prediction models)."""
    noisy, noise, t, clean = noised(scheduler, latents, generator, device)
    with autocast(device):
        pred = unet(noisy, t, encoder_hidden_states=embeds.to(device)).sample
    if scheduler.config.prediction_type == "v_prediction":
        noise = scheduler.get_velocity(clean, noise, t)
    return F.mse_loss(pred.float(), noise.float())


class FlatGradients:
    """Gradients in one contiguous (rows, N) buffer; each parameter's `.grad` is a view of
    the last row. With two rows, the first keeps g_f while g_r is computed, and the three
    dot products of the rule come from one pass over both (a 2x2 Gram matrix)."""

    def __init__(self, params: list[torch.nn.Parameter], rows: int = 1):
        total = sum(p.numel() for p in params)
        self.rows = torch.zeros(rows, total, device=params[0].device, dtype=params[0].dtype)
        self.buffer = self.rows[-1]
        self.stash = self.rows[0] if rows == 2 else None
        offset = 0
        for p in params:
            p.grad = self.buffer[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    def zero(self) -> None:
        self.buffer.zero_()

    def gram(self) -> tuple[float, float, float]:
        """(|stash|^2, |buffer|^2, stash . buffer), exact fp32 even where TF32 is on."""
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            g = (self.rows @ self.rows.T).tolist()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        return g[0][0], g[1][1], g[0][1]


def _seeded(seed: int, *labels) -> torch.Generator:
    digest = hashlib.sha256(repr((seed, *labels)).encode()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def batch_indices(seed: int, step: int, batch_size: int, size: int) -> torch.Tensor:
    """Indices of step `step`: consecutive slices of one seeded permutation per pass."""
    positions = range(step * batch_size, (step + 1) * batch_size)
    perms: dict[int, torch.Tensor] = {}
    out = []
    for pos in positions:
        epoch = pos // size
        if epoch not in perms:
            perms[epoch] = torch.randperm(size, generator=_seeded(seed, "order", epoch))
        out.append(perms[epoch][pos % size])
    return torch.stack(out)


class Unlearner:
    def __init__(self, unet, scheduler, config, data: TrainingData, seed: int, device: torch.device):
        self.unet, self.scheduler, self.config, self.data = unet, scheduler, config, data
        self.seed, self.device = seed, device
        # ESD's targets come from a frozen copy of the original, taken before any grad exists.
        self.frozen = copy.deepcopy(unet).requires_grad_(False).eval() if config.method == "esd" else None
        self.named = trainable_parameters(unet, config.trainable)
        if not self.named:
            raise InvalidInput("hyperparameters.trainable", f"selects no parameters of this UNet: {config.trainable!r}")
        for _, p in self.named:
            p.requires_grad_(True)
        params = [p for _, p in self.named]
        self.grads = FlatGradients(params, rows=2 if config.method in ("rg", "graddiff") else 1)
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, fused=device.type == "cuda")
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.unet.train()
        self.step_index = 0
        self.history: list[dict] = []

    # --- losses -------------------------------------------------------------------------

    def denoising_loss(self, latents, embeds, generator) -> torch.Tensor:
        return denoising_loss(self.unet, self.scheduler, latents, embeds, generator, self.device)

    # --- one step -----------------------------------------------------------------------

    def step(self) -> dict:
        generator = _seeded(self.seed, "step", self.step_index)
        size = self.data.forget_latents.shape[0]
        idx = batch_indices(self.seed, self.step_index, self.config.batch_size, size)
        self.grads.zero()
        if self.config.method == "esd":
            record = self._esd_step(idx, generator)
        else:
            record = self._gradient_step(idx, generator)
        self.optimizer.step()
        record["step"] = self.step_index
        self.step_index += 1
        self.history.append(record)
        return record

    def _gradient_step(self, idx, generator) -> dict:
        """d = a g_f + b g_r, with (a, b) from the method's combination rule."""
        data, config = self.data, self.config
        forget_loss = self.denoising_loss(data.forget_latents[idx], data.forget_embeds[idx], generator)
        ceiling = config.forget_loss_ceiling
        hinge = ceiling is not None and forget_loss.item() > ceiling
        if not hinge:
            (-forget_loss).backward()  # buffer = g_f = -grad L_f
        record = {"forget_loss": forget_loss.item(), "hinge": hinge}
        if config.method == "ga":
            return record
        if not hinge:
            self.grads.stash.copy_(self.grads.buffer)
            self.grads.zero()
        retain_loss = self.denoising_loss(data.retain_latents[idx], data.retain_embeds[idx], generator)
        retain_loss.backward()  # buffer = g_r
        record["retain_loss"] = retain_loss.item()
        g_r = self.grads.buffer
        if hinge:  # g_f = 0: no projection, d = w g_r
            g_r.mul_(config.retain_weight)
            return record
        ff, rr, fr = self.grads.gram()
        a, b = COMBINATIONS[config.method](ff, rr, fr, config.retain_weight)
        g_r.mul_(b).add_(self.grads.stash, alpha=a)  # the buffer now holds d
        record["conflict"] = fr < 0
        return record

    def _esd_step(self, idx, generator) -> dict:
        latents, cond = self.data.forget_latents[idx], self.data.forget_embeds[idx].to(self.device)
        uncond = self.data.uncond_embeds.to(self.device).expand_as(cond)
        noisy, _, t, _ = noised(self.scheduler, latents, generator, self.device)
        with torch.no_grad(), autocast(self.device):
            frozen_cond = self.frozen(noisy, t, encoder_hidden_states=cond).sample.float()
            frozen_uncond = self.frozen(noisy, t, encoder_hidden_states=uncond).sample.float()
        target = esd.target(frozen_uncond, frozen_cond, self.config.negative_guidance)
        with autocast(self.device):
            pred = self.unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), target)
        loss.backward()
        return {"forget_loss": loss.item()}

    # --- the run, with resumable state ---------------------------------------------------

    def run(self, callbacks: Callbacks, state_file: Path | None, run_key: str) -> list[dict]:
        if state_file is not None and state_file.is_file():
            self.load_state(state_file, run_key)
        total = self.config.steps
        callbacks.on_progress("unlearning", self.step_index, total)
        while self.step_index < total:
            if callbacks.should_stop():
                if state_file is not None:
                    self.save_state(state_file, run_key)
                    callbacks.on_state_saved(state_file)
                raise Stopped(self.step_index)
            record = self.step()
            callbacks.on_progress("unlearning", self.step_index, total)
            if self.step_index % 10 == 0 or self.step_index == total:
                callbacks.on_event("metrics", f"step {self.step_index}/{total}", record)
            if state_file is not None and self.step_index % self.config.save_every == 0 and self.step_index < total:
                self.save_state(state_file, run_key)
                callbacks.on_state_saved(state_file)
        for _, p in self.named:
            p.requires_grad_(False)
            p.grad = None
        if self.config.gradient_checkpointing:
            self.unet.disable_gradient_checkpointing()
        self.unet.eval()
        return self.history

    def save_state(self, path: Path, run_key: str) -> None:
        """Changed weights, optimizer, step and history; written to a temporary file, then renamed."""
        state = {
            "run_key": run_key,
            "step": self.step_index,
            "params": {n: p.detach().cpu().clone() for n, p in self.named},
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_state(self, path: Path, run_key: str) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["run_key"] != run_key:
            raise InvalidInput("state_dir", f"{path} holds the state of another run; use an empty state_dir")
        with torch.no_grad():
            for name, p in self.named:
                p.copy_(state["params"][name].to(p.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_index = state["step"]
        self.history = state["history"]
