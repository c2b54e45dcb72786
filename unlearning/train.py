"""The unlearning loop: Adam on a chosen set of UNet parameters (or on the A and B matrices of
a LoRA adapter, `unlearning.lora`), one method's update per step.

The loop never asks which method it runs: the configuration names its implementation
(`unlearning.methods`), which leaves each step's update direction d in the gradient buffer.
Gradients live in one flat buffer whose views are the parameters' `.grad`, so the
restricted-gradient rule works on whole vectors without concatenating copies: the step
keeps exactly one extra full-size vector (g_f) while the retain gradient is computed.

Noise and targets come from the training schedule (`unlearning.noise`), never the sampler.
Randomness (batch order, timesteps, noise) is a pure function of (seed, step), so a run
resumed from a saved state draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import lora, whitening
from .callbacks import Callbacks
from .errors import InvalidInput, Stopped
from .families import Conditioning
from .methods.gradient import gram
from .noise import TrainingNoise
from .pipeline import autocast


@dataclass
class TrainingData:
    """Latents and what the UNet is conditioned on (the family's `Conditioning`), row for row."""

    forget_latents: torch.Tensor  # (N, C, h, w), scaled latent space
    forget_conditioning: Conditioning  # N rows
    retain_latents: torch.Tensor  # (N, C, h, w); retain[i] is forget[i]'s pair
    retain_conditioning: Conditioning  # N rows
    unconditional: Conditioning  # 1 row: the unguided branch (ESD)


def trainable_parameters(unet: torch.nn.Module, which: str) -> list[tuple[str, torch.nn.Parameter]]:
    """'unet': every parameter; 'cross_attention': the text-conditioned attention layers (attn2);
    'cross_attention_keys': only their key projections (attn2.to_k), which decide how much each
    position of the image attends to each token of the prompt, not what a token brings;
    'cross_attention_keys_values': the key and value projections (attn2.to_k, to_v), the only
    layers that read the prompt, so a prompt whose token states do not change draws as before;
    'lora': the A and B matrices of the UNet's LoRA adapter (`lora.attach`), none of its own."""
    named = list(unet.named_parameters())
    if which == "cross_attention":
        named = [(n, p) for n, p in named if ".attn2." in n]
    elif which == "cross_attention_keys":
        named = [(n, p) for n, p in named if ".attn2.to_k." in n]
    elif which == "cross_attention_keys_values":
        named = [(n, p) for n, p in named if ".attn2.to_k." in n or ".attn2.to_v." in n]
    elif which == "lora":
        named = [(n, p) for n, p in named if lora.is_lora_parameter(n)]
    return named


def parent_weights(unet: torch.nn.Module, config) -> dict[str, torch.Tensor]:
    """CPU copies of the UNet's tensors that the run can change, as they are before it: the
    trainable ones, or for 'lora' the weights its adapter is fused into at the end."""
    if config.trainable == "lora":
        return lora.parent_weights(unet, config)
    return {n: p.detach().to("cpu", copy=True) for n, p in trainable_parameters(unet, config.trainable)}


def prediction(unet, noisy, t, conditioning: Conditioning, device: torch.device) -> torch.Tensor:
    """The UNet's output at (z_t, t, c), under the device's autocast."""
    with autocast(device):
        return unet(noisy, t, **conditioning.to(device).unet_inputs()).sample


def denoising_loss(unet, noise: TrainingNoise, latents, conditioning: Conditioning, generator, device) -> torch.Tensor:
    """mean((e_theta(z_t, t, c) - target)^2), the target by the model's prediction type."""
    noisy, drawn, t, clean = noise.noised(latents, generator, device)
    pred = prediction(unet, noisy, t, conditioning, device)
    return F.mse_loss(pred.float(), noise.target(clean, drawn, t).float())


@contextmanager
def evaluation_mode(module: torch.nn.Module):
    training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(training)


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
        """(|stash|^2, |buffer|^2, stash . buffer), accumulated in fp64 (see `methods.gradient.gram`)."""
        (ff, fr), (_, rr) = gram(list(self.rows))
        return ff, rr, fr


def seeded_generator(seed: int, *labels) -> torch.Generator:
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
            perms[epoch] = torch.randperm(size, generator=seeded_generator(seed, "order", epoch))
        out.append(perms[epoch][pos % size])
    return torch.stack(out)


class Unlearner:
    def __init__(self, unet, noise: TrainingNoise, config, data: TrainingData, seed: int, device: torch.device):
        self.unet, self.noise, self.config, self.data = unet, noise, config, data
        self.seed, self.device = seed, device
        if config.trainable == "lora" and not trainable_parameters(unet, "lora"):
            lora.attach(unet, config, seed)  # a resumed run loads its trained A and B over these
        self.named = trainable_parameters(unet, config.trainable)
        if not self.named:
            raise InvalidInput("hyperparameters.trainable", f"selects no parameters of this UNet: {config.trainable!r}")
        self.whitened = []
        if config.key_value_whitening is not None:
            parts = [data.retain_conditioning, data.unconditional]  # what the job keeps: not the concept's sentences
            self.whitened = whitening.whiten(unet, {n for n, _ in self.named}, parts, config.key_value_whitening)
            self.named = trainable_parameters(unet, config.trainable)  # now holding V for each whitened W
        self.method = config.implementation(config, self)  # before any step: ESD keeps the originals
        for _, p in self.named:
            p.requires_grad_(True)
        params = [p for _, p in self.named]
        self.grads = FlatGradients(params, rows=self.method.gradient_rows)
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, fused=device.type == "cuda")
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.unet.train()
        self.step_index = 0
        self.history: list[dict] = []
        self.rows: torch.Tensor | None = None  # the forget rows steps draw from (None: all); see `_steps`

    # --- what a method asks of the trainer ------------------------------------------------

    def denoising_loss(self, latents, conditioning: Conditioning, generator) -> torch.Tensor:
        return denoising_loss(self.unet, self.noise, latents, conditioning, generator, self.device)

    def prediction(self, noisy, t, conditioning: Conditioning, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The UNet's output; with `weights`, of the UNet with those tensors in place (no graph, eval mode)."""
        if weights is None:
            return prediction(self.unet, noisy, t, conditioning, self.device)
        with torch.no_grad(), evaluation_mode(self.unet), autocast(self.device):
            args, kwargs = (noisy, t), conditioning.to(self.device).unet_inputs()
            return torch.func.functional_call(self.unet, weights, args, kwargs).sample

    # --- one step -----------------------------------------------------------------------

    def step(self) -> dict:
        record = self.update_direction()
        self.optimizer.step()
        record["step"] = self.step_index
        self.step_index += 1
        self.history.append(record)
        return record

    def update_direction(self) -> dict:
        """The method's d for this step, left in the gradient buffer (the parameters' .grad)."""
        generator = seeded_generator(self.seed, "step", self.step_index)
        if self.rows is None:
            batch = batch_indices(self.seed, self.step_index, self.config.batch_size, self.data.forget_latents.shape[0])
        else:
            batch = self.rows[batch_indices(self.seed, self.step_index, self.config.batch_size, len(self.rows))]
        self.grads.zero()
        return self.method.direction(batch, generator)

    # --- the run, with resumable state ---------------------------------------------------

    def run(self, callbacks: Callbacks, state_file: Path | None, run_key: str, check=None) -> list[dict]:
        """All remaining steps, or until `check` (an `audit.stop.ErasureCheck`) finds every concept
        erased, each concept's forget rows left out of the batches once it finds that one erased;
        then (or on Stopped) `release`."""
        try:
            if state_file is not None and state_file.is_file():
                self.load_state(state_file, run_key)
                self.rows = check.rows_left(self.history) if check is not None else None
            self._steps(callbacks, state_file, run_key, check)
        finally:
            self.release()
        return self.history

    def _steps(self, callbacks: Callbacks, state_file: Path | None, run_key: str, check) -> None:
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
            if check is not None and check.due(self.step_index) and self.step_index < total:
                record["erasure_check"] = check.leaks()
                # A concept found erased leaves the batches; when none is left, the run ends.
                self.rows = check.rows_left(self.history)
                if self.rows is not None and len(self.rows) == 0:
                    callbacks.on_event("message", f"stopped at step {self.step_index}/{total}: the erasure check finds "
                                       f"every concept erased", {"stopped_at": self.step_index, "steps": total,
                                                                 "erasure_check": record["erasure_check"]})
                    callbacks.on_progress("unlearning", self.step_index, self.step_index)
                    return
            if self.step_index % 10 == 0 or self.step_index == total:
                callbacks.on_event("metrics", f"step {self.step_index}/{total}", record)
            if state_file is not None and self.step_index % self.config.save_every == 0 and self.step_index < total:
                self.save_state(state_file, run_key)
                callbacks.on_state_saved(state_file)

    def release(self) -> None:
        """The UNet back to inference (no grads, no checkpointing, eval mode); the gradient rows,
        the Adam state and the method's own tensors dropped. No step can follow."""
        for _, p in self.named:
            p.requires_grad_(False)
            p.grad = None
        if self.config.gradient_checkpointing:
            self.unet.disable_gradient_checkpointing()
        self.unet.eval()
        self.method.release()
        self.grads = self.optimizer = None
        if self.whitened:
            whitening.unwhiten(self.whitened)  # the same parameters, now holding W under its own name
            self.whitened, self.named = [], trainable_parameters(self.unet, self.config.trainable)

    def save_state(self, path: Path, run_key: str) -> None:
        """Trainable weights, optimizer, step and history; written to a temporary file, then renamed."""
        state = {
            "run_key": run_key,
            "step": self.step_index,
            "params": {n: p.detach().to("cpu", copy=True) for n, p in self.named},  # one host copy
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "method": self.method.state_dict(),  # the robust mode's adversarial rows
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
        self.method.load_state_dict(state.get("method", {}))
