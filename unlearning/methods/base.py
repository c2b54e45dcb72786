"""What every method shares: a configuration that checks itself, and the implementation
the trainer runs (`Method`), which the configuration names.

This module imports no torch: the gateway validates job bodies with it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import InvalidInput

TRAINABLE_SETS = ("unet", "cross_attention", "cross_attention_keys", "cross_attention_keys_values", "lora")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # every attention projection, self and cross
MODULE_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")  # a layer's name or its last dotted parts


def setting(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class MethodConfig:
    """Settings of the data and the loop, common to all methods. Subclasses add their own."""

    method: ClassVar[str] = ""
    implementation: ClassVar[type[Method]]  # what the trainer runs for this method

    steps: int = setting("optimizer steps", 100)
    learning_rate: float = setting("Adam learning rate", 1e-5)
    batch_size: int = setting("forget samples per step (and as many paired retain samples)", 8)
    num_prompts: int = setting("forget prompts (and as many paired retain prompts) in the training set", 800)
    trainable: str = setting(
        "which UNet parameters change: 'unet' (all), 'cross_attention', 'cross_attention_keys' (only the "
        "key projections of the prompt's tokens), 'cross_attention_keys_values' (their key and value "
        "projections: only what reads the prompt), or 'lora' (a low-rank adapter, fused at the end)",
        "unet",
    )
    lora_rank: int = setting("rank of the LoRA adapter (trainable 'lora'); its alpha is the rank, a scale of 1", 8)
    lora_target_modules: tuple[str, ...] = setting(
        "UNet layers the LoRA adapter wraps, by name or last dotted parts, as peft matches them (trainable 'lora')",
        LORA_TARGETS,
    )
    generation_steps: int = setting("sampler steps when the original model generates the training latents", 25)
    guidance_scale: float = setting("classifier-free guidance when generating the training latents", 7.5)
    generation_batch_size: int = setting("images per sampler call when generating latents", 32)
    save_every: int = setting("steps between two saved resumable states", 25)
    eval_prompts: int = setting("held-out prompts per set (forget, retain) drawn for evaluation", 8)
    gradient_checkpointing: bool = setting(
        "low-memory mode: recompute activations in the backward pass (slower, far less memory)", False
    )
    stop_when_erased: float | None = setting(
        "stop before `steps` once, for every concept, at most this share of the erasure check's images shows it "
        "(null: no check, every step runs)", None
    )
    stop_check_every: int = setting("steps between two erasure checks (with stop_when_erased)", 10)
    stop_check_images: int = setting("images of each concept's held-out sentences that an erasure check draws", 32)
    key_value_whitening: float | None = setting(
        "train the cross-attention key and value projections in coordinates where the job's text states are "
        "white, so a step for the concept's word moves less of the words whose states point the same way; "
        "the value is the damping added to their second moment, normalised to a mean eigenvalue of 1 (null: off)",
        None,
    )

    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "steps": (1, 100_000),
        "learning_rate": (1e-9, 1.0),
        "batch_size": (1, 1024),
        "num_prompts": (1, 100_000),
        "generation_steps": (1, 1000),
        "guidance_scale": (0.0, 50.0),
        "generation_batch_size": (1, 1024),
        "save_every": (1, 100_000),
        "eval_prompts": (0, 1000),
        "lora_rank": (1, 1024),
        "stop_when_erased": (0.0, 1.0),
        "stop_check_every": (1, 100_000),
        "stop_check_images": (1, 1024),
        "key_value_whitening": (1e-6, 100.0),
    }
    MAX_TARGETS: ClassVar[int] = 64

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not (low <= value <= high):
                raise InvalidInput(f"hyperparameters.{name}", f"must be between {low:g} and {high:g}, got {value!r}")
        if self.trainable not in TRAINABLE_SETS:
            raise InvalidInput("hyperparameters.trainable", f"must be one of {', '.join(TRAINABLE_SETS)}, got {self.trainable!r}")
        object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))  # JSON gives a list
        _check_module_names("lora_target_modules", self.lora_target_modules, self.MAX_TARGETS)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "MethodConfig":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        for name in values:
            if name not in known:
                raise InvalidInput(f"hyperparameters.{name}", f"is not a setting of method {cls.method!r}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @property
    def frozen_passes(self) -> int:
        """Forward passes per sample and step through the original weights (no backward), beyond
        the trained passes: the targets of esd and of the anchor, the retain targets 'original' and
        'guided'."""
        return 0

    @property
    def trained_passes(self) -> int:
        """Forward and backward passes per sample and step: the forget pass, and the retain pass
        of a method that trains on the retain set."""
        return 2 if self.implementation.uses_retain_set else 1

    @property
    def adversarial_passes(self) -> int:
        """Trained passes per sample and step of the robust mode's adversarial rows, when it is on."""
        return 1

    @property
    def draws_retain_set(self) -> bool:
        """Whether a job generates the retain images: the method trains on them, or the erasure
        check behind `stop_when_erased` fits its detectors on them."""
        return self.implementation.uses_retain_set or self.stop_when_erased is not None

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON has them (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class Method:
    """A method's implementation: the trainer asks it for each step's update direction.

    The trainer (`unlearning.train.Unlearner`) zeroes its flat gradient buffer, calls
    `direction`, then hands the buffer to Adam; it never asks which method it runs. A method
    uses the trainer's `data`, `grads` (the buffer, with `gradient_rows` rows), `denoising_loss`,
    `noise`, `unet`, `named` (the trainable parameters) and `device`.
    """

    gradient_rows: ClassVar[int] = 1  # 2: a second row keeps g_f while g_r is computed
    uses_retain_set: ClassVar[bool] = False  # False: the retain latents are never generated

    def __init__(self, config: MethodConfig, trainer: Any):
        self.config, self.trainer = config, trainer

    def direction(self, batch: Any, generator: Any) -> dict:
        """Leave the update direction d in `trainer.grads.buffer`; return the step's record."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop the tensors the method holds of its own (called when the run ends)."""

    def state_dict(self) -> dict:
        """What a resumed run needs of the method's own (tensors on the CPU), beyond the weights."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` gave."""


def _check_type(name: str, value: Any, annotation: str) -> None:
    """Configs come from JSON: accept ints for floats, nothing else loosely."""
    where = f"hyperparameters.{name}"
    optional = "None" in annotation
    if value is None:
        if not optional:
            raise InvalidInput(where, "must not be null")
        return
    if annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(where, f"must be an integer, got {value!r}")
    elif annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(where, f"must be a finite number, got {value!r}")
    elif annotation.startswith("bool") and not isinstance(value, bool):
        raise InvalidInput(where, f"must be true or false, got {value!r}")
    elif annotation.startswith("str") and not isinstance(value, str):
        raise InvalidInput(where, f"must be a string, got {value!r}")
    elif annotation.startswith("tuple[str") and (
        not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)
    ):
        raise InvalidInput(where, f"must be a list of strings, got {value!r}")


def _check_module_names(name: str, values: tuple[str, ...], most: int) -> None:
    where = f"hyperparameters.{name}"
    if not 1 <= len(values) <= most:
        raise InvalidInput(where, f"must name from 1 to {most} layers, got {len(values)}")
    for value in values:
        if len(value) > 200 or not MODULE_NAME.fullmatch(value):
            raise InvalidInput(where, f"{value!r} is not a layer name (letters, digits and _, parts joined by dots)")
    if len(set(values)) != len(values):
        raise InvalidInput(where, f"names a layer twice: {list(values)!r}")
